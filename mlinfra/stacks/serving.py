"""ServingStack: the platform's real-time endpoint (autoscaled, alarmed, guarded rollout) and an async example.

Stateless: endpoints, models and alarms can be destroyed and redeployed; captured data and async results
live in the lake. The retrain pipeline takes ``realtime_endpoint.deploy_target`` and rolls approved model
versions out to the real-time endpoint with the blue/green deployment config built here.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_events as events
from constructs import Construct

from mlinfra.config import PlatformConfig, ServingConfig
from mlinfra.constructs.batch_transform import BatchTransform, SplitType
from mlinfra.constructs.data_lake import IDataLake
from mlinfra.constructs.endpoint import (
    AsyncInference,
    AutoScaling,
    DataCapture,
    DeploymentGuardrails,
    Endpoint,
    EndpointAlarms,
    EndpointMode,
    ModelContainer,
    ModelData,
    ModelPointer,
    ProductionVariant,
    ScalingMetric,
    ScheduledScaling,
    TrafficShifting,
)
from mlinfra.constructs.network import Network
from mlinfra.retrain_definition import INFERENCE_CONTENT_TYPES, INFERENCE_RESPONSE_TYPES
from mlinfra.stacks.base import PlatformStack
from mlinfra.stacks.pipeline import model_package_group_name

_METRICS = {
    "invocations": ScalingMetric.INVOCATIONS_PER_INSTANCE,
    "gpu": ScalingMetric.GPU_UTILIZATION,
    "cpu": ScalingMetric.CPU_UTILIZATION,
}
_SHIFTING = {"canary": TrafficShifting.CANARY, "linear": TrafficShifting.LINEAR, "all_at_once": TrafficShifting.ALL_AT_ONCE}

#: Prefixes in the lake's artifacts zone.
CAPTURE_PREFIX = "data-capture/realtime/"
ASYNC_PREFIX = "async-inference/"
BATCH_INPUT_PREFIX = "batch-inference/input/"
BATCH_OUTPUT_PREFIX = "batch-inference/output/"


class ServingStack(PlatformStack):
    def __init__(self, scope: Construct, *, config: PlatformConfig, lake: IDataLake, network: Network,
                 model_pointer: ModelPointer | None = None) -> None:
        super().__init__(scope, "serving", config=config, description="SageMaker endpoints, autoscaling, alarms, dashboards")
        cfg: ServingConfig = config.serving
        models = lake.bucket("models")
        artifacts = lake.bucket("artifacts")
        model = ModelContainer(
            image_uri=cfg.image_uri,
            model_data=ModelData.from_bucket(models, cfg.model_data_key),
            environment={"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_CONTAINER_LOG_LEVEL": "20"},
        )
        network_props = dict(vpc=network.vpc, vpc_subnets=network.private_subnet_selection)
        # The real-time endpoint serves what the pointer names: the retrain pipeline's rollouts survive a deploy.
        served = ModelContainer.from_pointer(model_pointer, environment=model.environment) if model_pointer else model

        self.realtime_endpoint = Endpoint(
            self,
            "RealtimeEndpoint",
            mode=EndpointMode.REAL_TIME,
            model=served,
            variants=[ProductionVariant(name="AllTraffic", instance_type=cfg.instance_type,
                                        initial_instance_count=cfg.initial_instance_count)],
            data_capture=DataCapture(bucket=artifacts, prefix=CAPTURE_PREFIX,
                                     sampling_percentage=cfg.data_capture_percent)
            if cfg.data_capture_percent > 0 else None,
            auto_scaling=AutoScaling(
                min_capacity=cfg.min_capacity,
                max_capacity=cfg.max_capacity,
                metric=_METRICS[cfg.scaling_metric],
                target_value=cfg.target_value,
                scale_in_cooldown=cdk.Duration.seconds(cfg.scale_in_cooldown_seconds),
                scale_out_cooldown=cdk.Duration.seconds(cfg.scale_out_cooldown_seconds),
                protect_from_scale_in=cfg.protect_from_scale_in,
                scheduled=[
                    ScheduledScaling(name=s.name, schedule=appscaling.Schedule.expression(s.schedule),
                                     min_capacity=s.min_capacity, max_capacity=s.max_capacity, time_zone=s.time_zone)
                    for s in cfg.scheduled
                ],
            ),
            deployment_guardrails=DeploymentGuardrails(
                traffic_shifting=_SHIFTING[cfg.traffic_shifting],
                canary_percent=cfg.canary_percent,
                linear_step_percent=cfg.linear_step_percent,
                wait_interval=cdk.Duration.minutes(cfg.bake_minutes),
            ),
            alarms=EndpointAlarms(
                error_5xx_rate_percent=cfg.error_5xx_rate_percent,
                error_4xx_rate_percent=cfg.error_4xx_rate_percent,
                latency_p99_ms=cfg.latency_p99_ms,
                invocations_zero=cfg.invocations_zero_alarm,
            ),
            **network_props,
        )
        rt = self.realtime_endpoint
        cdk.CfnOutput(self, "RealtimeEndpointName", value=rt.endpoint_name)
        cdk.CfnOutput(self, "RealtimeEndpointArn", value=rt.endpoint_arn)
        cdk.CfnOutput(self, "RealtimeVariantName", value=rt.primary_variant.name)
        cdk.CfnOutput(self, "ModelExecutionRoleArn", value=rt.role.role_arn)
        if rt.alarm_topic is not None:
            cdk.CfnOutput(self, "AlarmTopicArn", value=rt.alarm_topic.topic_arn)

        self.async_endpoint: Endpoint | None = None
        if cfg.async_enabled:
            self.async_endpoint = Endpoint(
                self,
                "AsyncEndpoint",
                mode=EndpointMode.ASYNC,
                model=model,
                variants=[ProductionVariant(name="AllTraffic", instance_type=cfg.async_instance_type)],
                async_inference=AsyncInference(
                    output_bucket=artifacts,
                    output_prefix=f"{ASYNC_PREFIX}output/",
                    failure_prefix=f"{ASYNC_PREFIX}failure/",
                    input_prefix=f"{ASYNC_PREFIX}input/",
                    max_concurrent_invocations_per_instance=4,
                ),
                auto_scaling=AutoScaling(min_capacity=0, max_capacity=cfg.async_max_capacity,
                                         target_value=cfg.async_backlog_target),
                deployment_guardrails=None,
                alarms=EndpointAlarms(latency_p99_ms=None, error_4xx_rate_percent=None),
                alarm_topic=rt.alarm_topic,
                **network_props,
            )
            ae = self.async_endpoint
            cdk.CfnOutput(self, "AsyncEndpointName", value=ae.endpoint_name)
            # Prefixes in the lake's artifacts bucket (the data-lake stack outputs the bucket's name).
            cdk.CfnOutput(self, "AsyncInputPrefix", value=f"{ASYNC_PREFIX}input/")
            cdk.CfnOutput(self, "AsyncOutputPrefix", value=f"{ASYNC_PREFIX}output/")

        self.batch_transform: BatchTransform | None = None
        if cfg.batch_transform_schedule:
            group = model_package_group_name(config)
            if not config.pipeline.enabled:
                cdk.Annotations.of(self).add_warning_v2(
                    "mlinfra:batch-transform-no-registry",
                    f"Batch transform scores with the newest Approved version of model package group {group}, which "
                    "the retrain pipeline (disabled here) creates: create and approve it yourself, or every run fails "
                    "as NoApprovedModel.")
            # Each ready batch (curated batch-inference/input/_ready/<batch>) and the schedule score with the newest
            # APPROVED version of the pipeline's registry, as the endpoint's model runs (role, VPC, isolation).
            self.batch_transform = BatchTransform(
                self,
                "BatchTransform",
                model_package_group_name=group,
                model_role=rt.role,
                input_bucket=lake.bucket("curated"),
                input_prefix=BATCH_INPUT_PREFIX,
                output_bucket=artifacts,
                output_prefix=BATCH_OUTPUT_PREFIX,
                instance_type=cfg.batch_transform_instance_type,
                # The pipeline registers packages for JSON in and out: each input line is one JSON record (JSON
                # Lines), each result one line; never a type the registered model does not declare.
                content_type=INFERENCE_CONTENT_TYPES[0],
                accept=INFERENCE_RESPONSE_TYPES[0],
                split_type=SplitType.LINE,
                # Results with the lake key: every reader of the artifacts zone can decrypt them.
                output_encryption_key=lake.encryption_key,
                schedule=events.Schedule.expression(cfg.batch_transform_schedule),
                trigger_on_ready_marker=True,
                vpc_config=rt.vpc_config,
                enable_network_isolation=rt.network_isolation,
                job_prefix=f"{config.prefix}-{config.env_name}"[:17].rstrip("-") + "-bt",
            )
            cdk.CfnOutput(self, "BatchTransformStateMachineArn", value=self.batch_transform.state_machine.state_machine_arn)
