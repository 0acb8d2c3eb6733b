"""Typed, validated configuration of an mlinfra platform.

One :class:`PlatformConfig` per environment (``local``, ``dev``, ``prod``, ...), read from a YAML/JSON file
(``config/platform.yaml`` in the reference app) or from a ``cdk.json`` context value. The file holds
``defaults`` shared by every environment and an ``environments`` mapping whose entries override them
(a deep merge: nested mappings merge, lists and scalars replace).

Loading checks every field's type and every semantic rule, collects ALL problems and raises one
:class:`ConfigError` listing each as ``<field path>: <what is wrong>, got: <value>``. Nothing here imports
aws_cdk, so the CLI can validate a configuration without starting jsii.

Each capability owns one section dataclass below; a section validates its own rules in ``validate()``
and returns the list of problems (never raises), so that the loader can report all of them at once.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

__all__ = [
    "ConfigError",
    "PlatformConfig",
    "NetworkConfig",
    "DataLakeConfig",
    "LifecycleConfig",
    "PipelineConfig",
    "load_config",
    "load_config_file",
    "ZONES",
]

#: The lake's zones, in the order data flows through them.
ZONES: tuple[str, ...] = ("landing", "raw", "curated", "features", "models", "artifacts")

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,20}[a-z0-9]$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_TAG_KEY_RE = re.compile(r"^[\w .:/=+\-@]{1,128}$")
_PREFIX_RE = re.compile(r"^([a-zA-Z0-9!_.*'()-]+/)*$")


class ConfigError(ValueError):
    """Raised when a configuration is invalid; ``errors`` holds every problem found, one per line."""

    def __init__(self, errors: list[str], source: str = "configuration") -> None:
        self.errors = list(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"{source} is invalid ({len(self.errors)} error(s)):\n{lines}")


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """The VPC the platform runs in: made from props, or imported by id (never both)."""

    #: Import this existing VPC instead of creating one (``vpc-...``). :default: None (create one)
    vpc_id: str | None = None
    #: IPv4 CIDR of a created VPC. :default: 10.0.0.0/16
    cidr: str = "10.0.0.0/16"
    #: AZs used by the created VPC's private subnets. :default: 2
    max_azs: int = 2
    #: NAT gateways for outbound internet (0: isolated subnets reaching AWS through endpoints only). :default: 1
    nat_gateways: int = 1
    #: Index into the AZ list of the single AZ that hosts the training subnet (EFA and Lustre). :default: 0
    training_az_index: int = 0
    #: Interface endpoints (service names as in ``ec2.InterfaceVpcEndpointAwsService``). :default: see below
    interface_endpoints: list[str] = dataclasses.field(
        default_factory=lambda: ["SAGEMAKER_API", "SAGEMAKER_RUNTIME", "STS", "ECR", "ECR_DOCKER", "CLOUDWATCH_LOGS"]
    )
    #: Days to keep VPC flow logs. :default: 90
    flow_log_retention_days: int = 90

    def validate(self) -> list[str]:
        errors: list[str] = []
        if self.vpc_id is not None and not re.fullmatch(r"vpc-[0-9a-f]{8,17}", self.vpc_id):
            errors.append(f"network.vpc_id: must look like vpc-0123456789abcdef0, got: {self.vpc_id!r}")
        try:
            net = ipaddress.ip_network(self.cidr)
            if not 16 <= net.prefixlen <= 20:
                errors.append(f"network.cidr: prefix length must be /16 to /20, got: {self.cidr!r}")
        except ValueError:
            errors.append(f"network.cidr: must be an IPv4 CIDR such as 10.0.0.0/16, got: {self.cidr!r}")
        if not 1 <= self.max_azs <= 6:
            errors.append(f"network.max_azs: must be between 1 and 6, got: {self.max_azs}")
        if not 0 <= self.nat_gateways <= self.max_azs:
            errors.append(f"network.nat_gateways: must be between 0 and max_azs ({self.max_azs}), got: {self.nat_gateways}")
        if not 0 <= self.training_az_index < self.max_azs:
            errors.append(
                f"network.training_az_index: must be between 0 and max_azs - 1 ({self.max_azs - 1}), "
                f"got: {self.training_az_index}"
            )
        known = set(INTERFACE_ENDPOINT_NAMES)
        unknown = [e for e in self.interface_endpoints if e not in known]
        if unknown:
            errors.append(
                f"network.interface_endpoints: unknown service(s) {unknown}; allowed: {sorted(known)}"
            )
        if self.flow_log_retention_days not in LOG_RETENTION_DAYS:
            errors.append(
                f"network.flow_log_retention_days: must be one of {LOG_RETENTION_DAYS}, got: {self.flow_log_retention_days}"
            )
        return errors


#: Interface endpoint names accepted in ``network.interface_endpoints`` (attributes of
#: ``aws_ec2.InterfaceVpcEndpointAwsService``).
INTERFACE_ENDPOINT_NAMES: tuple[str, ...] = (
    "SAGEMAKER_API", "SAGEMAKER_RUNTIME", "SAGEMAKER_NOTEBOOK", "STS", "ECR", "ECR_DOCKER", "CLOUDWATCH_LOGS",
    "CLOUDWATCH_MONITORING", "SSM", "SSM_MESSAGES", "EC2_MESSAGES", "KMS", "STEP_FUNCTIONS", "EVENTBRIDGE",
    "SECRETS_MANAGER", "BATCH", "FSX", "DATASYNC", "TRANSFER", "GLUE", "SNS", "SQS", "LAMBDA",
)

#: Values CloudWatch Logs accepts for retention in days.
LOG_RETENTION_DAYS: tuple[int, ...] = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)


@dataclasses.dataclass(frozen=True)
class LifecycleConfig:
    """Lifecycle of one zone's objects. ``None`` turns a transition or expiry off."""

    #: Days until objects move to S3 Intelligent-Tiering. :default: None
    intelligent_tiering_days: int | None = None
    #: Days until objects move to Standard-IA (at least 30, S3's minimum). :default: None
    infrequent_access_days: int | None = None
    #: Days until objects move to Glacier Flexible Retrieval. :default: None
    glacier_days: int | None = None
    #: Days until objects move to Glacier Deep Archive. :default: None
    deep_archive_days: int | None = None
    #: Days until noncurrent (overwritten) versions expire. :default: 365
    noncurrent_expiration_days: int | None = 365
    #: Days until incomplete multipart uploads are aborted. :default: 7
    abort_incomplete_multipart_days: int = 7

    def validate(self, path: str) -> list[str]:
        return validate_lifecycle(self, path)


def validate_lifecycle(lc: LifecycleConfig, path: str) -> list[str]:
    """Transitions must be positive, ordered (tiering/IA before Glacier before Deep Archive) and respect
    S3's minimums (Standard-IA >= 30 days; Glacier -> Deep Archive >= 90 days apart)."""
    errors: list[str] = []
    for name in ("intelligent_tiering_days", "infrequent_access_days", "glacier_days", "deep_archive_days",
                 "noncurrent_expiration_days"):
        value = getattr(lc, name)
        if value is not None and value < 1:
            errors.append(f"{path}.{name}: must be a positive number of days or null, got: {value}")
    if lc.abort_incomplete_multipart_days < 1:
        errors.append(f"{path}.abort_incomplete_multipart_days: must be >= 1, got: {lc.abort_incomplete_multipart_days}")
    if lc.infrequent_access_days is not None and lc.infrequent_access_days < 30:
        errors.append(
            f"{path}.infrequent_access_days: S3 requires at least 30 days before Standard-IA, got: {lc.infrequent_access_days}"
        )
    if lc.intelligent_tiering_days is not None and lc.infrequent_access_days is not None:
        errors.append(f"{path}: choose intelligent_tiering_days or infrequent_access_days, not both")
    ordered = [
        ("intelligent_tiering_days", lc.intelligent_tiering_days),
        ("infrequent_access_days", lc.infrequent_access_days),
        ("glacier_days", lc.glacier_days),
        ("deep_archive_days", lc.deep_archive_days),
    ]
    present = [(n, v) for n, v in ordered if v is not None and v >= 1]
    for (n1, v1), (n2, v2) in zip(present, present[1:]):
        if v2 <= v1:
            errors.append(f"{path}.{n2}: must be later than {n1} ({v1}), got: {v2}")
    if lc.glacier_days is not None and lc.deep_archive_days is not None and lc.deep_archive_days - lc.glacier_days < 90:
        errors.append(
            f"{path}.deep_archive_days: must be at least 90 days after glacier_days ({lc.glacier_days}), "
            f"got: {lc.deep_archive_days}"
        )
    return errors


def _default_lifecycles() -> dict[str, LifecycleConfig]:
    return {
        "landing": LifecycleConfig(infrequent_access_days=30, glacier_days=None, noncurrent_expiration_days=30),
        "raw": LifecycleConfig(intelligent_tiering_days=1, glacier_days=180),
        "curated": LifecycleConfig(intelligent_tiering_days=1),
        "features": LifecycleConfig(intelligent_tiering_days=1),
        "models": LifecycleConfig(intelligent_tiering_days=30, noncurrent_expiration_days=None),
        "artifacts": LifecycleConfig(intelligent_tiering_days=30, noncurrent_expiration_days=90),
    }


@dataclasses.dataclass(frozen=True)
class DataLakeConfig:
    """The lake: one bucket per zone, encrypted, versioned, logged, catalogued."""

    #: Encryption of every zone: a customer managed KMS key (rotated) or S3-managed keys. :default: "kms"
    encryption: Literal["kms", "s3"] = "kms"
    #: Zones that get a Glue Data Catalog database. :default: curated, features
    glue_zones: list[str] = dataclasses.field(default_factory=lambda: ["raw", "curated", "features"])
    #: Per-zone lifecycle; zones left out keep the defaults. :default: tiering per zone
    lifecycle: dict[str, LifecycleConfig] = dataclasses.field(default_factory=_default_lifecycles)
    #: Days to keep S3 server access logs. :default: 365
    access_log_retention_days: int = 365
    #: Let `cdk destroy` delete buckets and their objects. Needs the app context flag
    #: ``mlinfra:allowDataDestruction=true`` too (two keys); refused in prod. :default: False
    destroy_data_on_delete: bool = False
    #: Turn on S3 Transfer Acceleration on the landing bucket. :default: False
    landing_transfer_acceleration: bool = False

    def validate(self) -> list[str]:
        errors: list[str] = []
        bad = [z for z in self.glue_zones if z not in ZONES]
        if bad:
            errors.append(f"data_lake.glue_zones: unknown zone(s) {bad}; allowed: {list(ZONES)}")
        bad = [z for z in self.lifecycle if z not in ZONES]
        if bad:
            errors.append(f"data_lake.lifecycle: unknown zone(s) {bad}; allowed: {list(ZONES)}")
        for zone, lc in self.lifecycle.items():
            errors.extend(lc.validate(f"data_lake.lifecycle.{zone}"))
        if self.access_log_retention_days < 1:
            errors.append(f"data_lake.access_log_retention_days: must be >= 1, got: {self.access_log_retention_days}")
        return errors

    def lifecycle_for(self, zone: str) -> LifecycleConfig:
        """The zone's lifecycle: the configured one, else the built-in default for that zone."""
        return self.lifecycle.get(zone) or _default_lifecycles()[zone]


# --- capability sections (ingestion, training, serving, pipeline, delivery, teams) are added below ---


_DATASET_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_STORAGE_CLASSES = ("STANDARD", "INTELLIGENT_TIERING", "STANDARD_IA", "ONEZONE_IA", "GLACIER_INSTANT_RETRIEVAL",
                    "GLACIER", "DEEP_ARCHIVE")
_EXTENSION_RE = re.compile(r"^\.[a-z0-9]+(\.[a-z0-9]+)?$")


@dataclasses.dataclass(frozen=True)
class DatasetRuleConfig:
    """What the landing glue accepts for one dataset (``<dataset>/<version>/<file>`` in landing)."""

    #: Allowed file extensions, lower case with the dot (``.csv``, ``.tar.gz``); empty: any. :default: []
    extensions: list[str] = dataclasses.field(default_factory=list)
    #: Allowed Content-Type values (``text/csv``); empty: any. :default: []
    content_types: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class TransferUserConfig:
    """A service-managed SFTP user confined to ``prefix`` of the landing zone."""

    #: User name (3-100 letters, digits, _@.-).
    name: str
    #: The user's landing prefix. Use ``<dataset>/``: the user then uploads ``<version>/<file>`` (and
    #: ``<version>/_manifest.json``) into the landing glue's layout.
    prefix: str
    #: OpenSSH public keys (rsa, ed25519, ecdsa).
    ssh_public_keys: list[str] = dataclasses.field(default_factory=list)
    #: List and download only. :default: False
    read_only: bool = False


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """The SFTP server (Transfer Family)."""

    #: Create the server. :default: True
    enabled: bool = True
    #: Internet-facing endpoint (Elastic IPs) instead of the private VPC endpoint. :default: False
    public_endpoint: bool = False
    #: Client CIDRs admitted on port 22 (required when public). :default: [] (the VPC CIDR)
    allowed_cidrs: list[str] = dataclasses.field(default_factory=list)
    #: Transfer Family security policy. :default: TransferSecurityPolicy-2024-01
    security_policy: str = "TransferSecurityPolicy-2024-01"
    #: ``service_managed`` (the users below) or ``lambda`` (users in Secrets Manager). :default: service_managed
    identity_provider: Literal["service_managed", "lambda"] = "service_managed"
    #: Service-managed users. :default: []
    users: list[TransferUserConfig] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class DataSyncTaskConfig:
    """One DataSync task into the lake (see mlinfra.constructs.datasync for every option)."""

    #: Task name (also the construct id).
    name: str
    #: Source kind. NFS/SMB/HDFS need ``agent_arns``.
    source: Literal["s3", "nfs", "smb", "hdfs"]
    #: Destination prefix in the zone, e.g. ``images/v1/`` (the glue layout ``<dataset>/<version>/``).
    prefix: str
    #: Destination zone. :default: landing
    zone: str = "landing"
    #: s3: the source bucket name. :default: None
    source_bucket: str | None = None
    #: s3: prefix in the source bucket. :default: ""
    source_prefix: str = ""
    #: nfs/smb: server host name; hdfs: NameNode ``host:port``. :default: None
    server: str | None = None
    #: nfs/smb/hdfs: path on the server. :default: /
    subdirectory: str = "/"
    #: smb: user; hdfs: simple user. :default: None
    user: str | None = None
    #: smb: Secrets Manager secret name holding ``{"password": ...}``. :default: None
    password_secret_name: str | None = None
    #: Activated agents. :default: []
    agent_arns: list[str] = dataclasses.field(default_factory=list)
    #: ``rate(...)`` or ``cron(...)``; null runs on demand. :default: None
    schedule: str | None = None
    #: Bandwidth limit in bytes/s (-1 unlimited; `mlinfra plan-transfer` suggests one). :default: -1
    bytes_per_second: int = -1
    #: Include / exclude SIMPLE_PATTERN filters. :default: []
    includes: list[str] = dataclasses.field(default_factory=list)
    excludes: list[str] = dataclasses.field(default_factory=list)
    #: ONLY_FILES_TRANSFERRED or POINT_IN_TIME_CONSISTENT. :default: ONLY_FILES_TRANSFERRED
    verify_mode: Literal["ONLY_FILES_TRANSFERRED", "POINT_IN_TIME_CONSISTENT"] = "ONLY_FILES_TRANSFERRED"
    #: Destination S3 storage class. :default: STANDARD
    storage_class: str = "STANDARD"


@dataclasses.dataclass(frozen=True)
class DataSyncConfig:
    """DataSync tasks and the private endpoint their agents use."""

    #: Create the DataSync interface endpoint for agents. :default: False
    vpc_endpoint: bool = False
    #: Networks the agents connect from (required with vpc_endpoint). :default: []
    agent_cidrs: list[str] = dataclasses.field(default_factory=list)
    #: The tasks. :default: []
    tasks: list[DataSyncTaskConfig] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class IngestionConfig:
    """Ingestion: landing glue, dataset catalog, SFTP, DataSync, optional Firehose stream into raw."""

    #: Build the ingestion stack. :default: True
    enabled: bool = True
    #: Registered datasets and what each accepts; objects of other datasets are quarantined. :default: {}
    datasets: dict[str, DatasetRuleConfig] = dataclasses.field(default_factory=dict)
    #: Accept datasets that are not registered (with ``default_extensions``). :default: False
    allow_unregistered_datasets: bool = False
    #: Extensions allowed for unregistered datasets; empty: any. :default: []
    default_extensions: list[str] = dataclasses.field(default_factory=list)
    #: Glue handler timeout (seconds); the SQS visibility timeout is six times this. :default: 300
    handler_timeout_seconds: int = 300
    #: Largest object the glue hashes itself (bytes) when S3 holds no full-object SHA-256. :default: 10 GiB
    max_hash_bytes: int = 10 * 1024**3
    #: Email subscribed to the ingestion alarm topic. :default: None
    alarm_email: str | None = None
    transfer: TransferConfig = dataclasses.field(default_factory=TransferConfig)
    datasync: DataSyncConfig = dataclasses.field(default_factory=DataSyncConfig)
    #: Create a Firehose delivery stream into raw (``stream=<name>/date=YYYY-MM-DD/``). :default: False
    firehose: bool = False

    def validate(self) -> list[str]:
        errors: list[str] = []
        p = "ingestion"
        for name, rule in self.datasets.items():
            if not _DATASET_NAME_RE.fullmatch(name) or name.startswith("_"):
                errors.append(f"{p}.datasets: names must be 1-128 letters, digits or ._- (not starting with _), got: {name!r}")
            bad = [e for e in rule.extensions if not _EXTENSION_RE.fullmatch(e)]
            if bad:
                errors.append(f"{p}.datasets.{name}.extensions: must be lower case with a leading dot (.csv), got: {bad}")
        bad = [e for e in self.default_extensions if not _EXTENSION_RE.fullmatch(e)]
        if bad:
            errors.append(f"{p}.default_extensions: must be lower case with a leading dot (.csv), got: {bad}")
        if not 10 <= self.handler_timeout_seconds <= 600:
            errors.append(f"{p}.handler_timeout_seconds: must be 10-600 (well under Lambda's 900), got: {self.handler_timeout_seconds}")
        if self.max_hash_bytes < 1:
            errors.append(f"{p}.max_hash_bytes: must be positive, got: {self.max_hash_bytes}")
        if self.alarm_email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", self.alarm_email):
            errors.append(f"{p}.alarm_email: must be an email address, got: {self.alarm_email!r}")
        t = self.transfer
        if t.public_endpoint and not t.allowed_cidrs:
            errors.append(f"{p}.transfer.allowed_cidrs: a public endpoint needs the client CIDRs, got: []")
        for cidr in t.allowed_cidrs:
            try:
                if ipaddress.ip_network(cidr).prefixlen == 0:
                    errors.append(f"{p}.transfer.allowed_cidrs: must not be the whole internet, got: {cidr!r}")
            except ValueError:
                errors.append(f"{p}.transfer.allowed_cidrs: must be IPv4 CIDRs, got: {cidr!r}")
        if t.users and t.identity_provider != "service_managed":
            errors.append(f"{p}.transfer.users: only with identity_provider service_managed, got: {t.identity_provider!r}")
        names = [u.name for u in t.users]
        if len(set(names)) != len(names):
            errors.append(f"{p}.transfer.users: names must be unique, got: {names}")
        for u in t.users:
            if not _PREFIX_RE.fullmatch(u.prefix) or not u.prefix:
                errors.append(f"{p}.transfer.users.{u.name}.prefix: must be a prefix ending with '/', got: {u.prefix!r}")
            if not u.ssh_public_keys:
                errors.append(f"{p}.transfer.users.{u.name}.ssh_public_keys: must list at least one key, got: []")
        d = self.datasync
        if d.vpc_endpoint and not d.agent_cidrs:
            errors.append(f"{p}.datasync.agent_cidrs: the endpoint needs the agents' CIDRs, got: []")
        task_names = [task.name for task in d.tasks]
        if len(set(task_names)) != len(task_names):
            errors.append(f"{p}.datasync.tasks: names must be unique, got: {task_names}")
        for task in d.tasks:
            tp = f"{p}.datasync.tasks.{task.name}"
            if task.zone not in ZONES:
                errors.append(f"{tp}.zone: must be one of {list(ZONES)}, got: {task.zone!r}")
            if task.source == "s3" and not task.source_bucket:
                errors.append(f"{tp}.source_bucket: an s3 source needs the bucket name, got: None")
            if task.source in ("nfs", "smb", "hdfs"):
                if not task.agent_arns:
                    errors.append(f"{tp}.agent_arns: a {task.source} source needs at least one agent ARN, got: []")
                if not task.server:
                    errors.append(f"{tp}.server: a {task.source} source needs the server, got: None")
            if task.source == "smb" and not (task.user and task.password_secret_name):
                errors.append(f"{tp}: an smb source needs user and password_secret_name")
            if task.storage_class not in _STORAGE_CLASSES:
                errors.append(f"{tp}.storage_class: must be one of {list(_STORAGE_CLASSES)}, got: {task.storage_class!r}")
            if task.source == "hdfs" and not task.user:
                errors.append(f"{tp}.user: an hdfs source needs the simple user, got: None")
        return errors


# --- training (issue 4) ---

#: Deep Learning Base AMI (OSS NVIDIA driver, Amazon Linux 2023) SSM parameter: the default node image.
#: The ParallelCluster CloudFormation custom resource exists from release 3.6.0 on.
PCLUSTER_MIN_MINOR = 6
DEFAULT_PCLUSTER_VERSION = "3.16.1"


def is_pcluster_release(version: str) -> bool:
    """``3.<minor>.<patch>`` with minor >= 6: a ParallelCluster release with the CloudFormation custom resource."""
    m = re.fullmatch(r"3\.(\d+)\.\d+", version or "")
    return m is not None and int(m.group(1)) >= PCLUSTER_MIN_MINOR


DLAMI_SSM_PARAMETER = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id"


@dataclasses.dataclass(frozen=True)
class SlurmQueueConfig:
    """One Slurm queue with one compute resource."""

    #: Queue name: lowercase letters, digits, hyphens (ParallelCluster), starting with a letter.
    name: str = "gpu"
    #: EC2 instance type of the queue's nodes (EFA-capable when ``training.efa``).
    instance_type: str = "p4d.24xlarge"
    #: Nodes kept running (0: scale to zero). :default: 0
    min_count: int = 0
    #: Most nodes. :default: 4
    max_count: int = 4
    #: ONDEMAND, SPOT or CAPACITY_BLOCK. :default: ONDEMAND
    capacity_type: Literal["ONDEMAND", "SPOT", "CAPACITY_BLOCK"] = "ONDEMAND"


@dataclasses.dataclass(frozen=True)
class HyperPodGroupConfig:
    """One HyperPod instance group."""

    #: Instance-group name (letters, digits, inner hyphens).
    name: str = "gpu"
    #: A SageMaker HyperPod instance type (``ml.``...).
    instance_type: str = "ml.p5.48xlarge"
    #: Controller, Login or Compute. :default: Compute
    node_type: Literal["Controller", "Login", "Compute"] = "Compute"
    #: Instances (compute groups may be 0 at rest). :default: 0
    instance_count: int = 0
    #: Slurm partition of a compute group. :default: None
    partition: str | None = None


def _default_hyperpod_groups() -> list[HyperPodGroupConfig]:
    return [HyperPodGroupConfig(name="controller", instance_type="ml.t3.medium", node_type="Controller",
                                instance_count=1),
            HyperPodGroupConfig(name="gpu", instance_type="ml.p5.48xlarge", instance_count=0, partition="gpu")]


@dataclasses.dataclass(frozen=True)
class HyperPodConfig:
    """SageMaker HyperPod with managed Slurm (constructs/hyperpod.py)."""

    #: Build the HyperPod cluster. :default: False
    enabled: bool = False
    #: Cluster name, prefixed like every resource name (replacement on change). :default: hyperpod
    cluster_name: str = "hyperpod"
    #: Instance groups: one Controller (1 instance), at most one Login, Compute groups with a partition each.
    #: :default: an ml.t3.medium controller and an ml.p5.48xlarge "gpu" partition at 0 instances
    groups: list[HyperPodGroupConfig] = dataclasses.field(default_factory=_default_hyperpod_groups)
    #: Replace faulty nodes: Automatic or None. :default: Automatic
    node_recovery: Literal["Automatic", "None"] = "Automatic"
    #: Prefix of the lifecycle scripts in the lake's artifacts zone. :default: hyperpod/lifecycle/
    lifecycle_prefix: str = "hyperpod/lifecycle/"

    def validate(self, path: str) -> list[str]:
        from mlinfra.domain import hyperpod

        if not self.enabled:
            return []
        errors = hyperpod.name_errors(f"{path}.cluster_name", self.cluster_name)
        nodes = {n.value: n for n in hyperpod.SlurmNodeType}
        for g in self.groups:
            gp = f"{path}.groups[{g.name}]"
            errors += hyperpod.name_errors(f"{gp}.name", g.name)
            errors += hyperpod.instance_type_errors(f"{gp}.instance_type", g.instance_type)
            errors += hyperpod.instance_count_errors(f"{gp}.instance_count", g.instance_count,
                                                     0 if g.node_type == "Compute" else 1)
        errors += hyperpod.slurm_topology_errors(
            f"{path}.groups", [(g.name, nodes[g.node_type], g.instance_count, g.partition) for g in self.groups])
        if not _PREFIX_RE.fullmatch(self.lifecycle_prefix) or not self.lifecycle_prefix:
            errors.append(f"{path}.lifecycle_prefix: must be a key prefix ending with '/', got: {self.lifecycle_prefix!r}")
        return errors


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """GPU training: the Lustre cache, a Batch cluster and a Slurm (ParallelCluster) cluster."""

    #: Build the training stack. :default: True
    enabled: bool = True
    #: Build the FSx for Lustre cache; without it the clusters and jobs read the lake from S3. Turning it off
    #: does not delete a deployed file system (RETAINED): delete that by hand. :default: True
    cache_enabled: bool = True
    #: Lustre deployment type. :default: PERSISTENT_2
    cache_deployment_type: Literal["SCRATCH_2", "PERSISTENT_1", "PERSISTENT_2"] = "PERSISTENT_2"
    #: Explicit capacity (GiB); null sizes the cache from the three sizing_* fields. :default: None
    cache_storage_capacity_gib: int | None = None
    #: Explicit per-unit throughput (MB/s/TiB), with an explicit capacity only. :default: None
    cache_per_unit_throughput: int | None = None
    #: Sizing inputs: GPUs reading at once, MB/s each, dataset GiB. :default: 16 GPUs x 100 MB/s, 1000 GiB
    sizing_gpus: int = 16
    sizing_per_gpu_read_mbps: float = 100.0
    sizing_dataset_gib: float = 1000.0
    #: Lustre path -> lake ``zone`` or ``zone:prefix/`` (one data repository association each, at most 8).
    cache_links: dict[str, str] = dataclasses.field(
        default_factory=lambda: {"/raw": "raw", "/features": "features", "/checkpoints": "artifacts:checkpoints/"})
    #: Lake prefixes (``zone`` or ``zone:prefix/``) the nodes and jobs read. :default: raw, curated, features
    lake_read: list[str] = dataclasses.field(default_factory=lambda: ["raw", "curated", "features"])
    #: Lake prefixes the jobs write. :default: artifacts:checkpoints/
    lake_write: list[str] = dataclasses.field(default_factory=lambda: ["artifacts:checkpoints/"])
    #: EFA interfaces on every node. :default: True
    efa: bool = True
    #: A literal AMI id for the nodes (the local emulator); null uses ``ami_ssm_parameter``. :default: None
    ami_id: str | None = None
    #: SSM parameter of the node AMI. :default: the Deep Learning Base AMI (AL2023)
    ami_ssm_parameter: str = DLAMI_SSM_PARAMETER
    #: Build the AWS Batch cluster. :default: True
    batch_enabled: bool = True
    #: Training container image. :default: an AWS Deep Learning Container (PyTorch, GPU)
    batch_image: str = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311-cu124-ubuntu22.04-ec2"
    #: Batch instance types (one EFA interface count). :default: p4d.24xlarge
    batch_instance_types: list[str] = dataclasses.field(default_factory=lambda: ["p4d.24xlarge"])
    #: Nodes of the multi-node parallel job definition. :default: 2
    batch_nodes: int = 2
    #: Compute environment ceiling; null: 4 nodes of the first type. :default: None
    batch_max_vcpus: int | None = None
    #: Spot capacity. :default: False
    batch_spot: bool = False
    #: Build the Slurm cluster (AWS ParallelCluster; needs ``slurm_service_token``). :default: False
    slurm_enabled: bool = False
    #: ServiceToken of the ParallelCluster provider stack: an ARN, ``ssm:<parameter name>`` holding it, or
    #: ``provider`` to deploy AWS's provider stack (nested, release ``slurm_provider_version``) with the cluster.
    slurm_service_token: str | None = None
    #: ParallelCluster release of a ``provider`` deployed with the cluster (3.6.0 or later). :default: 3.16.1
    slurm_provider_version: str = DEFAULT_PCLUSTER_VERSION
    #: ParallelCluster cluster name (immutable). :default: training
    slurm_cluster_name: str = "training"
    #: Head node type. :default: m6i.2xlarge
    slurm_head_node_instance_type: str = "m6i.2xlarge"
    #: Slurm queues. :default: one "gpu" queue of p4d.24xlarge, 0 to 4 nodes
    slurm_queues: list[SlurmQueueConfig] = dataclasses.field(default_factory=lambda: [SlurmQueueConfig()])
    #: SageMaker HyperPod (managed Slurm), mounting the same cache. :default: disabled
    hyperpod: HyperPodConfig = dataclasses.field(default_factory=HyperPodConfig)

    def validate(self) -> list[str]:
        from mlinfra.domain import instances, lustre_sizing

        errors: list[str] = []
        p = "training"
        if self.cache_storage_capacity_gib is not None:
            errors += [f"{p}.cache_storage_capacity_gib: {e}"
                       for e in lustre_sizing.capacity_errors(self.cache_deployment_type, self.cache_storage_capacity_gib)]
        elif self.cache_per_unit_throughput is not None:
            errors.append(f"{p}.cache_per_unit_throughput: set only with cache_storage_capacity_gib (otherwise the "
                          f"sizing chooses it), got: {self.cache_per_unit_throughput}")
        allowed = lustre_sizing.PER_UNIT_THROUGHPUT[self.cache_deployment_type]
        if self.cache_per_unit_throughput is not None and self.cache_deployment_type != "SCRATCH_2" and \
                self.cache_per_unit_throughput not in allowed:
            errors.append(f"{p}.cache_per_unit_throughput: must be one of {list(allowed)} for "
                          f"{self.cache_deployment_type}, got: {self.cache_per_unit_throughput}")
        if self.sizing_gpus < 1 or self.sizing_per_gpu_read_mbps <= 0 or self.sizing_dataset_gib < 0:
            errors.append(f"{p}.sizing_*: need gpus >= 1, per-GPU MB/s > 0 and dataset GiB >= 0, got: "
                          f"{self.sizing_gpus}, {self.sizing_per_gpu_read_mbps}, {self.sizing_dataset_gib}")
        if len(self.cache_links) > 8:
            errors.append(f"{p}.cache_links: at most 8 data repository associations, got: {len(self.cache_links)}")
        for path, target in self.cache_links.items():
            if not path.startswith("/"):
                errors.append(f"{p}.cache_links: file-system paths must start with '/', got: {path!r}")
            errors += _lake_target_errors(f"{p}.cache_links.{path}", target)
        for name in ("lake_read", "lake_write"):
            for target in getattr(self, name):
                errors += _lake_target_errors(f"{p}.{name}", target)
        if self.ami_id is not None and not re.fullmatch(r"ami-[0-9a-f]{8,17}", self.ami_id):
            errors.append(f"{p}.ami_id: must look like ami-0123456789abcdef0, got: {self.ami_id!r}")
        if self.batch_enabled:
            for t in self.batch_instance_types:
                try:
                    instances.validate_ec2_instance_type(t, require_efa=self.efa, require_nvidia=True)
                except instances.InstanceTypeError as exc:
                    errors.append(f"{p}.batch_instance_types: {exc}")
            if not self.batch_instance_types:
                errors.append(f"{p}.batch_instance_types: must list at least one type, got: []")
            if self.batch_nodes < 1:
                errors.append(f"{p}.batch_nodes: must be >= 1, got: {self.batch_nodes}")
        if self.slurm_enabled:
            if not self.slurm_service_token:
                errors.append(f"{p}.slurm_service_token: the ParallelCluster provider's ServiceToken (an ARN, "
                              f"'ssm:<parameter>' or 'provider') is required when slurm_enabled, got: None")
            if self.slurm_service_token == "provider" and not is_pcluster_release(self.slurm_provider_version):
                errors.append(f"{p}.slurm_provider_version: must be a ParallelCluster release 3.6.0 or later, got: "
                              f"{self.slurm_provider_version!r}")
            names = [q.name for q in self.slurm_queues]
            if len(set(names)) != len(names) or not names:
                errors.append(f"{p}.slurm_queues: need at least one queue and unique names, got: {names}")
            for q in self.slurm_queues:
                if q.min_count < 0 or q.max_count < 1 or q.min_count > q.max_count:
                    errors.append(f"{p}.slurm_queues.{q.name}: need 0 <= min_count <= max_count, max_count >= 1, "
                                  f"got: {q.min_count}, {q.max_count}")
                try:
                    instances.validate_ec2_instance_type(q.instance_type, require_efa=self.efa, require_nvidia=True)
                except instances.InstanceTypeError as exc:
                    errors.append(f"{p}.slurm_queues.{q.name}.instance_type: {exc}")
        errors += self.hyperpod.validate(f"{p}.hyperpod")
        return errors


def parse_lake_target(target: str) -> tuple[str, str]:
    """``zone`` or ``zone:prefix/`` -> (zone, prefix)."""
    zone, _, prefix = target.partition(":")
    return zone, prefix


def _lake_target_errors(path: str, target: str) -> list[str]:
    zone, prefix = parse_lake_target(target)
    errors = []
    if zone not in ZONES:
        errors.append(f"{path}: zone must be one of {list(ZONES)}, got: {target!r}")
    if prefix and not re.fullmatch(r"([A-Za-z0-9!_.*'()=-]+/)+", prefix):
        errors.append(f"{path}: prefix must be path segments each ending with '/', got: {target!r}")
    return errors


@dataclasses.dataclass(frozen=True)
class ScheduledScalingConfig:
    """A scheduled capacity change of the real-time endpoint (e.g. a smaller night floor)."""

    #: Action name (letters, digits, hyphens).
    name: str
    #: Application Auto Scaling schedule: ``cron(...)``, ``rate(...)`` or ``at(...)``.
    schedule: str
    #: New minimum capacity. :default: None (unchanged)
    min_capacity: int | None = None
    #: New maximum capacity. :default: None (unchanged)
    max_capacity: int | None = None
    #: IANA time zone of the schedule. :default: None (UTC)
    time_zone: str | None = None


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """Serving (issue 6): one real-time endpoint with autoscaling, alarms and guarded rollout, plus an async
    endpoint example. The retrain pipeline deploys new model versions to the real-time endpoint."""

    #: Build the serving stack. :default: True
    enabled: bool = True
    #: Inference image of the initial model (the pipeline replaces the model on each approved version).
    #: :default: the AWS PyTorch CPU inference image in us-east-1
    image_uri: str = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3.0-cpu-py311-ubuntu20.04-sagemaker"
    #: Key of the initial model archive in the lake's models zone. :default: serving/initial/model.tar.gz
    model_data_key: str = "serving/initial/model.tar.gz"
    #: Instance type of the real-time endpoint (``ml.*``). :default: ml.m5.large
    instance_type: str = "ml.m5.large"
    #: Instances at creation. :default: 1
    initial_instance_count: int = 1
    #: Autoscaling floor (>= 1 for real-time). :default: 1
    min_capacity: int = 1
    #: Autoscaling ceiling. :default: 4
    max_capacity: int = 4
    #: Target-tracking metric: invocations per instance (default), GPU or CPU utilization. :default: invocations
    scaling_metric: Literal["invocations", "gpu", "cpu"] = "invocations"
    #: Target value in the metric's unit (invocations/instance/minute or percent). :default: 100
    target_value: float = 100.0
    #: Seconds between scale-in activities. :default: 300
    scale_in_cooldown_seconds: int = 300
    #: Seconds between scale-out activities. :default: 60
    scale_out_cooldown_seconds: int = 60
    #: Never scale in by target tracking (scale-in protection). :default: False
    protect_from_scale_in: bool = False
    #: Scheduled capacity changes. :default: none
    scheduled: list[ScheduledScalingConfig] = dataclasses.field(default_factory=list)
    #: Percent of requests captured to the lake's artifacts zone (0 turns capture off). :default: 20
    data_capture_percent: int = 20
    #: Alarm threshold on ModelLatency p99, in milliseconds (converted to microseconds). :default: 500
    latency_p99_ms: float = 500.0
    #: Alarm threshold on 5XX errors, percent of invocations. :default: 1
    error_5xx_rate_percent: float = 1.0
    #: Alarm threshold on 4XX errors, percent of invocations. :default: 10
    error_4xx_rate_percent: float = 10.0
    #: Alarm when invocations drop to zero for 15 minutes. :default: False
    invocations_zero_alarm: bool = False
    #: Blue/green traffic shifting of the pipeline's updates. :default: canary
    traffic_shifting: Literal["canary", "linear", "all_at_once"] = "canary"
    #: Canary size, percent of capacity (1-50). :default: 10
    canary_percent: int = 10
    #: Linear step, percent of capacity (10-50). :default: 20
    linear_step_percent: int = 20
    #: Bake time between traffic shifts, minutes (0-60). :default: 5
    bake_minutes: int = 5
    #: Build the async endpoint example (scales to zero on an empty backlog). :default: True
    async_enabled: bool = True
    #: Instance type of the async endpoint. :default: ml.m5.large
    async_instance_type: str = "ml.m5.large"
    #: Async autoscaling ceiling. :default: 2
    async_max_capacity: int = 2
    #: Async target backlog per instance. :default: 5
    async_backlog_target: float = 5.0
    #: EventBridge schedule of a batch transform with the real-time model (curated zone
    #: ``batch-inference/input/`` -> artifacts zone ``batch-inference/output/<model>/<version>/``). :default: None (off)
    batch_transform_schedule: str | None = None
    #: Instance type of the batch transform. :default: ml.m5.xlarge
    batch_transform_instance_type: str = "ml.m5.xlarge"

    def validate(self) -> list[str]:
        from mlinfra.domain.hosting_instances import parse_instance_type

        errors: list[str] = []
        for name in ("instance_type", "async_instance_type", "batch_transform_instance_type"):
            try:
                parse_instance_type(getattr(self, name), name)
            except ValueError as exc:
                errors.append(f"serving.{exc}")
        if not re.fullmatch(r"(?:[\w.!*'()=-]+/)*[\w.!*'()=-]+", self.model_data_key):
            errors.append(f"serving.model_data_key: must be an S3 object key such as serving/initial/model.tar.gz, got: {self.model_data_key!r}")
        if not self.image_uri:
            errors.append("serving.image_uri: must name an inference image, got: ''")
        if self.initial_instance_count < 1:
            errors.append(f"serving.initial_instance_count: must be >= 1, got: {self.initial_instance_count}")
        if self.min_capacity < 1:
            errors.append(f"serving.min_capacity: must be >= 1 for a real-time endpoint (0 only for async), got: {self.min_capacity}")
        if self.max_capacity < self.min_capacity:
            errors.append(f"serving.max_capacity: must be >= min_capacity ({self.min_capacity}), got: {self.max_capacity}")
        for name in ("target_value", "latency_p99_ms", "async_backlog_target"):
            if not getattr(self, name) > 0:
                errors.append(f"serving.{name}: must be > 0, got: {getattr(self, name)}")
        for name in ("scale_in_cooldown_seconds", "scale_out_cooldown_seconds"):
            if getattr(self, name) < 0:
                errors.append(f"serving.{name}: must be >= 0, got: {getattr(self, name)}")
        if self.scaling_metric == "gpu":
            from mlinfra.domain.hosting_instances import family_of

            try:
                if family_of(self.instance_type).accelerator != "gpu":
                    errors.append(f"serving.scaling_metric: gpu needs a GPU instance_type, got: {self.instance_type!r}")
            except ValueError:
                pass
        if not 0 <= self.data_capture_percent <= 100:
            errors.append(f"serving.data_capture_percent: must be between 0 and 100, got: {self.data_capture_percent}")
        for name in ("error_5xx_rate_percent", "error_4xx_rate_percent"):
            if not 0 < getattr(self, name) <= 100:
                errors.append(f"serving.{name}: must be in (0, 100], got: {getattr(self, name)}")
        if not 1 <= self.canary_percent <= 50:
            errors.append(f"serving.canary_percent: must be between 1 and 50, got: {self.canary_percent}")
        if not 10 <= self.linear_step_percent <= 50:
            errors.append(f"serving.linear_step_percent: must be between 10 and 50, got: {self.linear_step_percent}")
        if not 0 <= self.bake_minutes <= 60:
            errors.append(f"serving.bake_minutes: must be between 0 and 60, got: {self.bake_minutes}")
        if self.batch_transform_schedule is not None and not re.fullmatch(r"(cron|rate)\(.+\)", self.batch_transform_schedule):
            errors.append(f"serving.batch_transform_schedule: must be cron(...) or rate(...), got: {self.batch_transform_schedule!r}")
        if self.async_max_capacity < 1:
            errors.append(f"serving.async_max_capacity: must be >= 1, got: {self.async_max_capacity}")
        names = [s.name for s in self.scheduled]
        if len(set(names)) != len(names):
            errors.append(f"serving.scheduled: names must be unique, got: {names}")
        for i, s in enumerate(self.scheduled):
            path = f"serving.scheduled[{i}]"
            if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", s.name):
                errors.append(f"{path}.name: 1-64 letters, digits or hyphens, got: {s.name!r}")
            if not re.fullmatch(r"(cron|rate|at)\(.+\)", s.schedule):
                errors.append(f"{path}.schedule: must be cron(...), rate(...) or at(...), got: {s.schedule!r}")
            if s.min_capacity is None and s.max_capacity is None:
                errors.append(f"{path}: set min_capacity, max_capacity or both")
            if s.min_capacity is not None and s.min_capacity < 1:
                errors.append(f"{path}.min_capacity: must be >= 1, got: {s.min_capacity}")
            if s.min_capacity is not None and s.max_capacity is not None and s.min_capacity > s.max_capacity:
                errors.append(f"{path}.max_capacity: must be >= min_capacity ({s.min_capacity}), got: {s.max_capacity}")
        return errors


# --- delivery and teams (issue 8) ---

_CONNECTION_ARN_RE = re.compile(r"^arn:aws[a-z-]*:(codeconnections|codestar-connections):[a-z0-9-]+:\d{12}:connection/[0-9a-f-]{36}$")
_REPOSITORY_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PRINCIPAL_ARN_RE = re.compile(r"^arn:aws[a-z-]*:(iam|sts)::\d{12}:(root|role/[\w+=,.@/-]+|user/[\w+=,.@/-]+|assumed-role/[\w+=,.@/-]+)$")
_TEAM_PREFIX_RE = re.compile(r"^([a-z]+)/((?:[A-Za-z0-9!_.*'()=-]+/)+)$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclasses.dataclass(frozen=True)
class GithubDeployConfig:
    """GitHub Actions deploys through OIDC (``GithubOidcDeployRole``), one role per environment."""

    #: ``owner/name`` of the repository whose workflows may deploy.
    repository: str
    #: Branch whose workflow runs may deploy (``refs/heads/<branch>``). :default: main
    branch: str = "main"
    #: GitHub deployment environment the job must run in (trusts ``environment:<name>`` too). :default: None
    environment: str | None = None
    #: ARN of an existing GitHub OIDC provider in the account (one per account). :default: None (create one)
    provider_arn: str | None = None

    def validate(self, path: str) -> list[str]:
        errors: list[str] = []
        if not _REPOSITORY_RE.fullmatch(self.repository):
            errors.append(f"{path}.repository: must be owner/name, got: {self.repository!r}")
        if not self.branch or any(c in self.branch for c in " *?[~^:\\"):
            errors.append(f"{path}.branch: must be a plain branch name, got: {self.branch!r}")
        if self.provider_arn is not None and not re.fullmatch(
            r"arn:aws[a-z-]*:iam::\d{12}:oidc-provider/token\.actions\.githubusercontent\.com", self.provider_arn
        ):
            errors.append(
                f"{path}.provider_arn: must be arn:aws:iam::<account>:oidc-provider/token.actions.githubusercontent.com, "
                f"got: {self.provider_arn!r}"
            )
        return errors


@dataclasses.dataclass(frozen=True)
class DeliveryConfig:
    """Continuous delivery: a self-mutating CDK pipeline deploying ``stages`` in order, built in the
    environment(s) where ``enabled`` is true (a tooling or the dev account)."""

    #: Build the delivery pipeline in this environment. :default: False
    enabled: bool = False
    #: Where the pipeline reads the app's source: a CodeConnections connection or an S3 object. :default: codeconnections
    source: Literal["codeconnections", "s3"] = "codeconnections"
    #: ARN of the CodeConnections (GitHub, GitLab, Bitbucket) connection. :default: None
    connection_arn: str | None = None
    #: ``owner/name`` of the repository read through the connection. :default: None
    repository: str | None = None
    #: Branch that triggers the pipeline. :default: main
    branch: str = "main"
    #: Source bucket (versioned) when ``source`` is s3. :default: None
    source_bucket: str | None = None
    #: Object key of the zipped source in ``source_bucket``. :default: source.zip
    source_object_key: str = "source.zip"
    #: Environments the pipeline deploys, in order; each is an environment of the same configuration file.
    #: :default: dev, prod
    stages: list[str] = dataclasses.field(default_factory=lambda: ["dev", "prod"])
    #: Stages preceded by a manual approval (every production stage must be listed). :default: prod
    approval_before: list[str] = dataclasses.field(default_factory=lambda: ["prod"])
    #: The configuration file (relative to the app directory) the stages' environments are read from.
    #: :default: config/platform.yaml
    config_file: str = "config/platform.yaml"
    #: Commands the synth step runs before ``cdk synth`` (install, tests, cfn-lint). :default: see below
    install_commands: list[str] = dataclasses.field(
        default_factory=lambda: ["npm ci", "python -m pip install -e '.[dev]'"]
    )
    #: Test commands the synth step runs before synthesizing. :default: the unit and policy tests (cdk-nag)
    test_commands: list[str] = dataclasses.field(
        default_factory=lambda: ["python -m pytest -q -m 'not deploy'"]
    )
    #: GitHub Actions deploys through OIDC into this environment. :default: None (no role)
    github: GithubDeployConfig | None = None

    def validate(self) -> list[str]:
        errors: list[str] = []
        if self.enabled and self.source == "codeconnections":
            if not self.connection_arn or not _CONNECTION_ARN_RE.fullmatch(self.connection_arn):
                errors.append(
                    "delivery.connection_arn: must be a CodeConnections connection ARN "
                    f"(arn:aws:codeconnections:<region>:<account>:connection/<uuid>), got: {self.connection_arn!r}"
                )
            if not self.repository or not _REPOSITORY_RE.fullmatch(self.repository):
                errors.append(f"delivery.repository: must be owner/name, got: {self.repository!r}")
        if self.enabled and self.source == "s3" and (not self.source_bucket or not _BUCKET_RE.fullmatch(self.source_bucket)):
            errors.append(f"delivery.source_bucket: must be an S3 bucket name when source is s3, got: {self.source_bucket!r}")
        if self.enabled and not self.stages:
            errors.append("delivery.stages: must list at least one environment, got: []")
        if len(set(self.stages)) != len(self.stages):
            errors.append(f"delivery.stages: must be unique, got: {self.stages}")
        unknown = [s for s in self.approval_before if s not in self.stages]
        if unknown:
            errors.append(f"delivery.approval_before: not in delivery.stages {self.stages}, got: {unknown}")
        errors.extend(validate_prod_approval(self.stages, self.approval_before, "delivery.approval_before"))
        if self.github is not None:
            errors.extend(self.github.validate("delivery.github"))
        return errors


def validate_prod_approval(stages: list[str], approval_before: list[str], prop: str) -> list[str]:
    """Every production stage (a name starting with ``prod``) is preceded by a manual approval."""
    missing = [s for s in stages if s.startswith("prod") and s not in approval_before]
    if missing:
        return [f"{prop}: production stage(s) {missing} need a manual approval before them, got: {approval_before}"]
    return []


def family_min_vcpus() -> dict[str, int]:
    """Instance family (``g5``, ``p4d``, ``trn1``...) -> vCPUs of its smallest size, from the accelerator
    table of :mod:`mlinfra.domain.instances` (no aws_cdk import)."""
    from mlinfra.domain import instances

    out: dict[str, int] = {}
    for itype in instances.all_instance_types():
        row = instances.get(itype)
        out[row.family] = min(row.vcpu, out.get(row.family, row.vcpu))
    return out


@dataclasses.dataclass(frozen=True)
class TeamConfig:
    """One vended team environment. Prefixes are ``<zone>/<prefix>/`` (e.g. ``curated/vision/``)."""

    #: Team name: lowercase letters, digits and hyphens (3-22 characters).
    name: str
    #: Cost centre, tagged on every resource of the team (``team-cost-centre``).
    cost_centre: str
    #: IAM principals (role, user or account root ARNs) that administer the team and see its products.
    admin_principals: list[str] = dataclasses.field(default_factory=list)
    #: Lake prefixes the team may read, as ``<zone>/<prefix>/``. :default: none
    read_prefixes: list[str] = dataclasses.field(default_factory=list)
    #: Lake prefixes the team may write (and read), as ``<zone>/<prefix>/``; never shared with another team.
    write_prefixes: list[str] = dataclasses.field(default_factory=list)
    #: GPU instance families the team's compute may launch (``g5``, ``p4d``...). :default: g5
    instance_families: list[str] = dataclasses.field(default_factory=lambda: ["g5"])
    #: vCPU quota of the team's Batch compute environment. :default: 64
    max_vcpus: int = 64
    #: Monthly cost budget in USD. :default: 1000
    monthly_budget_usd: float = 1000.0
    #: Budget alert thresholds, percent of the budget (actual spend; 100 also forecast). :default: 50, 80, 100
    budget_thresholds_percent: list[int] = dataclasses.field(default_factory=lambda: [50, 80, 100])
    #: E-mail addresses subscribed to the team's budget topic. :default: none
    alert_emails: list[str] = dataclasses.field(default_factory=list)

    def validate(self, path: str) -> list[str]:
        errors: list[str] = []
        if not _NAME_RE.fullmatch(self.name):
            errors.append(f"{path}.name: must be 3-22 lowercase letters, digits or hyphens, starting with a letter, got: {self.name!r}")
        if not self.cost_centre or len(self.cost_centre) > 256:
            errors.append(f"{path}.cost_centre: must be 1-256 characters, got: {self.cost_centre!r}")
        bad = [p for p in self.admin_principals if not _PRINCIPAL_ARN_RE.fullmatch(p)]
        if bad:
            errors.append(f"{path}.admin_principals: must be IAM role, user or account root ARNs, got: {bad}")
        for field in ("read_prefixes", "write_prefixes"):
            for prefix in getattr(self, field):
                m = _TEAM_PREFIX_RE.fullmatch(prefix)
                if not m or m.group(1) not in ZONES:
                    errors.append(
                        f"{path}.{field}: must be <zone>/<prefix>/ with a zone of {list(ZONES)} (e.g. 'curated/vision/'), "
                        f"got: {prefix!r}"
                    )
        families = family_min_vcpus()
        unknown = [f for f in self.instance_families if f not in families]
        if unknown:
            errors.append(f"{path}.instance_families: unknown instance family {unknown}; allowed: {sorted(families)}")
        if not self.instance_families:
            errors.append(f"{path}.instance_families: must list at least one family, got: []")
        too_small = {f: families[f] for f in self.instance_families if f in families and families[f] > self.max_vcpus}
        if too_small:
            errors.append(
                f"{path}.max_vcpus: below one instance of an allowed family (smallest size's vCPUs: {too_small}), "
                f"got: {self.max_vcpus}"
            )
        if self.monthly_budget_usd <= 0:
            errors.append(f"{path}.monthly_budget_usd: must be positive, got: {self.monthly_budget_usd}")
        bad_t = [t for t in self.budget_thresholds_percent if not 1 <= t <= 1000]
        if bad_t or not self.budget_thresholds_percent:
            errors.append(f"{path}.budget_thresholds_percent: must be 1-5 values between 1 and 1000, got: {self.budget_thresholds_percent}")
        if len(self.budget_thresholds_percent) > 5:
            errors.append(f"{path}.budget_thresholds_percent: AWS Budgets allows at most 5 notifications, got: {len(self.budget_thresholds_percent)}")
        bad = [e for e in self.alert_emails if not _EMAIL_RE.fullmatch(e)]
        if bad:
            errors.append(f"{path}.alert_emails: not e-mail addresses: {bad}")
        return errors

    @staticmethod
    def split_prefix(value: str) -> tuple[str, str]:
        """``"curated/vision/"`` -> ``("curated", "vision/")``."""
        zone, _, prefix = value.partition("/")
        return zone, prefix


def prefixes_overlap(a: str, b: str) -> bool:
    """Two ``<zone>/<prefix>/`` values overlap when one contains the other."""
    return a.startswith(b) or b.startswith(a)


@dataclasses.dataclass(frozen=True)
class VendingConfig:
    """Self-service team environments, one stack per team, and the Service Catalog portfolio they share."""

    #: The teams to vend. Removing one deletes its compute but RETAINS its data. :default: none
    teams: list[TeamConfig] = dataclasses.field(default_factory=list)
    #: Publish the Service Catalog portfolio of self-service products to the teams. :default: True
    service_catalog: bool = True

    def validate(self) -> list[str]:
        errors: list[str] = []
        for i, team in enumerate(self.teams):
            errors.extend(team.validate(f"vending.teams[{i}]"))
        errors.extend(validate_teams(self.teams))
        return errors


def validate_teams(teams: list[TeamConfig]) -> list[str]:
    """Rules across teams: unique names, no write prefix overlapping another team's."""
    errors: list[str] = []
    names = [t.name for t in teams]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        errors.append(f"vending.teams: duplicate team name(s) {dupes}, got: {names}")
    for i, a in enumerate(teams):
        for b in teams[i + 1:]:
            for pa in a.write_prefixes:
                for pb in b.write_prefixes:
                    if prefixes_overlap(pa, pb):
                        errors.append(
                            f"vending.teams: write prefixes of {a.name!r} and {b.name!r} overlap, got: {pa!r} and {pb!r}"
                        )
    return errors


_SCHEDULE_RE = re.compile(r"^(rate\(([1-9]\d*) (minute|minutes|hour|hours|day|days)\)|cron\((\S+ ){5}\S+\))$")
_DATASET_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """The retrain pipeline (issue 5): new dataset version -> train -> evaluate -> gate -> register -> deploy."""

    #: Build the pipeline stack. :default: True
    enabled: bool = True
    #: Datasets the pipeline retrains on (the ingestion ready-event filter). :default: ["images"]
    datasets: list[str] = dataclasses.field(default_factory=lambda: ["images"])
    #: Also retrain on this EventBridge schedule (``rate(7 days)``, ``cron(...)``); null: events and manual only.
    #: :default: "rate(7 days)"
    schedule: str | None = "rate(7 days)"
    #: Training image (pin a digest for exact lineage). :default: an AWS PyTorch training image
    training_image: str = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311-cu124-ubuntu22.04-sagemaker"
    #: Serving image of the registered model. :default: None (the training image)
    inference_image: str | None = None
    #: ``ml.*`` training instance type. :default: ml.g5.xlarge
    training_instance_type: str = "ml.g5.xlarge"
    #: :default: 1
    training_instance_count: int = 1
    #: :default: 100
    training_volume_gb: int = 100
    #: MaxRuntimeInSeconds, in hours (at most 28 days). :default: 24
    max_runtime_hours: int = 24
    #: Managed spot training with checkpoints. :default: True
    use_spot: bool = True
    #: MaxWaitTimeInSeconds, in hours (spot only, >= max_runtime_hours). :default: None (2 x max_runtime_hours)
    max_wait_hours: int | None = None
    #: Attempts per run, each resuming from the run's checkpoints. :default: 2
    max_training_attempts: int = 2
    #: Default hyperparameters (strings). :default: none
    hyperparameters: dict[str, str] = dataclasses.field(default_factory=dict)
    #: The gate's metric in the evaluation report. :default: "accuracy"
    metric_name: str = "accuracy"
    #: Which way the metric is better. :default: "higher"
    direction: Literal["higher", "lower"] = "higher"
    #: Absolute threshold the metric must reach. :default: None
    threshold: float | None = None
    #: Required improvement over the production model. :default: 0.0
    min_improvement: float = 0.0
    #: Wait for a reviewer (task token) before deploying. :default: False
    manual_approval: bool = False
    #: An unanswered approval rejects after this many hours. :default: 72
    approval_timeout_hours: int = 72
    #: Interval of the pipeline's describe loops, seconds. :default: 60
    poll_interval_seconds: int = 60
    #: Days to keep the execution logs. :default: 90
    log_retention_days: int = 90
    #: Image of an optional preprocessing Processing job. :default: None
    preprocessing_image: str | None = None
    #: Image of an optional evaluation Processing job (writes evaluation.json). :default: None
    evaluation_image: str | None = None

    def validate(self) -> list[str]:
        errors: list[str] = []
        p = "pipeline"
        if not self.datasets:
            errors.append(f"{p}.datasets: must name at least one dataset, got: []")
        bad = [d for d in self.datasets if not _DATASET_RE.fullmatch(d)]
        if bad:
            errors.append(f"{p}.datasets: names must be 1-63 lowercase letters, digits, '_' or '-', got: {bad}")
        if self.schedule is not None and not _SCHEDULE_RE.fullmatch(self.schedule):
            errors.append(f"{p}.schedule: must be rate(N minutes|hours|days) or cron(6 fields), got: {self.schedule!r}")
        if not self.training_instance_type.startswith("ml."):
            errors.append(f"{p}.training_instance_type: must start with 'ml.', got: {self.training_instance_type!r}")
        if self.training_instance_count < 1:
            errors.append(f"{p}.training_instance_count: must be >= 1, got: {self.training_instance_count}")
        if not 1 <= self.training_volume_gb <= 16384:
            errors.append(f"{p}.training_volume_gb: must be between 1 and 16384, got: {self.training_volume_gb}")
        if not 1 <= self.max_runtime_hours <= 28 * 24:
            errors.append(f"{p}.max_runtime_hours: must be between 1 and 672 (28 days), got: {self.max_runtime_hours}")
        if self.max_wait_hours is not None:
            if not self.use_spot:
                errors.append(f"{p}.max_wait_hours: applies to spot training only (use_spot is false), got: {self.max_wait_hours}")
            elif not self.max_runtime_hours <= self.max_wait_hours <= 28 * 24:
                errors.append(f"{p}.max_wait_hours: must be >= max_runtime_hours ({self.max_runtime_hours}) and <= 672, got: {self.max_wait_hours}")
        if not 1 <= self.max_training_attempts <= 5:
            errors.append(f"{p}.max_training_attempts: must be between 1 and 5, got: {self.max_training_attempts}")
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", self.metric_name):
            errors.append(f"{p}.metric_name: must be 1-64 letters, digits or _.:-, got: {self.metric_name!r}")
        if self.min_improvement < 0:
            errors.append(f"{p}.min_improvement: must be >= 0, got: {self.min_improvement}")
        if not 1 <= self.approval_timeout_hours <= 365 * 24:
            errors.append(f"{p}.approval_timeout_hours: must be between 1 and 8760, got: {self.approval_timeout_hours}")
        if not 1 <= self.poll_interval_seconds <= 3600:
            errors.append(f"{p}.poll_interval_seconds: must be between 1 and 3600, got: {self.poll_interval_seconds}")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            errors.append(f"{p}.log_retention_days: must be one of {LOG_RETENTION_DAYS}, got: {self.log_retention_days}")
        return errors


@dataclasses.dataclass(frozen=True)
class CostConfig:
    """Cost guard rails read by ``mlinfra cost`` and the cost policy test (issue 16): an idle budget, and a
    recorded idle baseline that a change may not raise by more than ``idle_tolerance_percent`` unless the new
    figure is acknowledged here."""

    #: Most this environment may cost per month while idle (USD); ``mlinfra cost --max-idle`` and the test use
    #: it. :default: None (no budget)
    max_idle_usd: float | None = None
    #: The idle cost per month (USD) recorded when the baseline was last accepted. :default: None (no baseline)
    idle_baseline_usd: float | None = None
    #: How far above the baseline (percent) the idle cost may rise without an acknowledgment. :default: 10
    idle_tolerance_percent: float = 10.0
    #: An accepted higher idle cost per month (USD): the test passes up to this figure. :default: None
    idle_acknowledged_usd: float | None = None
    #: Why the higher idle cost was accepted (who, when, what for); required with ``idle_acknowledged_usd``.
    #: :default: None
    idle_acknowledgment: str | None = None

    def validate(self) -> list[str]:
        errors: list[str] = []
        for name in ("max_idle_usd", "idle_baseline_usd", "idle_acknowledged_usd"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                errors.append(f"cost.{name}: must be >= 0, got: {value}")
        if not 0 <= self.idle_tolerance_percent <= 1000:
            errors.append(f"cost.idle_tolerance_percent: must be between 0 and 1000, got: {self.idle_tolerance_percent}")
        if (self.idle_acknowledged_usd is None) != (not self.idle_acknowledgment):
            errors.append("cost.idle_acknowledgment: set it together with cost.idle_acknowledged_usd (the reason for "
                          f"the accepted figure), got: {self.idle_acknowledgment!r} with {self.idle_acknowledged_usd!r}")
        return errors

    def idle_ceiling_usd(self) -> float | None:
        """The idle cost above which the policy test fails: the baseline plus the tolerance, or the acknowledged
        figure when that is higher. None when no baseline is recorded."""
        if self.idle_baseline_usd is None:
            return None
        ceiling = self.idle_baseline_usd * (1 + self.idle_tolerance_percent / 100.0)
        return max(ceiling, self.idle_acknowledged_usd or 0.0)


@dataclasses.dataclass(frozen=True)
class PlatformConfig:
    """The whole platform for one environment."""

    #: Environment name (``local``, ``dev``, ``prod``, ...).
    env_name: str
    #: Naming prefix of stacks and resources: lowercase letters, digits and hyphens, 3-22 characters.
    prefix: str = "mlinfra"
    #: AWS account id (12 digits). :default: None (environment-agnostic synth; AZs then come from ``azs``)
    account: str | None = None
    #: AWS region. :default: us-east-1
    region: str = "us-east-1"
    #: Availability zones, in order (the training subnet uses ``network.training_az_index``).
    azs: list[str] = dataclasses.field(default_factory=lambda: ["us-east-1a", "us-east-1b"])
    #: Cost centre, applied to every resource as the ``cost-centre`` tag.
    cost_centre: str = "ml-platform"
    #: Extra tags applied to every resource.
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    #: The deployment target of this environment: the real cloud or the local emulator.
    target: Literal["aws", "local"] = "aws"
    network: NetworkConfig = dataclasses.field(default_factory=NetworkConfig)
    data_lake: DataLakeConfig = dataclasses.field(default_factory=DataLakeConfig)
    ingestion: IngestionConfig = dataclasses.field(default_factory=IngestionConfig)
    serving: ServingConfig = dataclasses.field(default_factory=ServingConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    delivery: DeliveryConfig = dataclasses.field(default_factory=DeliveryConfig)
    vending: VendingConfig = dataclasses.field(default_factory=VendingConfig)
    pipeline: PipelineConfig = dataclasses.field(default_factory=PipelineConfig)
    cost: CostConfig = dataclasses.field(default_factory=CostConfig)

    @property
    def is_production(self) -> bool:
        return self.env_name.startswith("prod")

    @property
    def destroy_data_on_delete(self) -> bool:
        """Whether stateful resources may be deleted with their stack: asked by ``data_lake.destroy_data_on_delete``
        and never in production."""
        return self.data_lake.destroy_data_on_delete and not self.is_production

    @property
    def all_tags(self) -> dict[str, str]:
        """Tags for every resource: project, environment, cost centre, then the configured extras."""
        return {"project": self.prefix, "environment": self.env_name, "cost-centre": self.cost_centre, **self.tags}

    def stack_name(self, suffix: str) -> str:
        """``<prefix>-<env>-<suffix>``: the CloudFormation stack name of one of the platform's stacks."""
        return self.resource_name(suffix)

    def resource_name(self, suffix: str) -> str:
        """``<prefix>-<env>-<suffix>``: the name of a named resource of this environment (role, pipeline, group)."""
        return f"{self.prefix}-{self.env_name}-{suffix}"

    def validate(self) -> list[str]:
        errors: list[str] = []
        if not _NAME_RE.fullmatch(self.prefix):
            errors.append(f"prefix: must be 3-22 lowercase letters, digits or hyphens, starting with a letter, got: {self.prefix!r}")
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,15}", self.env_name):
            errors.append(f"env_name: must be 1-16 lowercase letters, digits or hyphens, got: {self.env_name!r}")
        if self.account is not None and not _ACCOUNT_RE.fullmatch(self.account):
            errors.append(f"account: must be 12 digits, got: {self.account!r}")
        if not _REGION_RE.fullmatch(self.region):
            errors.append(f"region: must be an AWS region such as us-east-1, got: {self.region!r}")
        if not self.azs:
            errors.append("azs: must list at least one availability zone, got: []")
        bad_azs = [az for az in self.azs if not az.startswith(self.region)]
        if bad_azs:
            errors.append(f"azs: every AZ must be in region {self.region}, got: {bad_azs}")
        if len(set(self.azs)) != len(self.azs):
            errors.append(f"azs: must be unique, got: {self.azs}")
        if self.network.vpc_id is None and self.azs and len(self.azs) < self.network.max_azs:
            errors.append(f"azs: lists {len(self.azs)} AZ(s) but network.max_azs is {self.network.max_azs}")
        for key, value in self.all_tags.items():
            if not _TAG_KEY_RE.fullmatch(key) or key.lower().startswith("aws:"):
                errors.append(f"tags: invalid tag key {key!r} (1-128 characters, not starting with 'aws:')")
            if len(str(value)) > 256:
                errors.append(f"tags.{key}: value longer than 256 characters")
        if self.is_production and self.data_lake.destroy_data_on_delete:
            errors.append("data_lake.destroy_data_on_delete: must be false in a production environment, got: true")
        if self.target == "local" and self.account not in (None, "123456789012"):
            errors.append(f"account: the local emulator's account is 123456789012, got: {self.account!r}")
        for section in _sections(self):
            errors.extend(section.validate())
        return errors


def _sections(cfg: PlatformConfig) -> list[Any]:
    return [getattr(cfg, f.name) for f in dataclasses.fields(cfg) if hasattr(getattr(cfg, f.name), "validate")]


# --------------------------------------------------------------------------------------------------
# Loading: dict -> typed dataclasses, collecting every error
# --------------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of {_type_name(typing.get_args(tp)[1])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, path: str, errors: list[str]) -> Any:
    """Convert ``value`` to ``tp``; on a mismatch append ``path: expected ..., got: ...`` and return None."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _convert(value, non_none[0], path, errors)
    elif origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif origin is list:
        if isinstance(value, list):
            (item_tp,) = typing.get_args(tp)
            return [_convert(v, item_tp, f"{path}[{i}]", errors) for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, Mapping):
            _, val_tp = typing.get_args(tp)
            return {str(k): _convert(v, val_tp, f"{path}.{k}", errors) for k, v in value.items()}
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, Mapping):
            return _build(tp, value, path, errors)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):  # YAML reads 123456789012 as an int
            return str(value)
    else:  # pragma: no cover - a section declared a type the loader does not know
        raise TypeError(f"{path}: unsupported config type {tp!r}")
    errors.append(f"{path}: expected {_type_name(tp)}, got: {value!r}")
    return None


def _build(cls: type, data: Mapping[str, Any], path: str, errors: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    for key in unknown:
        errors.append(f"{path + '.' if path else ''}{key}: unknown field; allowed: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        fpath = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], fpath, errors)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            errors.append(f"{fpath}: required field is missing")
    if any(v is None and not _accepts_none(hints[k]) for k, v in kwargs.items()):
        # A type error was recorded; build with defaults for the broken fields so validation can go on.
        kwargs = {k: v for k, v in kwargs.items() if v is not None or _accepts_none(hints[k])}
    try:
        return cls(**kwargs)
    except TypeError:
        return None


def _accepts_none(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into ``base``: nested mappings merge, everything else replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(document: Mapping[str, Any], env_name: str, source: str = "configuration") -> PlatformConfig:
    """Build and validate the configuration of ``env_name`` from a document with ``defaults`` and
    ``environments``. Raises :class:`ConfigError` listing every problem."""
    if not isinstance(document, Mapping):
        raise ConfigError([f"<root>: expected a mapping with 'defaults' and 'environments', got: {type(document).__name__}"], source)
    unknown = sorted(set(document) - {"defaults", "environments"})
    errors = [f"{k}: unknown top-level key; allowed: ['defaults', 'environments']" for k in unknown]
    envs = document.get("environments") or {}
    if env_name not in envs:
        raise ConfigError(errors + [f"environments: no environment named {env_name!r}; defined: {sorted(envs)}"], source)
    merged = deep_merge(document.get("defaults") or {}, envs[env_name] or {})
    merged["env_name"] = env_name
    cfg = _build(PlatformConfig, merged, "", errors)
    if cfg is not None and not errors:
        errors.extend(cfg.validate())
    elif cfg is not None:
        # Report semantic problems too, except those caused by fields that failed to parse.
        errors.extend(e for e in cfg.validate() if e not in errors)
    if errors or cfg is None:
        raise ConfigError(errors or ["configuration could not be built"], f"{source} [{env_name}]")
    return cfg


def load_config_file(path: str | Path, env_name: str) -> PlatformConfig:
    """Load ``env_name`` from a YAML or JSON file (see :func:`load_config`)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError([f"cannot read {p}: {exc.strerror}"], str(p)) from exc
    try:
        document = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError([f"not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}"], str(p)) from exc
    return load_config(document, env_name, source=str(p))


def environment_names(path: str | Path) -> list[str]:
    """The environments a configuration file defines."""
    document = yaml.safe_load(Path(path).read_text()) or {}
    return sorted((document.get("environments") or {}).keys())
