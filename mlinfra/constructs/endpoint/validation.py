"""Validation of the Endpoint's props: one function per rule."""

from __future__ import annotations

import dataclasses
from typing import Any

from aws_cdk import aws_ec2 as ec2

from mlinfra.constructs.common import check_between, is_token, literal_seconds, require_literal
from mlinfra.domain.hosting_instances import family_of
from mlinfra.domain.rules import cite
from mlinfra.constructs.endpoint.props import (
    DEFAULT_INSTANCE_TYPE,
    SERVERLESS_MEMORY_MB,
    SERVERLESS_MAX_CONCURRENCY,
    PIPELINE_CONTAINERS,
    MAX_VARIANTS,
    _NAME_RE,
    _MODEL_PACKAGE_RE,
    EndpointMode,
    ScalingMetric,
    TrafficShifting,
    ModelContainer,
    ProductionVariant,
    AsyncInference,
    DataCapture,
    AutoScaling,
    DeploymentGuardrails,
    EndpointAlarms,
)


def _with_default_type(v: ProductionVariant, serverless: bool) -> ProductionVariant:
    if v.instance_type is None and not serverless:
        return dataclasses.replace(v, instance_type=DEFAULT_INSTANCE_TYPE)
    return v


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
    if guardrails is not None:
        _validate_rollout_timing(guardrails, alarms)
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
    if c.pointer is not None:
        if c.image_uri is not None or c.model_data is not None or c.model_package_arn is not None:
            raise ValueError("pointer: a model pointer names the image and the artifact; do not pass image_uri, "
                             "model_data or model_package_arn too")
        return
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
        if not is_token(v.initial_instance_count) and v.initial_instance_count < 1:
            raise ValueError(f"initial_instance_count must be >= 1, got: {v.initial_instance_count}")
    check_between("volume_size_gb", v.volume_size_gb, 1, 512)
    if not is_token(v.initial_weight) and not v.initial_weight >= 0:
        raise ValueError(f"initial_weight must be >= 0, got: {v.initial_weight}")
    for prop, d in (("model_data_download_timeout", v.model_data_download_timeout),
                    ("startup_health_check_timeout", v.startup_health_check_timeout)):
        check_between(prop, d, 60, 3600, "seconds")


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
    check_between("async_inference.max_concurrent_invocations_per_instance", m, 1, 1000)


def _validate_data_capture(dc: DataCapture) -> None:
    from mlinfra.constructs.data_lake import validate_prefix

    validate_prefix(dc.prefix, "data_capture.prefix")
    check_between("data_capture.sampling_percentage", dc.sampling_percentage, 0, 100)
    if not (dc.capture_request or dc.capture_response):
        raise ValueError("data_capture: capture the request, the response or both, got: neither")


def _validate_scaling(a: AutoScaling, mode: EndpointMode, variants: list[ProductionVariant]) -> None:
    is_async = mode is EndpointMode.ASYNC
    min_cap = a.min_capacity if a.min_capacity is not None else (0 if is_async else 1)
    lowest = 0 if is_async else 1
    if not is_token(min_cap) and min_cap < lowest:
        raise ValueError(f"auto_scaling.min_capacity must be >= {lowest} ({'0 only for async endpoints' if not is_async else 'async'}), "
                         f"got: {min_cap}")
    if not is_token(a.max_capacity) and not is_token(min_cap) and a.max_capacity < max(min_cap, 1):
        raise ValueError(f"auto_scaling.max_capacity must be >= min_capacity ({min_cap}) and >= 1, got: {a.max_capacity}")
    if a.target_value is not None and not is_token(a.target_value) and not a.target_value > 0:
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
        seconds = literal_seconds(cd)
        if seconds is not None and seconds < 0:
            raise ValueError(f"auto_scaling.{prop} must be >= 0 seconds, got: {seconds:g}")
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
    if g.traffic_shifting is TrafficShifting.CANARY:
        check_between("deployment_guardrails.canary_percent", g.canary_percent, 1, 50)
    if g.traffic_shifting is TrafficShifting.LINEAR:
        check_between("deployment_guardrails.linear_step_percent", g.linear_step_percent, 10, 50)
    for prop, d, lo, hi in (("wait_interval", g.wait_interval, 0, 3600), ("termination_wait", g.termination_wait, 0, 3600),
                            ("maximum_execution_timeout", g.maximum_execution_timeout, 600, 28800)):
        check_between(f"deployment_guardrails.{prop}", d, lo, hi, "seconds")


def _validate_alarms(a: EndpointAlarms) -> None:
    for prop in ("error_5xx_rate_percent", "error_4xx_rate_percent", "disk_utilization_percent",
                 "memory_utilization_percent"):
        v = getattr(a, prop)
        if v is not None and not is_token(v) and not 0 < v <= 100:
            raise ValueError(f"alarms.{prop} must be in (0, 100], got: {v}")
    # Both are converted at synth time (ms -> the metric's microseconds; per GPU -> summed over the GPUs).
    require_literal("alarms.latency_p99_ms", a.latency_p99_ms, "it is converted to the metric's microseconds")
    require_literal("alarms.gpu_memory_utilization_percent", a.gpu_memory_utilization_percent,
                    "it is multiplied by the instance's GPU count")
    if a.gpu_memory_utilization_percent is not None and not a.gpu_memory_utilization_percent > 0:
        raise ValueError(f"alarms.gpu_memory_utilization_percent must be > 0, got: {a.gpu_memory_utilization_percent}")
    if a.latency_p99_ms is not None and not a.latency_p99_ms > 0:
        raise ValueError(f"alarms.latency_p99_ms must be > 0 milliseconds, got: {a.latency_p99_ms}")
    if not is_token(a.evaluation_periods) and not is_token(a.datapoints_to_alarm) and not (
            1 <= a.datapoints_to_alarm <= a.evaluation_periods):
        raise ValueError(f"alarms.datapoints_to_alarm must be between 1 and evaluation_periods ({a.evaluation_periods}), "
                         f"got: {a.datapoints_to_alarm}")
    period = literal_seconds(a.period)
    if period is not None and period not in (10, 30) and period % 60:
        raise ValueError(f"alarms.period must be 10 s, 30 s or a multiple of 60 s, got: {period:g}")


def _bake_steps(g: DeploymentGuardrails) -> int:
    """How many bake waits a blue/green rollout makes: none all at once, one after the canary, one per linear step."""
    if g.traffic_shifting is TrafficShifting.CANARY:
        return 1
    if g.traffic_shifting is TrafficShifting.LINEAR:
        return -(-100 // g.linear_step_percent)
    return 0


def _validate_rollout_timing(g: DeploymentGuardrails, alarms: EndpointAlarms | None) -> None:
    """The rollout must fit its own timeout, and an auto-rollback alarm must be able to fire within one bake
    (rule sagemaker.rollout-fits-guardrails): a 3-of-5-minute alarm on a 1-minute bake never trips in time.
    A token among the durations (a CloudFormation parameter) leaves the check to SageMaker at deploy time."""
    wait, termination, maximum = (literal_seconds(d) for d in (g.wait_interval, g.termination_wait,
                                                               g.maximum_execution_timeout))
    linear_token = g.traffic_shifting is TrafficShifting.LINEAR and is_token(g.linear_step_percent)
    if wait is None or termination is None or maximum is None or linear_token:
        return
    steps = _bake_steps(g)
    total = steps * wait + termination
    if total > maximum:
        raise ValueError(
            f"deployment_guardrails: {steps} bake wait(s) of {wait:g} s + termination_wait "
            f"{termination:g} s must fit maximum_execution_timeout, got: {total:g} s > "
            f"{maximum:g} s {cite('sagemaker.rollout-fits-guardrails')}")
    if alarms is None or not g.rollback_on_alarms or steps == 0:
        return
    period = literal_seconds(alarms.period)
    if period is None or is_token(alarms.datapoints_to_alarm):
        return
    window = alarms.datapoints_to_alarm * period
    if window > wait:
        raise ValueError(
            f"deployment_guardrails.wait_interval must be at least the rollback alarms' window (datapoints_to_alarm "
            f"{alarms.datapoints_to_alarm} x period {period:g} s = {window:g} s) so a bad model "
            f"can trip them during a bake, got: {wait:g} s {cite('sagemaker.rollout-fits-guardrails')}")
