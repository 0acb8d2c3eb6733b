"""scaling_release against moto in-process (issue 12 item 5): the custom resource the endpoint waits for deregisters
exactly the scalable targets an instance-type change (or a removed variant, or scaling turned off) invalidates."""

from __future__ import annotations

import json
from unittest import mock

import boto3
import pytest
from moto import mock_aws

from tests.workflow.sfn_harness import _Context, load_handler
from mlinfra.domain.api_model import request_errors, service_model

h = load_handler("scaling_release")
CTX = _Context("release")
ROLE = "arn:aws:iam::123456789012:role/model"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1"
DIM = "sagemaker:variant:DesiredInstanceCount"
_ENDPOINT_TEMPLATE = {"Resources": {
    "Model": {"Type": "AWS::SageMaker::Model", "Properties": {"ExecutionRoleArn": ROLE, "PrimaryContainer": {"Image": IMAGE}}},
    "Config": {"Type": "AWS::SageMaker::EndpointConfig", "Properties": {"ProductionVariants": [
        {"VariantName": v, "ModelName": {"Fn::GetAtt": ["Model", "ModelName"]}, "InitialInstanceCount": 1,
         "InstanceType": "ml.m5.large", "InitialVariantWeight": 1} for v in ("Blue", "Green")]}},
    "Ep": {"Type": "AWS::SageMaker::Endpoint", "Properties": {"EndpointConfigName": {"Fn::GetAtt": ["Config", "EndpointConfigName"]}}},
}}


@pytest.fixture()
def aws():
    """A stack with a real (moto) endpoint, both variants registered and scaled, and another endpoint's target."""
    h._clients.clear()
    with mock_aws(), mock.patch.dict("os.environ", {"AWS_DEFAULT_REGION": "us-east-1"}):
        cfn = boto3.client("cloudformation")
        stack_id = cfn.create_stack(StackName="Serving", TemplateBody=json.dumps(_ENDPOINT_TEMPLATE))["StackId"]
        arn = cfn.describe_stack_resource(StackName=stack_id, LogicalResourceId="Ep")["StackResourceDetail"]["PhysicalResourceId"]
        name = arn.split(":endpoint/", 1)[1]
        aas = boto3.client("application-autoscaling")
        for rid in (f"endpoint/{name}/variant/Blue", f"endpoint/{name}/variant/Green", "endpoint/other/variant/Blue"):
            aas.register_scalable_target(ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIM,
                                         MinCapacity=1, MaxCapacity=4)
            aas.put_scaling_policy(PolicyName="tracking", ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=DIM,
                                   PolicyType="TargetTrackingScaling", TargetTrackingScalingPolicyConfiguration={
                                       "TargetValue": 100.0, "PredefinedMetricSpecification": {
                                           "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}})
        yield {"stack_id": stack_id, "name": name, "aas": aas}
    h._clients.clear()


def _event(aws, request_type="Update", new=None, old=None, **extra):
    event = {"RequestType": request_type, "StackId": aws["stack_id"], "RequestId": "r1", "LogicalResourceId": "EpScalingRelease",
             "ResourceType": "Custom::MlinfraScalingRelease",
             "ResourceProperties": {"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:f", "EndpointLogicalId": "Ep",
                                    "Variants": new if new is not None else {"Blue": "ml.m5.large", "Green": "ml.m5.large"}}}
    if old is not None:
        event["OldResourceProperties"] = {**event["ResourceProperties"], "Variants": old}
    return {**event, **extra}


def _registered(aws) -> set[str]:
    return {t["ResourceId"] for t in aws["aas"].describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]}


BOTH = {"Blue": "ml.m5.large", "Green": "ml.m5.large"}


def test_a_type_change_deregisters_that_variant_only(aws):
    out = h.release(_event(aws, new={"Blue": "ml.m5.large", "Green": "ml.c5.xlarge"}, old=BOTH))
    assert out == {"endpoint": aws["name"], "released": ["Green"], "deregistered": [f"endpoint/{aws['name']}/variant/Green"]}
    assert _registered(aws) == {f"endpoint/{aws['name']}/variant/Blue", "endpoint/other/variant/Blue"}


def test_rerunning_the_same_event_is_harmless(aws):
    event = _event(aws, new={"Blue": "ml.m5.large", "Green": "ml.c5.xlarge"}, old=BOTH)
    h.release(event)
    again = h.release(event)  # CloudFormation retries a custom resource whose response it did not get
    assert again["released"] == ["Green"] and again["deregistered"] == []
    assert len(_registered(aws)) == 2


def test_a_missing_target_is_already_released(aws):
    aws["aas"].deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=f"endpoint/{aws['name']}/variant/Blue",
                                          ScalableDimension=DIM)
    out = h.release(_event(aws, new={}, old=BOTH))  # scaling turned off
    assert out["deregistered"] == [f"endpoint/{aws['name']}/variant/Green"]
    assert _registered(aws) == {"endpoint/other/variant/Blue"}


def test_a_removed_variant_is_released(aws):
    out = h.release(_event(aws, new={"Blue": "ml.m5.large"}, old=BOTH))
    assert out["released"] == ["Green"]


def test_a_target_deregistered_between_listing_and_deregistering_counts_as_done(aws):
    real = h.client("application-autoscaling")
    error = real.exceptions.ObjectNotFoundException({"Error": {"Code": "ObjectNotFoundException", "Message": "gone"}},
                                                    "DeregisterScalableTarget")
    with mock.patch.object(real, "deregister_scalable_target", side_effect=error):
        out = h.release(_event(aws, new={"Blue": "ml.c5.xlarge", "Green": "ml.m5.large"}, old=BOTH))
    assert out["released"] == ["Blue"] and out["deregistered"] == []


def test_another_service_error_fails_the_release(aws):
    real = h.client("application-autoscaling")
    error = real.exceptions.ConcurrentUpdateException({"Error": {"Code": "ConcurrentUpdateException", "Message": "busy"}},
                                                      "DeregisterScalableTarget")
    with mock.patch.object(real, "deregister_scalable_target", side_effect=error), pytest.raises(Exception, match="busy"):
        h.release(_event(aws, new={"Blue": "ml.c5.xlarge", "Green": "ml.m5.large"}, old=BOTH))


@pytest.mark.parametrize("request_type", ["Create", "Delete"])
def test_create_and_delete_deregister_nothing(aws, request_type):
    out = h.release(_event(aws, request_type, old=None))
    assert out == {"endpoint": None, "released": [], "deregistered": []}
    assert len(_registered(aws)) == 3


def test_an_unchanged_type_deregisters_nothing(aws):
    assert h.release(_event(aws, new=BOTH, old=BOTH))["deregistered"] == []


def test_the_endpoint_is_matched_without_case(aws):
    """SageMaker lowercases the endpoint name in its ARN (the physical id CloudFormation reports)."""
    lower = aws["name"].lower()
    assert lower != aws["name"]
    targets = [{"ResourceId": f"endpoint/{aws['name']}/variant/Green"}, {"ResourceId": f"endpoint/{aws['name']}X/variant/Green"}]
    assert h.matching_targets(targets, lower, ["Green"]) == [f"endpoint/{aws['name']}/variant/Green"]
    assert h.endpoint_name_of(f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{lower}") == lower
    assert h.endpoint_name_of("plain-name") == "plain-name"


def test_an_endpoint_missing_from_the_stack_releases_nothing(aws):
    event = _event(aws, new={}, old=BOTH)
    event["ResourceProperties"]["EndpointLogicalId"] = "Gone"
    assert h.release(event) == {"endpoint": None, "released": ["Blue", "Green"], "deregistered": []}


@pytest.mark.parametrize("mutate, message", [
    (lambda e: e.pop("StackId"), "lacks StackId"),
    (lambda e: e["ResourceProperties"].pop("EndpointLogicalId"), "EndpointLogicalId must be a logical id"),
    (lambda e: e.update(RequestType="Replace"), "RequestType must be Create, Update or Delete, got: 'Replace'"),
    (lambda e: e["OldResourceProperties"].update(Variants=["Blue"]), "OldResourceProperties.Variants must map"),
])
def test_malformed_events_are_refused(aws, mutate, message):
    event = _event(aws, new={}, old=BOTH)
    mutate(event)
    with pytest.raises(h.MalformedEventError, match=message):
        h.release(event)


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
        ok = h.handler(_event(aws, new={"Blue": "ml.m5.large", "Green": "ml.c5.xlarge"}, old=BOTH,
                              ResponseURL="https://cfn-response.example/put", PhysicalResourceId="keep-me"), CTX)
        bad = h.handler(_event(aws, request_type="Oops", ResponseURL="https://cfn-response.example/put"), CTX)
    assert ok["Status"] == "SUCCESS" and ok["PhysicalResourceId"] == "keep-me" and ok["Data"]["Deregistered"].endswith("/variant/Green")
    assert bad["Status"] == "FAILED" and "RequestType must be" in bad["Reason"]
    assert [(m, u) for m, u, _ in sent] == [("PUT", "https://cfn-response.example/put")] * 2
    assert sent[0][2]["RequestId"] == "r1" and sent[0][2]["StackId"] == aws["stack_id"]


def test_requests_and_error_names_match_the_service_models():
    assert request_errors("application-autoscaling", "DeregisterScalableTarget", {
        "ServiceNamespace": h.NAMESPACE, "ResourceId": "endpoint/e/variant/v", "ScalableDimension": h.DIMENSION}) == []
    assert request_errors("application-autoscaling", "DescribeScalableTargets", {
        "ServiceNamespace": h.NAMESPACE, "ScalableDimension": h.DIMENSION}) == []
    assert request_errors("cloudformation", "DescribeStackResource", {"StackName": "arn:x", "LogicalResourceId": "Ep"}) == []
    errors = {e.name for e in service_model("application-autoscaling").operation_model("DeregisterScalableTarget").error_shapes}
    assert h.NOT_FOUND in errors
