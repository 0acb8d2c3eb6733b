"""Application Auto Scaling of each instance-backed variant."""

from __future__ import annotations

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
            self, f"{label}ScalableTarget",
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            resource_id=f"endpoint/{self.endpoint_name}/variant/{v.name}",
            min_capacity=min_cap, max_capacity=a.max_capacity, role=slr,
        )
        target.node.add_dependency(self.endpoint)
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
