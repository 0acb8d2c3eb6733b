"""DataSync: scheduled, verified, never-deleting copies from on-premises or other clouds into a lake zone.

aws-cdk-lib has no DataSync L2 (FACTS.md), so this module builds on the L1 ``aws_datasync`` types:

- :class:`DataSyncTask`: one source location (:class:`NfsSource`, :class:`SmbSource`, :class:`HdfsSource`,
  :class:`S3Source`, :class:`EfsSource`, :class:`FsxLustreSource`, :class:`FsxWindowsSource`) copied into a lake
  zone and prefix, with safe task options (verify transferred files, never overwrite, never delete, POSIX
  metadata preserved, changed files only), an optional schedule, include/exclude filters, a bandwidth limit, a
  task report to S3, a CloudWatch log group with retention, and an EventBridge rule that sends the task's
  ERROR state changes to an SNS topic (and every state change to extra targets, e.g. the glue queue).
  With ``dataset=``, every successful execution becomes a NEW version of that dataset: the task writes into a fixed
  staging prefix and :class:`~mlinfra.constructs.datasync_promote.DataSyncPromotion` lands each run's files (from
  the task report) as ``<dataset>/<version>/`` with the glue's manifest; see docs/ingestion.md.
- :class:`DataSyncEndpoint`: the interface VPC endpoint agents activate and transfer through (private path),
  with its security group admitting only the agents' CIDRs on the ports DataSync uses.

Agents are activated on premises (or in-region EC2 for cross-account S3 sources) and passed in by ARN; NFS,
SMB and HDFS need at least one. SMB/FSx-for-Windows passwords come from Secrets Manager as a CloudFormation
dynamic reference, never as plain text in the template.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Sequence

import aws_cdk as cdk
from aws_cdk import aws_datasync as datasync
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from constructs import Construct

from mlinfra.constructs.common import encrypted_log_group, is_token, limit_grants_to_aws_services, log_retention, path_in_errors
from mlinfra.constructs.data_lake import IDataLake, validate_prefix, validate_zone
from mlinfra.constructs.datasync_promote import DATASYNC_PREFIX, DataSyncPromotion
from mlinfra.constructs.wildcards import KMS_WILDCARD_ACTIONS, acknowledge_wildcards, ending
from mlinfra.domain.choices import choice
from mlinfra.domain.lake import dataset_name_error

__all__ = [
    "DataSyncTask", "DataSyncEndpoint", "NfsSource", "SmbSource", "HdfsSource", "S3Source", "EfsSource",
    "FsxLustreSource", "FsxWindowsSource", "VerifyMode", "OverwriteMode", "PreserveDeletedFiles",
    "TransferMode", "LogLevel", "S3StorageClass", "ReportLevel", "NfsVersion", "SmbVersion", "validate_schedule", "validate_filter",
    "validate_bytes_per_second", "UNLIMITED_BANDWIDTH", "MIN_BYTES_PER_SECOND",
]

#: ``Options.BytesPerSecond`` meaning "no limit".
UNLIMITED_BANDWIDTH = -1
#: The smallest bandwidth limit accepted (1 MiB/s, DataSync's own console minimum).
MIN_BYTES_PER_SECOND = 1024 * 1024
#: DataSync's limit on the length of an include or exclude filter value.
MAX_FILTER_LENGTH = 102_400
#: Ports an agent opens to the DataSync interface endpoint (DataSync "network requirements" for VPC
#: endpoints): HTTPS for control and TCP 1024-1064 for data.
ENDPOINT_PORTS = ((443, 443), (1024, 1064))


class VerifyMode(str, enum.Enum):
    ONLY_FILES_TRANSFERRED = "ONLY_FILES_TRANSFERRED"
    POINT_IN_TIME_CONSISTENT = "POINT_IN_TIME_CONSISTENT"
    NONE = "NONE"


class OverwriteMode(str, enum.Enum):
    NEVER = "NEVER"
    ALWAYS = "ALWAYS"


class PreserveDeletedFiles(str, enum.Enum):
    PRESERVE = "PRESERVE"
    REMOVE = "REMOVE"


class TransferMode(str, enum.Enum):
    CHANGED = "CHANGED"
    ALL = "ALL"


class LogLevel(str, enum.Enum):
    BASIC = "BASIC"
    TRANSFER = "TRANSFER"


class ReportLevel(str, enum.Enum):
    ERRORS_ONLY = "ERRORS_ONLY"
    SUCCESSES_AND_ERRORS = "SUCCESSES_AND_ERRORS"


class S3StorageClass(str, enum.Enum):
    STANDARD = "STANDARD"
    INTELLIGENT_TIERING = "INTELLIGENT_TIERING"
    STANDARD_IA = "STANDARD_IA"
    ONEZONE_IA = "ONEZONE_IA"
    GLACIER_INSTANT_RETRIEVAL = "GLACIER_INSTANT_RETRIEVAL"
    GLACIER = "GLACIER"
    DEEP_ARCHIVE = "DEEP_ARCHIVE"


ARCHIVE_CLASSES = (S3StorageClass.GLACIER, S3StorageClass.DEEP_ARCHIVE)


class NfsVersion(str, enum.Enum):
    """The NFS version DataSync mounts with (botocore's DataSync ``NfsVersion``; a test compares the values)."""

    AUTOMATIC = "AUTOMATIC"
    NFS3 = "NFS3"
    NFS4_0 = "NFS4_0"
    NFS4_1 = "NFS4_1"
    NFS4_2 = "NFS4_2"


class SmbVersion(str, enum.Enum):
    """The SMB version DataSync mounts with (botocore's DataSync ``SmbVersion``; a test compares the values)."""

    AUTOMATIC = "AUTOMATIC"
    SMB1 = "SMB1"
    SMB2_0 = "SMB2_0"
    SMB2 = "SMB2"
    SMB3 = "SMB3"


# --------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NfsSource:
    """An NFS export reached through on-premises agents.

    :param server_hostname: NFS server name or IP. :param subdirectory: exported path (``/exports/data``).
    :param agent_arns: activated agents (at least one). :param nfs_version: an ``NfsVersion`` (or its value).
        :default: NfsVersion.AUTOMATIC
    """

    server_hostname: str
    subdirectory: str
    agent_arns: Sequence[str] = ()
    nfs_version: NfsVersion | str = NfsVersion.AUTOMATIC


@dataclasses.dataclass(frozen=True)
class SmbSource:
    """An SMB share reached through agents; the password is read from Secrets Manager (dynamic reference).

    :param password_secret: the secret; :param password_field: JSON field holding the password. :default: password
    :param domain: Windows domain. :default: None :param smb_version: an ``SmbVersion`` (or its value). :default: SmbVersion.AUTOMATIC
    """

    server_hostname: str
    subdirectory: str
    user: str
    password_secret: secretsmanager.ISecret
    agent_arns: Sequence[str] = ()
    password_field: str = "password"
    domain: str | None = None
    smb_version: SmbVersion | str = SmbVersion.AUTOMATIC


@dataclasses.dataclass(frozen=True)
class HdfsSource:
    """An HDFS cluster reached through agents (SIMPLE authentication with ``simple_user``).

    :param name_nodes: ``(hostname, port)`` of each NameNode. :param subdirectory: :default: /
    """

    name_nodes: Sequence[tuple[str, int]]
    simple_user: str
    agent_arns: Sequence[str] = ()
    subdirectory: str = "/"


@dataclasses.dataclass(frozen=True)
class S3Source:
    """A bucket in another account or region (read with a role scoped to its prefix). For a cross-account
    source the bucket owner must allow the role in the bucket policy (see docs/ingestion.md).

    :param prefix: read only under this prefix. :default: "" (whole bucket) :param key: its KMS key, if any.
    """

    bucket: s3.IBucket
    prefix: str = ""
    key: kms.IKey | None = None


@dataclasses.dataclass(frozen=True)
class EfsSource:
    """An EFS file system, mounted by DataSync in ``subnet`` with ``security_group`` (TLS in transit)."""

    file_system_arn: str
    subnet: ec2.ISubnet
    security_group: ec2.ISecurityGroup
    subdirectory: str = "/"
    access_point_arn: str | None = None


@dataclasses.dataclass(frozen=True)
class FsxLustreSource:
    file_system_arn: str
    security_groups: Sequence[ec2.ISecurityGroup]
    subdirectory: str = "/"


@dataclasses.dataclass(frozen=True)
class FsxWindowsSource:
    file_system_arn: str
    security_groups: Sequence[ec2.ISecurityGroup]
    user: str
    password_secret: secretsmanager.ISecret
    password_field: str = "password"
    domain: str | None = None
    subdirectory: str = "/"


Source = NfsSource | SmbSource | HdfsSource | S3Source | EfsSource | FsxLustreSource | FsxWindowsSource
_AGENT_SOURCES = (NfsSource, SmbSource, HdfsSource)
_AGENT_ARN_RE = re.compile(r"^arn:aws[a-z-]*:datasync:[a-z0-9-]+:\d{12}:agent/agent-[0-9a-z]{17}$")


# --------------------------------------------------------------------------------------------------
# Validation rules (one function each)
# --------------------------------------------------------------------------------------------------


_RATE_RE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON_RE = re.compile(r"^cron\((\S+) (\S+) (\S+) (\S+) (\S+) (\S+)\)$")


def validate_schedule(expression: str | None) -> str | None:
    """``rate(N hours|days)`` or a 6-field ``cron(...)`` that fires at most once an hour (DataSync's minimum
    interval is one hour)."""
    if expression is None or is_token(expression):
        return expression
    rate = _RATE_RE.fullmatch(expression)
    if rate:
        n, unit = int(rate.group(1)), rate.group(2)
        if n < 1 or (n == 1) != (not unit.endswith("s")):
            raise ValueError(f"schedule: rate needs a positive value with a matching unit ('rate(1 hour)', 'rate(2 hours)'), got: {expression!r}")
        minutes = n * {"minute": 1, "hour": 60, "day": 1440}[unit.rstrip("s")]
        if minutes < 60:
            raise ValueError(f"schedule: DataSync runs a task at most once an hour, got: {expression!r}")
        return expression
    cron = _CRON_RE.fullmatch(expression)
    if cron:
        minute, hour, dom, month, dow, _year = cron.groups()
        if not re.fullmatch(r"\d{1,2}", minute) or int(minute) > 59:
            raise ValueError(
                f"schedule: the cron minute field must be one number 0-59 (DataSync runs at most once an hour), got: {expression!r}"
            )
        if dom != "?" and dow != "?":
            raise ValueError(f"schedule: cron needs '?' in day-of-month or day-of-week, got: {expression!r}")
        if not re.fullmatch(r"[0-9,*/-]+", hour) or not re.fullmatch(r"[0-9A-Za-z,*/?LW#-]+", month + dom + dow):
            raise ValueError(f"schedule: invalid cron field in {expression!r}")
        return expression
    raise ValueError(
        "schedule must be 'rate(<n> hours|days)' or a 6-field 'cron(min hour day-of-month month day-of-week year)', "
        f"got: {expression!r}"
    )


def validate_bytes_per_second(value: int) -> int:
    if is_token(value):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or (value != UNLIMITED_BANDWIDTH and value < MIN_BYTES_PER_SECOND):
        raise ValueError(
            f"bytes_per_second must be -1 (unlimited) or at least {MIN_BYTES_PER_SECOND} (1 MiB/s), got: {value!r}"
        )
    return value


def validate_filter(patterns: Sequence[str], prop: str) -> str | None:
    """DataSync SIMPLE_PATTERN filters: paths starting with ``/`` (excludes may also start with ``*``), joined
    by ``|``; includes may use ``*`` only as the last character; no empty pattern, no control characters."""
    if not patterns:
        return None
    errors = []
    for p in patterns:
        if is_token(p):
            continue
        if not p or "|" in p or any(ord(c) < 32 for c in p):
            errors.append(f"{p!r} must be a non-empty pattern without '|' or control characters")
        elif prop == "includes" and (not p.startswith("/") or "*" in p[:-1]):
            errors.append(f"{p!r} must start with '/' and may use '*' only as its last character")
        elif prop == "excludes" and not (p.startswith("/") or p.startswith("*")):
            errors.append(f"{p!r} must start with '/' or '*'")
    value = "|".join(patterns)
    if len(value) > MAX_FILTER_LENGTH:
        errors.append(f"the joined filter is {len(value)} characters, more than {MAX_FILTER_LENGTH}")
    if errors:
        raise ValueError(f"{prop}: " + "; ".join(errors))
    return value


def validate_agents(source: Source) -> None:
    if isinstance(source, _AGENT_SOURCES):
        kind = type(source).__name__.replace("Source", "").upper()
        if not source.agent_arns:
            raise ValueError(f"agent_arns: a {kind} source needs at least one activated DataSync agent ARN, got: []")
        bad = [a for a in source.agent_arns if not is_token(a) and not _AGENT_ARN_RE.fullmatch(a)]
        if bad:
            raise ValueError(f"agent_arns must be DataSync agent ARNs (arn:aws:datasync:<region>:<account>:agent/agent-<17>), got: {bad}")


def validate_absolute(path: str, prop: str) -> None:
    if not is_token(path) and (not path.startswith("/") or ".." in path.split("/")):
        raise ValueError(f"{prop} must be an absolute path without '..', got: {path!r}")


def validate_destination(prefix: str | None, dataset: str | None, zone: str, report_level: ReportLevel | str | None,
                         has_report_bucket: bool) -> None:
    """Exactly one of ``prefix`` (a fixed copy) and ``dataset`` (a new version per run, landing zone only, with a
    report of every transferred file for the completion handler)."""
    if (prefix is None) == (dataset is None):
        raise ValueError(f"pass exactly one of prefix (a fixed destination) and dataset (a new version per run), "
                         f"got: prefix={prefix!r}, dataset={dataset!r}")
    if prefix is not None:
        if not prefix:
            raise ValueError("prefix: a DataSync task writes under its own prefix, got: ''")
        validate_prefix(prefix, "prefix")
        return
    if not is_token(dataset) and (problem := dataset_name_error(dataset)) is not None:
        raise ValueError(f"dataset: {problem}")
    if zone != "landing":
        raise ValueError(f"zone: dataset= lands each run in the landing zone for the glue to promote, got: {zone!r}")
    if not has_report_bucket:
        raise ValueError("report_bucket: dataset= reads each run's files from the task report; pass report_bucket "
                         "or give the lake an 'artifacts' zone, got: None")
    if report_level is not None and (level := choice(ReportLevel, report_level, "report_level")) != ReportLevel.SUCCESSES_AND_ERRORS:
        raise ValueError("report_level: dataset= needs SUCCESSES_AND_ERRORS (the report must list every transferred "
                         f"file), got: {level.value}")


def _validate_combination(verify, storage_class, preserve_deleted, allow_deletes, zone) -> None:
    if verify == VerifyMode.POINT_IN_TIME_CONSISTENT and storage_class in ARCHIVE_CLASSES:
        raise ValueError(
            f"verify_mode POINT_IN_TIME_CONSISTENT cannot read back objects archived in {storage_class.value}; "
            "use ONLY_FILES_TRANSFERRED"
        )
    if preserve_deleted == PreserveDeletedFiles.REMOVE and not allow_deletes:
        raise ValueError(
            "preserve_deleted_files REMOVE deletes objects in the lake; ingestion never deletes unless "
            "allow_deletes=True, got: REMOVE"
        )
    if zone == "landing" and storage_class in ARCHIVE_CLASSES:
        raise ValueError(
            f"storage_class {storage_class.value} in the landing zone: the glue handler cannot read archived "
            "objects; archive into another zone (e.g. 'raw') or use a non-archive class"
        )


# --------------------------------------------------------------------------------------------------
# Constructs
# --------------------------------------------------------------------------------------------------


class DataSyncEndpoint(Construct):
    """The DataSync interface VPC endpoint (private activation and data path) and its security group.

    :param vpc: the VPC. :param subnets: where the endpoint's interfaces live. :default: private subnets
    :param agent_cidrs: networks the agents connect from (on premises via VPN/Direct Connect, or the VPC).
    """

    @path_in_errors
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        agent_cidrs: Sequence[str],
        subnets: ec2.SubnetSelection | None = None,
    ) -> None:
        super().__init__(scope, id)
        if not agent_cidrs:
            raise ValueError("agent_cidrs must list the networks DataSync agents connect from, got: []")
        for cidr in agent_cidrs:
            if not is_token(cidr) and (not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}/\d{1,2}", cidr) or cidr.endswith("/0")):
                raise ValueError(f"agent_cidrs must be specific IPv4 CIDRs (not /0), got: {cidr!r}")
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, allow_all_outbound=False,
            description="DataSync interface endpoint: HTTPS and TCP 1024-1064 from the agents",
        )
        for cidr in agent_cidrs:
            for low, high in ENDPOINT_PORTS:
                port = ec2.Port.tcp(low) if low == high else ec2.Port.tcp_range(low, high)
                self.security_group.add_ingress_rule(ec2.Peer.ipv4(cidr), port, f"DataSync agents {cidr}")
        self.endpoint = ec2.InterfaceVpcEndpoint(
            self, "Endpoint", vpc=vpc, service=ec2.InterfaceVpcEndpointAwsService.DATASYNC,
            subnets=subnets or ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[self.security_group], private_dns_enabled=False, open=False,
        )


class DataSyncTask(Construct):
    """A DataSync task copying ``source`` into ``lake``'s ``zone``: under a fixed ``prefix``, or, with ``dataset``,
    as a new version of that dataset per successful run.

    :param source: one of the ``*Source`` classes.
    :param lake: the destination lake. :param zone: its zone. :default: "landing"
    :param dataset: land every successful execution as a NEW version ``<dataset>/<UTC start>-<execution id>/`` of
        the landing zone, with the glue's manifest built from the task report (the task writes into
        ``_datasync/<dataset>/<construct id>/staging/``; failed or partial runs are rejected and notified, never
        promoted). Landing zone only; needs a report bucket. :default: None
    :param prefix: a fixed key prefix in the zone instead of ``dataset`` (every run writes into it; in the landing
        zone no manifest is written, so the glue never declares a version ready). Exactly one of ``prefix`` and
        ``dataset``. :default: None
    :param verify_mode: :default: ONLY_FILES_TRANSFERRED
    :param overwrite_mode: :default: ALWAYS with ``dataset`` (the fixed staging prefix is versioned and each copy is
        pinned to the version DataSync wrote, so a changed source file reaches the next version; NEVER would skip it
        forever), else NEVER (a fixed prefix is never overwritten)
    :param preserve_deleted_files: :default: PRESERVE (REMOVE needs ``allow_deletes=True``)
    :param allow_deletes: second key for REMOVE. :default: False
    :param transfer_mode: :default: CHANGED
    :param bytes_per_second: bandwidth limit, -1 unlimited or >= 1 MiB/s. :default: -1
    :param includes / excludes: SIMPLE_PATTERN filters. :default: none
    :param schedule: ``rate(...)``/``cron(...)``, hourly at most. :default: None (run on demand)
    :param storage_class: destination S3 storage class. :default: STANDARD
    :param preserve_posix: keep uid/gid/permissions/mtime (NFS/EFS/HDFS/Lustre sources). :default: True
    :param log_level: :default: TRANSFER (one line per file)
    :param log_retention_days: :default: 90
    :param log_key: KMS key of the log group (with ``dataset``, also of the completion queues and handler logs).
        :default: a new rotated key
    :param report_bucket: bucket of the task report. :default: the lake's ``artifacts`` zone, when it has one
    :param report_prefix: :default: ``datasync-reports/<construct id>/``
    :param report_level: :default: SUCCESSES_AND_ERRORS with ``dataset`` (required there; its Skipped and Deleted
        reports are overridden to ERRORS_ONLY, so unchanged files are not listed on every run), else ERRORS_ONLY
    :param alarm_topic: SNS topic notified when an execution ends in ERROR (and, with ``dataset``, of rejected runs
        and completion errors). :default: None
    :param state_change_targets: extra EventBridge targets for every state change. :default: none
    :param name: task name. :default: generated
    """

    @path_in_errors
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        source: Source,
        lake: IDataLake,
        prefix: str | None = None,
        dataset: str | None = None,
        zone: str = "landing",
        verify_mode: VerifyMode = VerifyMode.ONLY_FILES_TRANSFERRED,
        overwrite_mode: OverwriteMode | None = None,
        preserve_deleted_files: PreserveDeletedFiles = PreserveDeletedFiles.PRESERVE,
        allow_deletes: bool = False,
        transfer_mode: TransferMode = TransferMode.CHANGED,
        bytes_per_second: int = UNLIMITED_BANDWIDTH,
        includes: Sequence[str] = (),
        excludes: Sequence[str] = (),
        schedule: str | None = None,
        storage_class: S3StorageClass = S3StorageClass.STANDARD,
        preserve_posix: bool = True,
        log_level: LogLevel = LogLevel.TRANSFER,
        log_retention_days: int = 90,
        log_key: kms.IKey | None = None,
        report_bucket: s3.IBucket | None = None,
        report_prefix: str | None = None,
        report_level: ReportLevel | None = None,
        alarm_topic: sns.ITopic | None = None,
        state_change_targets: Sequence[events.IRuleTarget] = (),
        name: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        validate_zone(zone, lake.zones)
        report_bucket = report_bucket or (lake.bucket("artifacts") if "artifacts" in lake.zones else None)
        validate_destination(prefix, dataset, zone, report_level, report_bucket is not None)
        validate_agents(source)
        validate_bytes_per_second(bytes_per_second)
        include_value = validate_filter(includes, "includes")
        exclude_value = validate_filter(excludes, "excludes")
        validate_schedule(schedule)
        overwrite_mode = overwrite_mode or (OverwriteMode.ALWAYS if dataset is not None else OverwriteMode.NEVER)
        verify_mode, overwrite_mode = choice(VerifyMode, verify_mode, "verify_mode"), choice(OverwriteMode, overwrite_mode, "overwrite_mode")
        preserve_deleted_files = choice(PreserveDeletedFiles, preserve_deleted_files, "preserve_deleted_files")
        transfer_mode, storage_class = choice(TransferMode, transfer_mode, "transfer_mode"), choice(S3StorageClass, storage_class, "storage_class")
        log_level = choice(LogLevel, log_level, "log_level")
        report_level = choice(ReportLevel, report_level or (ReportLevel.SUCCESSES_AND_ERRORS if dataset else ReportLevel.ERRORS_ONLY),
                              "report_level")
        _validate_combination(verify_mode, storage_class, preserve_deleted_files, allow_deletes, zone)

        stack = cdk.Stack.of(self)
        bucket = lake.bucket(zone)
        self.dataset = dataset
        #: Where the task writes: ``prefix``, or with ``dataset`` its staging prefix (each run lands elsewhere).
        self.staging_prefix = f"{DATASYNC_PREFIX}{dataset}/{_path_safe(id)}/staging/" if dataset else None
        if dataset is None and zone == "landing":
            cdk.Annotations.of(self).add_warning_v2(
                "mlinfra:datasync-fixed-prefix",
                f"DataSync task {self.node.path} writes every run into one fixed prefix {prefix!r} of the landing zone and "
                "no manifest, so the glue never declares a version ready: pass dataset= for a new version per run")
        prefix = prefix or self.staging_prefix
        self.destination_role = self._s3_role(
            "DestinationRole", bucket, prefix, lake.encryption_key,
            write=True, delete=preserve_deleted_files == PreserveDeletedFiles.REMOVE,
        )
        self.destination = datasync.CfnLocationS3(
            self, "Destination",
            s3_bucket_arn=bucket.bucket_arn,
            subdirectory="/" + prefix,
            s3_storage_class=storage_class.value,
            s3_config=datasync.CfnLocationS3.S3ConfigProperty(bucket_access_role_arn=self.destination_role.role_arn),
        )
        self.destination.node.add_dependency(self.destination_role)
        self.source_location = self._source_location(source)
        windows_like = isinstance(source, (SmbSource, FsxWindowsSource))
        posix = preserve_posix and not windows_like and not isinstance(source, S3Source)

        self.log_key = log_key or kms.Key(self, "LogKey", enable_key_rotation=True, description="DataSync task logs")
        limit_grants_to_aws_services(self.log_key)
        self.log_group = encrypted_log_group(self, "Logs", key=self.log_key, removal_policy=cdk.RemovalPolicy.DESTROY,
                                             retention=log_retention(log_retention_days, "log_retention_days"))
        self.log_group.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal("datasync.amazonaws.com")],
            actions=["logs:PutLogEvents", "logs:CreateLogStream"],
            resources=[f"{self.log_group.log_group_arn}"],
            conditions={
                "StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID},
                "ArnLike": {"aws:SourceArn": stack.format_arn(service="datasync", resource="task", resource_name="*")},
            },
        ))

        report_config = None
        if report_bucket is not None:
            report_prefix = report_prefix or f"datasync-reports/{id}/"
            validate_prefix(report_prefix, "report_prefix")
            self.report_role = self._s3_role("ReportRole", report_bucket, report_prefix, lake.encryption_key, write=True, delete=False)
            report_config = datasync.CfnTask.TaskReportConfigProperty(
                destination=datasync.CfnTask.DestinationProperty(s3=datasync.CfnTask.S3Property(
                    bucket_access_role_arn=self.report_role.role_arn,
                    s3_bucket_arn=report_bucket.bucket_arn,
                    subdirectory=report_prefix,
                )),
                output_type="STANDARD",
                report_level=report_level.value,
                object_version_ids="INCLUDE",
                # The completion handler needs every transferred/verified file, but only the errors of skipped and
                # deleted ones (a Skipped report at SUCCESSES_AND_ERRORS lists every unchanged file on every run).
                overrides=datasync.CfnTask.OverridesProperty(
                    skipped=datasync.CfnTask.SkippedProperty(report_level=ReportLevel.ERRORS_ONLY.value),
                    deleted=datasync.CfnTask.DeletedProperty(report_level=ReportLevel.ERRORS_ONLY.value),
                ) if dataset is not None else None,
            )

        self.task = datasync.CfnTask(
            self, "Task",
            name=name,
            source_location_arn=self.source_location.ref,
            destination_location_arn=self.destination.ref,
            # Basic mode, explicitly: the completion handler reads both modes' task reports, but Enhanced mode has
            # other limits and report fields (DataSync user guide, "Choosing a task mode").
            task_mode="BASIC",
            cloud_watch_log_group_arn=_log_arn_without_star(self.log_group),
            options=datasync.CfnTask.OptionsProperty(
                verify_mode=verify_mode.value,
                overwrite_mode=overwrite_mode.value,
                preserve_deleted_files=preserve_deleted_files.value,
                transfer_mode=transfer_mode.value,
                bytes_per_second=bytes_per_second,
                log_level=log_level.value,
                task_queueing="ENABLED",
                object_tags="PRESERVE",
                posix_permissions="PRESERVE" if posix else "NONE",
                uid="INT_VALUE" if posix else "NONE",
                gid="INT_VALUE" if posix else "NONE",
                mtime="PRESERVE",
                atime="BEST_EFFORT",
                preserve_devices="NONE",
                security_descriptor_copy_flags="OWNER_DACL" if windows_like else None,
            ),
            includes=[datasync.CfnTask.FilterRuleProperty(filter_type="SIMPLE_PATTERN", value=include_value)] if include_value else None,
            excludes=[datasync.CfnTask.FilterRuleProperty(filter_type="SIMPLE_PATTERN", value=exclude_value)] if exclude_value else None,
            schedule=datasync.CfnTask.TaskScheduleProperty(schedule_expression=schedule, status="ENABLED") if schedule else None,
            task_report_config=report_config,
        )
        self.task.node.add_dependency(self.log_group)

        #: With ``dataset``: the completion path (rule, queue, handler) landing each successful run as a version.
        self.promotion: DataSyncPromotion | None = None
        if dataset is not None:
            self.promotion = DataSyncPromotion(
                self, "Promotion", task=self.task, dataset=dataset, lake=lake, staging_prefix=self.staging_prefix,
                rejected_prefix=f"{DATASYNC_PREFIX}{dataset}/{_path_safe(id)}/rejected/", report_bucket=report_bucket,
                report_prefix=report_prefix, key=self.log_key, alarm_topic=alarm_topic,
            )

        self.alarm_rule = None
        if alarm_topic is not None or state_change_targets:
            pattern = events.EventPattern(
                source=["aws.datasync"],
                detail_type=["DataSync Task Execution State Change"],
                resources=events.Match.prefix(self.task.ref),
            )
            if state_change_targets:
                events.Rule(self, "StateChangeRule", event_pattern=pattern, targets=list(state_change_targets),
                            description="DataSync task execution state changes")
            if alarm_topic is not None:
                self.alarm_rule = events.Rule(
                    self, "ErrorRule",
                    event_pattern=events.EventPattern(
                        source=["aws.datasync"], detail_type=["DataSync Task Execution State Change"],
                        resources=events.Match.prefix(self.task.ref), detail={"State": ["ERROR"]},
                    ),
                    # With dataset=, undeliverable ERROR events land in the completion path's (alarmed) DLQ.
                    targets=[targets.SnsTopic(alarm_topic, dead_letter_queue=self.promotion.dead_letter_queue
                                              if self.promotion is not None else None)],
                    description="DataSync task execution ended in ERROR",
                )

    @property
    def task_arn(self) -> str:
        return self.task.ref

    def _s3_role(self, id: str, bucket: s3.IBucket, prefix: str, key: kms.IKey | None, *, write: bool, delete: bool) -> iam.Role:
        """A role DataSync assumes for one bucket and prefix (and its KMS key), nothing else."""
        stack = cdk.Stack.of(self)
        role = iam.Role(
            self, id,
            assumed_by=iam.ServicePrincipal("datasync.amazonaws.com").with_conditions({
                "StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID},
                "ArnLike": {"aws:SourceArn": stack.format_arn(service="datasync", resource="*")},
            }),
            description=f"DataSync access to one bucket prefix ({id})",
        )
        role.add_to_policy(iam.PolicyStatement(
            actions=["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
            resources=[bucket.bucket_arn],
        ))
        object_actions = ["s3:GetObject", "s3:GetObjectTagging", "s3:GetObjectVersion", "s3:GetObjectVersionTagging",
                          "s3:ListMultipartUploadParts"]
        if write:
            object_actions += ["s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload"]
        if delete:
            object_actions += ["s3:DeleteObject"]
        role.add_to_policy(iam.PolicyStatement(actions=object_actions, resources=[bucket.arn_for_objects(f"{prefix}*")]))
        if key is not None:
            key.grant_encrypt_decrypt(role) if write else key.grant_decrypt(role)
        acknowledge_wildcards(
            role,
            "Object actions are scoped to this task's one bucket prefix (<prefix>*), the narrowest resource DataSync "
            "can use; KMS data-key actions are scoped to the lake key.",
            actions=KMS_WILDCARD_ACTIONS, resources=(ending(f"/{prefix}*"),),
        )
        return role

    def _source_location(self, source: Source) -> cdk.CfnResource:
        if isinstance(source, NfsSource):
            validate_absolute(source.subdirectory, "subdirectory")
            return datasync.CfnLocationNFS(
                self, "Source", server_hostname=source.server_hostname, subdirectory=source.subdirectory,
                on_prem_config=datasync.CfnLocationNFS.OnPremConfigProperty(agent_arns=list(source.agent_arns)),
                mount_options=datasync.CfnLocationNFS.MountOptionsProperty(
                    version=choice(NfsVersion, source.nfs_version, "source.nfs_version").value),
            )
        if isinstance(source, SmbSource):
            return datasync.CfnLocationSMB(
                self, "Source", server_hostname=source.server_hostname, subdirectory=source.subdirectory,
                user=source.user, domain=source.domain, agent_arns=list(source.agent_arns),
                password=source.password_secret.secret_value_from_json(source.password_field).unsafe_unwrap(),
                authentication_type="NTLM",
                mount_options=datasync.CfnLocationSMB.MountOptionsProperty(
                    version=choice(SmbVersion, source.smb_version, "source.smb_version").value),
            )
        if isinstance(source, HdfsSource):
            if not source.name_nodes:
                raise ValueError("name_nodes: an HDFS source needs at least one (hostname, port), got: []")
            bad = [n for n in source.name_nodes if not (1 <= n[1] <= 65535)]
            if bad:
                raise ValueError(f"name_nodes: ports must be 1-65535, got: {bad}")
            validate_absolute(source.subdirectory, "subdirectory")
            return datasync.CfnLocationHDFS(
                self, "Source", agent_arns=list(source.agent_arns), authentication_type="SIMPLE",
                simple_user=source.simple_user, subdirectory=source.subdirectory,
                name_nodes=[datasync.CfnLocationHDFS.NameNodeProperty(hostname=h, port=p) for h, p in source.name_nodes],
            )
        if isinstance(source, S3Source):
            if source.prefix:
                validate_prefix(source.prefix, "source prefix")
            self.source_role = self._s3_role("SourceRole", source.bucket, source.prefix, source.key, write=False, delete=False)
            location = datasync.CfnLocationS3(
                self, "Source", s3_bucket_arn=source.bucket.bucket_arn, subdirectory="/" + source.prefix,
                s3_config=datasync.CfnLocationS3.S3ConfigProperty(bucket_access_role_arn=self.source_role.role_arn),
            )
            location.node.add_dependency(self.source_role)
            return location
        if isinstance(source, EfsSource):
            validate_absolute(source.subdirectory, "subdirectory")
            stack = cdk.Stack.of(self)
            return datasync.CfnLocationEFS(
                self, "Source", efs_filesystem_arn=source.file_system_arn, subdirectory=source.subdirectory,
                access_point_arn=source.access_point_arn, in_transit_encryption="TLS1_2",
                ec2_config=datasync.CfnLocationEFS.Ec2ConfigProperty(
                    subnet_arn=stack.format_arn(service="ec2", resource="subnet", resource_name=source.subnet.subnet_id),
                    security_group_arns=[stack.format_arn(service="ec2", resource="security-group",
                                                          resource_name=source.security_group.security_group_id)],
                ),
            )
        if isinstance(source, (FsxLustreSource, FsxWindowsSource)):
            if not source.security_groups:
                raise ValueError("security_groups: an FSx source needs the file system's security groups, got: []")
            validate_absolute(source.subdirectory, "subdirectory")
            stack = cdk.Stack.of(self)
            sg_arns = [stack.format_arn(service="ec2", resource="security-group", resource_name=sg.security_group_id)
                       for sg in source.security_groups]
            if isinstance(source, FsxLustreSource):
                return datasync.CfnLocationFSxLustre(
                    self, "Source", fsx_filesystem_arn=source.file_system_arn, security_group_arns=sg_arns,
                    subdirectory=source.subdirectory,
                )
            return datasync.CfnLocationFSxWindows(
                self, "Source", fsx_filesystem_arn=source.file_system_arn, security_group_arns=sg_arns,
                user=source.user, domain=source.domain, subdirectory=source.subdirectory,
                password=source.password_secret.secret_value_from_json(source.password_field).unsafe_unwrap(),
            )
        raise ValueError(f"source must be one of NfsSource, SmbSource, HdfsSource, S3Source, EfsSource, FsxLustreSource, FsxWindowsSource, got: {type(source).__name__}")


def _path_safe(construct_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", construct_id)


def _log_arn_without_star(log_group: logs.ILogGroup) -> str:
    """DataSync wants the log group ARN without the trailing ``:*`` that ``log_group_arn`` carries."""
    stack = cdk.Stack.of(log_group)
    return stack.format_arn(service="logs", resource="log-group", resource_name=log_group.log_group_name,
                            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)
