"""LustreCache: an FSx for Lustre file system in the training subnet, linked to lake prefixes.

Why L1 (``fsx.CfnFileSystem``) rather than ``aws_fsx.LustreFileSystem``: the L2 has no log configuration,
metadata configuration or data repository associations, and its ``connections`` opens TCP 988-1023, while
Lustre needs exactly TCP 988 and 1018-1023 (FACTS.md, AWS docs). Everything else follows the L2's style.

Links to the lake: one data repository association (DRA) per (file-system path, bucket prefix), at most 8
(``fsx.CfnDataRepositoryAssociation``, no L2 exists), with auto import (NEW/CHANGED/DELETED) and auto export
policies. DRAs work on every Lustre 2.12/2.15 file system except SCRATCH_1 and are the only link
PERSISTENT_2 accepts; SCRATCH_2 and PERSISTENT_1 may instead use the older import/export paths
(``use_import_export_paths=True``, one link at ``/``), which exclude DRAs.

Consumers (the training clusters, HyperPod) take an :class:`ILustreCache`: a cache made here or an existing file
system imported with :meth:`LustreCache.from_file_system_attributes` (file system id, DNS name, mount name and
its security group), so a cluster can mount a file system another stack or team owns.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Protocol, Sequence, runtime_checkable

import aws_cdk as cdk
import jsii
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_fsx as fsx
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from mlinfra.constructs.common import (
    acknowledge_retention,
    data_removal_policy,
    is_token,
    limit_grants_to_aws_services,
    log_retention,
    path_in_errors,
)
from mlinfra.constructs.data_lake import validate_prefix
from mlinfra.domain.lustre_sizing import PER_UNIT_THROUGHPUT, CachePlan, capacity_errors
from mlinfra.domain.rules import cite

__all__ = [
    "ILustreCache",
    "LustreCache",
    "LustreCacheBase",
    "ImportedLustreCache",
    "LustreDeploymentType",
    "LustreLink",
    "RepositoryEvent",
    "LustreConnections",
    "LUSTRE_PORTS",
    "MAX_DATA_REPOSITORY_ASSOCIATIONS",
]

#: TCP ports between Lustre clients and servers (AWS FSx for Lustre docs, "File system access control").
LUSTRE_PORTS: tuple[ec2.Port, ...] = (ec2.Port.tcp(988), ec2.Port.tcp_range(1018, 1023))

MAX_DATA_REPOSITORY_ASSOCIATIONS = 8

#: Metadata IOPS PERSISTENT_2 accepts in USER_PROVISIONED mode (FACTS.md).
METADATA_IOPS: tuple[int, ...] = (1500, 3000, 6000, 12000, *range(24000, 192001, 12000))

_FS_PATH_RE = re.compile(r"^/([A-Za-z0-9_.-]+/?)*$")

# The FSx API's own patterns (botocore's fsx model: FileSystemId, DNSName, LustreFileSystemMountName; a test
# checks these against the model).
FILE_SYSTEM_ID_RE = re.compile(r"^fs-[0-9a-f]{8,18}$")
DNS_NAME_RE = re.compile(r"^(fs|fc)i?-[0-9a-f]{8,}\..{4,253}$")
MOUNT_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,8}$")


class LustreDeploymentType(enum.Enum):
    """Deployment types this construct supports (SCRATCH_1 is the previous generation)."""

    SCRATCH_2 = "SCRATCH_2"
    PERSISTENT_1 = "PERSISTENT_1"
    PERSISTENT_2 = "PERSISTENT_2"

    @property
    def is_persistent(self) -> bool:
        return self is not LustreDeploymentType.SCRATCH_2


class RepositoryEvent(enum.Enum):
    """Object events a DRA imports from S3 or exports to S3."""

    NEW = "NEW"
    CHANGED = "CHANGED"
    DELETED = "DELETED"


ALL_EVENTS: tuple[RepositoryEvent, ...] = (RepositoryEvent.NEW, RepositoryEvent.CHANGED, RepositoryEvent.DELETED)


@dataclasses.dataclass(frozen=True)
class LustreLink:
    """One link of a file-system path to a bucket prefix.

    :param file_system_path: where the data appears in Lustre, e.g. ``/raw``. :default: required
    :param bucket: the S3 bucket (a lake zone). :default: required
    :param prefix: key prefix in the bucket, ``""`` or ending with ``/``. :default: "" (whole bucket)
    :param auto_import: S3 events imported into Lustre's metadata. :default: NEW, CHANGED, DELETED
    :param auto_export: Lustre changes exported to S3 (training data is read-only). :default: none
    :param batch_import_metadata: import the prefix's metadata when the link is created. :default: True
    """

    file_system_path: str
    bucket: s3.IBucket
    prefix: str = ""
    auto_import: Sequence[RepositoryEvent] = ALL_EVENTS
    auto_export: Sequence[RepositoryEvent] = ()
    batch_import_metadata: bool = True

    @property
    def data_repository_path(self) -> str:
        return f"s3://{self.bucket.bucket_name}/{self.prefix}"


@jsii.implements(ec2.IConnectable)
class LustreConnections(ec2.Connections):
    """``ec2.Connections`` whose default port is the Lustre port set (TCP 988 and 1018-1023), not one range.

    Lustre traffic goes both ways: FSx needs inbound AND outbound 988 and 1018-1023 between the file system and
    every client (service rules ``fsx.lustre-ports-both-ways`` and ParallelCluster's
    ``ExistingFsxNetworkingValidator``), so admitting a client opens both directions on both groups.
    """

    def allow_default_port_from(self, other: ec2.IConnectable, description: str | None = None) -> None:
        for port in LUSTRE_PORTS:
            self.allow_from(_peer(other), port, description or "Lustre client to file system")
            self.allow_to(_peer(other), port, description or "Lustre file system to client")

    def allow_default_port_to(self, other: ec2.IConnectable, description: str | None = None) -> None:
        for port in LUSTRE_PORTS:
            self.allow_to(_peer(other), port, description or "Lustre file system to peer")


def _peer(other: ec2.IConnectable) -> ec2.IConnectable:
    """The peer's own ``Connections`` (a Python construct's ``connections`` attribute is not visible to jsii)."""
    return getattr(other, "connections", other)


@runtime_checkable
class ILustreCache(Protocol):
    """What a client of a Lustre file system consumes, whether made here (:class:`LustreCache`) or imported
    (:meth:`LustreCache.from_file_system_attributes`): take this type, not a concrete class."""

    @property
    def file_system_id(self) -> str: ...

    @property
    def dns_name(self) -> str: ...

    @property
    def mount_name(self) -> str: ...

    #: The file system's security groups; ``allow_default_port_from(client)`` opens the Lustre ports both ways.
    connections: ec2.Connections

    def mount_command(self, mount_point: str = "/fsx") -> str: ...


class LustreCacheBase(Construct):
    """Behaviour shared by a created and an imported file system: the mount command."""

    connections: LustreConnections

    @property
    def file_system_id(self) -> str:
        raise NotImplementedError

    @property
    def dns_name(self) -> str:
        raise NotImplementedError

    @property
    def mount_name(self) -> str:
        raise NotImplementedError

    def mount_command(self, mount_point: str = "/fsx") -> str:
        """The client mount command (the Lustre client must be installed)."""
        return f"sudo mount -t lustre -o relatime,flock {self.dns_name}@tcp:/{self.mount_name} {mount_point}"


class LustreCache(LustreCacheBase):
    """An FSx for Lustre file system caching lake prefixes for GPU clusters.

    :param vpc: the VPC. :default: required
    :param subnet: the one subnet (training subnet) of the file system. :default: required
    :param plan: a sizing plan from :func:`mlinfra.domain.lustre_sizing.plan_cache` (deployment type, capacity and
        throughput); not together with the three props below. :default: None
    :param deployment_type: :default: PERSISTENT_2
    :param storage_capacity_gib: 1200, then multiples of 2400 (SCRATCH_2, PERSISTENT_1 SSD, PERSISTENT_2).
        :default: 1200
    :param per_unit_storage_throughput: MB/s/TiB: PERSISTENT_2 125/250/500/1000, PERSISTENT_1 50/100/200,
        SCRATCH_2 none (200 baseline). :default: 250 for PERSISTENT_2, 200 for PERSISTENT_1, None for scratch
    :param links: lake links (DRAs, or import/export paths). At most 8. :default: none
    :param use_import_export_paths: link with import/export paths instead of DRAs (SCRATCH_2, PERSISTENT_1; one
        link at ``/``). :default: False
    :param compression: LZ4 data compression (new files only). :default: True
    :param metadata_iops: PERSISTENT_2 only: USER_PROVISIONED metadata IOPS; None gives AUTOMATIC mode.
        :default: None
    :param backup_retention: automatic daily backups of persistent types (``Duration.days(0)`` turns them
        off; scratch types take none). FSx backs up only file systems NOT linked to S3: with ``links`` a
        retention above 0 is refused and backups (and CopyTagsToBackups) stay off. :default: 7 days for
        persistent types without links, off with links
    :param kms_key: key of a persistent file system (scratch types always use FSx-managed keys). :default: a new
        rotated key for persistent types
    :param log_retention_days: days to keep the Lustre event logs. :default: 90
    :param log_key: customer-managed key of the log group. :default: the file system's key when this
        construct made it, else a new rotated key
    :param security_group: an existing group; not created then (its rules are yours). :default: a new group
        with exactly the Lustre ports
    :param destroy_data_on_delete: delete the file system with the stack; needs the app context flag
        ``mlinfra:allowDataDestruction=true`` too. :default: False (RETAIN)
    """

    @path_in_errors
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        subnet: ec2.ISubnet,
        plan: CachePlan | None = None,
        deployment_type: LustreDeploymentType | None = None,
        storage_capacity_gib: int | None = None,
        per_unit_storage_throughput: int | None = None,
        links: Sequence[LustreLink] = (),
        use_import_export_paths: bool = False,
        compression: bool = True,
        metadata_iops: int | None = None,
        backup_retention: cdk.Duration | None = None,
        kms_key: kms.IKey | None = None,
        log_retention_days: int = 90,
        log_key: kms.IKey | None = None,
        security_group: ec2.ISecurityGroup | None = None,
        destroy_data_on_delete: bool = False,
    ) -> None:
        super().__init__(scope, id)
        dtype, capacity, per_unit = _resolve_sizing(plan, deployment_type, storage_capacity_gib,
                                                    per_unit_storage_throughput)
        _validate_capacity(dtype, capacity)
        _validate_throughput(dtype, per_unit)
        _validate_metadata(dtype, metadata_iops)
        _validate_backups(dtype, backup_retention)
        errors = backup_errors(dtype, backup_retention, links)
        if errors:
            raise ValueError(f"{self.node.path}: {errors[0]}")
        _validate_kms(dtype, kms_key)
        _validate_links(dtype, links, use_import_export_paths)
        self.deployment_type = dtype
        self.storage_capacity_gib = capacity
        self.per_unit_storage_throughput = per_unit
        removal = data_removal_policy(self, destroy_data_on_delete, "The Lustre cache")

        if security_group is None:
            security_group = ec2.SecurityGroup(
                self, "SecurityGroup", vpc=vpc, allow_all_outbound=False,
                description="FSx for Lustre: TCP 988 and 1018-1023 between servers and clients",
            )
            for port in LUSTRE_PORTS:
                security_group.add_ingress_rule(security_group, port, "Lustre servers to each other")
                security_group.add_egress_rule(security_group, port, "Lustre servers to each other")
        self.security_group = security_group
        self.connections = LustreConnections(security_groups=[security_group])

        own_key: kms.Key | None = None
        if dtype.is_persistent and kms_key is None:
            own_key = kms.Key(self, "Key", enable_key_rotation=True, removal_policy=removal,
                              description="Encrypts the FSx for Lustre cache and its log group")
            kms_key = own_key
        self.kms_key = kms_key
        if kms_key is not None:
            limit_grants_to_aws_services(kms_key)
        # FSx delivers Lustre logs only to log groups named /aws/fsx/...
        log_group_name = f"/aws/fsx/lustre/{cdk.Names.unique_id(self)}"
        if log_key is None:
            log_key = own_key or kms.Key(self, "LogKey", enable_key_rotation=True,
                                         removal_policy=cdk.RemovalPolicy.RETAIN,
                                         description="Encrypts the FSx for Lustre cache's log group")
            _allow_logs(log_key, log_group_name)
        self.log_key = log_key
        limit_grants_to_aws_services(log_key)
        self.log_group = logs.LogGroup(
            self, "Logs",
            log_group_name=log_group_name,
            encryption_key=log_key,
            retention=log_retention(log_retention_days, "log_retention_days"),
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        acknowledge_retention(self.log_group, log_retention(log_retention_days, "log_retention_days"))

        lustre = fsx.CfnFileSystem.LustreConfigurationProperty(
            deployment_type=dtype.value,
            per_unit_storage_throughput=per_unit,
            data_compression_type="LZ4" if compression else "NONE",
            automatic_backup_retention_days=_backup_days(dtype, backup_retention, bool(links)),
            copy_tags_to_backups=True if dtype.is_persistent and not links else None,
            metadata_configuration=(
                fsx.CfnFileSystem.MetadataConfigurationProperty(
                    mode="USER_PROVISIONED" if metadata_iops else "AUTOMATIC", iops=metadata_iops)
                if dtype is LustreDeploymentType.PERSISTENT_2 else None
            ),
            log_configuration=fsx.CfnFileSystem.LogConfigurationProperty(
                level="WARN_ERROR", destination=self.log_group.log_group_arn),
            import_path=links[0].data_repository_path if use_import_export_paths and links else None,
            export_path=(links[0].data_repository_path if use_import_export_paths and links and links[0].auto_export
                         else None),
            auto_import_policy=(_import_policy(links[0].auto_import) if use_import_export_paths and links else None),
        )
        self.file_system = fsx.CfnFileSystem(
            self, "FileSystem",
            file_system_type="LUSTRE",
            file_system_type_version="2.15",
            storage_type="SSD",
            storage_capacity=capacity,
            subnet_ids=[subnet.subnet_id],
            security_group_ids=[security_group.security_group_id],
            kms_key_id=kms_key.key_id if kms_key is not None else None,
            lustre_configuration=lustre,
        )
        self.file_system.apply_removal_policy(removal)

        self.associations: list[fsx.CfnDataRepositoryAssociation] = []
        if not use_import_export_paths:
            for i, link in enumerate(links):
                dra = fsx.CfnDataRepositoryAssociation(
                    self, f"Link{i}",
                    file_system_id=self.file_system.ref,
                    file_system_path=link.file_system_path,
                    data_repository_path=link.data_repository_path,
                    batch_import_meta_data_on_create=link.batch_import_metadata,
                    s3=fsx.CfnDataRepositoryAssociation.S3Property(
                        auto_import_policy=(fsx.CfnDataRepositoryAssociation.AutoImportPolicyProperty(
                            events=[e.value for e in link.auto_import]) if link.auto_import else None),
                        auto_export_policy=(fsx.CfnDataRepositoryAssociation.AutoExportPolicyProperty(
                            events=[e.value for e in link.auto_export]) if link.auto_export else None),
                    ),
                )
                dra.apply_removal_policy(removal)
                self.associations.append(dra)

    # ------------------------------------------------------------------------------------------ handles

    @property
    def file_system_id(self) -> str:
        return self.file_system.ref

    @property
    def dns_name(self) -> str:
        return self.file_system.attr_dns_name

    @property
    def mount_name(self) -> str:
        return self.file_system.attr_lustre_mount_name

    @property
    def aggregate_throughput_mbps(self) -> float:
        per_unit = self.per_unit_storage_throughput or PER_UNIT_THROUGHPUT[self.deployment_type.value][0]
        return self.storage_capacity_gib / 1024 * per_unit

    @staticmethod
    def from_file_system_attributes(scope: Construct, id: str, *, file_system_id: str, dns_name: str,
                                    mount_name: str, security_group: ec2.ISecurityGroup) -> "ImportedLustreCache":
        """An existing FSx for Lustre file system (made by another stack, team or tool), to mount on the training
        clusters. See :class:`ImportedLustreCache`."""
        return ImportedLustreCache(scope, id, file_system_id=file_system_id, dns_name=dns_name,
                                   mount_name=mount_name, security_group=security_group)


class ImportedLustreCache(LustreCacheBase):
    """An FSx for Lustre file system this app does not manage: mount it and admit clients to it.

    Admitting a client (``connections.allow_default_port_from``) adds the Lustre rules to ``security_group`` as
    separate ingress/egress resources of this app; the file system itself is untouched.

    :param file_system_id: its id (``fs-`` and 8 to 18 hex digits). :default: required
    :param dns_name: its DNS name (``fs-....fsx.<region>.amazonaws.com``), from ``describe-file-systems``.
        :default: required
    :param mount_name: its Lustre mount name (1 to 8 letters, digits, ``_`` or ``-``; ``fsx`` for SCRATCH_1).
        :default: required
    :param security_group: a security group of the file system; import it with
        ``ec2.SecurityGroup.from_security_group_id(..., mutable=True)`` so client rules can be added.
        :default: required
    """

    @path_in_errors
    def __init__(self, scope: Construct, id: str, *, file_system_id: str, dns_name: str, mount_name: str,
                 security_group: ec2.ISecurityGroup) -> None:
        super().__init__(scope, id)
        errors = attribute_errors(file_system_id, dns_name, mount_name)
        if errors:
            raise ValueError("; ".join(errors) + f" {cite('fsx.file-system-attributes')}")
        if security_group is None or not hasattr(security_group, "security_group_id"):
            raise ValueError(f"security_group must be an ec2.ISecurityGroup of the file system, got: {security_group!r}")
        self._file_system_id, self._dns_name, self._mount_name = file_system_id, dns_name, mount_name
        self.security_group = security_group
        self.connections = LustreConnections(security_groups=[security_group])

    @property
    def file_system_id(self) -> str:
        return self._file_system_id

    @property
    def dns_name(self) -> str:
        return self._dns_name

    @property
    def mount_name(self) -> str:
        return self._mount_name


def attribute_errors(file_system_id: str, dns_name: str, mount_name: str) -> list[str]:
    """Rule ``fsx.file-system-attributes``: the attributes of an imported file system against the FSx API's
    patterns (a DNS name of another file system is refused too); tokens are skipped."""
    errors = []
    if not is_token(file_system_id) and not (isinstance(file_system_id, str) and FILE_SYSTEM_ID_RE.fullmatch(file_system_id)):
        errors.append(f"file_system_id must be fs- and 8 to 18 hex digits, got: {file_system_id!r}")
    if not is_token(dns_name) and not (isinstance(dns_name, str) and DNS_NAME_RE.fullmatch(dns_name)):
        errors.append(f"dns_name must be the file system's DNS name (fs-<id>.fsx.<region>.amazonaws.com), got: "
                      f"{dns_name!r}")
    elif (not is_token(dns_name) and not is_token(file_system_id) and not errors
          and not dns_name.startswith(f"{file_system_id}.")):
        errors.append(f"dns_name must belong to file_system_id {file_system_id!r}, got: {dns_name!r}")
    if not is_token(mount_name) and not (isinstance(mount_name, str) and MOUNT_NAME_RE.fullmatch(mount_name)):
        errors.append(f"mount_name must be 1 to 8 letters, digits, '_' or '-', got: {mount_name!r}")
    return errors


# --------------------------------------------------------------------------------------------------
# Validation: one rule per function
# --------------------------------------------------------------------------------------------------


def _resolve_sizing(plan, deployment_type, capacity, per_unit) -> tuple[LustreDeploymentType, int, int | None]:
    if plan is not None:
        if any(v is not None for v in (deployment_type, capacity, per_unit)):
            raise ValueError(
                "LustreCache: pass either plan or deployment_type/storage_capacity_gib/per_unit_storage_throughput, "
                "not both"
            )
        dtype = LustreDeploymentType(plan.deployment_type)
        return dtype, plan.storage_capacity_gib, (None if dtype is LustreDeploymentType.SCRATCH_2
                                                  else plan.per_unit_storage_throughput)
    dtype = deployment_type or LustreDeploymentType.PERSISTENT_2
    if not isinstance(dtype, LustreDeploymentType):
        raise ValueError(f"deployment_type must be a LustreDeploymentType ({[t.value for t in LustreDeploymentType]}), "
                         f"got: {dtype!r}")
    if per_unit is None and dtype is not LustreDeploymentType.SCRATCH_2:
        per_unit = {LustreDeploymentType.PERSISTENT_2: 250, LustreDeploymentType.PERSISTENT_1: 200}[dtype]
    return dtype, 1200 if capacity is None else capacity, per_unit


def _validate_capacity(dtype: LustreDeploymentType, capacity) -> None:
    if is_token(capacity):
        return
    errors = capacity_errors(dtype.value, capacity)
    if errors:
        raise ValueError(errors[0])


def _validate_throughput(dtype: LustreDeploymentType, per_unit) -> None:
    if is_token(per_unit):
        return
    if dtype is LustreDeploymentType.SCRATCH_2:
        if per_unit is not None:
            raise ValueError(
                f"per_unit_storage_throughput is not set for SCRATCH_2 (200 MB/s/TiB baseline), got: {per_unit}")
        return
    allowed = PER_UNIT_THROUGHPUT[dtype.value]
    if per_unit not in allowed:
        listed = ", ".join(str(a) for a in allowed[:-1]) + f" or {allowed[-1]}"
        raise ValueError(f"per_unit_storage_throughput must be {listed} MB/s/TiB for {dtype.value}, got: {per_unit}")


def _validate_metadata(dtype: LustreDeploymentType, iops) -> None:
    if iops is None or is_token(iops):
        return
    if dtype is not LustreDeploymentType.PERSISTENT_2:
        raise ValueError(f"metadata_iops is for PERSISTENT_2 only, got: {iops} with {dtype.value}")
    if iops not in METADATA_IOPS:
        raise ValueError(
            f"metadata_iops must be 1500, 3000, 6000, 12000 or a multiple of 12000 up to 192000, got: {iops}")


def _validate_backups(dtype: LustreDeploymentType, retention: cdk.Duration | None) -> None:
    if retention is None:
        return
    days = retention.to_days()
    if not dtype.is_persistent and days > 0:
        raise ValueError(f"backup_retention: SCRATCH_2 file systems take no automatic backups, got: {days} days")
    if not 0 <= days <= 90:
        raise ValueError(f"backup_retention must be 0 to 90 days, got: {days} days")


def backup_errors(dtype: LustreDeploymentType, retention: cdk.Duration | None,
                  links: Sequence[LustreLink]) -> list[str]:
    """Service rule ``fsx.no-backups-with-s3-links``: no backup retention on a file system linked to S3."""
    if retention is None or not links or not dtype.is_persistent:
        return []
    days = retention.to_days()
    if days > 0:
        return [f"backup_retention must be 0 days (or unset) on a file system linked to S3 (links: "
                f"{[link.file_system_path for link in links]}), got: {days:g} days {cite('fsx.no-backups-with-s3-links')}"]
    return []


def _backup_days(dtype: LustreDeploymentType, retention: cdk.Duration | None, linked: bool) -> int | None:
    if not dtype.is_persistent:
        return None
    if linked:
        return 0  # FSx does not back up file systems linked to S3 (fsx.no-backups-with-s3-links)
    return 7 if retention is None else int(retention.to_days())


def _allow_logs(key: kms.IKey, log_group_name: str) -> None:
    """Let CloudWatch Logs use ``key`` for this one log group (the CloudWatch Logs KMS key policy)."""
    stack = cdk.Stack.of(key)
    key.add_to_resource_policy(iam.PolicyStatement(
        principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
        actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
        resources=["*"],
        conditions={"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": stack.format_arn(
            service="logs", resource="log-group", resource_name=log_group_name,
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)}},
    ))


def _validate_kms(dtype: LustreDeploymentType, key) -> None:
    if key is not None and not dtype.is_persistent:
        raise ValueError("kms_key: SCRATCH_2 file systems are encrypted with FSx-managed keys only, got: a key")


def _validate_links(dtype: LustreDeploymentType, links: Sequence[LustreLink], import_export: bool) -> None:
    if import_export:
        if dtype is LustreDeploymentType.PERSISTENT_2:
            raise ValueError("use_import_export_paths: PERSISTENT_2 accepts only data repository associations, got: True")
        if len(links) != 1 or links[0].file_system_path != "/":
            raise ValueError(
                "links: import/export paths link exactly one bucket prefix at file_system_path '/', got: "
                f"{[link.file_system_path for link in links]}")
        if links[0].auto_import and set(links[0].auto_import) not in ({RepositoryEvent.NEW},
                                                                        {RepositoryEvent.NEW, RepositoryEvent.CHANGED},
                                                                        set(ALL_EVENTS)):
            raise ValueError("auto_import: import paths support NEW, NEW+CHANGED or NEW+CHANGED+DELETED, got: "
                             f"{sorted(e.value for e in links[0].auto_import)}")
    if len(links) > MAX_DATA_REPOSITORY_ASSOCIATIONS:
        raise ValueError(f"links: at most {MAX_DATA_REPOSITORY_ASSOCIATIONS} data repository associations per file "
                         f"system, got: {len(links)}")
    paths: list[str] = []
    for link in links:
        path = link.file_system_path
        if not _FS_PATH_RE.fullmatch(path) or len(path) > 4096:
            raise ValueError(f"file_system_path must be an absolute path such as '/raw', got: {path!r}")
        validate_prefix(link.prefix or None, "LustreLink prefix")
        for event in (*link.auto_import, *link.auto_export):
            if not isinstance(event, RepositoryEvent):
                raise ValueError(f"auto_import/auto_export take RepositoryEvent members, got: {event!r}")
        paths.append(path.rstrip("/") + "/")
    for i, a in enumerate(paths):
        for b in paths[i + 1:]:
            if a.startswith(b) or b.startswith(a):
                raise ValueError(f"file_system_path values must not overlap (one inside another), got: "
                                 f"{a.rstrip('/') or '/'!r} and {b.rstrip('/') or '/'!r}")


def _import_policy(events: Sequence[RepositoryEvent]) -> str | None:
    chosen = set(events)
    if not chosen:
        return "NONE"
    if chosen == {RepositoryEvent.NEW}:
        return "NEW"
    if chosen == {RepositoryEvent.NEW, RepositoryEvent.CHANGED}:
        return "NEW_CHANGED"
    return "NEW_CHANGED_DELETED"
