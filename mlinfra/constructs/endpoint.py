"""Endpoint: a SageMaker model behind an autoscaled endpoint, with alarms, a dashboard and safe rollout.

Built on the L1 resources (``CfnModel``, ``CfnEndpointConfig``, ``CfnEndpoint``) because the experimental
``aws-sagemaker-alpha`` L2 lacks async inference, data capture, deployment guardrails and multi-model
endpoints; scaling uses the stable ``aws_applicationautoscaling`` L2.

Modes
-----
- ``EndpointMode.REAL_TIME``: instance-backed variants (one or more, weighted for A/B), optional shadow variant,
  optional multi-model container (an S3 prefix of model archives) or a serial inference pipeline (2-15
  containers). Scales on ``SageMakerVariantInvocationsPerInstance`` (or GPU/CPU utilization).
- ``EndpointMode.SERVERLESS``: memory size, max concurrency, provisioned concurrency; no instance type, no VPC,
  no network isolation, no data capture, one variant (SageMaker's serverless exclusions).
- ``EndpointMode.ASYNC``: S3 output/failure paths, SNS success/error topics, per-instance concurrency; scales on
  ``ApproximateBacklogSizePerInstance`` and down to zero instances, with a step policy on
  ``HasBacklogWithoutCapacity`` that brings the first instance back when requests queue up.

Units
-----
``ModelLatency`` and ``OverheadLatency`` are reported in MICROseconds: alarm props take milliseconds and are
converted (x 1000). Error-rate alarms are percentages of invocations (metric math).

Rollout
-------
``deploy_target`` returns the :class:`~mlinfra.constructs.endpoint_target.EndpointTarget` a retrain pipeline
uses with ``UpdateEndpoint``: the variant, the execution role, VPC and key, and the ``DeploymentConfig``
(blue/green with canary or linear traffic shifting and auto-rollback on this endpoint's 5XX and latency alarms).
"""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Any, Mapping, Sequence

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct

from mlinfra.constructs.common import acknowledge, alarm_principal, is_token, limit_grants_to_aws_services
from mlinfra.constructs.endpoint_target import EndpointTarget
from mlinfra.constructs.wildcards import KMS_WILDCARD_ACTIONS, S3_GRANT_WILDCARD_ACTIONS, acknowledge_wildcards, ending
from mlinfra.domain.hosting_instances import family_of

__all__ = [
    "Endpoint",
    "EndpointMode",
    "ModelData",
    "ModelContainer",
    "ProductionVariant",
    "ServerlessSettings",
    "AsyncInference",
    "DataCapture",
    "AutoScaling",
    "ScalingMetric",
    "ScheduledScaling",
    "DeploymentGuardrails",
    "TrafficShifting",
    "EndpointAlarms",
    "DEFAULT_INSTANCE_TYPE",
]

DEFAULT_INSTANCE_TYPE = "ml.m5.large"
#: CloudWatch namespaces of SageMaker endpoints: invocation metrics, and instance (host) utilization metrics.
NS_INVOCATIONS = "AWS/SageMaker"
NS_INSTANCE = "/aws/sagemaker/Endpoints"
#: SageMaker limits (CreateEndpointConfig / CreateModel / ServerlessConfig references).
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
SERVERLESS_MAX_CONCURRENCY = 200
PIPELINE_CONTAINERS = (2, 15)
MAX_VARIANTS = 10
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
    """

    image_uri: str | None = None
    model_data: ModelData | None = None
    model_package_arn: str | None = None
    environment: Mapping[str, str] | None = None
    hostname: str | None = None


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
    :param target_value: > 0, in the metric's unit (invocations/instance/minute, percent, backlog items).
        :default: 100 (utilization metrics: 70; backlog: 5)
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
    :param gpu_memory_utilization_percent: GPU types only. :default: 90
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

# --------------------------------------------------------------------------------------------------
# The construct
# --------------------------------------------------------------------------------------------------


class Endpoint(Construct):
    """A SageMaker endpoint (real-time, serverless or async) with scaling, alarms, dashboard and rollout config.

    :param mode: :default: EndpointMode.REAL_TIME
    :param model: the model of every variant that names none. :default: None (then ``containers`` or each
        variant's ``model`` is required)
    :param containers: a serial inference pipeline of 2-15 containers (real-time/async), instead of ``model``.
        :default: None
    :param multi_model: the model container serves many models from an S3 prefix (real-time only). :default: False
    :param variants: production variants. :default: one "AllTraffic" variant on ml.m5.large (serverless: no type)
    :param shadow_variant: a variant receiving a copy of the traffic (real-time only). :default: None
    :param serverless: serverless settings (serverless mode). :default: ServerlessSettings()
    :param async_inference: async settings (required in async mode). :default: None
    :param data_capture: capture to S3 (not serverless). :default: None (off)
    :param auto_scaling: scaling of instance-backed variants; None turns scaling off (an error on serverless).
        :default: AutoScaling() for instance-backed modes
    :param deployment_guardrails: rollout config for ``deploy_target``. :default: DeploymentGuardrails()
    :param alarms: alarm thresholds; None turns alarms off. :default: EndpointAlarms()
    :param alarm_topic: topic of the alarms. :default: a new KMS-encrypted topic
    :param dashboard: create a CloudWatch dashboard. :default: True
    :param vpc: VPC of the model (not serverless). :default: None (no VPC; a warning for instance modes)
    :param vpc_subnets: subnets in ``vpc``. :default: the private subnets
    :param security_groups: groups of the model's interfaces. :default: a new group with HTTPS egress only
    :param network_isolation: no network access from the container. :default: True (serverless: False, unsupported)
    :param role: execution role. :default: a new least-privilege role
    :param encryption_key: key for the storage volume, async output and the alarm topic. :default: a new rotated key
    :param endpoint_name: :default: generated by CloudFormation
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        mode: EndpointMode = EndpointMode.REAL_TIME,
        model: ModelContainer | None = None,
        containers: Sequence[ModelContainer] | None = None,
        multi_model: bool = False,
        variants: Sequence[ProductionVariant] | None = None,
        shadow_variant: ProductionVariant | None = None,
        serverless: ServerlessSettings | None = None,
        async_inference: AsyncInference | None = None,
        data_capture: DataCapture | None = None,
        auto_scaling: AutoScaling | None = _DEFAULT_SCALING,
        deployment_guardrails: DeploymentGuardrails | None = DeploymentGuardrails(),
        alarms: EndpointAlarms | None = EndpointAlarms(),
        alarm_topic: sns.ITopic | None = None,
        dashboard: bool = True,
        vpc: ec2.IVpc | None = None,
        vpc_subnets: ec2.SubnetSelection | None = None,
        security_groups: Sequence[ec2.ISecurityGroup] | None = None,
        network_isolation: bool | None = None,
        role: iam.IRole | None = None,
        encryption_key: kms.IKey | None = None,
        endpoint_name: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        if not isinstance(mode, EndpointMode):
            raise ValueError(f"mode must be an EndpointMode ({[m.name for m in EndpointMode]}), got: {mode!r}")
        serverless_mode = mode is EndpointMode.SERVERLESS
        if serverless_mode:
            serverless = serverless or ServerlessSettings()
        variants = list(variants) if variants is not None else [ProductionVariant()]
        variants = [_with_default_type(v, serverless_mode) for v in variants]
        if shadow_variant is not None:
            shadow_variant = _with_default_type(shadow_variant, serverless_mode)
        if network_isolation is None:
            network_isolation = not serverless_mode
        if mode is EndpointMode.SERVERLESS:
            if auto_scaling is not None and auto_scaling is not _DEFAULT_SCALING:
                raise ValueError("auto_scaling: serverless endpoints scale themselves (max_concurrency); pass "
                                 "auto_scaling=None or use an instance-backed mode")
            auto_scaling = None

        _validate(
            mode=mode, model=model, containers=containers, multi_model=multi_model, variants=variants,
            shadow=shadow_variant, serverless=serverless, async_inference=async_inference,
            data_capture=data_capture, auto_scaling=auto_scaling, guardrails=deployment_guardrails, alarms=alarms,
            vpc=vpc, vpc_subnets=vpc_subnets, security_groups=security_groups, network_isolation=network_isolation,
            endpoint_name=endpoint_name,
        )

        self.mode = mode
        self.network_isolation = network_isolation
        self.variants = variants
        self.shadow_variant = shadow_variant
        self.deployment_guardrails = deployment_guardrails
        stack = cdk.Stack.of(self)

        # ---- key, role, network --------------------------------------------------------------------------
        if encryption_key is None:
            encryption_key = kms.Key(
                self, "Key", enable_key_rotation=True, removal_policy=cdk.RemovalPolicy.RETAIN,
                description=f"SageMaker endpoint {self.node.path}: volumes, async output, alarm topic",
            )
        self.encryption_key = encryption_key
        limit_grants_to_aws_services(encryption_key)

        if role is None:
            role = iam.Role(
                self, "ExecutionRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                description=f"Execution role of the SageMaker model(s) of {self.node.path}",
            )
            self._own_role = True
        else:
            self._own_role = False
        self.role = role
        self._object_arns: list[str] = []  # the object wildcards granted to the role (see _objects)
        self._grant_runtime(role)

        self.vpc_config: dict[str, Any] | None = None
        self.connections: ec2.Connections | None = None
        if vpc is not None:
            if security_groups is None:
                sg = ec2.SecurityGroup(
                    self, "SecurityGroup", vpc=vpc, allow_all_outbound=False,
                    description="SageMaker endpoint model interfaces: HTTPS egress only",
                )
                sg.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS APIs and S3")
                security_groups = [sg]
            subnets = vpc.select_subnets(**_selection_kwargs(vpc_subnets)).subnet_ids
            self.connections = ec2.Connections(security_groups=list(security_groups))
            self.vpc_config = {
                "SecurityGroupIds": [g.security_group_id for g in security_groups],
                "Subnets": subnets,
            }
            self._grant_vpc(role)
        elif not serverless_mode:
            cdk.Annotations.of(self).add_warning_v2(
                "mlinfra:endpoint-no-vpc", "Endpoint has no vpc: its model runs outside your VPC (pass vpc=...)."
            )

        # ---- models ---------------------------------------------------------------------------------------
        self._models: dict[int, sagemaker.CfnModel] = {}
        self.models: list[sagemaker.CfnModel] = []
        default_model = None
        if containers:
            default_model = self._make_model("Model", None, containers)
        elif model is not None:
            default_model = self._make_model("Model", model, None, multi_model=multi_model)
        self.model = default_model

        def model_for(variant: ProductionVariant, label: str) -> sagemaker.CfnModel:
            if variant.model is None:
                assert default_model is not None  # validated
                return default_model
            return self._make_model(f"{label}Model", variant.model, None)

        # ---- endpoint config ------------------------------------------------------------------------------
        local_storage = any(
            v.instance_type and family_of(v.instance_type).local_storage
            for v in [*variants, *([shadow_variant] if shadow_variant else [])]
        )
        # CreateEndpointConfig rejects KmsKeyId with instance-storage types (hardware-encrypted NVMe) and it has
        # no meaning for serverless variants (no volume).
        self.volume_key_applied = not local_storage and not serverless_mode
        pv = [self._variant_property(v, model_for(v, _label(v.name)), serverless) for v in variants]
        shadow_pv = (
            [self._variant_property(shadow_variant, model_for(shadow_variant, "Shadow" + _label(shadow_variant.name)), None)]
            if shadow_variant else None
        )
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self, "EndpointConfig",
            production_variants=pv,
            shadow_production_variants=shadow_pv,
            kms_key_id=encryption_key.key_arn if self.volume_key_applied else None,
            data_capture_config=self._data_capture(data_capture, role),
            async_inference_config=self._async_config(async_inference, role) if mode is EndpointMode.ASYNC else None,
        )

        self.endpoint = sagemaker.CfnEndpoint(
            self, "Endpoint",
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
            endpoint_name=endpoint_name,
        )
        # Always reference the name through the resource (the emulator generates its own name).
        self.endpoint_name: str = self.endpoint.attr_endpoint_name
        self.endpoint_arn: str = self.endpoint.ref
        if isinstance(role, iam.Role):
            # The endpoint starts containers as the role: its policy must exist first.
            self.endpoint.node.add_dependency(role)

        # ---- scaling, alarms, dashboard -------------------------------------------------------------------
        self.scalable_targets: dict[str, appscaling.ScalableTarget] = {}
        if auto_scaling is not None:
            for v in variants:
                self.scalable_targets[v.name] = self._scaling(v, auto_scaling)

        self.alarm_topic: sns.ITopic | None = None
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        if alarms is not None:
            self.alarm_topic = alarm_topic or self._make_topic()
            self._make_alarms(alarms)
        self.dashboard = self._make_dashboard() if dashboard else None
        self._acknowledge()

    # ---------------------------------------------------------------------------------------------------
    # Handles
    # ---------------------------------------------------------------------------------------------------

    @property
    def primary_variant(self) -> ProductionVariant:
        return self.variants[0]

    @property
    def deploy_target(self) -> EndpointTarget:
        """What a retrain pipeline needs to roll a new model out to this endpoint's primary variant."""
        v = self.primary_variant
        if v.instance_type is None:
            raise ValueError("deploy_target: serverless endpoints have no instance type; use an instance-backed mode")
        return EndpointTarget(
            endpoint_name=self.endpoint_name,
            endpoint_arn=self.endpoint_arn,
            variant_name=v.name,
            instance_type=v.instance_type,
            initial_instance_count=v.initial_instance_count,
            model_execution_role=self.role,
            deployment_config=self.deployment_config,
            kms_key=self.encryption_key if self.volume_key_applied else None,
            vpc_config=self.vpc_config,
            enable_network_isolation=self.network_isolation,
        )

    @property
    def deployment_config(self) -> dict[str, Any] | None:
        """``UpdateEndpoint``'s ``DeploymentConfig`` (PascalCase), or None for an all-at-once update."""
        g = self.deployment_guardrails
        if g is None:
            return None
        routing: dict[str, Any] = {"Type": g.traffic_shifting.value, "WaitIntervalInSeconds": int(g.wait_interval.to_seconds())}
        if g.traffic_shifting is TrafficShifting.CANARY:
            routing["CanarySize"] = {"Type": "CAPACITY_PERCENT", "Value": g.canary_percent}
        elif g.traffic_shifting is TrafficShifting.LINEAR:
            routing["LinearStepSize"] = {"Type": "CAPACITY_PERCENT", "Value": g.linear_step_percent}
        config: dict[str, Any] = {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": routing,
                "TerminationWaitInSeconds": int(g.termination_wait.to_seconds()),
                "MaximumExecutionTimeoutInSeconds": int(g.maximum_execution_timeout.to_seconds()),
            }
        }
        rollback = [self.alarms[k] for k in ("Errors5xx", "LatencyP99") if k in self.alarms]
        if g.rollback_on_alarms and rollback:
            config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a.alarm_name} for a in rollback]}
        return config

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        """``sagemaker:InvokeEndpoint`` (and the async/streaming variants) on this endpoint only."""
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["sagemaker:InvokeEndpoint", "sagemaker:InvokeEndpointAsync", "sagemaker:InvokeEndpointWithResponseStream"],
            resource_arns=[self.endpoint_arn],
        )

    def metric(self, metric_name: str, *, variant: str | None = None, namespace: str = NS_INVOCATIONS,
               statistic: str = "Sum", **kwargs: Any) -> cloudwatch.Metric:
        """A metric of this endpoint (and variant: the primary one unless given)."""
        dims = {"EndpointName": self.endpoint_name, "VariantName": variant or self.primary_variant.name}
        return cloudwatch.Metric(namespace=namespace, metric_name=metric_name, dimensions_map=dims,
                                 statistic=statistic, **{"period": cdk.Duration.minutes(1), **kwargs})

    def metric_invocations(self, **kw: Any) -> cloudwatch.Metric:
        return self.metric("Invocations", **kw)

    def metric_invocations_per_instance(self, **kw: Any) -> cloudwatch.Metric:
        return self.metric("InvocationsPerInstance", **kw)

    def metric_model_latency(self, statistic: str = "p99", **kw: Any) -> cloudwatch.Metric:
        """ModelLatency in MICROseconds."""
        return self.metric("ModelLatency", statistic=statistic, **kw)

    def metric_overhead_latency(self, statistic: str = "p99", **kw: Any) -> cloudwatch.Metric:
        """OverheadLatency in MICROseconds."""
        return self.metric("OverheadLatency", statistic=statistic, **kw)

    def metric_4xx_errors(self, **kw: Any) -> cloudwatch.Metric:
        return self.metric("Invocation4XXErrors", **kw)

    def metric_5xx_errors(self, **kw: Any) -> cloudwatch.Metric:
        return self.metric("Invocation5XXErrors", **kw)

    def metric_model_errors(self, **kw: Any) -> cloudwatch.Metric:
        return self.metric("InvocationModelErrors", **kw)

    def metric_cpu_utilization(self, **kw: Any) -> cloudwatch.Metric:
        return self.metric("CPUUtilization", namespace=NS_INSTANCE, statistic="Average", **kw)

    def metric_memory_utilization(self, **kw: Any) -> cloudwatch.Metric:
        return self.metric("MemoryUtilization", namespace=NS_INSTANCE, statistic="Average", **kw)

    def metric_disk_utilization(self, **kw: Any) -> cloudwatch.Metric:
        return self.metric("DiskUtilization", namespace=NS_INSTANCE, statistic="Average", **kw)

    def metric_gpu_utilization(self, **kw: Any) -> cloudwatch.Metric:
        return self.metric("GPUUtilization", namespace=NS_INSTANCE, statistic="Average", **kw)

    def metric_gpu_memory_utilization(self, **kw: Any) -> cloudwatch.Metric:
        return self.metric("GPUMemoryUtilization", namespace=NS_INSTANCE, statistic="Average", **kw)

    def metric_backlog_per_instance(self, **kw: Any) -> cloudwatch.Metric:
        """Async only: ``ApproximateBacklogSizePerInstance`` (dimension EndpointName)."""
        return cloudwatch.Metric(namespace=NS_INVOCATIONS, metric_name="ApproximateBacklogSizePerInstance",
                                 dimensions_map={"EndpointName": self.endpoint_name}, statistic="Average",
                                 **{"period": cdk.Duration.minutes(1), **kw})

    def metric_has_backlog_without_capacity(self, **kw: Any) -> cloudwatch.Metric:
        """Async only: ``HasBacklogWithoutCapacity`` (1 when requests wait and no instance runs)."""
        return cloudwatch.Metric(namespace=NS_INVOCATIONS, metric_name="HasBacklogWithoutCapacity",
                                 dimensions_map={"EndpointName": self.endpoint_name}, statistic="Average",
                                 **{"period": cdk.Duration.minutes(1), **kw})

    def metric_instance_count(self, variant: str | None = None) -> cloudwatch.MathExpression:
        """Serving instances, derived as Invocations / InvocationsPerInstance (SageMaker publishes no count)."""
        sfx = _label(variant or self.primary_variant.name).lower()
        return cloudwatch.MathExpression(
            expression=f"IF(perinst{sfx} > 0, inv{sfx} / perinst{sfx}, 0)",
            using_metrics={f"inv{sfx}": self.metric_invocations(variant=variant),
                           f"perinst{sfx}": self.metric_invocations_per_instance(variant=variant)},
            label=f"Instances {variant or self.primary_variant.name} (derived)", period=cdk.Duration.minutes(1),
        )

    def error_rate(self, kind: str, variant: str | None = None) -> cloudwatch.MathExpression:
        """``kind`` ("4xx" or "5xx") errors as a percentage of invocations."""
        errors = self.metric_5xx_errors(variant=variant) if kind == "5xx" else self.metric_4xx_errors(variant=variant)
        sfx = kind.lower() + _label(variant or self.primary_variant.name).lower()
        return cloudwatch.MathExpression(
            expression=f"IF(inv{sfx} > 0, 100 * err{sfx} / inv{sfx}, 0)",
            using_metrics={f"err{sfx}": errors, f"inv{sfx}": self.metric_invocations(variant=variant)},
            label=f"{kind.upper()} error rate (%)", period=cdk.Duration.minutes(1),
        )

    # ---------------------------------------------------------------------------------------------------
    # Internals
    # ---------------------------------------------------------------------------------------------------

    def _make_model(self, cid: str, model: ModelContainer | None, containers: Sequence[ModelContainer] | None,
                    multi_model: bool = False) -> sagemaker.CfnModel:
        key = id(model) if model is not None else id(containers)
        if key in self._models:
            return self._models[key]
        if containers:
            cfn = sagemaker.CfnModel(
                self, cid, execution_role_arn=self.role.role_arn,
                containers=[self._container(c, False) for c in containers],
                inference_execution_config=sagemaker.CfnModel.InferenceExecutionConfigProperty(mode="Serial"),
                enable_network_isolation=self.network_isolation,
                vpc_config=self._model_vpc(),
            )
        else:
            assert model is not None
            cfn = sagemaker.CfnModel(
                self, cid, execution_role_arn=self.role.role_arn,
                primary_container=self._container(model, multi_model),
                enable_network_isolation=self.network_isolation,
                vpc_config=self._model_vpc(),
            )
        if isinstance(self.role, iam.Role):
            cfn.node.add_dependency(self.role)
        self._models[key] = cfn
        self.models.append(cfn)
        return cfn

    def _model_vpc(self) -> sagemaker.CfnModel.VpcConfigProperty | None:
        if self.vpc_config is None:
            return None
        return sagemaker.CfnModel.VpcConfigProperty(
            security_group_ids=self.vpc_config["SecurityGroupIds"], subnets=self.vpc_config["Subnets"]
        )

    def _container(self, c: ModelContainer, multi_model: bool) -> sagemaker.CfnModel.ContainerDefinitionProperty:
        if c.model_data is not None and c.model_data.bucket is not None:
            key = c.model_data.key or ""
            c.model_data.bucket.grant_read(self.role, self._objects(c.model_data.bucket, f"{key}*")
                                           if key.endswith("/") or multi_model else key)
        if c.image_uri:
            self._grant_image_pull(c.image_uri)
        if c.model_package_arn:
            self._grant_image_pull(None)
        return sagemaker.CfnModel.ContainerDefinitionProperty(
            image=c.image_uri,
            model_data_url=c.model_data.uri if c.model_data else None,
            model_package_name=c.model_package_arn,
            environment=dict(c.environment) if c.environment else None,
            container_hostname=c.hostname,
            mode="MultiModel" if multi_model else None,
        )

    def _variant_property(self, v: ProductionVariant, model: sagemaker.CfnModel,
                          serverless: ServerlessSettings | None) -> sagemaker.CfnEndpointConfig.ProductionVariantProperty:
        return sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name=v.name,
            model_name=model.attr_model_name,
            instance_type=v.instance_type,
            initial_instance_count=v.initial_instance_count if v.instance_type else None,
            initial_variant_weight=v.initial_weight,
            volume_size_in_gb=v.volume_size_gb,
            model_data_download_timeout_in_seconds=_secs(v.model_data_download_timeout),
            container_startup_health_check_timeout_in_seconds=_secs(v.startup_health_check_timeout),
            serverless_config=sagemaker.CfnEndpointConfig.ServerlessConfigProperty(
                max_concurrency=serverless.max_concurrency, memory_size_in_mb=serverless.memory_size_mb,
                provisioned_concurrency=serverless.provisioned_concurrency,
            ) if serverless is not None and v.instance_type is None else None,
        )

    def _data_capture(self, dc: DataCapture | None, role: iam.IRole):
        if dc is None:
            return None
        dc.bucket.grant_put(role, self._objects(dc.bucket, f"{dc.prefix}*"))
        key = dc.kms_key or dc.bucket.encryption_key
        options = [sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode=m)
                   for m, on in (("Input", dc.capture_request), ("Output", dc.capture_response)) if on]
        return sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
            capture_options=options,
            destination_s3_uri=f"s3://{dc.bucket.bucket_name}/{dc.prefix}",
            initial_sampling_percentage=dc.sampling_percentage,
            enable_capture=True,
            kms_key_id=key.key_arn if key is not None else None,
        )

    def _async_config(self, a: AsyncInference, role: iam.IRole):
        bucket = a.output_bucket
        assert bucket is not None  # validated
        bucket.grant_put(role, self._objects(bucket, f"{a.output_prefix}*"))
        bucket.grant_put(role, self._objects(bucket, f"{a.failure_prefix}*"))
        bucket.grant_read(role, self._objects(bucket, f"{a.input_prefix}*"))
        self.encryption_key.grant_encrypt_decrypt(role)
        notification = None
        if a.success_topic or a.error_topic:
            for t in (a.success_topic, a.error_topic):
                if t is not None:
                    t.grant_publish(role)
            notification = sagemaker.CfnEndpointConfig.AsyncInferenceNotificationConfigProperty(
                success_topic=a.success_topic.topic_arn if a.success_topic else None,
                error_topic=a.error_topic.topic_arn if a.error_topic else None,
            )
        self.async_output_uri = f"s3://{bucket.bucket_name}/{a.output_prefix}"
        self.async_input_uri = f"s3://{bucket.bucket_name}/{a.input_prefix}"
        return sagemaker.CfnEndpointConfig.AsyncInferenceConfigProperty(
            output_config=sagemaker.CfnEndpointConfig.AsyncInferenceOutputConfigProperty(
                s3_output_path=self.async_output_uri,
                s3_failure_path=f"s3://{bucket.bucket_name}/{a.failure_prefix}",
                kms_key_id=self.encryption_key.key_arn,
                notification_config=notification,
            ),
            client_config=sagemaker.CfnEndpointConfig.AsyncInferenceClientConfigProperty(
                max_concurrent_invocations_per_instance=a.max_concurrent_invocations_per_instance,
            ) if a.max_concurrent_invocations_per_instance else None,
        )

    def _scaling(self, v: ProductionVariant, a: AutoScaling) -> appscaling.ScalableTarget:
        label = _label(v.name)
        is_async = self.mode is EndpointMode.ASYNC
        metric = a.metric or (ScalingMetric.BACKLOG_PER_INSTANCE if is_async else ScalingMetric.INVOCATIONS_PER_INSTANCE)
        min_cap = a.min_capacity if a.min_capacity is not None else (0 if is_async else 1)
        stack = cdk.Stack.of(self)
        # SageMaker scaling runs as the Application Auto Scaling service-linked role (created on first use).
        slr = iam.Role.from_role_arn(
            self, f"{label}ScalingRole",
            stack.format_arn(service="iam", region="", resource="role",
                             resource_name="aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
                                           "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"),
            mutable=False,
        )
        target = appscaling.ScalableTarget(
            self, f"{label}ScalableTarget",
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            resource_id=f"endpoint/{self.endpoint_name}/variant/{v.name}",
            min_capacity=min_cap, max_capacity=a.max_capacity, role=slr,
        )
        target.node.add_dependency(self.endpoint)
        default_target = {ScalingMetric.INVOCATIONS_PER_INSTANCE: 100.0, ScalingMetric.BACKLOG_PER_INSTANCE: 5.0}
        value = a.target_value if a.target_value is not None else default_target.get(metric, 70.0)
        if metric is ScalingMetric.INVOCATIONS_PER_INSTANCE:
            tracking = dict(predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE)
        elif metric is ScalingMetric.BACKLOG_PER_INSTANCE:
            tracking = dict(custom_metric=self.metric_backlog_per_instance())
        else:
            tracking = dict(custom_metric=self.metric(metric.value, variant=v.name, namespace=NS_INSTANCE, statistic="Average"))
        target.scale_to_track_metric(
            f"{metric.name.title().replace('_', '')}Tracking",
            target_value=value,
            scale_in_cooldown=a.scale_in_cooldown,
            scale_out_cooldown=a.scale_out_cooldown,
            disable_scale_in=a.protect_from_scale_in,
            **tracking,
        )
        if is_async and min_cap == 0:
            # Target tracking cannot leave zero (backlog per instance is undefined without instances): a step
            # policy on HasBacklogWithoutCapacity starts the first instance (AWS's recommended pattern).
            target.scale_on_metric(
                "ScaleOutFromZero",
                metric=self.metric_has_backlog_without_capacity(),
                scaling_steps=[appscaling.ScalingInterval(upper=0, change=0), appscaling.ScalingInterval(lower=1, change=1)],
                adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
                cooldown=a.scale_out_cooldown,
                evaluation_periods=2,
                metric_aggregation_type=appscaling.MetricAggregationType.AVERAGE,
            )
        for s in a.scheduled:
            target.scale_on_schedule(
                s.name, schedule=s.schedule, min_capacity=s.min_capacity, max_capacity=s.max_capacity,
                time_zone=s.time_zone and cdk.TimeZone.of(s.time_zone),
            )
        return target

    def _make_topic(self) -> sns.Topic:
        topic = sns.Topic(self, "AlarmTopic", master_key=self.encryption_key, enforce_ssl=True,
                          display_name="SageMaker endpoint alarms")
        if isinstance(self.encryption_key, kms.Key):
            self.encryption_key.add_to_resource_policy(iam.PolicyStatement(
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                principals=[alarm_principal()],
                resources=["*"],
            ))
        return topic

    def _make_alarms(self, a: EndpointAlarms) -> None:
        common = dict(evaluation_periods=a.evaluation_periods, datapoints_to_alarm=a.datapoints_to_alarm,
                      comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                      treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)
        primary = self.primary_variant.name
        instance_backed = self.primary_variant.instance_type is not None
        specs: list[tuple[str, Any, float, str]] = []
        if a.error_5xx_rate_percent is not None:
            specs.append(("Errors5xx", self.error_rate("5xx"), a.error_5xx_rate_percent,
                          f"5XX errors above {a.error_5xx_rate_percent}% of invocations"))
        if a.error_4xx_rate_percent is not None:
            specs.append(("Errors4xx", self.error_rate("4xx"), a.error_4xx_rate_percent,
                          f"4XX errors above {a.error_4xx_rate_percent}% of invocations"))
        if a.latency_p99_ms is not None:
            # ModelLatency is in MICROseconds.
            specs.append(("LatencyP99", self.metric_model_latency(period=a.period), a.latency_p99_ms * 1000.0,
                          f"ModelLatency p99 above {a.latency_p99_ms} ms ({a.latency_p99_ms * 1000:g} us)"))
        if instance_backed:
            if a.disk_utilization_percent is not None:
                specs.append(("DiskUtilization", self.metric_disk_utilization(period=a.period), a.disk_utilization_percent,
                              f"Disk utilization above {a.disk_utilization_percent}%"))
            if a.memory_utilization_percent is not None:
                specs.append(("MemoryUtilization", self.metric_memory_utilization(period=a.period),
                              a.memory_utilization_percent, f"Memory utilization above {a.memory_utilization_percent}%"))
            if a.gpu_memory_utilization_percent is not None and self._is_gpu(self.primary_variant):
                # GPUMemoryUtilization is percent x GPUs; the Average over instances of a 1-GPU type is the percent.
                specs.append(("GpuMemoryUtilization", self.metric_gpu_memory_utilization(period=a.period),
                              a.gpu_memory_utilization_percent,
                              f"GPU memory utilization above {a.gpu_memory_utilization_percent}% (summed over GPUs)"))
        action = cw_actions.SnsAction(self.alarm_topic)
        for name, metric, threshold, desc in specs:
            alarm = cloudwatch.Alarm(self, f"{name}Alarm", metric=metric, threshold=threshold,
                                     alarm_description=f"{desc} (variant {primary})", **common)
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
            self.alarms[name] = alarm
        if a.invocations_zero:
            alarm = cloudwatch.Alarm(
                self, "NoInvocationsAlarm", metric=self.metric_invocations(period=cdk.Duration.minutes(5)), threshold=1,
                comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                evaluation_periods=3, datapoints_to_alarm=3, treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
                alarm_description=f"No invocations for 15 minutes (variant {primary})",
            )
            alarm.add_alarm_action(action)
            self.alarms["NoInvocations"] = alarm

    def _make_dashboard(self) -> cloudwatch.Dashboard:
        board = cloudwatch.Dashboard(self, "Dashboard", default_interval=cdk.Duration.hours(3))
        names = [v.name for v in self.variants]
        w, h = 12, 6
        board.add_widgets(
            cloudwatch.GraphWidget(title="Invocations", width=w, height=h,
                                   left=[self.metric_invocations(variant=n, label=n) for n in names]),
            cloudwatch.GraphWidget(title="Invocations per instance", width=w, height=h,
                                   left=[self.metric_invocations_per_instance(variant=n, label=n) for n in names]),
        )
        board.add_widgets(
            cloudwatch.GraphWidget(
                title="Latency (microseconds)", width=w, height=h,
                left=[self.metric_model_latency(statistic=s, label=f"ModelLatency {s}") for s in ("p50", "p90", "p99")]
                + [self.metric_overhead_latency(label="OverheadLatency p99")],
            ),
            cloudwatch.GraphWidget(title="Errors", width=w, height=h,
                                   left=[self.metric_4xx_errors(label="4XX"), self.metric_5xx_errors(label="5XX"),
                                         self.metric_model_errors(label="Model errors")],
                                   right=[self.error_rate("5xx"), self.error_rate("4xx")]),
        )
        if self.primary_variant.instance_type is not None:
            util = [self.metric_cpu_utilization(label="CPU"), self.metric_memory_utilization(label="Memory"),
                    self.metric_disk_utilization(label="Disk")]
            if self._is_gpu(self.primary_variant):
                util += [self.metric_gpu_utilization(label="GPU"), self.metric_gpu_memory_utilization(label="GPU memory")]
            count: list[cloudwatch.IMetric] = [self.metric_instance_count(variant=n) for n in names]
            if self.mode is EndpointMode.ASYNC:
                count += [self.metric_backlog_per_instance(label="Backlog per instance")]
            board.add_widgets(
                cloudwatch.GraphWidget(title="Instance count", width=w, height=h, left=count),
                cloudwatch.GraphWidget(title="Utilization (%)", width=w, height=h, left=util),
            )
        if self.alarms:
            board.add_widgets(cloudwatch.AlarmStatusWidget(title="Alarms", width=24, height=3,
                                                           alarms=list(self.alarms.values())))
        return board

    @staticmethod
    def _is_gpu(v: ProductionVariant) -> bool:
        return v.instance_type is not None and family_of(v.instance_type).accelerator == "gpu"

    # ---- IAM ---------------------------------------------------------------------------------------------

    def _grant_runtime(self, role: iam.IRole) -> None:
        stack = cdk.Stack.of(self)
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="EndpointLogs",
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[stack.format_arn(service="logs", resource="log-group", resource_name="/aws/sagemaker/Endpoints/*",
                                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)],
        ))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="EndpointMetrics", actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "AWS/SageMaker"]}},
        ))
        self.encryption_key.grant_encrypt_decrypt(role)

    def _grant_vpc(self, role: iam.IRole) -> None:
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ModelVpcInterfaces",
            actions=["ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
                     "ec2:DeleteNetworkInterfacePermission", "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs",
                     "ec2:DescribeDhcpOptions", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"],
            resources=["*"],
        ))
        for rule in ("checkov::CKV_AWS_109", "checkov::CKV_AWS_111"):
            acknowledge(role, rule, "SageMaker's documented VPC permissions for a model in a VPC: the ENI actions "
                        "take no resource scoping at creation (SageMaker developer guide, give SageMaker access to "
                        "resources in your VPC)")

    def _grant_image_pull(self, image_uri: str | None) -> None:
        stack = cdk.Stack.of(self)
        if not getattr(self, "_ecr_auth", False):
            self.role.add_to_principal_policy(iam.PolicyStatement(
                sid="EcrAuth", actions=["ecr:GetAuthorizationToken"], resources=["*"]))
            self._ecr_auth = True
        m = _ECR_IMAGE_RE.fullmatch(image_uri) if image_uri and not is_token(image_uri) else None
        if m:
            account, region, repo = m.groups()
            arn = f"arn:{stack.partition}:ecr:{region}:{account}:repository/{repo}"
        else:  # a model package's image, or a token: repositories of this account
            arn = stack.format_arn(service="ecr", resource="repository", resource_name="*")
        self.role.add_to_principal_policy(iam.PolicyStatement(
            actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            resources=[arn],
        ))

    def _objects(self, bucket: s3.IBucket, pattern: str) -> str:
        """``pattern`` (an object key pattern of ``bucket`` granted to the role), remembered as an expected
        wildcard of the role's policy."""
        self._object_arns.append(bucket.arn_for_objects(pattern))
        return pattern

    def _acknowledge(self) -> None:
        if not self._own_role:
            return
        acknowledge_wildcards(
            self.role,
            "grant_* defaults on the named buckets/keys (s3:GetObject*, s3:List*, s3:Abort*, kms:ReEncrypt*, "
            "kms:GenerateDataKey*) - scoped to the model, capture and async prefixes and the named keys only",
            actions=(*S3_GRANT_WILDCARD_ACTIONS, *KMS_WILDCARD_ACTIONS))
        acknowledge_wildcards(
            self.role,
            "SageMaker model role: ecr:GetAuthorizationToken, cloudwatch:PutMetricData (namespace-conditioned) "
            "and VPC ENI management take no resource; logs are limited to /aws/sagemaker/Endpoints/*; S3 "
            "access is limited to the model artifacts, data-capture and async-inference prefixes",
            resources=("*", ending(":log-group:/aws/sagemaker/Endpoints/*"), ending(":repository/*"),
                       *self._object_arns))


# --------------------------------------------------------------------------------------------------
# Validation: one function per rule
# --------------------------------------------------------------------------------------------------


def _with_default_type(v: ProductionVariant, serverless: bool) -> ProductionVariant:
    if v.instance_type is None and not serverless:
        return dataclasses.replace(v, instance_type=DEFAULT_INSTANCE_TYPE)
    return v


def _label(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]", name) if p) or "Variant"


def _secs(d: cdk.Duration | None) -> int | None:
    return None if d is None else int(d.to_seconds())


def _selection_kwargs(sel: ec2.SubnetSelection | None) -> dict[str, Any]:
    if sel is None:
        return {}  # select_subnets' default: the private subnets
    return {k: getattr(sel, k) for k in ("subnet_type", "subnet_group_name", "subnets", "availability_zones",
                                         "one_per_az", "subnet_filters") if getattr(sel, k, None) is not None}


def _validate(*, mode, model, containers, multi_model, variants, shadow, serverless, async_inference, data_capture,
              auto_scaling, guardrails, alarms, vpc, vpc_subnets, security_groups, network_isolation,
              endpoint_name) -> None:
    _validate_model_source(model, containers, variants, multi_model, mode)
    for c in ([model] if model else []) + list(containers or []) + [v.model for v in variants if v.model] + (
            [shadow.model] if shadow and shadow.model else []):
        _validate_container(c)
    _validate_variants(variants, mode)
    if shadow is not None:
        _validate_shadow(shadow, mode)
    _validate_serverless(mode, serverless, variants, vpc, network_isolation, data_capture, multi_model, containers)
    _validate_async(mode, async_inference)
    if data_capture is not None:
        _validate_data_capture(data_capture)
    if auto_scaling is not None:
        _validate_scaling(auto_scaling, mode, variants)
    if guardrails is not None:
        _validate_guardrails(guardrails)
    if alarms is not None:
        _validate_alarms(alarms)
    if vpc is None and (vpc_subnets is not None or security_groups is not None):
        raise ValueError("vpc_subnets/security_groups need vpc: pass the VPC too")
    if endpoint_name is not None and not is_token(endpoint_name) and not _NAME_RE.fullmatch(endpoint_name):
        raise ValueError(f"endpoint_name must be 1-63 letters, digits or hyphens, got: {endpoint_name!r}")


def _validate_model_source(model, containers, variants, multi_model, mode) -> None:
    if model is not None and containers:
        raise ValueError("model and containers: pass either one model or a serial pipeline of containers, not both")
    if containers is not None and not PIPELINE_CONTAINERS[0] <= len(containers) <= PIPELINE_CONTAINERS[1]:
        raise ValueError(f"containers: a serial inference pipeline has 2-15 containers, got: {len(containers)}")
    if model is None and not containers and any(v.model is None for v in variants):
        raise ValueError("model: required unless containers are given or every variant names its own model, got: None")
    if multi_model and mode is not EndpointMode.REAL_TIME:
        raise ValueError(f"multi_model: only real-time endpoints host multi-model containers, got mode: {mode.value}")
    if multi_model and containers:
        raise ValueError("multi_model: not with a serial pipeline (containers)")
    if multi_model and model is not None:
        data = model.model_data
        if data is None or (not is_token(data.uri) and not data.uri.endswith("/")):
            raise ValueError(f"multi_model: model_data must be an S3 prefix ending with '/', got: {data and data.uri!r}")


def _validate_container(c: ModelContainer) -> None:
    if c.model_package_arn is not None:
        if c.image_uri is not None or c.model_data is not None:
            raise ValueError("model_package_arn: a model package names its image and data; do not pass image_uri or model_data too")
        if not is_token(c.model_package_arn) and not _MODEL_PACKAGE_RE.fullmatch(c.model_package_arn):
            raise ValueError(f"model_package_arn must be a SageMaker model package ARN "
                             f"(arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>), got: {c.model_package_arn!r}")
    elif not c.image_uri:
        raise ValueError("image_uri: required unless model_package_arn is given, got: None")


def _validate_variants(variants: list[ProductionVariant], mode: EndpointMode) -> None:
    if not 1 <= len(variants) <= MAX_VARIANTS:
        raise ValueError(f"variants: 1-{MAX_VARIANTS} production variants, got: {len(variants)}")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variants: names must be unique, got: {names}")
    for v in variants:
        _validate_variant(v, mode)


def _validate_variant(v: ProductionVariant, mode: EndpointMode) -> None:
    if not _NAME_RE.fullmatch(v.name):
        raise ValueError(f"variant name must be 1-63 letters, digits or hyphens, got: {v.name!r}")
    if mode is EndpointMode.SERVERLESS:
        if v.instance_type is not None:
            raise ValueError(f"instance_type: serverless endpoints take no instance type (use serverless memory and "
                             f"concurrency), got: {v.instance_type!r}")
    else:
        fam = family_of(v.instance_type, "instance_type")
        if v.volume_size_gb is not None and fam.local_storage:
            raise ValueError(f"volume_size_gb: {v.instance_type} has instance storage; VolumeSizeInGB applies to EBS-only "
                             f"types, got: {v.volume_size_gb}")
        if v.initial_instance_count < 1:
            raise ValueError(f"initial_instance_count must be >= 1, got: {v.initial_instance_count}")
    if v.volume_size_gb is not None and not 1 <= v.volume_size_gb <= 512:
        raise ValueError(f"volume_size_gb must be between 1 and 512, got: {v.volume_size_gb}")
    if not v.initial_weight >= 0:
        raise ValueError(f"initial_weight must be >= 0, got: {v.initial_weight}")
    for prop, d in (("model_data_download_timeout", v.model_data_download_timeout),
                    ("startup_health_check_timeout", v.startup_health_check_timeout)):
        if d is not None and not is_token(d.to_seconds()) and not 60 <= d.to_seconds() <= 3600:
            raise ValueError(f"{prop} must be between 60 and 3600 seconds, got: {d.to_seconds()}")


def _validate_shadow(shadow: ProductionVariant, mode: EndpointMode) -> None:
    if mode is not EndpointMode.REAL_TIME:
        raise ValueError(f"shadow_variant: only real-time endpoints have shadow variants, got mode: {mode.value}")
    _validate_variant(shadow, mode)


def _validate_serverless(mode, serverless, variants, vpc, network_isolation, data_capture, multi_model, containers) -> None:
    if mode is not EndpointMode.SERVERLESS:
        if serverless is not None:
            raise ValueError(f"serverless: settings apply to serverless mode only, got mode: {mode.value}")
        return
    if serverless.memory_size_mb not in SERVERLESS_MEMORY_MB:
        raise ValueError(f"serverless.memory_size_mb must be one of {list(SERVERLESS_MEMORY_MB)}, got: {serverless.memory_size_mb}")
    if not 1 <= serverless.max_concurrency <= SERVERLESS_MAX_CONCURRENCY:
        raise ValueError(f"serverless.max_concurrency must be between 1 and {SERVERLESS_MAX_CONCURRENCY}, got: {serverless.max_concurrency}")
    pc = serverless.provisioned_concurrency
    if pc is not None and not 1 <= pc <= serverless.max_concurrency:
        raise ValueError(f"serverless.provisioned_concurrency must be between 1 and max_concurrency "
                         f"({serverless.max_concurrency}), got: {pc}")
    # SageMaker's serverless exclusions.
    if len(variants) != 1:
        raise ValueError(f"variants: serverless endpoints have exactly one variant, got: {len(variants)}")
    if vpc is not None:
        raise ValueError("vpc: serverless endpoints do not support VPC configuration; use real-time or async mode")
    if network_isolation:
        raise ValueError("network_isolation: serverless endpoints do not support network isolation, got: True")
    if data_capture is not None:
        raise ValueError("data_capture: serverless endpoints do not support data capture")
    if containers:
        raise ValueError("containers: serverless endpoints do not support inference pipelines")


def _validate_async(mode, a: AsyncInference | None) -> None:
    if mode is not EndpointMode.ASYNC:
        if a is not None:
            raise ValueError(f"async_inference: settings apply to async mode only, got mode: {mode.value}")
        return
    if a is None or a.output_bucket is None:
        raise ValueError("async_inference.output_bucket: async endpoints need an S3 output path, got: None")
    from mlinfra.constructs.data_lake import validate_prefix

    for prop in ("output_prefix", "failure_prefix", "input_prefix"):
        validate_prefix(getattr(a, prop), f"async_inference.{prop}")
    m = a.max_concurrent_invocations_per_instance
    if m is not None and not 1 <= m <= 1000:
        raise ValueError(f"async_inference.max_concurrent_invocations_per_instance must be between 1 and 1000, got: {m}")


def _validate_data_capture(dc: DataCapture) -> None:
    from mlinfra.constructs.data_lake import validate_prefix

    validate_prefix(dc.prefix, "data_capture.prefix")
    if not 0 <= dc.sampling_percentage <= 100:
        raise ValueError(f"data_capture.sampling_percentage must be between 0 and 100, got: {dc.sampling_percentage}")
    if not (dc.capture_request or dc.capture_response):
        raise ValueError("data_capture: capture the request, the response or both, got: neither")


def _validate_scaling(a: AutoScaling, mode: EndpointMode, variants: list[ProductionVariant]) -> None:
    is_async = mode is EndpointMode.ASYNC
    min_cap = a.min_capacity if a.min_capacity is not None else (0 if is_async else 1)
    lowest = 0 if is_async else 1
    if min_cap < lowest:
        raise ValueError(f"auto_scaling.min_capacity must be >= {lowest} ({'0 only for async endpoints' if not is_async else 'async'}), "
                         f"got: {min_cap}")
    if a.max_capacity < max(min_cap, 1):
        raise ValueError(f"auto_scaling.max_capacity must be >= min_capacity ({min_cap}) and >= 1, got: {a.max_capacity}")
    if a.target_value is not None and not a.target_value > 0:
        raise ValueError(f"auto_scaling.target_value must be > 0, got: {a.target_value}")
    metric = a.metric
    if metric is ScalingMetric.BACKLOG_PER_INSTANCE and not is_async:
        raise ValueError("auto_scaling.metric: BACKLOG_PER_INSTANCE applies to async endpoints only (it never fires on "
                         f"a {mode.value} endpoint)")
    if is_async and metric not in (None, ScalingMetric.BACKLOG_PER_INSTANCE):
        raise ValueError(f"auto_scaling.metric: async endpoints scale on BACKLOG_PER_INSTANCE, got: {metric.name}")
    if metric is ScalingMetric.GPU_UTILIZATION:
        cpu = [v.instance_type for v in variants if family_of(v.instance_type).accelerator != "gpu"]
        if cpu:
            raise ValueError(f"auto_scaling.metric: GPU_UTILIZATION needs GPU instance types, got: {cpu}")
    for cd, prop in ((a.scale_in_cooldown, "scale_in_cooldown"), (a.scale_out_cooldown, "scale_out_cooldown")):
        if not is_token(cd.to_seconds()) and cd.to_seconds() < 0:
            raise ValueError(f"auto_scaling.{prop} must be >= 0 seconds, got: {cd.to_seconds()}")
    names = [s.name for s in a.scheduled]
    if len(set(names)) != len(names):
        raise ValueError(f"auto_scaling.scheduled: names must be unique, got: {names}")
    for s in a.scheduled:
        if s.min_capacity is None and s.max_capacity is None:
            raise ValueError(f"auto_scaling.scheduled[{s.name}]: set min_capacity, max_capacity or both")
        if s.min_capacity is not None and s.min_capacity < lowest:
            raise ValueError(f"auto_scaling.scheduled[{s.name}].min_capacity must be >= {lowest}, got: {s.min_capacity}")
        if s.min_capacity is not None and s.max_capacity is not None and s.min_capacity > s.max_capacity:
            raise ValueError(f"auto_scaling.scheduled[{s.name}]: min_capacity ({s.min_capacity}) must be <= "
                             f"max_capacity, got: {s.max_capacity}")


def _validate_guardrails(g: DeploymentGuardrails) -> None:
    if not isinstance(g.traffic_shifting, TrafficShifting):
        raise ValueError(f"deployment_guardrails.traffic_shifting must be a TrafficShifting, got: {g.traffic_shifting!r}")
    if g.traffic_shifting is TrafficShifting.CANARY and not 1 <= g.canary_percent <= 50:
        raise ValueError(f"deployment_guardrails.canary_percent must be between 1 and 50, got: {g.canary_percent}")
    if g.traffic_shifting is TrafficShifting.LINEAR and not 10 <= g.linear_step_percent <= 50:
        raise ValueError(f"deployment_guardrails.linear_step_percent must be between 10 and 50, got: {g.linear_step_percent}")
    for prop, d, lo, hi in (("wait_interval", g.wait_interval, 0, 3600), ("termination_wait", g.termination_wait, 0, 3600),
                            ("maximum_execution_timeout", g.maximum_execution_timeout, 600, 28800)):
        if not lo <= d.to_seconds() <= hi:
            raise ValueError(f"deployment_guardrails.{prop} must be between {lo} and {hi} seconds, got: {d.to_seconds()}")


def _validate_alarms(a: EndpointAlarms) -> None:
    for prop in ("error_5xx_rate_percent", "error_4xx_rate_percent", "disk_utilization_percent",
                 "memory_utilization_percent"):
        v = getattr(a, prop)
        if v is not None and not 0 < v <= 100:
            raise ValueError(f"alarms.{prop} must be in (0, 100], got: {v}")
    if a.gpu_memory_utilization_percent is not None and not a.gpu_memory_utilization_percent > 0:
        raise ValueError(f"alarms.gpu_memory_utilization_percent must be > 0, got: {a.gpu_memory_utilization_percent}")
    if a.latency_p99_ms is not None and not a.latency_p99_ms > 0:
        raise ValueError(f"alarms.latency_p99_ms must be > 0 milliseconds, got: {a.latency_p99_ms}")
    if not 1 <= a.datapoints_to_alarm <= a.evaluation_periods:
        raise ValueError(f"alarms.datapoints_to_alarm must be between 1 and evaluation_periods ({a.evaluation_periods}), "
                         f"got: {a.datapoints_to_alarm}")
    if a.period.to_seconds() not in (10, 30) and a.period.to_seconds() % 60:
        raise ValueError(f"alarms.period must be 10 s, 30 s or a multiple of 60 s, got: {a.period.to_seconds()}")
