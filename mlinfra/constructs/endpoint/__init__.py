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

from mlinfra.constructs.endpoint.construct import Endpoint
from mlinfra.constructs.endpoint.imported import ImportedEndpoint
from mlinfra.constructs.endpoint.ownership import ModelPointer
from mlinfra.constructs.endpoint.props import (
    DEFAULT_INSTANCE_TYPE,
    NS_INVOCATIONS,
    NS_INSTANCE,
    SERVERLESS_MEMORY_MB,
    SERVERLESS_MAX_CONCURRENCY,
    PIPELINE_CONTAINERS,
    MAX_VARIANTS,
    EndpointMode,
    ScalingMetric,
    TrafficShifting,
    ModelData,
    ModelContainer,
    ProductionVariant,
    ServerlessSettings,
    AsyncInference,
    DataCapture,
    ScheduledScaling,
    AutoScaling,
    DeploymentGuardrails,
    EndpointAlarms,
)


__all__ = [
    "Endpoint",
    "ModelPointer",
    "ImportedEndpoint",
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
