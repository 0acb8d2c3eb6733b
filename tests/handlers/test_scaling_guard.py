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
from moto.applicationautoscaling.models import ApplicationAutoscalingBackend
from moto.sagemaker.models import sagemaker_backends

from mlinfra.domain.api_model import request_errors, service_model
from tests.workflow.sfn_harness import _Context, load_handler

h = load_handler("scaling_guard")
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


def spec(instance_type: str, max_capacity: int = 4, policies: bool = True) -> dict:
    """A variant's properties as the construct synthesizes them (policy names carry the type's hash)."""
    out = {"InstanceType": instance_type, "Target": {"MinCapacity": 1, "MaxCapacity": max_capacity, "RoleARN": SLR},
           "ScheduledActions": [{"ScheduledActionName": "night", "Schedule": "cron(0 22 * * ? *)",
                                 "ScalableTargetAction": {"MinCapacity": 1}}]}
    if policies:
        out["Policies"] = [{"PolicyName": f"tracking-{instance_type}", "PolicyType": "TargetTrackingScaling",
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


def _deregister_like_aws(self, namespace, r_id, dimension):
    """DeregisterScalableTarget "deletes the scaling policies and the scheduled actions associated with it" (API
    reference); moto 5.2.5 keeps them, so the tests model the documented behaviour."""
    _moto_deregister(self, namespace, r_id, dimension)
    self.policies = {k: p for k, p in self.policies.items() if (p.resource_id, p.scalable_dimension) != (r_id, dimension)}
    self.scheduled_actions = [a for a in self.scheduled_actions
                              if (a.resource_id, a.scalable_dimension) != (r_id, dimension)]


@pytest.fixture()
def aws():
    """A stack whose endpoint runs Blue and Green on ml.m5.large, Green registered with its policy and schedule as
    CloudFormation left it; another endpoint's target must never be touched."""
    h._clients.clear()
    with mock_aws(), mock.patch.dict("os.environ", {"AWS_DEFAULT_REGION": "us-east-1"}), \
            mock.patch.object(ApplicationAutoscalingBackend, "deregister_scalable_target", _deregister_like_aws):
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
        env = {"stack_id": stack_id, "name": name, "aas": aas, "arn": arn}
        _register(env, f"endpoint/{name}/variant/Green", M5)
        _register(env, "endpoint/other/variant/Green", M5)
        yield env
    h._clients.clear()


def _register(aws, resource_id: str, instance_type: str) -> None:
    s = spec(instance_type)
    aws["aas"].register_scalable_target(ServiceNamespace="sagemaker", ResourceId=resource_id, ScalableDimension=DIM,
                                        **s["Target"])
    aws["aas"].put_scaling_policy(ServiceNamespace="sagemaker", ResourceId=resource_id, ScalableDimension=DIM, **{
        **s["Policies"][0], "TargetTrackingScalingPolicyConfiguration": json.loads(json.dumps(
            s["Policies"][0]["TargetTrackingScalingPolicyConfiguration"]).replace("{{EndpointName}}", "x"))})


def _switch(aws, instance_type: str) -> None:
    """The endpoint now runs ``instance_type`` (what a finished UpdateEndpoint, or its rollback, leaves)."""
    sagemaker_backends["123456789012"]["us-east-1"].endpoints[aws["name"]].endpoint_config_name = f"cfg-{instance_type}"


def _event(aws, phase: str, new: dict | None, old: dict | None = None, request_type: str = "Update", **extra) -> dict:
    """The event CloudFormation sends ``phase`` (Release carries policies, Restore does not)."""
    def props(variants):
        variants = {k: {kk: vv for kk, vv in v.items() if phase == "Release" or kk != "Policies"} for k, v in variants.items()}
        return _strings({"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:f", "EndpointLogicalId": "Ep",
                         "Variants": variants})
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
    # The target with the NEW spec and its schedule; the new policies are CloudFormation's to create next.
    assert _state(aws) == {"target": [(1, 6)], "policies": [], "scheduled": ["night"]}
    _other_untouched(aws)


def test_endpoint_update_fails_rollback_restores_old_target_and_policies(aws):
    h.reconcile(_event(aws, "Release", NEW, OLD))
    # UpdateEndpoint fails (or blue/green auto-rolls back): the endpoint still runs ml.m5.large. CloudFormation rolls
    # back Release: Update with the old template's properties as the new ones.
    out = h.reconcile(_event(aws, "Release", OLD, NEW))
    assert out["registered"] == [f"endpoint/{aws['name']}/variant/Green"]
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
    step = {"PolicyName": f"step-{M5}", "PolicyType": "StepScaling", "StepScalingPolicyConfiguration": {
        "AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Average", "Cooldown": 60,
        "StepAdjustments": [{"MetricIntervalUpperBound": 0, "ScalingAdjustment": 0},
                            {"MetricIntervalLowerBound": 1, "ScalingAdjustment": 1}]}}
    first = aws["aas"].put_scaling_policy(ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIM, **step)
    cw = boto3.client("cloudwatch")
    for alarm, actions in (("from-zero", [first["PolicyARN"]]), ("unrelated", ["arn:aws:sns:us-east-1:123456789012:t"])):
        cw.put_metric_alarm(AlarmName=alarm, MetricName="HasBacklogWithoutCapacity", Namespace="AWS/SageMaker",
                            Statistic="Average", Period=60, EvaluationPeriods=2, Threshold=1.0,
                            ComparisonOperator="GreaterThanOrEqualToThreshold", AlarmActions=actions,
                            Dimensions=[{"Name": "EndpointName", "Value": aws["name"]}])
    old = {"Green": {**spec(M5), "Policies": [*spec(M5)["Policies"], step]}}
    h.reconcile(_event(aws, "Release", NEW, old))  # forward: deregistered (its policies with it)
    out = h.reconcile(_event(aws, "Release", old, NEW))  # the endpoint update failed: rollback
    assert out["repointed"] == ["from-zero"]
    now = {p["PolicyName"]: p["PolicyARN"] for p in aws["aas"].describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId=rid)["ScalingPolicies"]}
    assert now[f"step-{M5}"] != first["PolicyARN"]
    alarms = {a["AlarmName"]: a for a in cw.describe_alarms()["MetricAlarms"]}
    assert alarms["from-zero"]["AlarmActions"] == [now[f"step-{M5}"]]
    assert alarms["from-zero"]["Threshold"] == 1.0 and alarms["from-zero"]["EvaluationPeriods"] == 2  # the rest kept
    assert alarms["unrelated"]["AlarmActions"] == ["arn:aws:sns:us-east-1:123456789012:t"]


def test_failure_after_restore_rolls_back_in_reverse(aws):
    h.reconcile(_event(aws, "Release", NEW, OLD))
    _switch(aws, C5)
    h.reconcile(_event(aws, "Restore", NEW, OLD))
    rid = f"endpoint/{aws['name']}/variant/Green"
    aws["aas"].put_scaling_policy(ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIM,  # CFN creates it
                                  PolicyName=f"tracking-{C5}", PolicyType="TargetTrackingScaling",
                                  TargetTrackingScalingPolicyConfiguration={"TargetValue": 50.0, "PredefinedMetricSpecification": {
                                      "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}})
    # A later resource fails. Rollback, in reverse: the new policy is deleted, Restore rolls back ...
    aws["aas"].delete_scaling_policy(ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIM, PolicyName=f"tracking-{C5}")
    out = h.reconcile(_event(aws, "Restore", OLD, NEW))
    assert out["deregistered"] == [rid]  # the endpoint still runs ml.c5.xlarge, ml.m5.large is desired
    _assert_updatable(aws)  # so the endpoint's revert can succeed
    _switch(aws, M5)
    out = h.reconcile(_event(aws, "Release", OLD, NEW))
    assert out["registered"] == [rid]
    assert _state(aws) == {"target": [(1, 4)], "policies": [f"tracking-{M5}"], "scheduled": ["night"]}
    _other_untouched(aws)


@pytest.mark.parametrize("phase, running", [("Release", M5), ("Restore", C5)])
def test_rerunning_an_event_is_harmless(aws, phase, running):
    if phase == "Restore":
        h.reconcile(_event(aws, "Release", NEW, OLD))
        _switch(aws, running)
    event = _event(aws, phase, NEW, OLD)
    h.reconcile(event)
    before = _state(aws)
    again = h.reconcile(event)  # CloudFormation re-sends an event whose response it did not get
    assert again["deregistered"] == again["registered"] == []
    assert _state(aws) == before


def test_rollback_events_rerun_are_harmless(aws):
    h.reconcile(_event(aws, "Release", NEW, OLD))
    rollback = _event(aws, "Release", OLD, NEW)
    h.reconcile(rollback)
    assert h.reconcile(rollback)["registered"] == []


def test_a_change_that_keeps_the_type_calls_nothing(aws):
    """A capacity change (CloudFormation updates the target itself) and a no-change re-send make no write."""
    aas = h.client("application-autoscaling")
    with mock.patch.object(aas, "register_scalable_target") as reg, mock.patch.object(aas, "deregister_scalable_target") as dereg:
        for phase in ("Release", "Restore"):
            assert h.reconcile(_event(aws, phase, {"Green": spec(M5, max_capacity=8)}, OLD))["endpoint"] == aws["name"]
            h.reconcile(_event(aws, phase, OLD, OLD))
    assert not reg.called and not dereg.called


@pytest.mark.parametrize("request_type", ["Create", "Delete"])
def test_create_and_delete_do_nothing(aws, request_type):
    out = h.reconcile(_event(aws, "Release", NEW, None, request_type))
    assert out == {"endpoint": None, "deregistered": [], "registered": [], "repointed": []}
    assert _state(aws)["target"] == [(1, 4)]


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
    assert h.reconcile(event) == {"endpoint": None, "deregistered": [], "registered": [], "repointed": []}
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
