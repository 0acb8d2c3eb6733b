"""Application Auto Scaling of each instance-backed variant, and the guard that makes a type change deployable.

SageMaker refuses an UpdateEndpoint that changes the instance type of (or removes) a variant registered with
Application Auto Scaling (rule ``sagemaker.scaled-variant-type-change``). The scalable target keeps ONE stable logical
id (two resources of a stack cannot hold its primary identifier: rule ``cloudformation.primary-identifier-unique``);
two ``Custom::MlinfraScalingGuard`` resources (``mlinfra/lambdas/scaling_guard``) reconcile its registration with the
instance type the endpoint runs: ``Release`` before the endpoint update (deregisters), ``Restore`` after it
(registers again, deletes the policies the template no longer names: one target-tracking policy per metric). The
scaling policies' construct ids, hence their logical ids and PolicyNames, carry a short hash of the variant's instance
type: after a type change CloudFormation creates new policies on the registered target and deletes the old ones
(already gone) in cleanup. Both guards carry the target's and the policies' logical ids and specs: a rollback re-puts
the policies the stack still holds, in either order.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

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

#: Application Auto Scaling's dimension of an endpoint variant's instance count.
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
#: Construct id of the stack's one guard function (shared by every endpoint of the stack).
GUARD_HANDLER_ID = "MlinfraScalingGuardHandler"
GUARD_RESOURCE_TYPE = "Custom::MlinfraScalingGuard"
#: Stands for the endpoint's name in the guard's properties (the handler substitutes it).
ENDPOINT_NAME = "{{EndpointName}}"


def type_tag(instance_type: str) -> str:
    """A short hash of the instance type, carried by the policies' construct ids (so by their names)."""
    return hashlib.sha256(instance_type.encode()).hexdigest()[:6]


def _api_names(value: Any) -> Any:
    """Resolved L1 properties (lowerCamel keys) with the API's member names (``roleArn`` -> ``RoleARN``)."""
    if isinstance(value, list):
        return [_api_names(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, v in value.items():
        if key[:1].islower():  # a property name; intrinsics (Ref, Fn::...) keep theirs
            key = {"roleArn": "RoleARN"}.get(key, key[0].upper() + key[1:])
            out[key] = _api_names(v)
        else:
            out[key] = v
    return out


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
            scalable_dimension=SCALABLE_DIMENSION,
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
        tag = type_tag(v.instance_type or "")
        target.scale_to_track_metric(
            f"{metric.name.title().replace('_', '')}Tracking{tag}",
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
                f"ScaleOutFromZero{tag}",
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

    def _scaling_guard(self, variants: Sequence[ProductionVariant]) -> tuple[cdk.CustomResource, cdk.CustomResource]:
        """The ``Release`` and ``Restore`` guards of this endpoint's scaled variants (see the module docstring)."""
        stack = cdk.Stack.of(self)
        handler = stack.node.try_find_child(GUARD_HANDLER_ID) or _guard_handler(stack)
        endpoint_id = stack.get_logical_id(self.endpoint)
        name_tokens = ({"Fn::GetAtt": [endpoint_id, "EndpointName"]}, {"Ref": endpoint_id})

        def spec(cfn: cdk.CfnResource, drop: Sequence[str]) -> dict[str, Any]:
            props = _api_names(stack.resolve(cfn._cfn_properties))

            def swap(value: Any) -> Any:  # the endpoint's name becomes the placeholder (Release cannot Ref it)
                if value in name_tokens:
                    return ENDPOINT_NAME
                if isinstance(value, dict):
                    return {k: swap(v) for k, v in value.items()}
                return [swap(v) for v in value] if isinstance(value, list) else value
            return swap({k: v for k, v in props.items() if k not in drop})

        scaled = {}
        for v in variants:
            target = self.scalable_targets[v.name]
            # No RoleARN: Application Auto Scaling then uses the SageMaker service-linked role (RegisterScalableTarget
            # API reference), and the guard needs no iam:PassRole.
            target_spec = spec(target.node.default_child, ("ResourceId", "ScalableDimension", "ServiceNamespace", "RoleARN"))
            scheduled = target_spec.pop("ScheduledActions", [])
            policies = [{"LogicalId": stack.get_logical_id(c),
                         **spec(c, ("ScalingTargetId", "ResourceId", "ScalableDimension", "ServiceNamespace"))}
                        for c in target.node.find_all() if isinstance(c, appscaling.CfnScalingPolicy)]
            scaled[v.name] = {"InstanceType": v.instance_type, "TargetLogicalId": stack.get_logical_id(target.node.default_child),
                              "Target": target_spec, "ScheduledActions": scheduled, "Policies": policies}
        guards = []
        for guard_id in ("ScalingRelease", "ScalingRestore"):
            guard = cdk.CustomResource(
                self, guard_id,
                service_token=handler.function.function_arn,
                resource_type=GUARD_RESOURCE_TYPE,
                # A handler that dies before answering fails the deploy in minutes, not after CloudFormation's hour.
                service_timeout=cdk.Duration.minutes(5),
                properties={"EndpointLogicalId": endpoint_id, "Phase": guard_id.removeprefix("Scaling"),
                            "Variants": scaled},
            )
            guard.node.add_dependency(handler)  # its role's policy exists before the first event
            guards.append(guard)
        release, restore = guards
        release.node.add_dependency(self.endpoint_config)  # a failing config create removes no scaling
        self.endpoint.node.add_dependency(release)
        restore.node.add_dependency(self.endpoint)
        for target in self.scalable_targets.values():
            target.node.add_dependency(restore)
            for c in target.node.find_all():
                if isinstance(c, appscaling.CfnScalingPolicy):
                    c.node.add_dependency(restore)
        return release, restore


def _guard_handler(stack: cdk.Stack) -> HandlerFunction:
    """The stack's one guard function. Least privilege from the Service Authorization Reference: Application Auto
    Scaling's writes take the ``scalable-target`` resource (its ARN ends in a random id) and the
    ``service-namespace``/``scalable-dimension`` condition keys; DescribeScalableTargets takes no resource. Its
    permission validation checks the caller for the SageMaker and CloudWatch actions it performs on the caller's
    behalf (target-tracking alarms ``TargetTracking-endpoint/...``); the SageMaker reads find the running type."""
    handler = HandlerFunction(
        stack, GUARD_HANDLER_ID, handler="scaling_guard", timeout=cdk.Duration.minutes(2),
        description="mlinfra: reconciles endpoint variants' scalable targets around an instance-type change",
    )
    arn = stack.format_arn
    stack_arn = arn(service="cloudformation", resource="stack", resource_name=f"{stack.stack_name}/*")
    target_arn = arn(service="application-autoscaling", resource="scalable-target", resource_name="*")
    endpoints = [arn(service="sagemaker", resource="endpoint", resource_name="*"),
                 arn(service="sagemaker", resource="endpoint-config", resource_name="*")]
    # Application Auto Scaling's target-tracking alarms, and this stack's alarms (CloudFormation names them
    # <stack>-<logical id>-<suffix>): a step policy re-put on rollback gets a new ARN that its alarm must name.
    alarms = [arn(service="cloudwatch", resource="alarm", resource_name=name, arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)
              for name in ("TargetTracking-endpoint/*", f"{stack.stack_name}-*")]
    slr = arn(service="iam", region="", resource="role",
              resource_name="aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
                            "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint")
    add = handler.role.add_to_policy
    add(iam.PolicyStatement(actions=["cloudformation:DescribeStackResource", "cloudformation:DescribeStacks"],
                            resources=[stack_arn]))
    add(iam.PolicyStatement(actions=["application-autoscaling:DescribeScalableTargets",
                                     "application-autoscaling:DescribeScalingPolicies", "sagemaker:ListEndpoints",
                                     "cloudwatch:DescribeAlarms"], resources=["*"]))
    add(iam.PolicyStatement(
        actions=["application-autoscaling:DeregisterScalableTarget", "application-autoscaling:RegisterScalableTarget",
                 "application-autoscaling:PutScalingPolicy", "application-autoscaling:PutScheduledAction",
                 "application-autoscaling:DeleteScalingPolicy"],
        resources=[target_arn],
        conditions={"StringEquals": {"application-autoscaling:service-namespace": "sagemaker",
                                     "application-autoscaling:scalable-dimension": SCALABLE_DIMENSION}},
    ))
    add(iam.PolicyStatement(actions=["sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig",
                                     "sagemaker:UpdateEndpointWeightsAndCapacities"], resources=endpoints))
    add(iam.PolicyStatement(actions=["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"], resources=alarms))
    add(iam.PolicyStatement(
        actions=["iam:CreateServiceLinkedRole"], resources=[slr],
        conditions={"StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}},
    ))
    acknowledge_wildcards(
        handler.role,
        "Reads the endpoint's, target's and policies' records in this stack only (stack/<name>/<id>: the id part is random). "
        "DescribeScalableTargets, DescribeScalingPolicies, ListEndpoints and DescribeAlarms take no resource. The Application Auto Scaling "
        "writes name a scalable-target whose ARN ends in a random id, so their condition keys limit them to SageMaker "
        "variant instance counts. The guard cannot reference the endpoint (it runs before it: a cycle), so SageMaker "
        "reads and the permission check's UpdateEndpointWeightsAndCapacities cover this account's endpoints in this "
        "region; CloudWatch writes cover the target-tracking alarms Application Auto Scaling names for endpoints and "
        "this stack's alarms (generated names <stack>-<logical id>-<suffix>), whose step-policy action a rollback "
        "re-points.",
        resources=["*", ending(f":stack/{stack.stack_name}/*"), ending(":scalable-target/*"), ending(":endpoint/*"),
                   ending(":endpoint-config/*"), ending(":alarm:TargetTracking-endpoint/*"),
                   ending(f":alarm:{stack.stack_name}-*")],
    )
    return handler
