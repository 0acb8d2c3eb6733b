"""The pipeline smoke plug-in against a real moto SERVER (as after `make deploy-local`), with the deployed
state machine and resources created from the synthesized template."""

from __future__ import annotations

import os
import socket
from types import SimpleNamespace
from unittest import mock

import aws_cdk as cdk
import boto3
import pytest
from aws_cdk.assertions import Template

from mlinfra.constructs.data_lake import DataLake
from mlinfra.constructs.retrain_pipeline import JobWait, RetrainPipeline, TrainingProps
from tests.helpers import new_stack
from tests.workflow.sfn_harness import TemplateResolver, state_machine_definition


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server():
    from moto.server import ThreadedMotoServer

    port = _free_port()
    url = f"http://localhost:{port}"
    # MOTO_PORT: moto's Step Functions executor calls the other services on this port (as in deploy-local).
    with mock.patch.dict(os.environ, {"AWS_ENDPOINT_URL": url, "MOTO_PORT": str(port)}):
        srv = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        srv.start()
        yield url
        srv.stop()


def test_smoke_runs_one_execution_end_to_end(server, local_config):
    from mlinfra.local_aws.smoke import pipeline as smoke

    from aws_cdk import aws_iam as iam

    from mlinfra.constructs.endpoint_target import EndpointTarget

    stack = new_stack()
    lake = DataLake(stack, "Lake")
    role = iam.Role(stack, "ModelRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    target = EndpointTarget(endpoint_name="prod-endpoint", endpoint_arn="arn:aws:sagemaker:us-east-1:123456789012:endpoint/prod-endpoint",
                            variant_name="AllTraffic", instance_type="ml.m5.large", initial_instance_count=1, model_execution_role=role,
                            deployment_config={"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE"}}})
    RetrainPipeline(stack, "P", lake=lake, training=TrainingProps(image_uri="img"), metric_name="accuracy", datasets=["images"],
                    threshold=0.8, poll_interval=cdk.Duration.seconds(1), state_machine_name="mlinfra-local-retrain",
                    deploy_target=target, inference_image_uri="serve", job_wait=JobWait.POLL)
    template = Template.from_stack(stack).to_json()
    resolver = TemplateResolver(template)  # boto3 clients go to the server (AWS_ENDPOINT_URL)
    (logical,) = resolver.logical_ids("AWS::StepFunctions::StateMachine")
    deployed = boto3.client("stepfunctions").create_state_machine(
        name="mlinfra-local-retrain", definition=state_machine_definition(resolver, logical), roleArn=resolver.role_arn())
    (table,) = resolver.logical_ids("AWS::DynamoDB::Table")
    bucket = {z: resolver.ensure(next(k for k in resolver.logical_ids("AWS::S3::Bucket") if k.startswith(f"Lake{z}Bucket")))["Ref"]
              for z in ("Raw", "Artifacts")}
    outputs = {
        "mlinfra-local-pipeline": {"StateMachineArn": deployed["stateMachineArn"], "LineageTableName": resolver.ensure(table)["Ref"],
                                   "ModelPackageGroupName": template["Resources"][resolver.logical_ids("AWS::SageMaker::ModelPackageGroup")[0]]["Properties"]["ModelPackageGroupName"]},
        "mlinfra-local-data-lake": {"RawBucketName": bucket["Raw"], "ArtifactsBucketName": bucket["Artifacts"]},
    }

    def client(name):
        return boto3.client(name, endpoint_url=server, region_name="us-east-1")

    ctx = SimpleNamespace(endpoint_url=server, config=local_config, client=client,
                          has_stack=lambda suffix: f"mlinfra-local-{suffix}" in outputs,
                          outputs=lambda suffix: outputs[f"mlinfra-local-{suffix}"])
    lines = smoke.run(ctx)
    text = "\n".join(lines)
    assert "SUCCEEDED" in text and "StartTrainingJob" in text and "Succeeded" in lines[-4] or "Succeeded" in text
    assert "Approved" in text and "spot=True" in text
    assert "CreateEndpoint" in text and "rolls out to a new endpoint" in text and "InService on" in text
    # A second run on the same emulator beats the first model too (the gate compares with production).
    assert "SUCCEEDED" in "\n".join(smoke.run(ctx))
    print(text)
