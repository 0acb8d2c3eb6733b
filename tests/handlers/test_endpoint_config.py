"""pipeline_endpoint_config: a rollout carries the endpoint's whole configuration forward (issue 12 item 4)."""

from __future__ import annotations

from unittest import mock

import boto3
import pytest
from moto import mock_aws

from tests.workflow.sfn_harness import _Context, load_handler

ROLE = "arn:aws:iam::123456789012:role/model"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1"


@pytest.fixture()
def endpoint():
    with mock_aws(), mock.patch.dict("os.environ", {"AWS_DEFAULT_REGION": "us-east-1"}):
        sm = boto3.client("sagemaker", "us-east-1")
        for name in ("old-model", "shadow-model", "b-model", "new-model"):
            sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
        sm.create_endpoint_config(
            EndpointConfigName="stack-config",
            ProductionVariants=[
                {"VariantName": "AllTraffic", "ModelName": "old-model", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1,
                 "InitialVariantWeight": 0.9, "VolumeSizeInGB": 40, "ModelDataDownloadTimeoutInSeconds": 900,
                 "ContainerStartupHealthCheckTimeoutInSeconds": 600},
                {"VariantName": "B", "ModelName": "b-model", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1,
                 "InitialVariantWeight": 0.1}],
            ShadowProductionVariants=[{"VariantName": "Shadow", "ModelName": "shadow-model", "InstanceType": "ml.c5.large",
                                       "InitialInstanceCount": 1}],
            DataCaptureConfig={"EnableCapture": True, "InitialSamplingPercentage": 20, "DestinationS3Uri": "s3://art/capture/",
                               "KmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/abc",
                               "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]},
            KmsKeyId="arn:aws:kms:us-east-1:123456789012:key/vol")
        sm.create_endpoint(EndpointName="prod", EndpointConfigName="stack-config")
        h = load_handler("pipeline_endpoint_config")
        h._clients.clear()
        yield h, sm
        h._clients.clear()


def test_only_the_model_changes_and_the_current_capacity_is_kept(endpoint):
    from moto.sagemaker.models import sagemaker_backends

    h, sm = endpoint
    # the endpoint scaled out to 3 instances since it was created with 1
    backend = sagemaker_backends["123456789012"]["us-east-1"]
    backend.endpoints["prod"].production_variants[0]["CurrentInstanceCount"] = 3
    out = h.handler({"endpoint_name": "prod", "variant_name": "AllTraffic", "model_name": "new-model",
                     "endpoint_config_name": "retrain-cfg-1"}, _Context("t"))
    assert out["previous_config_name"] == "stack-config" and out["endpoint_config_name"] == "retrain-cfg-1"
    new = sm.describe_endpoint_config(EndpointConfigName="retrain-cfg-1")
    old = sm.describe_endpoint_config(EndpointConfigName="stack-config")
    main, b = new["ProductionVariants"]
    assert main["ModelName"] == "new-model" and main["InitialInstanceCount"] == 3
    assert {k: v for k, v in main.items() if k not in ("ModelName", "InitialInstanceCount")} == \
        {k: v for k, v in old["ProductionVariants"][0].items() if k not in ("ModelName", "InitialInstanceCount")}
    assert b == old["ProductionVariants"][1]  # the other variant is untouched
    assert new.get("ShadowProductionVariants") == old.get("ShadowProductionVariants")  # (moto keeps no shadow variants)
    assert new["DataCaptureConfig"] == old["DataCaptureConfig"] and new["KmsKeyId"] == old["KmsKeyId"]


def test_a_retried_task_keeps_the_config_it_created(endpoint):
    h, _ = endpoint
    event = {"endpoint_name": "prod", "variant_name": "AllTraffic", "model_name": "new-model", "endpoint_config_name": "cfg-2"}
    assert h.handler(event, _Context("t"))["endpoint_config_name"] == "cfg-2"
    assert h.handler(event, _Context("t"))["endpoint_config_name"] == "cfg-2"


@pytest.mark.parametrize(("variant", "message"), [("Nope", "variant 'Nope' is not in endpoint config 'stack-config'")])
def test_a_variant_the_config_lacks_is_refused(endpoint, variant, message):
    h, _ = endpoint
    with pytest.raises(h.NotReproducibleError, match=message):
        h.handler({"endpoint_name": "prod", "variant_name": variant, "model_name": "new-model", "endpoint_config_name": "c"},
                  _Context("t"))


def test_a_serverless_target_is_refused():
    h = load_handler("pipeline_endpoint_config")
    current = {"EndpointConfigName": "c", "ProductionVariants": [{"VariantName": "A", "ModelName": "m",
                                                                   "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}}]}
    with pytest.raises(h.NotReproducibleError, match="variant 'A' is serverless"):
        h.carry_forward(current, {}, variant_name="A", model_name="n", config_name="x", accepted={"ProductionVariants"})


@pytest.mark.parametrize("event", [{}, {"endpoint_name": "prod"}, {"endpoint_name": "", "variant_name": "a", "model_name": "m",
                                                                    "endpoint_config_name": "c"}])
def test_malformed_events(event):
    h = load_handler("pipeline_endpoint_config")
    with pytest.raises(h.MalformedEventError, match="event needs non-empty strings"):
        h.handler(event, _Context("t"))


def test_every_member_create_accepts_is_carried_forward():
    """The pure rule, on a full DescribeEndpointConfig response (shadow, async, explainer, VPC...)."""
    import botocore.session

    h = load_handler("pipeline_endpoint_config")
    accepted = set(botocore.session.get_session().get_service_model("sagemaker")
                   .operation_model("CreateEndpointConfig").input_shape.members)
    current = {"EndpointConfigName": "c", "EndpointConfigArn": "arn", "CreationTime": "t",
               "ProductionVariants": [{"VariantName": "A", "ModelName": "m", "InstanceType": "ml.g5.xlarge", "InitialInstanceCount": 1}],
               "ShadowProductionVariants": [{"VariantName": "S", "ModelName": "s", "InstanceType": "ml.g5.xlarge", "InitialInstanceCount": 1}],
               "AsyncInferenceConfig": {"OutputConfig": {"S3OutputPath": "s3://b/o/"}}, "ExplainerConfig": {"ClarifyExplainerConfig": {}},
               "VpcConfig": {"Subnets": ["s"], "SecurityGroupIds": ["g"]}, "EnableNetworkIsolation": True,
               "ExecutionRoleArn": "arn:aws:iam::1:role/r"}
    endpoint = {"ProductionVariants": [{"VariantName": "A", "CurrentInstanceCount": 4}, {"VariantName": "S", "CurrentInstanceCount": 2}]}
    request = h.carry_forward(current, endpoint, variant_name="A", model_name="new", config_name="n", accepted=accepted)
    assert set(request) == {k for k in current if k not in ("EndpointConfigArn", "CreationTime")}
    assert request["EndpointConfigName"] == "n"
    assert request["ProductionVariants"] == [{"VariantName": "A", "ModelName": "new", "InstanceType": "ml.g5.xlarge", "InitialInstanceCount": 4}]
    assert request["ShadowProductionVariants"] == current["ShadowProductionVariants"]  # the shadow keeps its own model
    assert current["ProductionVariants"][0]["ModelName"] == "m"  # the input is not mutated
