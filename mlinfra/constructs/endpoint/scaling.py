"""Application Auto Scaling of each instance-backed variant, and the release that makes a type change deployable.

SageMaker refuses an UpdateEndpoint that changes the instance type of (or removes) a variant registered with
Application Auto Scaling; the variant must be deregistered first and registered again after the update (rule
``sagemaker.scaled-variant-type-change``). One ``cdk deploy`` does that in this order:

1. ``Custom::MlinfraScalingRelease`` (the endpoint ``DependsOn`` it, so it runs before the endpoint update) lists the
   autoscaled variants with their instance types; on an update it deregisters the targets of the variants whose
   type changed or that stopped being scaled (``mlinfra/lambdas/scaling_release``).
2. CloudFormation updates the endpoint (new endpoint config, blue/green).
3. Each target's logical id carries its variant's instance type, so CloudFormation creates a NEW target (and new
   scaling policies) after the endpoint update: a fresh registration for the new type.
4. Cleanup drops the old target. It has ``DeletionPolicy: Retain``: its registration identifier
   (``endpoint/<name>/variant/<variant>``) is the new target's too, and deleting it would deregister the new one.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_iam as iam

from mlinfra.constructs.endpoint.props import (
    NS_INSTANCE,
    EndpointMode,
    ScalingMetric,
    ProductionVariant,
    AutoScaling,
    _label,
)
from mlinfra.constructs.lambda_function import HandlerFunction
from mlinfra.constructs.wildcards import acknowledge_wildcards, ending

#: Application Auto Scaling's namespace and dimension of an endpoint variant's instance count.
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
#: Construct id of the stack's one release handler (shared by every endpoint of the stack).
RELEASE_HANDLER_ID = "MlinfraScalingReleaseHandler"
RELEASE_RESOURCE_TYPE = "Custom::MlinfraScalingRelease"


def target_id(variant: ProductionVariant) -> str:
    """The scalable target's construct id: the variant and its instance type, so a type change makes a new target.
    The short hash keeps two types with the same letters (``ml.g5.12xlarge``, ``ml.g51.2xlarge``) apart."""
    instance_type = variant.instance_type or "serverless"
    digest = hashlib.sha256(instance_type.encode()).hexdigest()[:6]
    return f"{_label(variant.name)}ScalableTarget{_label(instance_type)}{digest}"


class _ScalingMixin:
    """Application Auto Scaling of each instance-backed variant."""

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
            self, target_id(v),
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            scalable_dimension=SCALABLE_DIMENSION,
            resource_id=f"endpoint/{self.endpoint_name}/variant/{v.name}",
            min_capacity=min_cap, max_capacity=a.max_capacity, role=slr,
        )
        # Registered after the endpoint (create and update): a type change registers the new target here.
        target.node.add_dependency(self.endpoint)
        # A superseded target leaves the template in the cleanup phase, AFTER its successor registered the same
        # identifier: deleting it would deregister the successor. The release already deregistered it.
        target.node.default_child.apply_removal_policy(cdk.RemovalPolicy.RETAIN)
        default_target = {ScalingMetric.INVOCATIONS_PER_INSTANCE: 100.0, ScalingMetric.BACKLOG_PER_INSTANCE: 5.0}
        value = a.target_value if a.target_value is not None else default_target.get(metric, 70.0)
        if metric is ScalingMetric.GPU_UTILIZATION and a.target_value is None:
            value *= self._gpus(v)  # GPUUtilization is summed over GPUs: 70 % of each GPU
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

    def _release_scaling(self, variants: Sequence[ProductionVariant], auto_scaling: AutoScaling | None) -> cdk.CustomResource:
        """The ``Custom::MlinfraScalingRelease`` the endpoint depends on (see the module docstring)."""
        stack = cdk.Stack.of(self)
        handler = stack.node.try_find_child(RELEASE_HANDLER_ID)
        if handler is None:
            handler = _release_handler(stack)
        scaled = {v.name: v.instance_type for v in variants if v.instance_type} if auto_scaling is not None else {}
        release = cdk.CustomResource(
            self, "ScalingRelease",
            service_token=handler.function.function_arn,
            resource_type=RELEASE_RESOURCE_TYPE,
            # A handler that dies before answering fails the deploy in minutes, not after CloudFormation's hour.
            service_timeout=cdk.Duration.minutes(5),
            properties={"EndpointLogicalId": stack.get_logical_id(self.endpoint), "Variants": scaled},
        )
        release.node.add_dependency(handler)  # its role's policy exists before the first event
        self.endpoint.node.add_dependency(release)
        return release


def _release_handler(stack: cdk.Stack) -> HandlerFunction:
    """The stack's one release function, allowed to read this stack's resources and deregister SageMaker variant
    targets only (Service Authorization Reference, Application Auto Scaling: DeregisterScalableTarget takes the
    ``scalable-target`` resource, whose ARN ends in a random id, and the ``service-namespace`` and
    ``scalable-dimension`` condition keys; DescribeScalableTargets takes no resource)."""
    handler = HandlerFunction(
        stack, RELEASE_HANDLER_ID, handler="scaling_release", timeout=cdk.Duration.minutes(2),
        description="mlinfra: deregisters an endpoint variant's scalable target before an instance-type change",
    )
    stack_arn = stack.format_arn(service="cloudformation", resource="stack", resource_name=f"{stack.stack_name}/*")
    target_arn = stack.format_arn(service="application-autoscaling", resource="scalable-target", resource_name="*")
    handler.role.add_to_policy(iam.PolicyStatement(actions=["cloudformation:DescribeStackResource"], resources=[stack_arn]))
    handler.role.add_to_policy(iam.PolicyStatement(actions=["application-autoscaling:DescribeScalableTargets"], resources=["*"]))
    handler.role.add_to_policy(iam.PolicyStatement(
        actions=["application-autoscaling:DeregisterScalableTarget"], resources=[target_arn],
        conditions={"StringEquals": {"application-autoscaling:service-namespace": "sagemaker",
                                     "application-autoscaling:scalable-dimension": SCALABLE_DIMENSION}},
    ))
    acknowledge_wildcards(
        handler.role,
        "Reads the endpoint's physical id in this stack only (stack/<name>/<id>: the id part is random); "
        "DescribeScalableTargets takes no resource; DeregisterScalableTarget names a scalable-target whose ARN ends in "
        "a random id, so it is limited by its condition keys to SageMaker variant instance counts",
        resources=["*", ending(f":stack/{stack.stack_name}/*"), ending(":scalable-target/*")],
    )
    return handler
