"""Issue 12 item 5: an instance-type change of an autoscaled variant deploys in ONE ``cdk deploy``.

SageMaker refuses UpdateEndpoint while a variant whose instance type changes is registered with Application Auto
Scaling (rule ``sagemaker.scaled-variant-type-change``), and CloudFormation refuses to create a resource whose primary
identifier another resource of the stack holds (rule ``cloudformation.primary-identifier-unique``). These tests
synthesize the same app twice, before and after the change, and compute CloudFormation's update plan
(:mod:`tests.cfn_update`): Release before the endpoint update, Restore after it, the new policies after Restore, the
target kept (stable id, no clash), and the reverted design (a new target per type) refused by the model.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk.assertions import Template

from mlinfra.constructs.endpoint import AutoScaling, Endpoint, ModelContainer, ProductionVariant
from mlinfra.constructs.endpoint.props import ScheduledScaling
from mlinfra.constructs.endpoint.scaling import SCALABLE_DIMENSION
from mlinfra.domain.api_model import request_errors
from tests.cfn_update import IdentifierClash, Step, index_of, update_plan
from tests.helpers import new_stack
from tests.workflow.sfn_harness import load_handler

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1"
GUARD = "Custom::MlinfraScalingGuard"  # the contract (mlinfra.constructs.endpoint.scaling)
TARGET = "AWS::ApplicationAutoScaling::ScalableTarget"
POLICY = "AWS::ApplicationAutoScaling::ScalingPolicy"
NIGHT = ScheduledScaling(name="night", schedule=appscaling.Schedule.cron(hour="22", minute="0"), min_capacity=1)


def _template(*variants: ProductionVariant, auto_scaling: AutoScaling | None = AutoScaling(max_capacity=4, scheduled=[NIGHT]),
              **kw: Any) -> dict:
    stack = new_stack()
    Endpoint(stack, "Ep", model=ModelContainer(image_uri=IMAGE), variants=list(variants), auto_scaling=auto_scaling,
             alarms=None, dashboard=False, **kw)
    return Template.from_stack(stack).to_json()


def _of(template: dict, type_: str, contains: str = "") -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_ and contains in k}


def _one(template: dict, type_: str, contains: str = "") -> str:
    (lid,) = _of(template, type_, contains)
    return lid


def _depends(resource: dict) -> list[str]:
    d = resource.get("DependsOn", [])
    return d if isinstance(d, list) else [d]


def _assert_type_change_plan(old: dict, new: dict, prefix: str = "") -> list[Step]:
    steps = update_plan(old, new)  # raises IdentifierClash on a plan CloudFormation refuses
    endpoint = _one(new, "AWS::SageMaker::Endpoint", prefix)
    release, restore = _one(new, GUARD, prefix + "ScalingRelease"), _one(new, GUARD, prefix + "ScalingRestore")
    config = _one(new, "AWS::SageMaker::EndpointConfig", prefix)
    assert index_of(steps, "replace", config) < index_of(steps, "update", release)  # config first (finding 4)
    assert index_of(steps, "update", release) < index_of(steps, "update", endpoint) < index_of(steps, "update", restore)
    new_policies = set(_of(new, POLICY, prefix)) - set(_of(old, POLICY, prefix))
    assert new_policies, "a type change must bring new (renamed) policies"
    for policy in new_policies:
        assert index_of(steps, "update", restore) < index_of(steps, "create", policy)
    for policy in set(_of(old, POLICY, prefix)) - set(_of(new, POLICY, prefix)):
        assert Step("delete", policy) in steps  # cleanup: already deregistered, so nothing to find
    # The target keeps its logical id: neither created nor replaced (its identifier is never held twice).
    assert set(_of(old, TARGET, prefix)) == set(_of(new, TARGET, prefix))
    assert not [s for s in steps if s.logical_id in _of(new, TARGET, prefix) and s.action in ("create", "replace")]
    names = lambda t: {p["Properties"]["PolicyName"] for p in _of(t, POLICY, prefix).values()}  # noqa: E731
    assert names(old).isdisjoint(names(new))
    return steps


A, B = ProductionVariant(instance_type="ml.m5.large"), ProductionVariant(instance_type="ml.c5.xlarge")


def test_small_app_type_change_is_one_update_in_the_order_sagemaker_needs():
    _assert_type_change_plan(_template(A), _template(B))


@pytest.fixture(scope="module")
def prod_pair(prod_config):
    from mlinfra.app import create_app

    def serving(config):
        _, platform = create_app(config=config, nag=False)
        return Template.from_stack(platform.extra["serving"]).to_json()

    changed = dataclasses.replace(prod_config, serving=dataclasses.replace(
        prod_config.serving, instance_type="ml.c6i.2xlarge", async_instance_type="ml.g5.xlarge"))
    return serving(prod_config), serving(changed)


def test_prod_serving_type_change_is_one_update(prod_pair):
    """Real-time (target tracking, scheduled floors) and async (backlog tracking plus the scale-from-zero step
    policy and its alarm) endpoints of the reference app."""
    old, new = prod_pair
    assert _of(new, "AWS::CloudWatch::Alarm", "AsyncEndpoint")
    for prefix in ("RealtimeEndpoint", "AsyncEndpoint"):
        _assert_type_change_plan(old, new, prefix)


def _reverted_design(template: dict) -> dict:
    """The reverted attempt's template: the target's logical id carries the instance type."""
    text = json.dumps(template)
    for lid in _of(template, TARGET):
        text = text.replace(f'"{lid}"', f'"{lid}Mlc5xlarge"')
    return json.loads(text)


def test_the_reverted_design_is_refused_by_the_model(prod_pair):
    old, new = prod_pair
    with pytest.raises(IdentifierClash, match="already exists in stack"):
        update_plan(old, _reverted_design(new))
    with pytest.raises(IdentifierClash, match="already exists in stack"):
        update_plan(_template(A), _reverted_design(_template(B)))


def test_no_change_deploy_calls_no_guard():
    t = _template(A)
    steps = update_plan(t, _template(A))
    assert not [s for s in steps if s.logical_id in _of(t, GUARD)]


def test_dependencies_put_release_before_and_restore_after_the_endpoint():
    t = _template(A)
    res = t["Resources"]
    endpoint, config = _one(t, "AWS::SageMaker::Endpoint"), _one(t, "AWS::SageMaker::EndpointConfig")
    release, restore = _one(t, GUARD, "ScalingRelease"), _one(t, GUARD, "ScalingRestore")
    assert release in _depends(res[endpoint]) and config in _depends(res[release])
    assert endpoint in _depends(res[restore])
    for lid in [*_of(t, TARGET), *_of(t, POLICY)]:
        assert restore in _depends(res[lid])
    for guard in (release, restore):
        assert res[guard]["Properties"]["EndpointLogicalId"] == endpoint  # a literal: no cycle through the endpoint
        assert "EpEndpoint" not in json.dumps(res[guard]["Properties"]["Variants"])  # no Ref/GetAtt of the endpoint
    assert res[release]["Properties"]["Variants"]["AllTraffic"]["InstanceType"] == "ml.m5.large"
    assert "Policies" not in res[restore]["Properties"]["Variants"]["AllTraffic"]


def test_no_guard_without_scaling():
    assert not _of(_template(A, auto_scaling=None), GUARD)


def _as_cloudformation_sends(value: Any) -> Any:
    """Custom resource properties as CloudFormation delivers them: scalars become strings, intrinsics resolved."""
    if isinstance(value, dict):
        if "Fn::Join" in value:
            return "arn:aws:iam::123456789012:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/" \
                   "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
        return {k: _as_cloudformation_sends(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_cloudformation_sends(v) for v in value]
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.mark.parametrize("case", ["small", "prod"])
def test_guard_specs_make_valid_api_requests(case, prod_pair):
    """Every request the handler builds from the synthesized properties passes botocore's input shapes."""
    h = load_handler("scaling_guard")
    template = _template(A) if case == "small" else prod_pair[1]  # prod: scheduled, tracking and step policies
    ids = {"ResourceId": "endpoint/ep/variant/AllTraffic", "ServiceNamespace": "sagemaker",
           "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}
    seen = set()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        h._clients.clear()
        for lid in _of(template, GUARD, "ScalingRelease"):
            for spec in _as_cloudformation_sends(template["Resources"][lid]["Properties"]["Variants"]).values():
                requests = [("RegisterScalableTarget", {**spec["Target"], **ids})]
                requests += [("PutScheduledAction", {**a, **ids}) for a in spec["ScheduledActions"]]
                requests += [("PutScalingPolicy", {**p, **ids}) for p in spec["Policies"]]
                for operation, params in requests:
                    request = h._request(operation, params, "ep")
                    assert "{{" not in json.dumps(request)
                    assert request_errors("application-autoscaling", operation, request) == [], (operation, request)
                    seen.add(operation)
        h._clients.clear()
    assert seen == {"RegisterScalableTarget", "PutScheduledAction", "PutScalingPolicy"}


def test_guard_role_is_least_privilege():
    """Application Auto Scaling writes only on SageMaker variant targets (condition keys); the permission check's
    SageMaker and CloudWatch actions scoped to endpoints and the target-tracking/stack alarms; nothing else written."""
    stack = new_stack()
    Endpoint(stack, "Ep", model=ModelContainer(image_uri=IMAGE), variants=[A], alarms=None, dashboard=False)
    t = Template.from_stack(stack).to_json()
    (policy,) = [r for k, r in t["Resources"].items()
                 if r["Type"] == "AWS::IAM::Policy" and k.startswith("MlinfraScalingGuardHandlerRole")]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    by_action = {a: s for s in statements for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    for action in ("RegisterScalableTarget", "DeregisterScalableTarget", "PutScalingPolicy", "PutScheduledAction"):
        s = by_action[f"application-autoscaling:{action}"]
        assert s["Condition"]["StringEquals"] == {"application-autoscaling:service-namespace": "sagemaker",
                                                  "application-autoscaling:scalable-dimension": SCALABLE_DIMENSION}
        assert ":scalable-target/*" in json.dumps(s["Resource"])
    for action in ("sagemaker:DescribeEndpoint", "sagemaker:UpdateEndpointWeightsAndCapacities"):
        assert ":endpoint/*" in json.dumps(by_action[action]["Resource"])
    alarms = json.dumps(by_action["cloudwatch:PutMetricAlarm"]["Resource"])
    assert "alarm:TargetTracking-endpoint/*" in alarms and "alarm:TestStack-*" in alarms
    assert by_action["iam:CreateServiceLinkedRole"]["Condition"] == {
        "StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}}
    star = {a for a, s in by_action.items() if s["Resource"] == "*"}
    assert star == {"application-autoscaling:DescribeScalableTargets", "sagemaker:ListEndpoints",
                    "cloudwatch:DescribeAlarms"} | {a for a in star if a.startswith(("xray:", "logs:"))}
