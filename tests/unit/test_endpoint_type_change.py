"""Issue 12 item 5: an instance-type change of an autoscaled variant deploys in ONE ``cdk deploy``.

SageMaker refuses UpdateEndpoint while a variant whose instance type changes (or that is removed) is registered with
Application Auto Scaling (rule ``sagemaker.scaled-variant-type-change``). These tests synthesize the same app twice,
before and after the change, and compute the order in which CloudFormation applies the update
(:mod:`tests.cfn_update`): the release deregisters before the endpoint update, a new target registers after it,
and the superseded target leaves the stack without touching the new registration.
"""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Template

from mlinfra.constructs.endpoint import AutoScaling, Endpoint, EndpointMode, ModelContainer, ProductionVariant
from tests.cfn_update import Step, index_of, update_plan
from tests.helpers import new_stack
from tests.workflow.sfn_harness import load_handler

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1"
RELEASE_RESOURCE_TYPE = "Custom::MlinfraScalingRelease"  # the contract (mlinfra.constructs.endpoint.scaling)
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


def _template(*variants: ProductionVariant, auto_scaling: AutoScaling | None = AutoScaling(max_capacity=4), **kw: Any) -> dict:
    stack = new_stack()
    Endpoint(stack, "Ep", model=ModelContainer(image_uri=IMAGE), variants=list(variants), auto_scaling=auto_scaling,
             alarms=None, dashboard=False, **kw)
    return Template.from_stack(stack).to_json()


def _one(template: dict, type_: str) -> tuple[str, dict]:
    found = [(k, v) for k, v in template["Resources"].items() if v["Type"] == type_]
    assert len(found) == 1, [k for k, _ in found]
    return found[0]


def _targets(template: dict) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"}


def _policies(template: dict) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy"}


def _depends(resource: dict) -> list[str]:
    d = resource.get("DependsOn", [])
    return d if isinstance(d, list) else [d]


def _release_event(old: dict, new: dict) -> dict:
    """The Update event CloudFormation sends the release for this template change (both property sets literal)."""
    (_, before), (lid, after) = _one(old, RELEASE_RESOURCE_TYPE), _one(new, RELEASE_RESOURCE_TYPE)
    return {"RequestType": "Update", "LogicalResourceId": lid, "ResourceProperties": after["Properties"],
            "OldResourceProperties": before["Properties"]}


A, B = ProductionVariant(instance_type="ml.m5.large"), ProductionVariant(instance_type="ml.c5.xlarge")


def test_instance_type_change_is_one_update_in_the_order_sagemaker_needs():
    old, new = _template(A), _template(B)
    endpoint, _ = _one(new, "AWS::SageMaker::Endpoint")
    release, _ = _one(new, RELEASE_RESOURCE_TYPE)
    (old_target, old_target_res), = _targets(old).items()
    (new_target, new_target_res), = _targets(new).items()
    assert old_target != new_target, "the target must be new after a type change (CloudFormation then registers it)"
    assert _one(old, "AWS::SageMaker::Endpoint")[0] == endpoint  # the endpoint is updated in place, never replaced

    steps = update_plan(old, new)
    # 1. the release deregisters the old registration BEFORE the endpoint update ...
    assert index_of(steps, "update", release) < index_of(steps, "update", endpoint)
    # 2. ... the new endpoint config exists before the endpoint update points at it ...
    config, _ = _one(new, "AWS::SageMaker::EndpointConfig")
    assert index_of(steps, "replace", config) < index_of(steps, "update", endpoint)
    # 3. ... a NEW target (and its policies) registers AFTER the endpoint update ...
    assert index_of(steps, "update", endpoint) < index_of(steps, "create", new_target)
    for policy in _policies(new):
        assert index_of(steps, "update", endpoint) < index_of(steps, "create", policy)
    # 4. ... and the old target leaves in cleanup without an API call: its Deregister would hit the new target,
    #    whose registration identifier (endpoint/<name>/variant/<variant>) is the same.
    assert Step("delete", old_target, retained=True) in steps
    assert old_target_res["Properties"]["ResourceId"] == new_target_res["Properties"]["ResourceId"]
    assert old_target_res["DeletionPolicy"] == old_target_res["UpdateReplacePolicy"] == "Retain"
    # The new policies have new names (deleting the old ones in cleanup cannot delete them).
    names = lambda t: {p["Properties"]["PolicyName"] for p in _policies(t).values()}  # noqa: E731
    assert names(old).isdisjoint(names(new))

    # The release event CloudFormation sends for this change names exactly the changed variant.
    assert load_handler("scaling_release").to_release("Update", **_props(_release_event(old, new))) == ["AllTraffic"]


def _props(event: dict) -> dict:
    return {"new": event["ResourceProperties"], "old": event["OldResourceProperties"]}


def test_the_endpoint_waits_for_the_release_and_the_target_for_the_endpoint():
    t = _template(A)
    endpoint, endpoint_res = _one(t, "AWS::SageMaker::Endpoint")
    release, release_res = _one(t, RELEASE_RESOURCE_TYPE)
    assert release in _depends(endpoint_res)
    for target in _targets(t).values():
        assert endpoint in _depends(target)
    assert release_res["Properties"]["EndpointLogicalId"] == endpoint  # a literal: no cycle through the endpoint
    assert release_res["Properties"]["Variants"] == {"AllTraffic": "ml.m5.large"}
    assert release_res["Properties"]["ServiceTimeout"] == "300"


def test_a_change_that_keeps_the_type_releases_nothing_and_keeps_the_target():
    old = _template(A)
    new = _template(A, auto_scaling=AutoScaling(max_capacity=6))  # a capacity change: an in-place target update
    steps = update_plan(old, new)
    release, _ = _one(new, RELEASE_RESOURCE_TYPE)
    assert release not in {s.logical_id for s in steps}  # unchanged properties: CloudFormation does not call it
    (target, _), = _targets(new).items()
    assert target in _targets(old)
    assert Step("update", target) in steps


def test_removing_a_scaled_variant_releases_it_first():
    blue = ProductionVariant(name="Blue", instance_type="ml.m5.large")
    green = ProductionVariant(name="Green", instance_type="ml.m5.large")
    old, new = _template(blue, green), _template(blue)
    assert load_handler("scaling_release").to_release("Update", **_props(_release_event(old, new))) == ["Green"]
    steps = update_plan(old, new)
    endpoint, _ = _one(new, "AWS::SageMaker::Endpoint")
    release, _ = _one(new, RELEASE_RESOURCE_TYPE)
    assert index_of(steps, "update", release) < index_of(steps, "update", endpoint)


def test_turning_scaling_off_releases_every_variant_before_the_endpoint_update():
    old, new = _template(A), _template(B, auto_scaling=None)
    assert _targets(new) == {}
    assert _one(new, RELEASE_RESOURCE_TYPE)[1]["Properties"]["Variants"] == {}
    assert load_handler("scaling_release").to_release("Update", **_props(_release_event(old, new))) == ["AllTraffic"]


def test_target_ids_differ_per_type_and_stay_put_per_type():
    from mlinfra.constructs.endpoint.scaling import target_id

    ids = {target_id(ProductionVariant(instance_type=t)) for t in ("ml.g5.12xlarge", "ml.g51.2xlarge", "ml.m5.large")}
    assert len(ids) == 3  # same letters, different types: different targets
    assert target_id(A) == target_id(ProductionVariant(instance_type="ml.m5.large"))
    assert target_id(A).startswith("AllTrafficScalableTargetMlM5Large")


def test_one_release_function_per_stack_with_least_privilege():
    from mlinfra.constructs.endpoint.scaling import RELEASE_HANDLER_ID

    stack = new_stack()
    for name in ("One", "Two"):
        Endpoint(stack, name, model=ModelContainer(image_uri=IMAGE), variants=[A], alarms=None, dashboard=False)
    t = Template.from_stack(stack)
    assert len(t.find_resources("AWS::Lambda::Function")) == 1
    assert len(t.find_resources(RELEASE_RESOURCE_TYPE)) == 2
    statements = [s for p in t.find_resources("AWS::IAM::Policy").values() for s in p["Properties"]["PolicyDocument"]["Statement"]
                  if any("application-autoscaling" in a or "cloudformation" in a for a in _list(s["Action"]))]
    by_action = {a: s for s in statements for a in _list(s["Action"])}
    assert set(by_action) == {"cloudformation:DescribeStackResource", "application-autoscaling:DescribeScalableTargets",
                              "application-autoscaling:DeregisterScalableTarget"}
    deregister = by_action["application-autoscaling:DeregisterScalableTarget"]
    assert deregister["Condition"] == {"StringEquals": {"application-autoscaling:service-namespace": "sagemaker",
                                                        "application-autoscaling:scalable-dimension": SCALABLE_DIMENSION}}
    assert ":scalable-target/*" in str(deregister["Resource"])
    assert ":stack/TestStack/*" in str(by_action["cloudformation:DescribeStackResource"]["Resource"])
    assert stack.node.try_find_child(RELEASE_HANDLER_ID) is not None


def _list(x):
    return x if isinstance(x, list) else [x]


def test_serverless_endpoints_have_no_release():
    stack = new_stack()
    Endpoint(stack, "Sl", mode=EndpointMode.SERVERLESS, model=ModelContainer(image_uri=IMAGE), alarms=None, dashboard=False)
    assert Template.from_stack(stack).find_resources(RELEASE_RESOURCE_TYPE) == {}


def test_the_published_resource_schema_gives_one_registration_per_variant():
    """Rule sagemaker.variant-target-identity, from the registry schema cfn-lint ships: the target's identity is its
    ResourceId, dimension and namespace (all create-only), so the old and the new target of a type change are one
    registration, and only DeletionPolicy Retain keeps the old one's deletion from removing the new one."""
    import json
    from pathlib import Path

    import cfnlint

    from tests.cfn_update import create_only

    schemas = Path(cfnlint.__file__).parent / "data" / "schemas"
    digest = json.loads((schemas / "providers" / "us-east-1.json").read_text())["AWS::ApplicationAutoScaling::ScalableTarget"]
    schema = json.loads((schemas / "resources" / f"{digest}.json").read_text())
    assert schema["primaryIdentifier"] == ["/properties/ResourceId", "/properties/ScalableDimension", "/properties/ServiceNamespace"]
    assert create_only("AWS::ApplicationAutoScaling::ScalableTarget") == {"ResourceId", "ScalableDimension", "ServiceNamespace"}
    assert schema["handlers"]["delete"]["permissions"] == ["application-autoscaling:DeregisterScalableTarget"]


@pytest.mark.slow  # two full app synths (~30 s)
def test_the_reference_app_changes_the_realtime_type_in_one_update():
    """The prod serving stack (pointer-owned model, blue/green, scheduled scaling, async endpoint beside it) with
    ``serving.instance_type`` changed in the configuration document."""
    import copy

    import yaml

    from mlinfra.app import create_app
    from mlinfra.config import load_config
    from tests.conftest import CONFIG_FILE

    document = yaml.safe_load(CONFIG_FILE.read_text())

    def serving(instance_type: str) -> dict:
        doc = copy.deepcopy(document)
        doc["environments"]["prod"].setdefault("serving", {})["instance_type"] = instance_type
        _, platform = create_app(config=load_config(doc, "prod"), nag=False)
        return Template.from_stack(platform.extra["serving"]).to_json()

    old, new = serving("ml.c6i.xlarge"), serving("ml.c6i.2xlarge")
    endpoints = {k for k, v in new["Resources"].items() if v["Type"] == "AWS::SageMaker::Endpoint"}
    releases = {k: v for k, v in new["Resources"].items() if v["Type"] == RELEASE_RESOURCE_TYPE}
    realtime = next(k for k in endpoints if k.startswith("RealtimeEndpoint"))
    release = next(k for k, v in releases.items() if v["Properties"]["EndpointLogicalId"] == realtime)
    steps = update_plan(old, new)
    assert index_of(steps, "update", release) < index_of(steps, "update", realtime)
    created = [s.logical_id for s in steps if s.action == "create" and new["Resources"][s.logical_id]["Type"]
               == "AWS::ApplicationAutoScaling::ScalableTarget"]
    assert len(created) == 1 and index_of(steps, "update", realtime) < index_of(steps, "create", created[0])
    assert all(s.retained for s in steps if s.action == "delete"
               and old["Resources"][s.logical_id]["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget")
    # The async endpoint keeps its type: its release is not called and its target stays.
    other = {k for k in releases if k != release}
    assert other and not other & {s.logical_id for s in steps}
