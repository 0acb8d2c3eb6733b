"""Issue 12, "the checks that would have caught these": every request our state machines send is validated
against the botocore input shape of its API, and every AWS error name they retry or catch against the service
model (tests/aws_models.py says how)."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Template

from mlinfra.constructs.data_lake import DataLake
from mlinfra.constructs.endpoint import Endpoint, ModelContainer, ModelPointer, ProductionVariant
from mlinfra.constructs.retrain_pipeline import JobWait, ProcessingProps, RetrainPipeline, TrainingProps
from tests.aws_models import definition_errors, error_name_errors, operation_of, task_request_errors
from tests.helpers import new_stack

TRAIN = "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1"
SERVE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1"


def _pipeline(job_wait: JobWait) -> RetrainPipeline:
    stack = new_stack()
    lake = DataLake(stack, "Lake")
    pointer = ModelPointer(stack, "Ptr", parameter_prefix="/t/served", image_uri=SERVE, model_bucket=lake.bucket("models"),
                           model_data_key="m/model.tar.gz")
    endpoint = Endpoint(stack, "Ep", model=ModelContainer.from_pointer(pointer),
                        variants=[ProductionVariant(instance_type="ml.m5.large")])
    return RetrainPipeline(stack, "P", lake=lake, training=TrainingProps(image_uri=TRAIN, hyperparameters={"epochs": "2"}),
                           metric_name="accuracy", datasets=["images"], threshold=0.8, deploy_target=endpoint.deploy_target,
                           inference_image_uri=SERVE, preprocessing=ProcessingProps(image_uri=TRAIN, arguments=["--x"]),
                           evaluation=ProcessingProps(image_uri=TRAIN, environment={"A": "1"}), manual_approval=True,
                           job_wait=job_wait)


@pytest.mark.parametrize("job_wait", list(JobWait))
def test_every_retrain_request_matches_its_api_input_shape(job_wait):
    definition = _pipeline(job_wait).definition
    assert definition_errors(definition) == []


def test_batch_transform_requests_match_their_api_input_shapes():
    from mlinfra.constructs.batch_transform import BatchTransform, ProcessingStep

    stack = new_stack()
    bucket = s3.Bucket(stack, "B")
    role = iam.Role(stack, "R", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    BatchTransform(stack, "T", model_package_group_name="m", model_role=role, input_bucket=bucket, input_prefix="in/",
                   output_bucket=bucket, output_prefix="out/", trigger_on_ready_marker=True,
                   vpc_config={"SecurityGroupIds": ["sg-0123456789abcdef0"], "Subnets": ["subnet-0123456789abcdef0"]},
                   processing=ProcessingStep(image_uri=TRAIN, entrypoint=["python3", "pre.py"]))
    (sm,) = Template.from_stack(stack).find_resources("AWS::StepFunctions::StateMachine").values()
    body = sm["Properties"]["DefinitionString"]
    if isinstance(body, dict):
        sep, parts = body["Fn::Join"]
        body = sep.join(p if isinstance(p, str) else "${Token[ref]}" for p in parts)
    assert definition_errors(json.loads(body)) == []


# --- the checker itself catches the class (negative tests) ------------------------------------------------

def test_an_unknown_action_is_caught():
    with pytest.raises(ValueError, match="sagemaker has no API action 'CreateTrainingJobs'"):
        operation_of("arn:aws:states:::aws-sdk:sagemaker:createTrainingJobs")


def test_a_request_the_api_refuses_is_caught():
    state = {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:sagemaker:updateEndpoint",
             "Parameters": {"EndpointName": "e", "EndpointConfigName.$": "$.c", "RetainAllVariantProperties": "yes",
                            "DeploymentConfig": {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "FAST"}}},
                            "Guardrails": {}}}
    errors = " ".join(task_request_errors("U", state))
    assert "Guardrails: is not a member of UpdateEndpointInput" in errors
    assert "RetainAllVariantProperties: must be true or false" in errors and "'FAST'" in errors


def test_a_missing_required_member_is_caught():
    state = {"Type": "Task", "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync",
             "Parameters": {"TrainingJobName.$": "$.n", "RoleArn": "arn:aws:iam::1:role/r"}}
    assert "OutputDataConfig: is required by CreateTrainingJobRequest" in " ".join(task_request_errors("T", state))


@pytest.mark.parametrize("name", ["SageMaker.ThrottlingException", "SageMaker.InternalFailure", "SageMaker.ResourceLimitExceeded",
                                  "DynamoDB.RequestLimitExceeded", "SNS.AmazonSnsException", "Sagemaker.ResourceInUseException"])
def test_an_error_name_no_error_carries_is_caught(name):
    definition = {"States": {"T": {"Type": "Task", "Resource": "x", "Retry": [{"ErrorEquals": [name]}]}}}
    assert error_name_errors(definition), name


@pytest.mark.parametrize("name", ["SageMaker.AmazonSageMakerException", "SageMaker.ResourceLimitExceededException",
                                  "DynamoDB.ConditionalCheckFailedException", "DynamoDB.RequestLimitExceededException",
                                  "SNS.ThrottledException", "Lambda.TooManyRequestsException", "States.ALL"])
def test_real_error_names_pass(name):
    definition = {"States": {"T": {"Type": "Task", "Resource": "x", "Retry": [{"ErrorEquals": [name]}]}}}
    assert error_name_errors(definition) == []
