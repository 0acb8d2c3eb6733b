"""DataLake: the platform's S3 zones.

One bucket per zone (``landing -> raw -> curated/features``, ``models``, ``artifacts``) plus an access-log
bucket. Every zone bucket is encrypted (a rotated customer managed KMS key by default, S3-managed keys on
request), blocks public access, denies non-TLS requests (TLS 1.2 minimum), is versioned, enforces bucket
owner object ownership, writes server access logs, sends EventBridge notifications and has a lifecycle
(tiering or transitions, noncurrent-version expiry, aborting incomplete multipart uploads). Buckets and the
key are RETAINED unless data destruction is asked for with two keys (the prop and the app context flag).

Dataset and model versions
--------------------------
Data lands in ``landing`` and is promoted to ``raw`` under ``dataset=<name>/version=<version>/``; each object
carries the tags ``mlinfra:dataset`` and ``mlinfra:dataset-version``. Versioning is on in every zone, so an
exact input is the pair (key, S3 version id), which the ingestion catalog and the pipeline's lineage record.
Models live in ``models`` under ``<model-name>/<version>/``; training checkpoints, evaluation reports and code
bundles live in ``artifacts`` under ``checkpoints/``, ``evaluation/`` and ``code/``.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Protocol, runtime_checkable

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from mlinfra.constructs.common import acknowledge, acknowledge_access_log_destination, data_removal_policy, is_token, limit_grants_to_aws_services, path_in_errors
from mlinfra.domain.lake import ZONES, LakeEncryption, Lifecycle, Zone, default_lifecycle, lifecycle_errors, prefix_error

__all__ = ["DataLake", "ImportedDataLake", "IDataLake", "LakeBase", "LakeEncryption", "Lifecycle", "Zone", "ZONES",
           "dataset_prefix"]

#: Sub-prefixes of the artifacts zone.
ARTIFACT_PREFIXES = {"checkpoints": "checkpoints/", "evaluation": "evaluation/", "code": "code/"}


def dataset_prefix(dataset: str, version: str) -> str:
    """The raw-zone prefix of one dataset version: ``dataset=<name>/version=<version>/``."""
    return f"dataset={dataset}/version={version}/"


#: Why the lake's buckets carry no S3 Object Lock (Control Tower CT.S3.PR.9).
_NO_OBJECT_LOCK = ("Object Lock (WORM) would stop the zones' lifecycle expirations and the platform's data-destruction "
                   "path; versioning, no-delete grants and RETAIN protect the objects instead")


def validate_prefix(prefix: str | None, prop: str = "prefix") -> str | None:
    """A key prefix: path segments of S3 safe characters, ending with ``/`` and not starting with one."""
    if prefix is None or cdk.Token.is_unresolved(prefix):
        return prefix
    error = prefix_error(prefix, prop)
    if error:
        raise ValueError(error)
    return prefix


def validate_zone(zone: str, available: tuple[str, ...] = ZONES) -> str:
    if zone not in available:
        raise ValueError(f"zone must be one of {list(available)}, got: {zone!r}")
    return zone


@runtime_checkable
class IDataLake(Protocol):
    """What other constructs consume from a lake, created (:class:`DataLake`) or imported
    (:class:`ImportedDataLake`, ``DataLake.from_lake_attributes``): take this type, not a concrete class."""

    #: The KMS key of the zone buckets, or None for S3-managed keys.
    encryption_key: kms.IKey | None

    @property
    def zones(self) -> tuple[str, ...]: ...

    def bucket(self, zone: str) -> s3.IBucket: ...

    def grant_read(self, zone: str, grantee: iam.IGrantable, prefix: str | None = None) -> iam.Grant: ...

    def grant_write(self, zone: str, grantee: iam.IGrantable, prefix: str | None = None) -> iam.Grant: ...

    def grant_read_write(self, zone: str, grantee: iam.IGrantable, prefix: str | None = None) -> iam.Grant: ...

    def s3_uri(self, zone: str, prefix: str = "") -> str: ...


class LakeBase(Construct):
    """Behaviour shared by a created and an imported lake: buckets by zone and prefix-scoped grants."""

    _buckets: dict[str, s3.IBucket]
    encryption_key: kms.IKey | None

    @property
    def zones(self) -> tuple[str, ...]:
        return tuple(self._buckets)

    def bucket(self, zone: str) -> s3.IBucket:
        """The bucket of ``zone``."""
        return self._buckets[validate_zone(zone, self.zones)]

    def grant_read(self, zone: str, grantee: iam.IGrantable, prefix: str | None = None) -> iam.Grant:
        """Read (and KMS decrypt) objects of ``zone``, under ``prefix`` only when given."""
        validate_prefix(prefix)
        return self.bucket(zone).grant_read(grantee, f"{prefix}*" if prefix else "*")

    def grant_write(self, zone: str, grantee: iam.IGrantable, prefix: str | None = None) -> iam.Grant:
        """Write (and KMS encrypt) objects of ``zone``, under ``prefix`` only when given. Never delete."""
        validate_prefix(prefix)
        return self.bucket(zone).grant_put(grantee, f"{prefix}*" if prefix else "*")

    def grant_read_write(self, zone: str, grantee: iam.IGrantable, prefix: str | None = None) -> iam.Grant:
        self.grant_read(zone, grantee, prefix)
        return self.grant_write(zone, grantee, prefix)

    def s3_uri(self, zone: str, prefix: str = "") -> str:
        """``s3://<bucket of zone>/<prefix>``."""
        validate_prefix(prefix or None)
        return f"s3://{self.bucket(zone).bucket_name}/{prefix}"

    def metric_bucket_size_bytes(self, zone: str, **kwargs) -> cloudwatch.Metric:
        """Daily storage metric of a zone (StandardStorage)."""
        return self._storage_metric(zone, "BucketSizeBytes", "StandardStorage", **kwargs)

    def metric_number_of_objects(self, zone: str, **kwargs) -> cloudwatch.Metric:
        """Daily object count of a zone."""
        return self._storage_metric(zone, "NumberOfObjects", "AllStorageTypes", **kwargs)

    def _storage_metric(self, zone: str, name: str, storage_type: str, **kwargs) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="AWS/S3",
            metric_name=name,
            dimensions_map={"BucketName": self.bucket(zone).bucket_name, "StorageType": storage_type},
            period=cdk.Duration.days(1),
            statistic="Average",
            **kwargs,
        )


#: The former private name of :class:`LakeBase`.
_LakeBase = LakeBase


class DataLake(LakeBase):
    """The lake's zone buckets, key, access logs and Glue databases.

    :param zones: zones to create, in flow order. :default: all of ``ZONES``
    :param encryption: ``"kms"`` (a customer managed key, rotated yearly) or ``"s3"``. :default: "kms"
    :param encryption_key: an existing key to use with ``"kms"`` (not together with ``"s3"``). :default: a new key
    :param lifecycle: per-zone lifecycle; zones left out get the defaults. :default: tiering per zone
    :param glue_zones: zones that get a Glue Data Catalog database. :default: raw, curated, features
    :param access_log_retention_days: days to keep server access logs. :default: 365
    :param destroy_data_on_delete: delete buckets, objects and the key with the stack; needs the app context
        flag ``mlinfra:allowDataDestruction=true`` too. :default: False (RETAIN)
    :param auto_delete_objects: empty the buckets on delete (a custom resource); only with destruction on.
        :default: False
    :param transfer_acceleration: turn on S3 Transfer Acceleration on the landing bucket. :default: False
    :param request_metrics: publish per-request CloudWatch metrics for every zone (paid). :default: False
    :param allow_lustre_repository_access: let this account's FSx for Lustre data repository associations use
        the lake key through S3 (the key policy names FSx's per-file-system service-linked roles,
        ``AWSServiceRoleForFSxS3Access_fs-*``, which IAM policies cannot grant a customer managed key to).
        Only with a key this construct creates. :default: True
    :param name_prefix: prefix of the Glue database names. :default: "mlinfra"
    """

    @path_in_errors
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        zones: tuple[str, ...] | list[str] = ZONES,
        encryption: LakeEncryption | str = LakeEncryption.KMS,
        encryption_key: kms.IKey | None = None,
        lifecycle: Mapping[str, Lifecycle] | None = None,
        glue_zones: tuple[str, ...] | list[str] = ("raw", "curated", "features"),
        access_log_retention_days: int = 365,
        destroy_data_on_delete: bool = False,
        auto_delete_objects: bool = False,
        transfer_acceleration: bool = False,
        request_metrics: bool = False,
        allow_lustre_repository_access: bool = True,
        name_prefix: str = "mlinfra",
    ) -> None:
        super().__init__(scope, id)
        # Server access logs are delivered through a bucket policy (not the legacy LogDeliveryWrite ACL), so the
        # log bucket can enforce bucket-owner object ownership. Set here, the construct behaves the same in any app.
        self.node.set_context("@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy", True)
        zones = tuple(zones)
        _validate_props(zones, encryption, encryption_key, lifecycle or {}, glue_zones, access_log_retention_days)
        removal = data_removal_policy(self, destroy_data_on_delete, "The data lake")
        if auto_delete_objects and removal != cdk.RemovalPolicy.DESTROY:
            raise ValueError(
                "auto_delete_objects needs data destruction on: destroy_data_on_delete=True and the context flag "
                "'mlinfra:allowDataDestruction=true', got: auto_delete_objects=True with RETAIN"
            )
        lifecycle = dict(lifecycle or {})

        if encryption == LakeEncryption.KMS:
            self.encryption_key = encryption_key or kms.Key(
                self,
                "Key",
                enable_key_rotation=True,
                description=f"{name_prefix} data lake: encrypts every zone bucket",
                removal_policy=removal,
            )
            limit_grants_to_aws_services(self.encryption_key)
            if encryption_key is None and allow_lustre_repository_access:
                self._allow_lustre_repository_access(self.encryption_key)
        else:
            self.encryption_key = None

        self.access_log_bucket = s3.Bucket(
            self,
            "AccessLogs",
            # S3 server access logging delivers only to SSE-S3 buckets.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=cdk.Duration.days(access_log_retention_days),
                    noncurrent_version_expiration=cdk.Duration.days(30),
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(7),
                )
            ],
            removal_policy=removal,
            auto_delete_objects=auto_delete_objects,
        )
        acknowledge_access_log_destination(self.access_log_bucket)
        acknowledge(self.access_log_bucket, "cfn-guard::s3_bucket_object_lock_enabled_check", _NO_OBJECT_LOCK)

        self._buckets = {}
        for zone in zones:
            lc = lifecycle.get(zone) or default_lifecycle(zone)
            bucket = s3.Bucket(
                self,
                f"{zone.title()}Bucket",
                encryption=s3.BucketEncryption.KMS if self.encryption_key else s3.BucketEncryption.S3_MANAGED,
                encryption_key=self.encryption_key,
                bucket_key_enabled=self.encryption_key is not None,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                enforce_ssl=True,
                minimum_tls_version=1.2,
                versioned=True,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                server_access_logs_bucket=self.access_log_bucket,
                server_access_logs_prefix=f"{zone}/",
                lifecycle_rules=lifecycle_rules(lc),
                transfer_acceleration=transfer_acceleration and zone == "landing",
                metrics=[s3.BucketMetrics(id="EntireBucket")] if request_metrics else None,
                removal_policy=removal,
                auto_delete_objects=auto_delete_objects,
            )
            # EventBridge notifications set on the CloudFormation resource itself: the L2's
            # ``event_bridge_enabled`` adds a Lambda-backed custom resource for what S3 supports natively.
            cfn_bucket: s3.CfnBucket = bucket.node.default_child
            cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
                event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(event_bridge_enabled=True)
            )
            acknowledge(bucket, "cfn-guard::s3_bucket_object_lock_enabled_check", _NO_OBJECT_LOCK)
            self._buckets[zone] = bucket

        self.glue_databases: dict[str, glue.CfnDatabase] = {}
        for zone in glue_zones:
            db = glue.CfnDatabase(
                self,
                f"{zone.title()}Database",
                catalog_id=cdk.Aws.ACCOUNT_ID,
                database_input=glue.CfnDatabase.DatabaseInputProperty(
                    name=f"{name_prefix}_{zone}".replace("-", "_"),
                    description=f"Tables of the {zone} zone",
                    location_uri=f"s3://{self._buckets[zone].bucket_name}/",
                ),
            )
            db.apply_removal_policy(removal)
            self.glue_databases[zone] = db

    @staticmethod
    def _allow_lustre_repository_access(key: kms.Key) -> None:
        # The FSx S3-access service-linked role is named per file system, so it cannot be a Principal: any
        # principal, narrowed to this account's FSx S3-access roles calling through S3 in this region.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowFsxLustreRepositoryAccessThroughS3",
                principals=[iam.AnyPrincipal()],
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*", "kms:DescribeKey"],
                resources=["*"],
                conditions={
                    "StringEquals": {
                        "aws:PrincipalAccount": cdk.Aws.ACCOUNT_ID,
                        "kms:ViaService": f"s3.{cdk.Aws.REGION}.amazonaws.com",
                    },
                    "ArnLike": {
                        "aws:PrincipalArn": f"arn:{cdk.Aws.PARTITION}:iam::{cdk.Aws.ACCOUNT_ID}:role/aws-service-role/"
                        "s3.data-source.lustre.fsx.amazonaws.com/AWSServiceRoleForFSxS3Access_fs-*"
                    },
                },
            )
        )
        acknowledge(key, "checkov::CKV_AWS_33", "The '*' principal is narrowed by conditions to this account's FSx "
                    "S3-access service-linked roles calling through S3 in this region (their names carry the file "
                    "system id, so they cannot be listed as principals)")

    @staticmethod
    def from_lake_attributes(scope: Construct, id: str, *, bucket_names: Mapping[str, str],
                             key_arn: str | None = None) -> "ImportedDataLake":
        """An existing lake, by its zone bucket names (and the key ARN when the buckets use SSE-KMS)."""
        return ImportedDataLake(scope, id, bucket_names=bucket_names, key_arn=key_arn)

    def glue_database_name(self, zone: str) -> str:
        return self.glue_databases[validate_zone(zone, tuple(self.glue_databases))].ref


class ImportedDataLake(LakeBase):
    """An existing lake, imported by bucket names (and the key ARN if the buckets use SSE-KMS)."""

    @path_in_errors
    def __init__(
        self, scope: Construct, id: str, *, bucket_names: Mapping[str, str], key_arn: str | None = None
    ) -> None:
        super().__init__(scope, id)
        bad = [z for z in bucket_names if z not in ZONES]
        if bad or not bucket_names:
            raise ValueError(f"bucket_names must map zones {list(ZONES)} to bucket names, got zones: {sorted(bucket_names)}")
        self.encryption_key = kms.Key.from_key_arn(self, "Key", key_arn) if key_arn else None
        self._buckets = {
            zone: s3.Bucket.from_bucket_attributes(
                self, f"{zone.title()}Bucket", bucket_name=name, encryption_key=self.encryption_key
            )
            for zone, name in bucket_names.items()
        }


def lifecycle_rules(lc: Lifecycle) -> list[s3.LifecycleRule]:
    """S3 lifecycle rules of one zone: current-version transitions, noncurrent expiry, multipart abort."""
    transitions = [
        s3.Transition(storage_class=cls, transition_after=cdk.Duration.days(days))
        for cls, days in (
            (s3.StorageClass.INTELLIGENT_TIERING, lc.intelligent_tiering_days),
            (s3.StorageClass.INFREQUENT_ACCESS, lc.infrequent_access_days),
            (s3.StorageClass.GLACIER, lc.glacier_days),
            (s3.StorageClass.DEEP_ARCHIVE, lc.deep_archive_days),
        )
        if days is not None
    ]
    rule = s3.LifecycleRule(
        id="tiering-and-cleanup",
        transitions=transitions or None,
        noncurrent_version_expiration=(
            cdk.Duration.days(lc.noncurrent_expiration_days) if lc.noncurrent_expiration_days else None
        ),
        abort_incomplete_multipart_upload_after=cdk.Duration.days(lc.abort_incomplete_multipart_days),
    )
    return [rule]


def _literal_lifecycle(lc: Lifecycle) -> Lifecycle:
    """``lc`` with its token day counts (CloudFormation parameters, legal in the bucket's lifecycle rules) replaced
    by the field's default, so the S3 rules check the literal ones only."""
    tokens = {f.name: f.default for f in dataclasses.fields(lc) if is_token(getattr(lc, f.name))}
    return dataclasses.replace(lc, **tokens) if tokens else lc


def _validate_props(zones, encryption, encryption_key, lifecycle, glue_zones, log_days) -> None:
    bad = [z for z in zones if z not in ZONES]
    if bad or not zones:
        raise ValueError(f"zones must be a non-empty subset of {list(ZONES)}, got: {list(zones)}")
    if len(set(zones)) != len(zones):
        raise ValueError(f"zones must be unique, got: {list(zones)}")
    if encryption not in (LakeEncryption.KMS, LakeEncryption.S3_MANAGED):
        raise ValueError(f"encryption must be 'kms' or 's3', got: {encryption!r}")
    if encryption_key is not None and encryption != LakeEncryption.KMS:
        raise ValueError("encryption_key is only used with encryption='kms', got: encryption='s3' and a key")
    bad = [z for z in glue_zones if z not in zones]
    if bad:
        raise ValueError(f"glue_zones must be zones of this lake {list(zones)}, got: {list(bad)}")
    bad = [z for z in lifecycle if z not in zones]
    if bad:
        raise ValueError(f"lifecycle has zone(s) not in this lake {list(zones)}: {bad}")
    errors = [e for z, lc in lifecycle.items() for e in lifecycle_errors(_literal_lifecycle(lc), f"lifecycle.{z}")]
    if errors:
        raise ValueError("; ".join(errors))
    if not is_token(log_days) and log_days < 1:
        raise ValueError(f"access_log_retention_days must be >= 1, got: {log_days}")
