"""scaling_guard against moto in-process (issue 12 item 5): the Release and Restore custom resources, called with the
events CloudFormation sends in the order it sends them (forward type change, both rollbacks, re-runs, no change).

moto has no UpdateEndpoint: ``_switch`` moves the endpoint to another endpoint config the way a finished update
(or its rollback) leaves it. moto does not enforce SageMaker's refusal to update a registered variant; the tests
assert the registration state at each point instead (``_assert_updatable``).
"""

from __future__ import annotations

import json
from unittest import mock

import boto3
import pytest
from moto import mock_aws
from moto.applicationautoscaling.exceptions import AWSValidationException
from moto.applicationautoscaling.models import ApplicationAutoscalingBackend
from moto.sagemaker.models import sagemaker_backends

from mlinfra.domain.api_model import request_errors, service_model
from tests.workflow.sfn_harness import _Context, load_handler

h = load_handler("scaling_guard")
_real_in_stack, _real_rolling_back = h._in_stack, h._rolling_back
CTX = _Context("guard")
ROLE = "arn:aws:iam::123456789012:role/model"
SLR = ("arn:aws:iam::123456789012:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
       "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint")
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1"
DIM = "sagemaker:variant:DesiredInstanceCount"
M5, C5 = "ml.m5.large", "ml.c5.xlarge"
_TEMPLATE = {"Resources": {
    "Model": {"Type": "AWS::SageMaker::Model", "Properties": {"ExecutionRoleArn": ROLE, "PrimaryContainer": {"Image": IMAGE}}},
    "Config": {"Type": "AWS::SageMaker::EndpointConfig", "Properties": {"ProductionVariants": [
        {"VariantName": v, "ModelName": {"Fn::GetAtt": ["Model", "ModelName"]}, "InitialInstanceCount": 1,
         "InstanceType": M5, "InitialVariantWeight": 1} for v in ("Blue", "Green")]}},
    "Ep": {"Type": "AWS::SageMaker::Endpoint", "Properties": {"EndpointConfigName": {"Fn::GetAtt": ["Config", "EndpointConfigName"]}}},
}}


def spec(instance_type: str, max_capacity: int = 4, policies: bool = True, variant: str = "Green",
         policy_name: str | None = None) -> dict:
    """A variant's properties as the construct synthesizes them (policy names and logical ids carry the type's hash;
    no RoleARN: Application Auto Scaling uses the SageMaker service-linked role)."""
    out = {"InstanceType": instance_type, "TargetLogicalId": f"{variant}Target",
           "Target": {"MinCapacity": 1, "MaxCapacity": max_capacity},
           "ScheduledActions": [{"ScheduledActionName": "night", "Schedule": "cron(0 22 * * ? *)",
                                 "ScalableTargetAction": {"MinCapacity": 1}}]}
    if policies:
        out["Policies"] = [{"LogicalId": f"{variant}Tracking{instance_type}", "PolicyName": policy_name or f"tracking-{instance_type}",
                            "PolicyType": "TargetTrackingScaling",
                            "TargetTrackingScalingPolicyConfiguration": {
                                "TargetValue": 100.0, "ScaleInCooldown": 300, "DisableScaleIn": False,
                                "CustomizedMetricSpecification": {
                                    "MetricName": "CPUUtilization", "Namespace": "/aws/sagemaker/Endpoints", "Statistic": "Average",
                                    "Dimensions": [{"Name": "EndpointName", "Value": "{{EndpointName}}"}]}}}]
    return out


def _strings(value):
    """As CloudFormation delivers custom resource properties: every scalar a string."""
    if isinstance(value, dict):
        return {k: _strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strings(v) for v in value]
    return str(value).lower() if isinstance(value, bool) else str(value)


_moto_deregister = ApplicationAutoscalingBackend.deregister_scalable_target
_moto_put_policy = ApplicationAutoscalingBackend.put_scaling_policy


def _deregister_like_aws(self, namespace, r_id, dimension):
    """DeregisterScalableTarget "deletes the scaling policies and the scheduled actions associated with it" (API
    reference); moto 5.2.5 keeps them, so the tests model the documented behaviour."""
    _moto_deregister(self, namespace, r_id, dimension)
    self.policies = {k: p for k, p in self.policies.items() if (p.resource_id, p.scalable_dimension) != (r_id, dimension)}
    self.scheduled_actions = [a for a in self.scheduled_actions
                              if (a.resource_id, a.scalable_dimension) != (r_id, dimension)]


def _put_policy_like_aws(self, policy_name, service_namespace, resource_id, scalable_dimension, policy_body, policy_type):
    """Application Auto Scaling takes one TargetTrackingScaling policy per metric specification on a target ("Only
    one TargetTrackingScaling policy for a given metric specification is allowed"); moto 5.2.5 takes any number."""
    def metric(body):
        return {k: v for k, v in (body or {}).items() if k.endswith("MetricSpecification")}
    if policy_type == "TargetTrackingScaling":
        for p in self.policies.values():
            if ((p.resource_id, p.scalable_dimension, p.policy_type) == (resource_id, scalable_dimension, policy_type)
                    and p.policy_name != policy_name and metric(p.target_tracking_scaling_policy_configuration) == metric(policy_body)):
                raise AWSValidationException("Only one TargetTrackingScaling policy for a given metric specification is allowed.")
    return _moto_put_policy(self, policy_name, service_namespace, resource_id, scalable_dimension, policy_body, policy_type)


@pytest.fixture()
def aws():
    """A stack whose endpoint runs Blue and Green on ml.m5.large, Green registered with its policy and schedule as
    CloudFormation left it; another endpoint's target must never be touched. ``aws["stack"]``: the logical ids the
    stack holds (what DescribeStackResource finds), ``aws["rollback"]``: whether the stack is rolling back."""
    h._clients.clear()
    env: dict = {"stack": {"GreenTarget", f"GreenTracking{M5}"}, "rollback": False}
    with mock_aws(), mock.patch.dict("os.environ", {"AWS_DEFAULT_REGION": "us-east-1"}), \
            mock.patch.object(ApplicationAutoscalingBackend, "deregister_scalable_target", _deregister_like_aws), \
            mock.patch.object(ApplicationAutoscalingBackend, "put_scaling_policy", _put_policy_like_aws), \
            mock.patch.object(h, "_in_stack", lambda stack_id, lid: lid in env["stack"]), \
            mock.patch.object(h, "_rolling_back", lambda stack_id: env["rollback"]):
        cfn = boto3.client("cloudformation")
        stack_id = cfn.create_stack(StackName="Serving", TemplateBody=json.dumps(_TEMPLATE))["StackId"]
        arn = cfn.describe_stack_resource(StackName=stack_id, LogicalResourceId="Ep")["StackResourceDetail"]["PhysicalResourceId"]
        sm = boto3.client("sagemaker")
        name = next(e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]
                    if e["EndpointName"].lower() == arn.split(":endpoint/", 1)[1].lower())
        model = sm.list_models()["Models"][0]["ModelName"]
        for t in (M5, C5):
            sm.create_endpoint_config(EndpointConfigName=f"cfg-{t}", ProductionVariants=[
                {"VariantName": v, "ModelName": model, "InitialInstanceCount": 1, "InstanceType": t} for v in ("Blue", "Green")])
        aas = boto3.client("application-autoscaling")
        env.update(stack_id=stack_id, name=name, aas=aas, arn=arn)
        _register(env, f"endpoint/{name}/variant/Green", M5)
        _register(env, "endpoint/other/variant/Green", M5)
        yield env
    h._clients.clear()


def _register(aws, resource_id: str, instance_type: str, policy_name: str | None = None) -> None:
    s = spec(instance_type)
    aws["aas"].register_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource_id, ScalableDimension=DIM,
                                        **s["Target"])
    _cfn_puts_policy(aws, resource_id, instance_type, policy_name)


def _cfn_puts_policy(aws, resource_id: str, instance_type: str, policy_name: str | None = None) -> None:
    """What CloudFormation's AWS::ApplicationAutoScaling::ScalingPolicy create does (its dimension: the real name)."""
    policy = {k: v for k, v in spec(instance_type, policy_name=policy_name)["Policies"][0].items() if k != "LogicalId"}
    name = resource_id.split("/")[1]
    aws["aas"].put_scaling_policy(ServiceNamespace="sagemaker", ResourceId=resource_id, ScalableDimension=DIM, **{
        **policy, "TargetTrackingScalingPolicyConfiguration": json.loads(json.dumps(
            policy["TargetTrackingScalingPolicyConfiguration"]).replace("{{EndpointName}}", name))})


def _switch(aws, instance_type: str) -> None:
    """The endpoint now runs ``instance_type`` (what a finished UpdateEndpoint, or its rollback, leaves)."""
    sagemaker_backends["123456789012"]["us-east-1"].endpoints[aws["name"]].endpoint_config_name = f"cfg-{instance_type}"


def _event(aws, phase: str, new: dict | None, old: dict | None = None, request_type: str = "Update", **extra) -> dict:
    """The event CloudFormation sends ``phase`` (both guards carry the same variants)."""
    def props(variants):
        return _strings({"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:f", "EndpointLogicalId": "Ep",
                         "Phase": phase, "Variants": variants})
    event = {"RequestType": request_type, "StackId": aws["stack_id"], "RequestId": "r1",
             "LogicalResourceId": f"EpScaling{phase}", "ResourceType": "Custom::MlinfraScalingGuard",
             "ResourceProperties": props(new or {})}
    if old is not None:
        event["OldResourceProperties"] = props(old)
    return {**event, **extra}


def _state(aws) -> dict:
    """What Application Auto Scaling holds for Green: (min, max), policy names, scheduled action names."""
    rid = f"endpoint/{aws['name']}/variant/Green"
    q = {"ServiceNamespace": "sagemaker"}
    targets = [t for t in aws["aas"].describe_scalable_targets(**q)["ScalableTargets"] if t["ResourceId"] == rid]
    policies = [p for p in aws["aas"].describe_scaling_policies(**q)["ScalingPolicies"] if p["ResourceId"] == rid]
    actions = [a for a in aws["aas"].describe_scheduled_actions(**q)["ScheduledActions"] if a["ResourceId"] == rid]
    return {"target": [(t["MinCapacity"], t["MaxCapacity"]) for t in targets],
            "policies": sorted(p["PolicyName"] for p in policies), "scheduled": sorted(a["ScheduledActionName"] for a in actions)}


def _other_untouched(aws) -> None:
    ids = {t["ResourceId"] for t in aws["aas"].describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]}
    assert "endpoint/other/variant/Green" in ids


def _assert_updatable(aws) -> None:
    """SageMaker accepts the endpoint update only with the variant deregistered."""
    assert _state(aws)["target"] == []


OLD, NEW = {"Green": spec(M5)}, {"Green": spec(C5, max_capacity=6)}
INITIAL = {"target": [(1, 4)], "policies": [f"tracking-{M5}"], "scheduled": []}  # CloudFormation put the schedule in the target


def test_forward_type_change(aws):
    out = h.reconcile(_event(aws, "Release", NEW, OLD))
    assert out["deregistered"] == [f"endpoint/{aws['name']}/variant/Green"] and out["registered"] == []
    _assert_updatable(aws)
    _switch(aws, C5)  # the endpoint update
    out = h.reconcile(_event(aws, "Restore", NEW, OLD))
    assert out["registered"] == [f"endpoint/{aws['name']}/variant/Green"]
    # W2: the target as CloudFormation has it on record (the OLD max 4) with its schedule; CloudFormation's own target
    # update applies max 6 next, and it creates the new policies (none re-put: their logical ids are not in the stack).
    assert _state(aws) == {"target": [(1, 4)], "policies": [], "scheduled": ["night"]}
    _cfn_puts_policy(aws, f"endpoint/{aws['name']}/variant/Green", C5)
    _other_untouched(aws)


def test_endpoint_update_fails_rollback_restores_old_target_and_policies(aws):
    h.reconcile(_event(aws, "Release", NEW, OLD))
    # UpdateEndpoint fails (or blue/green auto-rolls back): the endpoint still runs ml.m5.large. CloudFormation rolls
    # back Release: Update with the old template's properties as the new ones.
    aws["rollback"] = True
    out = h.reconcile(_event(aws, "Release", OLD, NEW))
    assert out["registered"] == [f"endpoint/{aws['name']}/variant/Green"]
    # The target was never updated by CloudFormation: the old spec (max 4), not the forward one.
    assert _state(aws) == {"target": [(1, 4)], "policies": [f"tracking-{M5}"], "scheduled": ["night"]}
    # The policy's dimension names the real endpoint, not the placeholder.
    policy = aws["aas"].describe_scaling_policies(ServiceNamespace="sagemaker", PolicyNames=[f"tracking-{M5}"])["ScalingPolicies"]
    dims = [p for p in policy if p["ResourceId"] == f"endpoint/{aws['name']}/variant/Green"][0]["TargetTrackingScalingPolicyConfiguration"]
    assert dims["CustomizedMetricSpecification"]["Dimensions"] == [{"Name": "EndpointName", "Value": aws["name"]}]
    assert dims["DisableScaleIn"] is False and dims["ScaleInCooldown"] == 300  # typed back from CloudFormation's strings


def test_a_rollback_points_the_step_policy_alarm_at_the_re_put_policy(aws):
    """The scale-from-zero step policy's alarm is a stack resource holding the policy's ARN; the re-put policy has a
    new ARN, so the guard points the alarm at it (other alarms untouched)."""
    rid = f"endpoint/{aws['name']}/variant/Green"
    step = {"LogicalId": f"GreenStep{M5}", "PolicyName": f"step-{M5}", "PolicyType": "StepScaling", "StepScalingPolicyConfiguration": {
        "AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Average", "Cooldown": 60,
        "StepAdjustments": [{"MetricIntervalUpperBound": 0, "ScalingAdjustment": 0},
                            {"MetricIntervalLowerBound": 1, "ScalingAdjustment": 1}]}}
    aws["stack"].add(step["LogicalId"])
    first = aws["aas"].put_scaling_policy(ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIM,
                                          **{k: v for k, v in step.items() if k != "LogicalId"})
    cw = boto3.client("cloudwatch")
    for alarm, actions in (("from-zero", [first["PolicyARN"]]), ("unrelated", ["arn:aws:sns:us-east-1:123456789012:t"])):
        cw.put_metric_alarm(AlarmName=alarm, MetricName="HasBacklogWithoutCapacity", Namespace="AWS/SageMaker",
                            Statistic="Average", Period=60, EvaluationPeriods=2, Threshold=1.0,
                            ComparisonOperator="GreaterThanOrEqualToThreshold", AlarmActions=actions,
                            Dimensions=[{"Name": "EndpointName", "Value": aws["name"]}])
    old = {"Green": {**spec(M5), "Policies": [*spec(M5)["Policies"], step]}}
    h.reconcile(_event(aws, "Release", NEW, old))  # forward: deregistered (its policies with it)
    aws["rollback"] = True
    out = h.reconcile(_event(aws, "Release", old, NEW))  # the endpoint update failed: rollback
    assert out["repointed"] == ["from-zero"]
    now = {p["PolicyName"]: p["PolicyARN"] for p in aws["aas"].describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId=rid)["ScalingPolicies"]}
    assert now[f"step-{M5}"] != first["PolicyARN"]
    alarms = {a["AlarmName"]: a for a in cw.describe_alarms()["MetricAlarms"]}
    assert alarms["from-zero"]["AlarmActions"] == [now[f"step-{M5}"]]
    assert alarms["from-zero"]["Threshold"] == 1.0 and alarms["from-zero"]["EvaluationPeriods"] == 2  # the rest kept
    assert alarms["unrelated"]["AlarmActions"] == ["arn:aws:sns:us-east-1:123456789012:t"]


def _forward_then_fail_later(aws) -> str:
    """A forward type change that completes (target updated to max 6, new policy created) before a later resource
    fails; returns the variant's resource id."""
    rid = f"endpoint/{aws['name']}/variant/Green"
    h.reconcile(_event(aws, "Release", NEW, OLD))
    _switch(aws, C5)
    h.reconcile(_event(aws, "Restore", NEW, OLD))
    aws["aas"].register_scalable_target(ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIM,
                                        MinCapacity=1, MaxCapacity=6)  # CloudFormation's target update
    _cfn_puts_policy(aws, rid, C5)  # CloudFormation creates the renamed policy
    aws["stack"].add(f"GreenTracking{C5}")
    aws["rollback"] = True
    return rid


@pytest.mark.parametrize("first, last", [("Restore", "Release"), ("Release", "Restore")],
                         ids=["reverse-order", "dependency-order"])
def test_failure_after_restore_rolls_back_in_either_order(aws, first, last):
    """A later resource fails. Reverse dependency order: the new policy and the target are rolled back first, then
    Restore (deregisters: the endpoint still runs the new type), the endpoint reverts, then Release (registers the
    old target, re-puts the old policy). The previous template's dependency order (W1): Release first (deregisters),
    the endpoint reverts, Restore last with the old properties (registers, deletes the renamed policy: one
    target-tracking policy per metric, re-puts the old one, whose logical id the stack still holds)."""
    rid = _forward_then_fail_later(aws)
    if first == "Restore":
        aws["aas"].delete_scaling_policy(ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIM,
                                         PolicyName=f"tracking-{C5}")
        aws["aas"].register_scalable_target(ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIM,
                                            MinCapacity=1, MaxCapacity=4)  # the target's rollback
    out = h.reconcile(_event(aws, first, OLD, NEW))
    assert out["deregistered"] == [rid]  # the endpoint still runs ml.c5.xlarge, ml.m5.large is desired
    _assert_updatable(aws)  # so the endpoint's revert can succeed
    _switch(aws, M5)
    out = h.reconcile(_event(aws, last, OLD, NEW))
    assert out["registered"] == [rid]
    assert _state(aws) == {"target": [(1, 4)], "policies": [f"tracking-{M5}"], "scheduled": ["night"]}
    _other_untouched(aws)


def test_restore_last_in_a_rollback_prunes_before_re_putting(aws):
    """Restore's rollback with the renamed policy still on a registered target (not yet deleted by CloudFormation):
    the re-put of the old policy would be refused (same metric), so the guard deletes the renamed one first."""
    rid = _forward_then_fail_later(aws)
    aws["aas"].deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIM)
    _switch(aws, M5)
    aws["aas"].register_scalable_target(ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIM,
                                        MinCapacity=1, MaxCapacity=6)
    _cfn_puts_policy(aws, rid, C5)
    out = h.reconcile(_event(aws, "Restore", OLD, NEW))
    assert out["pruned"] == [f"{rid}:tracking-{C5}"]
    assert _state(aws)["policies"] == [f"tracking-{M5}"]


@pytest.mark.parametrize("phase, running", [("Release", M5), ("Restore", C5)])
def test_rerunning_an_event_is_harmless(aws, phase, running):
    if phase == "Restore":
        h.reconcile(_event(aws, "Release", NEW, OLD))
        _switch(aws, running)
    event = _event(aws, phase, NEW, OLD)
    h.reconcile(event)
    before = _state(aws)
    again = h.reconcile(event)  # CloudFormation re-sends an event whose response it did not get
    assert again["deregistered"] == again["registered"] == again["pruned"] == []
    assert _state(aws) == before


def test_rollback_events_rerun_are_harmless(aws):
    h.reconcile(_event(aws, "Release", NEW, OLD))
    aws["rollback"] = True
    rollback = _event(aws, "Release", OLD, NEW)
    h.reconcile(rollback)
    assert h.reconcile(rollback)["registered"] == []


def test_a_change_that_keeps_the_type_calls_nothing(aws):
    """A capacity change (CloudFormation updates the target itself) and a no-change re-send make no write."""
    aas = h.client("application-autoscaling")
    with mock.patch.object(aas, "register_scalable_target") as reg, mock.patch.object(aas, "deregister_scalable_target") as dereg, \
            mock.patch.object(aas, "delete_scaling_policy") as delete:
        for phase in ("Release", "Restore"):
            assert h.reconcile(_event(aws, phase, {"Green": spec(M5, max_capacity=8)}, OLD))["endpoint"] == aws["name"]
            h.reconcile(_event(aws, phase, OLD, OLD))
    assert not reg.called and not dereg.called and not delete.called


def test_delete_does_nothing(aws):
    out = h.reconcile(_event(aws, "Release", NEW, None, "Delete"))
    assert out == {"endpoint": None, "deregistered": [], "registered": [], "repointed": [], "pruned": []}
    assert _state(aws)["target"] == [(1, 4)]


# The first deploy of this version over an existing stack: the guards are new (Create events); the stack's target
# ("GreenTarget") exists, its policy has the previous release's name (no type hash).
PREVIOUS = "EpGreenTrackingPolicy"


def _previous_release(aws) -> str:
    rid = f"endpoint/{aws['name']}/variant/Green"
    aws["aas"].delete_scaling_policy(ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIM, PolicyName=f"tracking-{M5}")
    _cfn_puts_policy(aws, rid, M5, policy_name=PREVIOUS)
    aws["stack"].discard(f"GreenTracking{M5}")
    aws["stack"].add("PreviousTracking")
    return rid


def test_the_renamed_policy_is_refused_without_the_guard(aws):
    """Negative (B1): CloudFormation creates the renamed policy before cleanup deletes the old one; Application Auto
    Scaling refuses a second target-tracking policy on the same metric (modelled in moto by this module)."""
    rid = _previous_release(aws)
    with pytest.raises(aws["aas"].exceptions.ClientError, match="Only one TargetTrackingScaling policy"):
        _cfn_puts_policy(aws, rid, M5)


def test_upgrade_without_type_change_restore_deletes_the_old_named_policy(aws):
    """B1: Release's Create changes nothing (the type is unchanged); Restore's Create deletes the policy whose name
    the template no longer has, so CloudFormation's create of the renamed one succeeds; cleanup's delete of the old
    one then finds nothing (success under the resource handler contract)."""
    rid = _previous_release(aws)
    out = h.reconcile(_event(aws, "Release", OLD, None, "Create"))
    assert out["deregistered"] == out["registered"] == out["pruned"] == []
    out = h.reconcile(_event(aws, "Restore", OLD, None, "Create"))
    assert out["pruned"] == [f"{rid}:{PREVIOUS}"] and out["registered"] == []
    assert _state(aws) == {"target": [(1, 4)], "policies": [], "scheduled": []}
    _cfn_puts_policy(aws, rid, M5)  # CloudFormation's create: accepted now
    assert _state(aws)["policies"] == [f"tracking-{M5}"]
    _other_untouched(aws)


def test_upgrade_with_a_type_change_deregisters_on_create_and_registers_the_existing_target(aws):
    """B2: a type change in the first deploy. Release's Create deregisters (the endpoint runs the old type); Restore's
    Create registers again because the stack already has the target resource (DescribeStackResource)."""
    rid = _previous_release(aws)
    out = h.reconcile(_event(aws, "Release", NEW, None, "Create"))
    assert out["deregistered"] == [rid]
    _assert_updatable(aws)
    _switch(aws, C5)
    out = h.reconcile(_event(aws, "Restore", NEW, None, "Create"))
    assert out["registered"] == [rid]
    assert _state(aws) == {"target": [(1, 6)], "policies": [], "scheduled": ["night"]}
    _cfn_puts_policy(aws, rid, C5)
    _other_untouched(aws)


def test_a_new_stack_leaves_the_target_to_cloudformation(aws):
    """On a brand-new stack CloudFormation creates the target after Restore: Restore's Create must not register it
    (the stack has no target resource yet), or CloudFormation's create would clash."""
    out = h.reconcile(_event(aws, "Release", {"Blue": spec(M5, variant="Blue")}, None, "Create"))
    assert out["deregistered"] == out["registered"] == []
    out = h.reconcile(_event(aws, "Restore", {"Blue": spec(M5, variant="Blue")}, None, "Create"))
    assert out["registered"] == [] and out["pruned"] == []
    rids = {t["ResourceId"] for t in aws["aas"].describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]}
    assert f"endpoint/{aws['name']}/variant/Blue" not in rids


def test_stack_resource_and_rollback_lookups(aws):
    """The real lookups against moto: a logical id the stack holds, one it does not, and the stack's status."""
    with mock.patch.object(h, "_in_stack", _real_in_stack), mock.patch.object(h, "_rolling_back", _real_rolling_back):
        assert h._in_stack(aws["stack_id"], "Ep") is True
        assert h._in_stack(aws["stack_id"], "NoSuchResource") is False
        assert h._in_stack(aws["stack_id"], None) is False
        assert h._rolling_back(aws["stack_id"]) is False
        cfn = h.client("cloudformation")
        with mock.patch.object(cfn, "describe_stacks", return_value={"Stacks": [{"StackStatus": "UPDATE_ROLLBACK_IN_PROGRESS"}]}):
            assert h._rolling_back(aws["stack_id"]) is True


def test_a_variant_no_longer_scaled_is_deregistered(aws):
    out = h.reconcile(_event(aws, "Release", {}, OLD))  # scaling turned off for Green, or Green removed
    assert out["deregistered"] == [f"endpoint/{aws['name']}/variant/Green"]
    _other_untouched(aws)


def test_a_new_scaled_variant_is_left_to_cloudformation(aws):
    out = h.reconcile(_event(aws, "Restore", {**OLD, "Blue": spec(M5)}, OLD))
    assert out["registered"] == [] and out["deregistered"] == []


def test_a_target_gone_meanwhile_counts_as_deregistered(aws):
    real = h.client("application-autoscaling")
    error = real.exceptions.ObjectNotFoundException({"Error": {"Code": "ObjectNotFoundException", "Message": "gone"}},
                                                    "DeregisterScalableTarget")
    with mock.patch.object(real, "deregister_scalable_target", side_effect=error):
        assert h.reconcile(_event(aws, "Release", NEW, OLD))["deregistered"]


def test_another_service_error_fails_the_guard(aws):
    real = h.client("application-autoscaling")
    error = real.exceptions.ConcurrentUpdateException({"Error": {"Code": "ConcurrentUpdateException", "Message": "busy"}},
                                                      "DeregisterScalableTarget")
    with mock.patch.object(real, "deregister_scalable_target", side_effect=error), pytest.raises(Exception, match="busy"):
        h.reconcile(_event(aws, "Release", NEW, OLD))


def test_the_endpoint_name_is_found_without_case(aws):
    """The physical id is the ARN, whose name part SageMaker lowercases (moto keeps the case: asked directly)."""
    assert aws["name"].lower() != aws["name"]
    assert h.current_types(aws["name"].lower()) == (aws["name"], {"Blue": M5, "Green": M5})
    assert h.current_types("no-such-endpoint") is None
    assert h.reconcile(_event(aws, "Release", NEW, OLD))["endpoint"] == aws["name"]


def test_an_endpoint_missing_from_the_stack_changes_nothing(aws):
    event = _event(aws, "Release", NEW, OLD)
    event["ResourceProperties"]["EndpointLogicalId"] = "Gone"
    assert h.reconcile(event) == {"endpoint": None, "deregistered": [], "registered": [], "repointed": [], "pruned": []}
    assert _state(aws)["target"] == [(1, 4)]


@pytest.mark.parametrize("mutate, message", [
    (lambda e: e.pop("StackId"), "lacks StackId"),
    (lambda e: e["ResourceProperties"].pop("EndpointLogicalId"), "EndpointLogicalId must be a logical id"),
    (lambda e: e.update(RequestType="Replace"), "RequestType must be Create, Update or Delete, got: 'Replace'"),
    (lambda e: e["OldResourceProperties"].update(Variants={"Green": "ml.m5.large"}), "OldResourceProperties.Variants must map"),
])
def test_malformed_events_are_refused(aws, mutate, message):
    event = _event(aws, "Release", NEW, OLD)
    mutate(event)
    with pytest.raises(h.MalformedEventError, match=message):
        h.reconcile(event)


def test_the_handler_answers_cloudformation_success_and_failure(aws):
    sent = []

    class _Response:
        def __enter__(self): return self
        def __exit__(self, *a): return False
        def read(self): return b""

    def urlopen(request, timeout):
        sent.append((request.get_method(), request.full_url, json.loads(request.data)))
        return _Response()

    with mock.patch.object(h.urllib.request, "urlopen", urlopen):
        ok = h.handler(_event(aws, "Release", NEW, OLD, ResponseURL="https://cfn-response.example/put",
                              PhysicalResourceId="keep-me"), CTX)
        bad = h.handler(_event(aws, "Release", NEW, OLD, request_type="Oops", ResponseURL="https://cfn-response.example/put"), CTX)
    assert ok["Status"] == "SUCCESS" and ok["PhysicalResourceId"] == "keep-me" and "/variant/Green" in ok["Reason"]
    assert bad["Status"] == "FAILED" and "RequestType must be" in bad["Reason"]
    assert [(m, u) for m, u, _ in sent] == [("PUT", "https://cfn-response.example/put")] * 2


def test_requests_and_error_names_match_the_service_models():
    ids = {"ServiceNamespace": h.NAMESPACE, "ResourceId": "endpoint/e/variant/v", "ScalableDimension": h.DIMENSION}
    assert request_errors("application-autoscaling", "DeregisterScalableTarget", ids) == []
    assert request_errors("application-autoscaling", "DescribeScalableTargets", {
        "ServiceNamespace": h.NAMESPACE, "ResourceIds": ["endpoint/e/variant/v"], "ScalableDimension": h.DIMENSION}) == []
    assert request_errors("cloudformation", "DescribeStackResource", {"StackName": "arn:x", "LogicalResourceId": "Ep"}) == []
    errors = {e.name for e in service_model("application-autoscaling").operation_model("DeregisterScalableTarget").error_shapes}
    assert h.NOT_FOUND in errors
