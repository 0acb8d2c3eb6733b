"""Typed, validated configuration of an mlinfra platform.

One :class:`PlatformConfig` per environment (``local``, ``dev``, ``prod``, ...), read from a YAML/JSON file
(``config/platform.yaml`` in the reference app) or from a ``cdk.json`` context value. The file holds
``defaults`` shared by every environment and an ``environments`` mapping whose entries override them
(a deep merge: nested mappings merge, lists and scalars replace).

Each capability owns one section below: a pydantic (v2) dataclass, so a field reads as in a plain dataclass
(``name: type = default`` with its ``#:`` comment), plus a ``validate()`` for the rules across fields. Loading
checks in order, and reports ALL problems at once in one :class:`ConfigError`, each as
``<field path>: <what is wrong>, got: <value>``:

1. the file: UTF-8, no duplicate keys, YAML aliases and nesting bounded (:mod:`mlinfra.domain.safe_yaml`);
2. the types (pydantic, strict: no ``"3"`` for 3, no ``"yes"`` for true), unknown keys refused with the nearest
   field name suggested, NaN and infinity refused;
3. the bounds declared on each numeric field (``Annotated[int, between(1, 6)]``: service limits where AWS has
   one), which the JSON Schema publishes too;
4. each section's ``validate()``.

``mlinfra schema`` prints the JSON Schema of the file (config/platform.schema.json; editors read it through the
``yaml-language-server`` comment at the top of config/platform.yaml). Nothing here imports aws_cdk, so the CLI
validates a configuration without starting jsii.

Adding a field: write it as in a dataclass, with its ``#:`` comment and default; give a number its bounds
(``Annotated[int, between(lo, hi)]``); run ``mlinfra schema > config/platform.schema.json``.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import pydantic
import yaml
from pydantic import ConfigDict, field_validator
from pydantic.dataclasses import dataclass as _pydantic_dataclass

__all__ = [
    "ConfigError",
    "PlatformConfig",
    "NetworkConfig",
    "DataLakeConfig",
    "LifecycleConfig",
    "PipelineConfig",
    "MonitoringConfig",
    "load_config",
    "load_config_file",
    "json_schema",
    "between",
    "ZONES",
]

from mlinfra.domain.lake import (
    DEFAULT_LIFECYCLES,
    S3_PREFIX_PATTERN,
    ZONES,
    Lifecycle,
    dataset_name_error,
    lake_target_errors as _lake_target_errors,
    lifecycle_errors as validate_lifecycle,
    parse_lake_target,
    retrainable_dataset_error,
)
from mlinfra.domain.network import DEFAULT_INTERFACE_ENDPOINTS, INTERFACE_ENDPOINT_NAMES, LOG_RETENTION_DAYS, cidr_error
from mlinfra.domain.parallelcluster import (
    DEFAULT_PCLUSTER_VERSION,
    DLAMI_SSM_PARAMETER,
    PCLUSTER_MIN_MINOR,
    CapacityType,
    QueueUpdateStrategy,
    is_pcluster_release,
)
from mlinfra.domain.instances import ECS_GPU_AMI_SSM_PARAMETER
from mlinfra.domain.hyperpod import MAX_INSTANCE_COUNT as MAX_HYPERPOD_INSTANCE_COUNT
from mlinfra.domain.safe_yaml import DocumentError, load_document
from mlinfra.domain.teams import family_min_vcpus, prefixes_overlap

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,20}[a-z0-9]$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_TAG_KEY_RE = re.compile(r"^[\w .:/=+\-@]{1,128}$")
_PREFIX_RE = re.compile(S3_PREFIX_PATTERN)


class ConfigError(ValueError):
    """Raised when a configuration is invalid; ``errors`` holds every problem found, one per line."""

    def __init__(self, errors: list[str], source: str = "configuration") -> None:
        self.errors = list(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"{source} is invalid ({len(self.errors)} error(s)):\n{lines}")


@dataclasses.dataclass(frozen=True)
class Bounds:
    """Inclusive (``ge``/``le``) or exclusive (``gt``/``lt``) bounds of a number, declared on its field with
    ``Annotated[int, between(1, 6)]``. The loader reports a value outside them (with the field's path) and the
    JSON Schema publishes them; constructing a section by hand does not check them, so ``validate()``-style
    tests can build any value."""

    ge: float | None = None
    le: float | None = None
    gt: float | None = None
    lt: float | None = None

    def error(self, value: Any) -> str | None:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return None
        low_ok = (self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
        high_ok = (self.le is None or value <= self.le) and (self.lt is None or value < self.lt)
        if low_ok and high_ok:
            return None
        if self.ge is not None and self.le is not None:
            return f"must be between {_num(self.ge)} and {_num(self.le)}"
        side = ((">=", self.ge), (">", self.gt)) if not low_ok else (("<=", self.le), ("<", self.lt))
        return "must be " + " and ".join(f"{op} {_num(v)}" for op, v in side if v is not None)

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler(core_schema)
        target = schema
        for option in schema.get("anyOf", []):  # ``int | None``: bound the number, not the null
            if option.get("type") in ("integer", "number"):
                target = option
        for key, value in (("minimum", self.ge), ("maximum", self.le), ("exclusiveMinimum", self.gt),
                           ("exclusiveMaximum", self.lt)):
            if value is not None:
                target[key] = value
        return schema


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def between(low: float, high: float) -> Bounds:
    """``low <= value <= high``."""
    return Bounds(ge=low, le=high)


def at_least(low: float, high: float | None = None) -> Bounds:
    """``value >= low`` (and ``<= high`` when given)."""
    return Bounds(ge=low, le=high)


def positive(high: float | None = None) -> Bounds:
    """``value > 0`` (and ``<= high`` when given)."""
    return Bounds(gt=0, le=high)


#: Every section: unknown keys refused, NaN and infinity refused, frozen like the dataclasses they replace.
_MODEL_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, validate_default=False)
#: The decorator of every section class (a pydantic dataclass).
section = _pydantic_dataclass(frozen=True, config=_MODEL_CONFIG)


@section
class _Section:
    """Base of every section: YAML reads ``account: 123456789012`` or ``epochs: 10`` as numbers; a field that
    takes text takes an integer as its decimal text (never a bool or a float)."""

    @field_validator("*", mode="before")
    @classmethod
    def _integers_as_text(cls, value: Any, info: pydantic.ValidationInfo) -> Any:
        field = cls.__pydantic_fields__.get(info.field_name)  # type: ignore[attr-defined]
        return _int_to_text(value, field.annotation) if field is not None else value


def _int_to_text(value: Any, tp: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return _int_to_text(value, args[0])
    if isinstance(value, int) and not isinstance(value, bool):
        accepts = set(args) if origin in (typing.Union, types.UnionType) else {tp}
        if str in accepts and not accepts & {int, float}:
            return str(value)
        return value
    if origin is list and isinstance(value, list):
        return [_int_to_text(v, args[0]) for v in value]
    if origin is dict and isinstance(value, dict):
        return {k: _int_to_text(v, args[1]) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------


@section
class NetworkConfig(_Section):
    """The VPC the platform runs in: made from props, or imported by id (never both)."""

    #: Import this existing VPC instead of creating one (``vpc-...``). :default: None (create one)
    vpc_id: str | None = None
    #: IPv4 CIDR of a created VPC. :default: 10.0.0.0/16
    cidr: str = "10.0.0.0/16"
    #: AZs used by the created VPC's private subnets. :default: 2
    max_azs: Annotated[int, between(1, 6)] = 2
    #: NAT gateways for outbound internet (0: isolated subnets reaching AWS through endpoints only). :default: 1
    nat_gateways: Annotated[int, between(0, 6)] = 1
    #: Index into the AZ list of the single AZ that hosts the training subnet (EFA and Lustre). :default: 0
    training_az_index: Annotated[int, between(0, 5)] = 0
    #: Interface endpoints (service names as in ``ec2.InterfaceVpcEndpointAwsService``). :default: see below
    interface_endpoints: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_INTERFACE_ENDPOINTS))
    #: Days to keep VPC flow logs. :default: 90
    flow_log_retention_days: Annotated[int, between(1, 3653)] = 90

    def validate(self) -> list[str]:
        errors: list[str] = []
        if self.vpc_id is not None and not re.fullmatch(r"vpc-[0-9a-f]{8,17}", self.vpc_id):
            errors.append(f"network.vpc_id: must look like vpc-0123456789abcdef0, got: {self.vpc_id!r}")
        if (error := cidr_error(self.cidr, "network.cidr")) is not None:
            errors.append(error)
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


@section
class LifecycleConfig(Lifecycle, _Section):
    """Lifecycle of one zone's objects (the fields of :class:`mlinfra.domain.lake.Lifecycle`, which the
    ``DataLake`` construct takes). ``None`` turns a transition or expiry off."""

    def validate(self, path: str) -> list[str]:
        return validate_lifecycle(self, path)


def _default_lifecycles() -> dict[str, LifecycleConfig]:
    return {zone: LifecycleConfig(**dataclasses.asdict(lc)) for zone, lc in DEFAULT_LIFECYCLES.items()}


@section
class DataLakeConfig(_Section):
    """The lake: one bucket per zone, encrypted, versioned, logged, catalogued."""

    #: Encryption of every zone: a customer managed KMS key (rotated) or S3-managed keys. :default: "kms"
    encryption: Literal["kms", "s3"] = "kms"
    #: Zones that get a Glue Data Catalog database. :default: raw, curated, features
    glue_zones: list[str] = dataclasses.field(default_factory=lambda: ["raw", "curated", "features"])
    #: Per-zone lifecycle; zones left out keep the defaults. :default: tiering per zone
    lifecycle: dict[str, LifecycleConfig] = dataclasses.field(default_factory=_default_lifecycles)
    #: Days to keep S3 server access logs. :default: 365
    access_log_retention_days: Annotated[int, between(1, 36500)] = 365
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


_STORAGE_CLASSES = ("STANDARD", "INTELLIGENT_TIERING", "STANDARD_IA", "ONEZONE_IA", "GLACIER_INSTANT_RETRIEVAL",
                    "GLACIER", "DEEP_ARCHIVE")
_EXTENSION_RE = re.compile(r"^\.[a-z0-9]+(\.[a-z0-9]+)?$")


@section
class DatasetRuleConfig(_Section):
    """What the landing glue accepts for one dataset (``<dataset>/<version>/<file>`` in landing)."""

    #: Allowed file extensions, lower case with the dot (``.csv``, ``.tar.gz``); empty: any. :default: []
    extensions: list[str] = dataclasses.field(default_factory=list)
    #: Allowed Content-Type values (``text/csv``); empty: any. :default: []
    content_types: list[str] = dataclasses.field(default_factory=list)


@section
class TransferUserConfig(_Section):
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


@section
class TransferConfig(_Section):
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


@section
class DataSyncTaskConfig(_Section):
    """One DataSync task into the lake (see mlinfra.constructs.datasync for every option)."""

    #: Task name (also the construct id).
    name: str
    #: Source kind. NFS/SMB/HDFS need ``agent_arns``.
    source: Literal["s3", "nfs", "smb", "hdfs"]
    #: A fixed destination prefix (every run writes into it; in landing, no version ever becomes ready): prefer
    #: ``dataset``. Exactly one of prefix and dataset. :default: None
    prefix: str | None = None
    #: Land every successful run as a NEW version of this dataset (landing zone; the task report lists the run's
    #: files, the glue promotes the version and its ready event starts the retrain pipeline). :default: None
    dataset: str | None = None
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
    bytes_per_second: Annotated[int, between(-1, 10**12)] = -1
    #: Include / exclude SIMPLE_PATTERN filters. :default: []
    includes: list[str] = dataclasses.field(default_factory=list)
    excludes: list[str] = dataclasses.field(default_factory=list)
    #: ONLY_FILES_TRANSFERRED or POINT_IN_TIME_CONSISTENT. :default: ONLY_FILES_TRANSFERRED
    verify_mode: Literal["ONLY_FILES_TRANSFERRED", "POINT_IN_TIME_CONSISTENT"] = "ONLY_FILES_TRANSFERRED"
    #: Destination S3 storage class. :default: STANDARD
    storage_class: str = "STANDARD"


@section
class DataSyncConfig(_Section):
    """DataSync tasks and the private endpoint their agents use."""

    #: Create the DataSync interface endpoint for agents. :default: False
    vpc_endpoint: bool = False
    #: Networks the agents connect from (required with vpc_endpoint). :default: []
    agent_cidrs: list[str] = dataclasses.field(default_factory=list)
    #: The tasks. :default: []
    tasks: list[DataSyncTaskConfig] = dataclasses.field(default_factory=list)


@section
class IngestionConfig(_Section):
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
    handler_timeout_seconds: Annotated[int, between(10, 600)] = 300
    #: Largest object the glue hashes itself (bytes) when S3 holds no full-object SHA-256. :default: 10 GiB
    max_hash_bytes: Annotated[int, between(1, 50 * 1024**4)] = 10 * 1024**3
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
            if (problem := dataset_name_error(name)) is not None:
                errors.append(f"{p}.datasets: {problem}")
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
            if (task.dataset is None) == (task.prefix is None):
                errors.append(f"{tp}: set exactly one of dataset (a new version per run) and prefix (a fixed destination), "
                              f"got: dataset={task.dataset!r}, prefix={task.prefix!r}")
            elif task.dataset is not None:
                if (problem := dataset_name_error(task.dataset)) is not None:
                    errors.append(f"{tp}.dataset: {problem}")
                elif task.zone != "landing":
                    errors.append(f"{tp}.zone: a dataset task lands its runs in 'landing' for the glue, got: {task.zone!r}")
                elif task.dataset not in self.datasets and not self.allow_unregistered_datasets:
                    errors.append(f"{tp}.dataset: the glue quarantines datasets missing from ingestion.datasets "
                                  f"(or set allow_unregistered_datasets), got: {task.dataset!r}")
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

#: The file spells these closed sets as strings; their one home is the domain enum the stack converts them to.
CapacityTypeName = Literal[tuple(m.value for m in CapacityType)]  # type: ignore[valid-type]
QueueUpdateStrategyName = Literal[tuple(m.value for m in QueueUpdateStrategy)]  # type: ignore[valid-type]



@section
class SlurmQueueConfig(_Section):
    """One Slurm queue with one compute resource."""

    #: Queue name: lowercase letters, digits, hyphens (ParallelCluster), starting with a letter.
    name: str = "gpu"
    #: EC2 instance type of the queue's nodes (EFA-capable when ``training.efa``).
    instance_type: str = "p4d.24xlarge"
    #: Nodes kept running (0: scale to zero). :default: 0
    min_count: Annotated[int, between(0, 10_000)] = 0
    #: Most nodes. :default: 4
    max_count: Annotated[int, between(0, 10_000)] = 4
    #: ONDEMAND, SPOT or CAPACITY_BLOCK (then min_count = max_count > 0). :default: ONDEMAND
    capacity_type: CapacityTypeName = "ONDEMAND"
    #: The capacity block's reservation id (``cr-...``), required with CAPACITY_BLOCK. :default: None
    capacity_reservation_id: str | None = None


@section
class HyperPodGroupConfig(_Section):
    """One HyperPod instance group."""

    #: Instance-group name (letters, digits, inner hyphens).
    name: str = "gpu"
    #: A SageMaker HyperPod instance type (``ml.``...).
    instance_type: str = "ml.p5.48xlarge"
    #: Controller, Login or Compute. :default: Compute
    node_type: Literal["Controller", "Login", "Compute"] = "Compute"
    #: Instances (compute groups may be 0 at rest). :default: 0
    instance_count: Annotated[int, between(0, MAX_HYPERPOD_INSTANCE_COUNT)] = 0
    #: Slurm partition of a compute group. :default: None
    partition: str | None = None


def _default_hyperpod_groups() -> list[HyperPodGroupConfig]:
    return [HyperPodGroupConfig(name="controller", instance_type="ml.t3.medium", node_type="Controller",
                                instance_count=1),
            HyperPodGroupConfig(name="gpu", instance_type="ml.p5.48xlarge", instance_count=0, partition="gpu")]


@section
class HyperPodConfig(_Section):
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


@section
class TrainingConfig(_Section):
    """GPU training: the Lustre cache, a Batch cluster and a Slurm (ParallelCluster) cluster."""

    #: Build the training stack. :default: True
    enabled: bool = True
    #: Build the FSx for Lustre cache; without it the clusters and jobs read the lake from S3. Turning it off
    #: does not delete a deployed file system (RETAINED): delete that by hand. :default: True
    cache_enabled: bool = True
    #: Lustre deployment type. :default: PERSISTENT_2
    cache_deployment_type: Literal["SCRATCH_2", "PERSISTENT_1", "PERSISTENT_2"] = "PERSISTENT_2"
    #: Explicit capacity (GiB); null sizes the cache from the three sizing_* fields. :default: None
    cache_storage_capacity_gib: Annotated[int | None, between(1, 10**7)] = None
    #: Explicit per-unit throughput (MB/s/TiB), with an explicit capacity only. :default: None
    cache_per_unit_throughput: Annotated[int | None, between(1, 1000)] = None
    #: Sizing inputs: GPUs reading at once, MB/s each, dataset GiB. :default: 16 GPUs x 100 MB/s, 1000 GiB
    sizing_gpus: Annotated[int, between(1, 100_000)] = 16
    sizing_per_gpu_read_mbps: Annotated[float, positive(100_000)] = 100.0
    sizing_dataset_gib: Annotated[float, between(0, 10**8)] = 1000.0
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
    #: SSM parameter of the Batch node AMI (it needs the ECS agent). :default: the ECS GPU-optimized AL2023 image
    ami_ssm_parameter: str = ECS_GPU_AMI_SSM_PARAMETER
    #: Build the AWS Batch cluster. :default: True
    batch_enabled: bool = True
    #: Training container image. :default: an AWS Deep Learning Container (PyTorch, GPU)
    batch_image: str = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311-cu124-ubuntu22.04-ec2"
    #: Batch instance types (one EFA interface count). :default: p4d.24xlarge
    batch_instance_types: list[str] = dataclasses.field(default_factory=lambda: ["p4d.24xlarge"])
    #: Nodes of the multi-node parallel job definition. :default: 2
    batch_nodes: Annotated[int, between(1, 1000)] = 2
    #: Compute environment ceiling; null: 4 nodes of the first type. :default: None
    batch_max_vcpus: Annotated[int | None, between(1, 10**6)] = None
    #: Build the Slurm cluster (AWS ParallelCluster; needs ``slurm_service_token``). :default: False
    slurm_enabled: bool = False
    #: ServiceToken of the ParallelCluster provider stack: an ARN, ``ssm:<parameter name>`` holding it, or
    #: ``provider`` to deploy AWS's provider stack (nested, release ``slurm_provider_version``) with the cluster.
    slurm_service_token: str | None = None
    #: ParallelCluster release of a ``provider`` deployed with the cluster (3.6.0 or later). :default: 3.16.1
    slurm_provider_version: str = DEFAULT_PCLUSTER_VERSION
    #: ParallelCluster cluster name (immutable; prefixed ``<prefix>-<env>-``; must not be a stack's name).
    #: :default: slurm
    slurm_cluster_name: str = "slurm"
    #: What a stack update that changes a queue does to running nodes. :default: DRAIN
    slurm_queue_update_strategy: QueueUpdateStrategyName = "DRAIN"
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


@section
class ScheduledScalingConfig(_Section):
    """A scheduled capacity change of the real-time endpoint (e.g. a smaller night floor)."""

    #: Action name (letters, digits, hyphens).
    name: str
    #: Application Auto Scaling schedule: ``cron(...)``, ``rate(...)`` or ``at(...)``.
    schedule: str
    #: New minimum capacity. :default: None (unchanged)
    min_capacity: Annotated[int | None, between(0, 10_000)] = None
    #: New maximum capacity. :default: None (unchanged)
    max_capacity: Annotated[int | None, between(0, 10_000)] = None
    #: IANA time zone of the schedule. :default: None (UTC)
    time_zone: str | None = None


@section
class ServingConfig(_Section):
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
    initial_instance_count: Annotated[int, between(1, 10_000)] = 1
    #: Autoscaling floor (>= 1 for real-time). :default: 1
    min_capacity: Annotated[int, between(0, 10_000)] = 1
    #: Autoscaling ceiling. :default: 4
    max_capacity: Annotated[int, between(0, 10_000)] = 4
    #: Target-tracking metric: invocations per instance (default), GPU or CPU utilization. :default: invocations
    scaling_metric: Literal["invocations", "gpu", "cpu"] = "invocations"
    #: Target value in the metric's unit (invocations/instance/minute or percent). :default: 100
    target_value: Annotated[float, positive(10**9)] = 100.0
    #: Seconds between scale-in activities. :default: 300
    scale_in_cooldown_seconds: Annotated[int, between(0, 86_400)] = 300
    #: Seconds between scale-out activities. :default: 60
    scale_out_cooldown_seconds: Annotated[int, between(0, 86_400)] = 60
    #: Never scale in by target tracking (scale-in protection). :default: False
    protect_from_scale_in: bool = False
    #: Scheduled capacity changes. :default: none
    scheduled: list[ScheduledScalingConfig] = dataclasses.field(default_factory=list)
    #: Percent of requests captured to the lake's artifacts zone (0 turns capture off). :default: 20
    data_capture_percent: Annotated[int, between(0, 100)] = 20
    #: Alarm threshold on ModelLatency p99, in milliseconds (converted to microseconds). :default: 500
    latency_p99_ms: Annotated[float, positive(3_600_000)] = 500.0
    #: Alarm threshold on 5XX errors, percent of invocations. :default: 1
    error_5xx_rate_percent: Annotated[float, positive(100)] = 1.0
    #: Alarm threshold on 4XX errors, percent of invocations. :default: 10
    error_4xx_rate_percent: Annotated[float, positive(100)] = 10.0
    #: Alarm when invocations drop to zero for 15 minutes. :default: False
    invocations_zero_alarm: bool = False
    #: Blue/green traffic shifting of the pipeline's updates. :default: canary
    traffic_shifting: Literal["canary", "linear", "all_at_once"] = "canary"
    #: Canary size, percent of capacity (1-50). :default: 10
    canary_percent: Annotated[int, between(1, 50)] = 10
    #: Linear step, percent of capacity (10-50). :default: 20
    linear_step_percent: Annotated[int, between(10, 50)] = 20
    #: Bake time between traffic shifts, minutes (0-60). :default: 5
    bake_minutes: Annotated[int, between(0, 60)] = 5
    #: Build the async endpoint example (scales to zero on an empty backlog). :default: True
    async_enabled: bool = True
    #: Instance type of the async endpoint. :default: ml.m5.large
    async_instance_type: str = "ml.m5.large"
    #: Async autoscaling ceiling. :default: 2
    async_max_capacity: Annotated[int, between(1, 10_000)] = 2
    #: Async target backlog per instance. :default: 5
    async_backlog_target: Annotated[float, positive(10**6)] = 5.0
    #: Turns batch transform on: EventBridge schedule of a run over the curated zone's ``batch-inference/input/current/``;
    #: every ready batch (marker ``batch-inference/input/_ready/<batch>``) also runs, with the newest Approved version
    #: of the pipeline's model package group -> artifacts zone ``batch-inference/output/<batch>/model-version=<v>/``.
    #: :default: None (off)
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
# Role ARN patterns (with *) are trusted through the account with an aws:PrincipalArn condition (SSO roles).
_PRINCIPAL_ARN_RE = re.compile(r"^arn:aws[a-z-]*:(iam|sts)::(\d{12}|\*):(root|role/[\w+=,.@/*-]+|user/[\w+=,.@/-]+|assumed-role/[\w+=,.@/-]+)$")
_TEAM_PREFIX_RE = re.compile(rf"^([a-z]+)/({S3_PREFIX_PATTERN})$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@section
class GithubDeployConfig(_Section):
    """GitHub Actions deploys through OIDC (``GithubOidcDeployRole``), one role per environment."""

    #: ``owner/name`` of the repository whose workflows may deploy.
    repository: str
    #: Branch whose workflow runs may deploy (``refs/heads/<branch>``). :default: main
    branch: str = "main"
    #: GitHub deployment environment the job must run in (trusts ``environment:<name>`` too). :default: None
    environment: str | None = None
    #: ARN of an existing GitHub OIDC provider in the account (one per account). :default: None (create one)
    provider_arn: str | None = None
    #: The reusable workflow pull requests call (at ``branch``) to run ``cdk diff``; the diff role trusts only it.
    #: :default: .github/workflows/cdk-diff.yml
    diff_workflow: str = ".github/workflows/cdk-diff.yml"

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


@section
class DeliveryConfig(_Section):
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
        default_factory=lambda: ["npm ci", "python -m pip install -e '.[dev]'",
                                 # checkov, in its own venv when the app pins it (this repository does)
                                 "if [ -f requirements-scan.txt ]; then python -m venv .venv-scan && "
                                 ".venv-scan/bin/pip install -r requirements-scan.txt; fi"]
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


@section
class TeamConfig(_Section):
    """One vended team environment. Prefixes are ``<zone>/<prefix>/`` (e.g. ``curated/vision/``)."""

    #: Team name: lowercase letters, digits and hyphens (3-22 characters).
    name: str
    #: Cost centre, tagged on every resource of the team (``team-cost-centre``).
    cost_centre: str
    #: IAM principals (role, user or account root ARNs, or role ARN patterns with ``*`` such as IAM Identity Center
    #: permission-set roles) that administer the team and see its products; required in production.
    admin_principals: list[str] = dataclasses.field(default_factory=list)
    #: Lake prefixes the team may read, as ``<zone>/<prefix>/``. :default: none
    read_prefixes: list[str] = dataclasses.field(default_factory=list)
    #: Lake prefixes the team may write (and read), as ``<zone>/<prefix>/``; never shared with another team.
    write_prefixes: list[str] = dataclasses.field(default_factory=list)
    #: GPU instance families the team's compute may launch (``g5``, ``p4d``...). :default: g5
    instance_families: list[str] = dataclasses.field(default_factory=lambda: ["g5"])
    #: vCPU quota of the team's Batch compute environment. :default: 64
    max_vcpus: Annotated[int, between(1, 10**6)] = 64
    #: Monthly cost budget in USD. :default: 1000
    monthly_budget_usd: Annotated[float, positive(10**9)] = 1000.0
    #: Budget alert thresholds, percent of the budget (actual spend; 100 also forecast). :default: 50, 80, 100
    budget_thresholds_percent: list[Annotated[int, between(1, 1000)]] = dataclasses.field(default_factory=lambda: [50, 80, 100])
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


@section
class VendingConfig(_Section):
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


@section
class PipelineConfig(_Section):
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
    training_instance_count: Annotated[int, between(1, 10_000)] = 1
    #: :default: 100
    training_volume_gb: Annotated[int, between(1, 16384)] = 100
    #: MaxRuntimeInSeconds, in hours (at most 28 days). :default: 24
    max_runtime_hours: Annotated[int, between(1, 672)] = 24
    #: Managed spot training with checkpoints. :default: True
    use_spot: bool = True
    #: MaxWaitTimeInSeconds, in hours (spot only, >= max_runtime_hours). :default: None (2 x max_runtime_hours)
    max_wait_hours: Annotated[int | None, between(1, 672)] = None
    #: Attempts per run, each resuming from the run's checkpoints. :default: 2
    max_training_attempts: Annotated[int, between(1, 5)] = 2
    #: Default hyperparameters (strings). :default: none
    hyperparameters: dict[str, str] = dataclasses.field(default_factory=dict)
    #: The gate's metric in the evaluation report. :default: "accuracy"
    metric_name: str = "accuracy"
    #: Which way the metric is better. :default: "higher"
    direction: Literal["higher", "lower"] = "higher"
    #: Absolute threshold the metric must reach. :default: None
    threshold: Annotated[float | None, between(-10**12, 10**12)] = None
    #: Required improvement over the production model. :default: 0.0
    min_improvement: Annotated[float, at_least(0, 10**9)] = 0.0
    #: Wait for a reviewer (task token) before deploying. :default: False
    manual_approval: bool = False
    #: An unanswered approval rejects after this many hours. :default: 72
    approval_timeout_hours: Annotated[int, between(1, 8760)] = 72
    #: E-mail addresses subscribed to the approval topic (the requests carry the task token: reviewers only; never
    #: the failure topic). Used with ``manual_approval``. :default: none
    approval_emails: list[str] = dataclasses.field(default_factory=list)
    #: Interval of the pipeline's describe loops, seconds. :default: 60
    poll_interval_seconds: Annotated[int, between(1, 3600)] = 60
    #: Days to keep the execution logs. :default: 90
    log_retention_days: Annotated[int, between(1, 3653)] = 90
    #: Image of an optional preprocessing Processing job. :default: None
    preprocessing_image: str | None = None
    #: Image of an optional evaluation Processing job (writes evaluation.json). :default: None
    evaluation_image: str | None = None

    def validate(self) -> list[str]:
        errors: list[str] = []
        p = "pipeline"
        if not self.datasets:
            errors.append(f"{p}.datasets: must name at least one dataset, got: []")
        bad = [d for d in self.datasets if retrainable_dataset_error(d) is not None]
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
        bad = [e for e in self.approval_emails if not _EMAIL_RE.fullmatch(e)]
        if bad:
            errors.append(f"{p}.approval_emails: not e-mail addresses: {bad}")
        if self.approval_emails and not self.manual_approval:
            errors.append(f"{p}.approval_emails: used only with manual_approval: true, got: manual_approval false")
        if not 1 <= self.poll_interval_seconds <= 3600:
            errors.append(f"{p}.poll_interval_seconds: must be between 1 and 3600, got: {self.poll_interval_seconds}")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            errors.append(f"{p}.log_retention_days: must be one of {LOG_RETENTION_DAYS}, got: {self.log_retention_days}")
        return errors


_SCHEDULER_RE = re.compile(r"^(rate\(([1-9]\d*) (minute|minutes|hour|hours|day|days)\)|cron\((\S+ ){5}\S+\))$")


@section
class MonitoringConfig(_Section):
    """Drift monitoring of the real-time endpoint (issue 15): a scheduled drift job, alarms, retrain on drift."""

    #: Build the monitoring stack (needs ``serving`` with data capture). :default: False
    enabled: bool = False
    #: EventBridge Scheduler expression of the drift job (``rate(1 day)``, ``cron(0 6 * * ? *)``). :default: "rate(1 day)"
    schedule: str = "rate(1 day)"
    #: Hours of captured traffic each run reads, ending at the scheduled time (at most 31 days). :default: 24
    window_hours: Annotated[int, between(1, 744)] = 24
    #: ``ml.*`` instance type of the Processing job. :default: ml.m5.xlarge
    instance_type: str = "ml.m5.xlarge"
    #: Default thresholds (keys of mlinfra.domain.drift.Thresholds: psi, ks, js, new_category_share,
    #: missing_rate_change, alpha, min_samples). :default: none (the engine's defaults)
    thresholds: dict[str, float] = dataclasses.field(default_factory=dict)
    #: Per-feature thresholds, ``{feature: {key: value}}``. :default: none
    feature_thresholds: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    #: Prefix (artifacts zone) of ground-truth JSON Lines joined on inference id. :default: None
    ground_truth_prefix: str | None = None
    #: Profile each successful retrain run's training data into the monitored baseline. :default: True
    baseline_after_retrain: bool = True
    #: The training data's label column, left out of the baseline's features. :default: None (no label column)
    baseline_label_column: str | None = None
    #: Start a retrain run on a "Model Drift Detected" event (needs ``pipeline``). :default: True
    retrain_on_drift: bool = True
    #: Dataset a drift-triggered run retrains on (its newest version). :default: None (the pipeline's first dataset)
    retrain_dataset: str | None = None
    #: No drift-triggered run within this many hours of the last one. :default: 24
    cooldown_hours: Annotated[int, between(0, 2160)] = 24
    #: No drift-triggered run within this many hours of any run's start. :default: 6
    min_interval_hours: Annotated[int, between(0, 2160)] = 6

    def validate(self) -> list[str]:
        from mlinfra.domain.drift.contract import thresholds_by_feature

        errors: list[str] = []
        p = "monitoring"
        if not _SCHEDULER_RE.fullmatch(self.schedule):
            errors.append(f"{p}.schedule: must be rate(N minutes|hours|days) or cron(6 fields), got: {self.schedule!r}")
        if not self.instance_type.startswith("ml."):
            errors.append(f"{p}.instance_type: must start with 'ml.', got: {self.instance_type!r}")
        try:
            thresholds_by_feature(self.thresholds_spec())
        except ValueError as err:
            errors.append(f"{p}.thresholds: {err}")
        if self.ground_truth_prefix is not None and not _PREFIX_RE.fullmatch(self.ground_truth_prefix or "-"):
            errors.append(f"{p}.ground_truth_prefix: must be path segments ending with '/', got: {self.ground_truth_prefix!r}")
        if self.retrain_dataset is not None and retrainable_dataset_error(self.retrain_dataset) is not None:
            errors.append(f"{p}.retrain_dataset: must be 1-63 lowercase letters, digits, '_' or '-', got: {self.retrain_dataset!r}")
        return errors

    def thresholds_spec(self) -> dict[str, Any]:
        """The drift engine's threshold document (``{"default": ..., "features": ...}``), integers where they must be."""
        def fix(t: dict[str, float]) -> dict[str, Any]:
            return {k: (int(v) if k == "min_samples" else v) for k, v in t.items()}
        return {"default": fix(self.thresholds), "features": {n: fix(t) for n, t in self.feature_thresholds.items()}}


@section
class CostConfig(_Section):
    """Cost guard rails read by ``mlinfra cost`` and the cost policy test (issue 16): an idle budget, and a
    recorded idle baseline that a change may not raise by more than ``idle_tolerance_percent`` unless the new
    figure is acknowledged here."""

    #: Most this environment may cost per month while idle (USD); ``mlinfra cost --max-idle`` and the test use
    #: it. :default: None (no budget)
    max_idle_usd: Annotated[float | None, between(0, 10**9)] = None
    #: The idle cost per month (USD) recorded when the baseline was last accepted. :default: None (no baseline)
    idle_baseline_usd: Annotated[float | None, between(0, 10**9)] = None
    #: How far above the baseline (percent) the idle cost may rise without an acknowledgment. :default: 10
    idle_tolerance_percent: Annotated[float, between(0, 1000)] = 10.0
    #: An accepted higher idle cost per month (USD): the test passes up to this figure. :default: None
    idle_acknowledged_usd: Annotated[float | None, between(0, 10**9)] = None
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


@section
class PlatformConfig(_Section):
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
    monitoring: MonitoringConfig = dataclasses.field(default_factory=MonitoringConfig)
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
        errors.extend(self._monitoring_errors())
        for section in _sections(self):
            errors.extend(section.validate())
        return errors


    def _monitoring_errors(self) -> list[str]:
        """Monitoring watches the real-time endpoint's captures and retrains through the pipeline."""
        m = self.monitoring
        if not m.enabled:
            return []
        errors = []
        if not self.serving.enabled or self.serving.data_capture_percent <= 0:
            errors.append("monitoring.enabled: needs serving.enabled and serving.data_capture_percent > 0 (the drift job "
                          f"reads captured traffic), got: serving.enabled={self.serving.enabled}, "
                          f"data_capture_percent={self.serving.data_capture_percent}")
        if m.retrain_dataset is not None and m.retrain_dataset not in self.pipeline.datasets:
            errors.append(f"monitoring.retrain_dataset: must be one of pipeline.datasets {self.pipeline.datasets}, got: {m.retrain_dataset!r}")
        return errors


def _sections(cfg: PlatformConfig) -> list[Any]:
    return [getattr(cfg, f.name) for f in dataclasses.fields(cfg) if hasattr(getattr(cfg, f.name), "validate")]


# --------------------------------------------------------------------------------------------------
# Loading: document -> pydantic sections, collecting every error
# --------------------------------------------------------------------------------------------------

_ADAPTER = pydantic.TypeAdapter(PlatformConfig)


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


def _field_type(loc: tuple[Any, ...]) -> Any:
    """The declared type at ``loc`` (``Annotated`` kept), or None where the path leaves the schema."""
    tp: Any = PlatformConfig
    for part in loc:
        tp = _strip_optional(tp)
        if typing.get_origin(tp) is Annotated:
            tp = typing.get_args(tp)[0]
        fields = getattr(tp, "__pydantic_fields__", None)
        if fields is not None:
            if part not in fields:
                return None
            info = fields[part]
            tp = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        elif typing.get_origin(tp) is list and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    return tp


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _describe(tp: Any) -> str:
    tp = _strip_optional(tp) if tp is not None else tp
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _describe(typing.get_args(tp)[0])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if origin is dict or hasattr(tp, "__pydantic_fields__"):
        return "a mapping"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, "a valid value")


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    tp = _strip_optional(_field_type(loc))
    return sorted(getattr(tp, "__pydantic_fields__", {}) or {})


def _format_error(err: Any) -> str:
    """One pydantic error as ``<path>: <what is wrong>, got: <value>``."""
    loc = tuple(err["loc"])
    kind, value, path = err["type"], err.get("input"), _path(loc)
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        allowed = _allowed_fields(loc[:-1])
        near = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        return f"{path}: unknown field; allowed: {allowed}{hint}"
    if kind in ("missing", "missing_argument", "missing_keyword_only_argument"):
        return f"{path}: required field is missing"
    if kind == "finite_number":
        return f"{path}: must be a finite number (not NaN or infinity), got: {value!r}"
    tp = _field_type(loc)
    if kind == "literal_error":
        return f"{path}: expected {_describe(tp)}, got: {value!r}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{path}: {err['msg'].replace('Input should be', 'must be')}, got: {value!r}"
    return f"{path}: expected {_describe(tp) if tp is not None else err['msg']}, got: {value!r}"


def _bounds_errors(obj: Any, path: str = "") -> list[str]:
    """Values outside the :class:`Bounds` declared on their fields, anywhere below ``obj``."""
    errors: list[str] = []
    fields = getattr(type(obj), "__pydantic_fields__", None)
    if fields is None:
        return errors
    for name, info in fields.items():
        value = getattr(obj, name)
        fpath = f"{path}.{name}" if path else name
        item_tp = _strip_optional(info.annotation)
        for bound in (m for m in info.metadata if isinstance(m, Bounds)):
            if (problem := bound.error(value)) is not None:
                errors.append(f"{fpath}: {problem}, got: {value!r}")
        if isinstance(value, list):
            item_bounds = _annotated_bounds(typing.get_args(item_tp)[0]) if typing.get_args(item_tp) else []
            for i, item in enumerate(value):
                for bound in item_bounds:
                    if (problem := bound.error(item)) is not None:
                        errors.append(f"{fpath}[{i}]: {problem}, got: {item!r}")
                errors.extend(_bounds_errors(item, f"{fpath}[{i}]"))
        elif isinstance(value, dict):
            for key, item in value.items():
                errors.extend(_bounds_errors(item, f"{fpath}.{key}"))
        else:
            errors.extend(_bounds_errors(value, fpath))
    return errors


def _annotated_bounds(tp: Any) -> list[Bounds]:
    if typing.get_origin(tp) is Annotated:
        return [m for m in typing.get_args(tp)[1:] if isinstance(m, Bounds)]
    return []


def _parse(merged: dict[str, Any]) -> tuple[PlatformConfig | None, list[str], list[str]]:
    """Validate ``merged`` (strictly, as JSON data); returns (config or None, type errors, paths that failed).

    On type errors the failing values are dropped (so their defaults apply) and the rest is parsed again, so
    the rules of ``validate()`` still run over everything that was well typed."""
    errors: list[str] = []
    failed: list[str] = []
    document = merged
    for _ in range(4):
        try:
            data = json.dumps(document, allow_nan=True, default=str)
            return _ADAPTER.validate_json(data, strict=True), errors, failed
        except pydantic.ValidationError as exc:
            details = exc.errors()
        except (TypeError, ValueError) as exc:  # keys that are not text, numbers too large for JSON
            return None, errors + [f"<root>: cannot be read as configuration data: {exc}"], failed
        for err in details:
            message = _format_error(err)
            if message not in errors:
                errors.append(message)
        locs = [tuple(err["loc"]) for err in details]
        document = _without(document, [loc if err["type"] not in ("missing", "missing_argument") else loc[:-1]
                                       for loc, err in zip(locs, details)])
        failed.extend(_path(loc) for loc in locs)
    return None, errors, failed


def _without(document: Any, locs: list[tuple[Any, ...]]) -> Any:
    """A copy of ``document`` without the values at ``locs`` (list items become dropped too)."""
    drop = {loc for loc in locs if loc}
    if () in {loc for loc in locs}:
        return {}

    def walk(node: Any, here: tuple[Any, ...]) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, here + (k,)) for k, v in node.items() if here + (k,) not in drop}
        if isinstance(node, list):
            return [walk(v, here + (i,)) for i, v in enumerate(node) if here + (i,) not in drop]
        return node

    return walk(document, ())


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
    unknown = sorted(set(document) - {"defaults", "environments"}, key=str)
    errors = [f"{k}: unknown top-level key; allowed: ['defaults', 'environments']" for k in unknown]
    envs = document.get("environments") or {}
    defaults = document.get("defaults") or {}
    for name, value in (("environments", envs), ("defaults", defaults)):
        if not isinstance(value, Mapping):
            raise ConfigError(errors + [f"{name}: expected a mapping, got: {value!r}"], source)
    if env_name not in envs:
        raise ConfigError(errors + [f"environments: no environment named {env_name!r}; defined: {sorted(map(str, envs))}"], source)
    override = envs[env_name] or {}
    if not isinstance(override, Mapping):
        raise ConfigError(errors + [f"environments.{env_name}: expected a mapping, got: {override!r}"], source)
    merged = deep_merge(defaults, override)
    merged["env_name"] = env_name
    cfg, type_errors, failed = _parse(merged)
    errors.extend(type_errors)
    if cfg is not None:
        bounds = _bounds_errors(cfg)
        # A value that failed its type or its bounds is reported once, not again by a rule of validate().
        reported = set(failed) | {e.split(":", 1)[0] for e in bounds}
        errors.extend(bounds)
        errors.extend(e for e in cfg.validate() if e not in errors and e.split(":", 1)[0] not in reported)
    if errors or cfg is None:
        raise ConfigError(errors or ["configuration could not be built"], f"{source} [{env_name}]")
    return cfg


def _read_document(path: str | Path) -> Any:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError([f"cannot read {p}: {exc.strerror}"], str(p)) from exc
    kind = "JSON" if p.suffix == ".json" else "YAML"
    try:
        return load_document(data, json_format=p.suffix == ".json")
    except DocumentError as exc:
        raise ConfigError([f"not valid {kind}: {exc}"], str(p)) from exc
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError([f"not valid {kind}: {exc}"], str(p)) from exc


def load_config_file(path: str | Path, env_name: str) -> PlatformConfig:
    """Load ``env_name`` from a YAML or JSON file (see :func:`load_config`)."""
    return load_config(_read_document(path), env_name, source=str(path))


def environment_names(path: str | Path) -> list[str]:
    """The environments a configuration file defines."""
    document = _read_document(path) or {}
    envs = document.get("environments") if isinstance(document, Mapping) else None
    return sorted(map(str, envs)) if isinstance(envs, Mapping) else []


# --------------------------------------------------------------------------------------------------
# The JSON Schema of a configuration file
# --------------------------------------------------------------------------------------------------

def _field_comments(cls: type) -> dict[str, str]:
    """``#:`` comments above each field of ``cls`` (its documentation), by field name."""
    import inspect

    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    pending: list[str] = []
    for line in lines:
        text = line.strip()
        if text.startswith("#:"):
            pending.append(text[2:].strip())
            continue
        m = re.match(r"(\w+)\s*:", text)
        if m and pending and not text.startswith(("def ", "return ", "class ")):
            out[m.group(1)] = " ".join(pending)
        if not text.startswith("#"):
            pending = [] if m or text else pending
    return out


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a configuration file: ``defaults`` and ``environments.<name>``, each a (partial)
    platform configuration that the loader deep-merges."""
    platform = _ADAPTER.json_schema(ref_template="#/$defs/{model}")
    defs = platform.pop("$defs", {})
    classes = {cls.__name__: cls for cls in _section_classes(PlatformConfig)}
    for name, schema in [*defs.items(), ("PlatformConfig", platform)]:
        cls = classes.get(name)
        if cls is None:
            continue
        if cls.__doc__:
            schema["description"] = " ".join(cls.__doc__.split())
        for field, text in _field_comments(cls).items():
            if field in schema.get("properties", {}):
                schema["properties"][field]["description"] = text
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
    platform["properties"].pop("env_name", None)
    platform["required"] = [r for r in platform.get("required", []) if r != "env_name"]
    if not platform["required"]:
        platform.pop("required")
    defs["PlatformConfig"] = platform
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "mlinfra platform configuration",
        "description": "defaults shared by every environment, and environments that override them (a deep merge: "
                       "mappings merge, lists and scalars replace). Generated by `mlinfra schema`.",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "defaults": {"$ref": "#/$defs/PlatformConfig"},
            "environments": {
                "type": "object",
                "additionalProperties": {"anyOf": [{"$ref": "#/$defs/PlatformConfig"}, {"type": "null"}]},
            },
        },
        "required": ["environments"],
        "$defs": dict(sorted(defs.items())),
    }


def _section_classes(root: type) -> list[type]:
    """``root`` and every section class reachable from its fields."""
    seen: dict[str, type] = {}

    def visit(tp: Any) -> None:
        if hasattr(tp, "__pydantic_fields__") and isinstance(tp, type):
            if tp.__name__ in seen:
                return
            seen[tp.__name__] = tp
            for info in tp.__pydantic_fields__.values():
                visit(info.annotation)
            return
        for arg in typing.get_args(tp):
            visit(arg)

    visit(root)
    return list(seen.values())
