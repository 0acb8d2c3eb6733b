"""Props of :class:`~mlinfra.constructs.endpoint.Endpoint`: modes, variants, scaling, guardrails, alarms, limits."""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Any, Mapping, Sequence

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns

from mlinfra.constructs.common import is_token


DEFAULT_INSTANCE_TYPE = "ml.m5.large"
#: CloudWatch namespaces of SageMaker endpoints: invocation metrics, and instance (host) utilization metrics.
NS_INVOCATIONS = "AWS/SageMaker"
NS_INSTANCE = "/aws/sagemaker/Endpoints"
#: SageMaker limits (CreateEndpointConfig / CreateModel / ServerlessConfig references).
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
SERVERLESS_MAX_CONCURRENCY = 200
PIPELINE_CONTAINERS = (2, 15)
MAX_VARIANTS = 10
#: The alarms a blue/green rollout watches for auto-rollback (keys of ``Endpoint.alarms``).
ROLLBACK_ALARMS = ("Errors5xx", "LatencyP99")
_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_ECR_IMAGE_RE = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([a-z0-9._/-]+?)(?::[\w.-]+|@sha256:[0-9a-f]{64})?$")
_S3_URI_RE = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.*)$")
_MODEL_PACKAGE_RE = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/[\w-]+(/\d+)?$")


class EndpointMode(enum.Enum):
    REAL_TIME = "real-time"
    SERVERLESS = "serverless"
    ASYNC = "async"


class ScalingMetric(enum.Enum):
    """What target tracking follows."""

    #: ``SageMakerVariantInvocationsPerInstance`` (predefined; invocations per instance per minute).
    INVOCATIONS_PER_INSTANCE = "SageMakerVariantInvocationsPerInstance"
    #: ``GPUUtilization`` (custom metric, percent x GPUs; namespace /aws/sagemaker/Endpoints).
    GPU_UTILIZATION = "GPUUtilization"
    #: ``CPUUtilization`` (custom metric, percent x vCPUs).
    CPU_UTILIZATION = "CPUUtilization"
    #: ``ApproximateBacklogSizePerInstance`` (async endpoints only).
    BACKLOG_PER_INSTANCE = "ApproximateBacklogSizePerInstance"


class TrafficShifting(enum.Enum):
    ALL_AT_ONCE = "ALL_AT_ONCE"
    CANARY = "CANARY"
    LINEAR = "LINEAR"


# --------------------------------------------------------------------------------------------------
# Props
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelData:
    """Where a model's artifacts are: an S3 object (``model.tar.gz``) or, for multi-model, an S3 prefix.

    Build with :meth:`from_bucket` (the execution role is granted read on exactly that key or prefix) or
    :meth:`from_uri` (no grant: give the role access yourself).
    """

    uri: str
    bucket: s3.IBucket | None = None
    key: str | None = None

    @staticmethod
    def from_bucket(bucket: s3.IBucket, key: str) -> "ModelData":
        if not is_token(key) and (not key or key.startswith("/")):
            raise ValueError(f"key must be a non-empty object key or prefix not starting with '/', got: {key!r}")
        return ModelData(uri=f"s3://{bucket.bucket_name}/{key}", bucket=bucket, key=key)

    @staticmethod
    def from_uri(uri: str) -> "ModelData":
        if not is_token(uri) and not _S3_URI_RE.fullmatch(uri):
            raise ValueError(f"model data uri must be s3://<bucket>/<key>, got: {uri!r}")
        return ModelData(uri=uri)


@dataclasses.dataclass(frozen=True)
class ModelContainer:
    """One container of a model: an image with model data, or a registry model package (which names both).

    :param image_uri: inference image (ECR URI). :default: None
    :param model_data: artifacts (see :class:`ModelData`). :default: None (the image holds the model)
    :param model_package_arn: a model package version from the registry (instead of image + data). :default: None
    :param environment: container environment variables. :default: none
    :param hostname: container hostname (serial pipelines). :default: None
    :param pointer: a :class:`~mlinfra.constructs.endpoint.ownership.ModelPointer` naming the image and artifact
        (instead of image + data): the model a retrain pipeline rolls out, kept by later deploys. :default: None
    """

    image_uri: str | None = None
    model_data: ModelData | None = None
    model_package_arn: str | None = None
    environment: Mapping[str, str] | None = None
    hostname: str | None = None
    pointer: Any = None

    @staticmethod
    def from_pointer(pointer: Any, *, environment: Mapping[str, str] | None = None) -> "ModelContainer":
        """The model a :class:`~mlinfra.constructs.endpoint.ownership.ModelPointer` names (resolved at each deploy)."""
        return ModelContainer(pointer=pointer, environment=environment)


@dataclasses.dataclass(frozen=True)
class ProductionVariant:
    """One production (or shadow) variant.

    :param name: variant name (kept across blue/green updates). :default: "AllTraffic"
    :param instance_type: ``ml.*`` type; must be None for serverless. :default: ml.m5.large (instance modes)
    :param initial_instance_count: :default: 1
    :param initial_weight: relative traffic weight (A/B). :default: 1.0
    :param model: this variant's model. :default: the endpoint's ``model``
    :param volume_size_gb: EBS storage volume size (EBS-only types). :default: SageMaker's default
    :param model_data_download_timeout: :default: SageMaker's default
    :param startup_health_check_timeout: :default: SageMaker's default
    """

    name: str = "AllTraffic"
    instance_type: str | None = None
    initial_instance_count: int = 1
    initial_weight: float = 1.0
    model: ModelContainer | None = None
    volume_size_gb: int | None = None
    model_data_download_timeout: cdk.Duration | None = None
    startup_health_check_timeout: cdk.Duration | None = None


@dataclasses.dataclass(frozen=True)
class ServerlessSettings:
    """:param memory_size_mb: 1024-6144 in steps of 1024. :default: 2048
    :param max_concurrency: 1-200. :default: 5
    :param provisioned_concurrency: 1..max_concurrency, kept warm (billed). :default: None"""

    memory_size_mb: int = 2048
    max_concurrency: int = 5
    provisioned_concurrency: int | None = None


@dataclasses.dataclass(frozen=True)
class AsyncInference:
    """Asynchronous inference.

    :param output_bucket: bucket of results (required). :default: None (an error)
    :param output_prefix: prefix of results. :default: "async-inference/output/"
    :param failure_prefix: prefix of failures. :default: "async-inference/failure/"
    :param input_prefix: prefix callers upload requests to (the model role may read it).
        :default: "async-inference/input/"
    :param success_topic: SNS topic told of each success. :default: None
    :param error_topic: SNS topic told of each error. :default: None
    :param max_concurrent_invocations_per_instance: 1-1000. :default: SageMaker's choice
    """

    output_bucket: s3.IBucket | None = None
    output_prefix: str = "async-inference/output/"
    failure_prefix: str = "async-inference/failure/"
    input_prefix: str = "async-inference/input/"
    success_topic: sns.ITopic | None = None
    error_topic: sns.ITopic | None = None
    max_concurrent_invocations_per_instance: int | None = None


@dataclasses.dataclass(frozen=True)
class DataCapture:
    """Capture requests and/or responses to the lake (for monitoring and retraining).

    :param bucket: destination bucket (e.g. the lake's artifacts zone).
    :param prefix: destination prefix. :default: "data-capture/"
    :param sampling_percentage: 0-100. :default: 100
    :param capture_request: :default: True
    :param capture_response: :default: True
    :param kms_key: key for the captured objects. :default: the bucket's key
    """

    bucket: s3.IBucket
    prefix: str = "data-capture/"
    sampling_percentage: int = 100
    capture_request: bool = True
    capture_response: bool = True
    kms_key: kms.IKey | None = None


@dataclasses.dataclass(frozen=True)
class ScheduledScaling:
    """A scheduled change of min/max capacity (e.g. business hours).

    :param name: action id. :param schedule: ``appscaling.Schedule.cron(...)`` or ``expression``.
    :param min_capacity / max_capacity: new bounds (at least one). :param time_zone: IANA zone. :default: UTC
    """

    name: str
    schedule: appscaling.Schedule
    min_capacity: int | None = None
    max_capacity: int | None = None
    time_zone: str | None = None


@dataclasses.dataclass(frozen=True)
class AutoScaling:
    """Application Auto Scaling of each instance-backed variant.

    :param min_capacity: >= 1 (0 only for async: scale to zero). :default: 1 (async: 0)
    :param max_capacity: >= min_capacity. :default: 4
    :param metric: target-tracking metric. :default: INVOCATIONS_PER_INSTANCE (async: BACKLOG_PER_INSTANCE)
    :param target_value: > 0, in the metric's unit (invocations/instance/minute, percent, backlog items). GPU
        utilization is summed over the instance's GPUs (a given value is taken as is).
        :default: 100 (CPU utilization: 70; GPU utilization: 70 per GPU, i.e. 280 on a 4-GPU type; backlog: 5)
    :param scale_in_cooldown: :default: 5 minutes
    :param scale_out_cooldown: :default: 1 minute
    :param protect_from_scale_in: target tracking never removes instances (scale-in off). :default: False
    :param scheduled: scheduled capacity changes. :default: none
    """

    min_capacity: int | None = None
    max_capacity: int = 4
    metric: ScalingMetric | None = None
    target_value: float | None = None
    scale_in_cooldown: cdk.Duration = dataclasses.field(default_factory=lambda: cdk.Duration.minutes(5))
    scale_out_cooldown: cdk.Duration = dataclasses.field(default_factory=lambda: cdk.Duration.minutes(1))
    protect_from_scale_in: bool = False
    scheduled: Sequence[ScheduledScaling] = ()


@dataclasses.dataclass(frozen=True)
class DeploymentGuardrails:
    """Blue/green rollout with traffic shifting and auto-rollback (``UpdateEndpoint``'s DeploymentConfig).

    :param traffic_shifting: :default: CANARY
    :param canary_percent: capacity percent of the canary (1-50). :default: 10
    :param linear_step_percent: capacity percent per linear step (10-50). :default: 20
    :param wait_interval: bake time between shifts (0-3600 s). :default: 5 minutes
    :param termination_wait: keep the old fleet after the shift (0-3600 s). :default: 5 minutes
    :param maximum_execution_timeout: whole rollout (600-28800 s). :default: 1 hour
    :param rollback_on_alarms: roll back when this endpoint's 5XX or latency alarm fires. :default: True
    """

    traffic_shifting: TrafficShifting = TrafficShifting.CANARY
    canary_percent: int = 10
    linear_step_percent: int = 20
    wait_interval: cdk.Duration = dataclasses.field(default_factory=lambda: cdk.Duration.minutes(5))
    termination_wait: cdk.Duration = dataclasses.field(default_factory=lambda: cdk.Duration.minutes(5))
    maximum_execution_timeout: cdk.Duration = dataclasses.field(default_factory=lambda: cdk.Duration.hours(1))
    rollback_on_alarms: bool = True


@dataclasses.dataclass(frozen=True)
class EndpointAlarms:
    """Alarm thresholds; None turns one alarm off. Every alarm notifies the endpoint's SNS topic.

    :param error_5xx_rate_percent: 5XX errors as % of invocations. :default: 1
    :param error_4xx_rate_percent: 4XX errors as % of invocations. :default: 10
    :param latency_p99_ms: ModelLatency p99 in MILLIseconds (converted to the metric's microseconds). :default: 1000
    :param invocations_zero: alarm when invocations drop to zero (breaching when no data). :default: False
    :param disk_utilization_percent: :default: 80
    :param memory_utilization_percent: :default: 85
    :param gpu_memory_utilization_percent: GPU types only, per GPU (the alarm's threshold is this times the GPU count
        of the instance table, the metric being summed over GPUs). :default: 90
    :param period: :default: 1 minute
    :param evaluation_periods: :default: 5
    :param datapoints_to_alarm: :default: 3
    """

    error_5xx_rate_percent: float | None = 1.0
    error_4xx_rate_percent: float | None = 10.0
    latency_p99_ms: float | None = 1000.0
    invocations_zero: bool = False
    disk_utilization_percent: float | None = 80.0
    memory_utilization_percent: float | None = 85.0
    gpu_memory_utilization_percent: float | None = 90.0
    period: cdk.Duration = dataclasses.field(default_factory=lambda: cdk.Duration.minutes(1))
    evaluation_periods: int = 5
    datapoints_to_alarm: int = 3


_DEFAULT_SCALING = AutoScaling()


def _label(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]", name) if p) or "Variant"


def _secs(d: cdk.Duration | None) -> int | None:
    return None if d is None else int(d.to_seconds())

