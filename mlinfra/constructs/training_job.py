"""SageMaker training job specification: a frozen, validated description that renders a full
``CreateTrainingJob`` request.

There is no CloudFormation resource for a training job, and ``SageMakerCreateTrainingJob``
(stepfunctions-tasks) lacks managed spot, max wait, checkpoints and warm pools (FACTS.md), so the retrain
pipeline builds its task from :meth:`TrainingJobSpec.to_request` (e.g. ``CallAwsService`` or a custom state).
Pure Python (no aws_cdk import): CDK tokens inside strings (role ARN, bucket names) pass through untouched and
are not validated as literals.

Distribution: the raw API has no ``distribution`` field; the SageMaker Python SDK passes it as hyperparameters,
JSON-encoded like every framework hyperparameter (FACTS.md): ``sagemaker_distributed_dataparallel_enabled``
(SMDDP, used from PyTorch DDP with ``backend="smddp"``), ``sagemaker_mpi_enabled`` with
``sagemaker_mpi_num_of_processes_per_host``, ``sagemaker_torch_distributed_enabled`` (torchrun) and
``mp_parameters`` (model parallel, JSON). Model-parallel topology rule:
``pipeline (partitions) x tensor x data parallel degree = processes per host x instance count``.

Volume keys: SageMaker refuses ``VolumeKmsKeyId`` for instance types with local NVMe instance storage (the
default ml.p4d.24xlarge among them; rule ``sagemaker.no-volume-kms-with-instance-storage``), so the spec refuses
the combination, reading the instance-store column of the accelerator table and the hosting table.

Network isolation (on by default) gives the container no network: a framework image in script mode cannot
download its ``sagemaker_submit_directory`` from S3 then. Pass ``code`` (a :class:`CodeChannel`): the source
archive arrives as an input channel named ``code`` and the submit directory points at its local copy, which the
SageMaker training toolkit accepts.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from typing import Any, Mapping, Sequence

from mlinfra.domain.instances import InstanceTypeError, has_instance_store, validate_sagemaker_instance_type
from mlinfra.domain.rules import cite

__all__ = [
    "InputMode",
    "S3Channel",
    "FsxLustreChannel",
    "CodeChannel",
    "DataParallel",
    "MpiDistribution",
    "TorchDistributed",
    "ModelParallel",
    "TrainingJobSpec",
    "SMDDP_INSTANCE_TYPES",
]

#: Instance types the SageMaker data-parallel library supports (FACTS.md: p3dn, p4d, p4de at least;
#: ml.p3.16xlarge is no longer listed; the SDK's list adds the p5 family).
SMDDP_INSTANCE_TYPES: tuple[str, ...] = (
    "ml.p3dn.24xlarge", "ml.p4d.24xlarge", "ml.p4de.24xlarge", "ml.p5.48xlarge", "ml.p5e.48xlarge",
    "ml.p5en.48xlarge",
)

MAX_RUNTIME_SECONDS = 28 * 24 * 3600  # SageMaker's ceiling on MaxRuntimeInSeconds
MAX_KEEP_ALIVE_SECONDS = 3600
_JOB_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_CHANNEL_RE = re.compile(r"^[A-Za-z0-9\.\-_]{1,64}$")


def _is_dynamic(value: Any) -> bool:
    """A CDK token or a Step Functions path: not validated as a literal."""
    return isinstance(value, str) and ("${Token[" in value or value.startswith("$") or "States." in value)


class InputMode(enum.StrEnum):
    """How a SageMaker training job reads its input channels (``TrainingInputMode``: botocore's SageMaker model
    lists exactly these values; a test compares them). A ``str``: ``InputMode.FILE == "File"``."""

    #: Copy the channel to the instance's volume before training starts.
    FILE = "File"
    #: Mount the S3 prefix and stream objects on read (no copy, no code change).
    FAST_FILE = "FastFile"
    #: Stream through a FIFO (the algorithm must read pipes).
    PIPE = "Pipe"


@dataclasses.dataclass(frozen=True)
class S3Channel:
    """An S3 input channel. :param s3_uri: ``s3://bucket/prefix/``. :param input_mode: :default: FastFile.
    :param sharded: ShardedByS3Key instead of FullyReplicated. :default: False"""

    name: str
    s3_uri: str
    input_mode: InputMode = InputMode.FAST_FILE
    sharded: bool = False
    content_type: str | None = None

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ChannelName": self.name,
            "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": self.s3_uri,
                "S3DataDistributionType": "ShardedByS3Key" if self.sharded else "FullyReplicated",
            }},
            "InputMode": self.input_mode.value,
        }
        if self.content_type:
            out["ContentType"] = self.content_type
        return out


@dataclasses.dataclass(frozen=True)
class FsxLustreChannel:
    """The Lustre cache as an input channel (needs VPC config; File mode).
    :param directory_path: ``/<mount name>/<path>``. :param read_only: :default: True"""

    name: str
    file_system_id: str
    directory_path: str
    read_only: bool = True

    def to_api(self) -> dict[str, Any]:
        return {
            "ChannelName": self.name,
            "DataSource": {"FileSystemDataSource": {
                "FileSystemId": self.file_system_id, "FileSystemType": "FSxLustre",
                "FileSystemAccessMode": "ro" if self.read_only else "rw", "DirectoryPath": self.directory_path,
            }},
            "InputMode": InputMode.FILE.value,
        }


@dataclasses.dataclass(frozen=True)
class CodeChannel:
    """Framework script-mode code delivered as an input channel (works with network isolation).

    :param s3_uri: the source archive, ``s3://bucket/prefix/sourcedir.tar.gz`` (the SDK's upload). :default: required
    :param entry_point: the script the framework runs, e.g. ``train.py``. :default: required
    """

    s3_uri: str
    entry_point: str

    CHANNEL_NAME = "code"

    @property
    def archive_name(self) -> str:
        return self.s3_uri.rstrip("/").rsplit("/", 1)[-1]

    def to_api(self) -> dict[str, Any]:
        return S3Channel(self.CHANNEL_NAME, self.s3_uri, input_mode=InputMode.FILE).to_api()

    def hyperparameters(self) -> dict[str, str]:
        """``sagemaker_program`` and a local ``sagemaker_submit_directory`` (JSON-encoded, as the SDK sends them)."""
        return {"sagemaker_program": json.dumps(self.entry_point),
                "sagemaker_submit_directory": json.dumps(
                    f"/opt/ml/input/data/{self.CHANNEL_NAME}/{self.archive_name}")}


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """SageMaker distributed data parallel (SMDDP): PyTorch DDP with ``backend="smddp"``."""

    custom_mpi_options: str = ""


@dataclasses.dataclass(frozen=True)
class MpiDistribution:
    """MPI launcher (Horovod, mpirun): ``processes_per_host`` processes on every instance."""

    processes_per_host: int
    custom_mpi_options: str = ""


@dataclasses.dataclass(frozen=True)
class TorchDistributed:
    """``torchrun`` launcher (one process per GPU)."""


@dataclasses.dataclass(frozen=True)
class ModelParallel:
    """SageMaker model parallelism: ``partitions`` pipeline stages, ``microbatches`` per batch,
    ``tensor_parallel_degree``; the rest of ``processes_per_host x instance_count`` is data parallel."""

    partitions: int
    microbatches: int
    processes_per_host: int
    tensor_parallel_degree: int = 1
    extra_parameters: Mapping[str, Any] = dataclasses.field(default_factory=dict)


Distribution = DataParallel | MpiDistribution | TorchDistributed | ModelParallel


@dataclasses.dataclass(frozen=True)
class TrainingJobSpec:
    """What a training job runs on and how; :meth:`to_request` renders the CreateTrainingJob request.

    :param image_uri: the training image (ECR). :default: required
    :param role_arn: the execution role (the pipeline passes exactly this role). :default: required
    :param output_s3_uri: where the model artifact goes (the models zone). :default: required
    :param instance_type: a SageMaker ``ml.`` type. :default: ml.p4d.24xlarge
    :param instance_count: :default: 1
    :param channels: S3 or FSx for Lustre channels. :default: none
    :param volume_size_gb: ML storage volume per instance. :default: 100
    :param volume_kms_key_id / output_kms_key_id: KMS keys. :default: None (SageMaker-managed)
    :param max_runtime_seconds: :default: 1 day (at most 28 days)
    :param use_spot: managed spot training. :default: False
    :param max_wait_seconds: spot only, >= max runtime. :default: 2 x max runtime with spot
    :param checkpoint_s3_uri: checkpoint sync target (needed to resume spot jobs). :default: None
    :param subnet_ids / security_group_ids: VPC config (required for FSx channels). :default: none
    :param network_isolation: no network for the container; framework script mode then needs ``code``.
        :default: True
    :param code: script-mode code as an input channel (see :class:`CodeChannel`). :default: None
    :param inter_container_encryption: encrypt traffic between instances. :default: True
    :param distribution: DataParallel, MpiDistribution, TorchDistributed or ModelParallel. :default: None
    :param keep_alive_period_seconds: warm pool keep-alive (0-3600) for iterative jobs. :default: None
    :param hyperparameters / environment: string maps. :default: empty
    """

    image_uri: str
    role_arn: str
    output_s3_uri: str
    instance_type: str = "ml.p4d.24xlarge"
    instance_count: int = 1
    channels: Sequence[S3Channel | FsxLustreChannel] = ()
    volume_size_gb: int = 100
    volume_kms_key_id: str | None = None
    output_kms_key_id: str | None = None
    max_runtime_seconds: int = 24 * 3600
    use_spot: bool = False
    max_wait_seconds: int | None = None
    checkpoint_s3_uri: str | None = None
    checkpoint_local_path: str = "/opt/ml/checkpoints"
    subnet_ids: Sequence[str] = ()
    security_group_ids: Sequence[str] = ()
    network_isolation: bool = True
    inter_container_encryption: bool = True
    distribution: Distribution | None = None
    code: CodeChannel | None = None
    keep_alive_period_seconds: int | None = None
    hyperparameters: Mapping[str, str] = dataclasses.field(default_factory=dict)
    environment: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "subnet_ids", tuple(self.subnet_ids))
        object.__setattr__(self, "security_group_ids", tuple(self.security_group_ids))
        for rule in (_check_instance, _check_runtime, _check_spot, _check_channels, _check_vpc, _check_uris,
                     _check_distribution, _check_warm_pool, _check_volume, _check_volume_key, _check_code):
            rule(self)

    # ------------------------------------------------------------------------------------------------

    def distribution_hyperparameters(self) -> dict[str, str]:
        """The hyperparameters that carry :attr:`distribution` (JSON-encoded, as the SDK sends them)."""
        d = self.distribution
        hp: dict[str, Any] = {}
        if isinstance(d, DataParallel):
            hp = {"sagemaker_distributed_dataparallel_enabled": True, "sagemaker_instance_type": self.instance_type,
                  "sagemaker_distributed_dataparallel_custom_mpi_options": d.custom_mpi_options}
        elif isinstance(d, MpiDistribution):
            hp = {"sagemaker_mpi_enabled": True, "sagemaker_mpi_num_of_processes_per_host": d.processes_per_host,
                  "sagemaker_mpi_custom_mpi_options": d.custom_mpi_options}
        elif isinstance(d, TorchDistributed):
            hp = {"sagemaker_torch_distributed_enabled": True}
        elif isinstance(d, ModelParallel):
            params = {"partitions": d.partitions, "microbatches": d.microbatches,
                      "tensor_parallel_degree": d.tensor_parallel_degree, **dict(d.extra_parameters)}
            hp = {"sagemaker_mpi_enabled": True, "sagemaker_mpi_num_of_processes_per_host": d.processes_per_host,
                  "mp_parameters": params}
        return {k: json.dumps(v) for k, v in hp.items()}

    def to_request(
        self,
        job_name: str,
        *,
        hyperparameters: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The full ``CreateTrainingJob`` request for ``job_name`` (extra ``hyperparameters`` and ``tags``
        merge over the spec's)."""
        if not _is_dynamic(job_name) and not _JOB_NAME_RE.fullmatch(job_name or ""):
            raise ValueError(f"job_name must be 1-63 letters, digits or hyphens, starting with a letter or digit, "
                             f"got: {job_name!r}")
        hp = {**self.distribution_hyperparameters(), **(self.code.hyperparameters() if self.code else {}),
              **dict(self.hyperparameters), **dict(hyperparameters or {})}
        bad = [k for k, v in hp.items() if not isinstance(v, str)]
        if bad:
            raise ValueError(f"hyperparameters values must be strings, got non-strings for: {bad}")
        resource: dict[str, Any] = {"InstanceType": self.instance_type, "InstanceCount": self.instance_count,
                                    "VolumeSizeInGB": self.volume_size_gb}
        if self.volume_kms_key_id:
            resource["VolumeKmsKeyId"] = self.volume_kms_key_id
        if self.keep_alive_period_seconds is not None:
            resource["KeepAlivePeriodInSeconds"] = self.keep_alive_period_seconds
        stopping: dict[str, Any] = {"MaxRuntimeInSeconds": self.max_runtime_seconds}
        if self.use_spot:
            stopping["MaxWaitTimeInSeconds"] = self.max_wait_seconds or 2 * self.max_runtime_seconds
        output: dict[str, Any] = {"S3OutputPath": self.output_s3_uri}
        if self.output_kms_key_id:
            output["KmsKeyId"] = self.output_kms_key_id
        request: dict[str, Any] = {
            "TrainingJobName": job_name,
            "AlgorithmSpecification": {"TrainingImage": self.image_uri, "TrainingInputMode": _input_mode(self)},
            "RoleArn": self.role_arn,
            "OutputDataConfig": output,
            "ResourceConfig": resource,
            "StoppingCondition": stopping,
            "EnableNetworkIsolation": self.network_isolation,
            "EnableInterContainerTrafficEncryption": self.inter_container_encryption,
            "EnableManagedSpotTraining": self.use_spot,
        }
        if self.channels or self.code:
            request["InputDataConfig"] = [c.to_api() for c in self.channels] + (
                [self.code.to_api()] if self.code else [])
        if hp:
            request["HyperParameters"] = hp
        if self.environment:
            request["Environment"] = dict(self.environment)
        if self.checkpoint_s3_uri:
            request["CheckpointConfig"] = {"S3Uri": self.checkpoint_s3_uri, "LocalPath": self.checkpoint_local_path}
        if self.subnet_ids:
            request["VpcConfig"] = {"Subnets": list(self.subnet_ids), "SecurityGroupIds": list(self.security_group_ids)}
        if tags:
            request["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
        return request


def _input_mode(spec: TrainingJobSpec) -> str:
    modes = {c.input_mode.value if isinstance(c, S3Channel) else "File" for c in spec.channels}
    return modes.pop() if len(modes) == 1 else "File"


# ------------------------------------------------------------------------------------------------ rules


def _check_instance(s: TrainingJobSpec) -> None:
    validate_sagemaker_instance_type(s.instance_type, require_accelerator=False)
    if not isinstance(s.instance_count, int) or s.instance_count < 1:
        raise ValueError(f"instance_count must be >= 1, got: {s.instance_count!r}")


def _check_volume(s: TrainingJobSpec) -> None:
    if not 1 <= s.volume_size_gb <= 16384:
        raise ValueError(f"volume_size_gb must be 1 to 16384 GB, got: {s.volume_size_gb}")


def _check_volume_key(s: TrainingJobSpec) -> None:
    if not s.volume_kms_key_id:
        return
    try:
        local = has_instance_store(s.instance_type)
    except InstanceTypeError:
        return  # a type neither table knows: SageMaker decides
    if local:
        raise ValueError(f"volume_kms_key_id must not be set for {s.instance_type}, which has local NVMe instance "
                         f"storage (encrypted by the instance's hardware module), got: {s.volume_kms_key_id!r} "
                         f"{cite('sagemaker.no-volume-kms-with-instance-storage')}")


def _check_code(s: TrainingJobSpec) -> None:
    c = s.code
    if c is None:
        return
    if not _is_dynamic(c.s3_uri) and not (c.s3_uri.startswith("s3://") and c.s3_uri.endswith(".tar.gz")):
        raise ValueError(f"code.s3_uri must be an s3:// URI of the source archive (.tar.gz), got: {c.s3_uri!r}")
    if not c.entry_point or "/" in c.entry_point:
        raise ValueError(f"code.entry_point must be a file name in the archive, such as 'train.py', got: "
                         f"{c.entry_point!r}")
    if any(ch.name == CodeChannel.CHANNEL_NAME for ch in s.channels):
        raise ValueError(f"channels: the name {CodeChannel.CHANNEL_NAME!r} is taken by code, got a channel of that name")


def _check_runtime(s: TrainingJobSpec) -> None:
    if not 1 <= s.max_runtime_seconds <= MAX_RUNTIME_SECONDS:
        raise ValueError(f"max_runtime_seconds must be 1 to {MAX_RUNTIME_SECONDS} (28 days), got: {s.max_runtime_seconds}")


def _check_spot(s: TrainingJobSpec) -> None:
    if s.max_wait_seconds is not None and not s.use_spot:
        raise ValueError(f"max_wait_seconds is for managed spot training (use_spot=True), got: {s.max_wait_seconds}")
    if s.use_spot:
        wait = s.max_wait_seconds or 2 * s.max_runtime_seconds
        if not s.max_runtime_seconds <= wait <= MAX_RUNTIME_SECONDS:
            raise ValueError(f"max_wait_seconds must be >= max_runtime_seconds ({s.max_runtime_seconds}) and <= "
                             f"{MAX_RUNTIME_SECONDS}, got: {wait}")
        if not s.checkpoint_s3_uri:
            raise ValueError("checkpoint_s3_uri is required with use_spot=True (an interrupted spot job resumes from "
                             "its checkpoints), got: None")


def _check_channels(s: TrainingJobSpec) -> None:
    names = [c.name for c in s.channels]
    for name in names:
        if not _CHANNEL_RE.fullmatch(name):
            raise ValueError(f"channel name must be 1-64 letters, digits, '.', '-' or '_', got: {name!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"channel names must be unique, got duplicates: {dupes}")
    for c in s.channels:
        if isinstance(c, S3Channel) and not _is_dynamic(c.s3_uri) and not c.s3_uri.startswith("s3://"):
            raise ValueError(f"channel {c.name!r}: s3_uri must start with s3://, got: {c.s3_uri!r}")
        if isinstance(c, FsxLustreChannel) and not _is_dynamic(c.directory_path) and not c.directory_path.startswith("/"):
            raise ValueError(f"channel {c.name!r}: directory_path must be '/<mount name>/<path>', got: {c.directory_path!r}")
    if any(isinstance(c, S3Channel) and c.input_mode is InputMode.PIPE for c in s.channels) and any(
            isinstance(c, FsxLustreChannel) for c in s.channels):
        raise ValueError("channels: Pipe mode cannot be mixed with an FSx for Lustre channel (File mode)")


def _check_vpc(s: TrainingJobSpec) -> None:
    if any(isinstance(c, FsxLustreChannel) for c in s.channels) and not s.subnet_ids:
        raise ValueError("subnet_ids: an FSx for Lustre channel needs the job in the file system's VPC, got: none")
    if bool(s.subnet_ids) != bool(s.security_group_ids):
        raise ValueError("subnet_ids and security_group_ids go together (VPC config), got: "
                         f"{len(s.subnet_ids)} subnet(s) and {len(s.security_group_ids)} group(s)")


def _check_uris(s: TrainingJobSpec) -> None:
    for prop in ("output_s3_uri", "checkpoint_s3_uri"):
        value = getattr(s, prop)
        if value and not _is_dynamic(value) and not value.startswith("s3://"):
            raise ValueError(f"{prop} must start with s3://, got: {value!r}")


def _check_distribution(s: TrainingJobSpec) -> None:
    d = s.distribution
    if isinstance(d, DataParallel) and s.instance_type not in SMDDP_INSTANCE_TYPES:
        raise ValueError(f"distribution DataParallel (SMDDP) needs one of {list(SMDDP_INSTANCE_TYPES)}, "
                         f"got: {s.instance_type}")
    if isinstance(d, (MpiDistribution, ModelParallel)) and d.processes_per_host < 1:
        raise ValueError(f"processes_per_host must be >= 1, got: {d.processes_per_host}")
    if isinstance(d, ModelParallel):
        if d.partitions < 1 or d.microbatches < 1 or d.tensor_parallel_degree < 1:
            raise ValueError(f"ModelParallel partitions, microbatches and tensor_parallel_degree must be >= 1, got: "
                             f"{d.partitions}, {d.microbatches}, {d.tensor_parallel_degree}")
        world = d.processes_per_host * s.instance_count
        model = d.partitions * d.tensor_parallel_degree
        if world % model:
            raise ValueError(
                f"ModelParallel: partitions x tensor_parallel_degree ({d.partitions} x {d.tensor_parallel_degree} = "
                f"{model}) must divide processes_per_host x instance_count ({d.processes_per_host} x "
                f"{s.instance_count} = {world}) so the data-parallel degree is whole")
    if isinstance(d, MpiDistribution) and s.instance_count == 1 and d.processes_per_host == 1:
        raise ValueError("distribution: MPI with one process on one instance is not distributed, got: "
                         "processes_per_host=1 and instance_count=1")


def _check_warm_pool(s: TrainingJobSpec) -> None:
    k = s.keep_alive_period_seconds
    if k is None:
        return
    if not 0 <= k <= MAX_KEEP_ALIVE_SECONDS:
        raise ValueError(f"keep_alive_period_seconds must be 0 to {MAX_KEEP_ALIVE_SECONDS}, got: {k}")
    if s.use_spot:
        raise ValueError("keep_alive_period_seconds: warm pools are not available with managed spot training, "
                         "got: use_spot=True")
