"""BatchTransform: template (poll loop without .sync, retries, catch, SNS, logs, X-Ray, triggers, alarms),
the definition executed by moto's Step Functions interpreter, and validation."""

from __future__ import annotations

import json
import time

import aws_cdk as cdk
import pytest
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Template

from mlinfra.constructs.batch_transform import BatchStrategy, BatchTransform, ProcessingStep, SplitType
from tests.helpers import new_stack

PRE_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/pre:1"


def _build(processing: bool, **kw):
    stack = new_stack()
    bucket = s3.Bucket(stack, "Lake", encryption=s3.BucketEncryption.KMS)
    role = iam.Role(stack, "ModelRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    kw.setdefault("schedule", events.Schedule.cron(hour="3", minute="0"))
    bt = BatchTransform(
        stack, "Bt", model_name="churn-model", model_version="7", input_bucket=bucket, output_bucket=bucket,
        model_role=role, poll_interval=cdk.Duration.seconds(1),
        processing=ProcessingStep(image_uri=PRE_IMAGE, entrypoint=["python3", "/opt/ml/code/pre.py"]) if processing else None,
        **kw,
    )
    return stack, bt, Template.from_stack(stack).to_json()


@pytest.fixture(scope="module")
def with_processing():
    return _build(True, trigger_on_new_data=True, split_type=SplitType.LINE, batch_strategy=BatchStrategy.MULTI_RECORD,
                  max_payload_mb=10, max_concurrent_transforms=8)


@pytest.fixture(scope="module")
def plain():
    return _build(False)


def _definition(t) -> dict:
    (sm,) = [v for v in t["Resources"].values() if v["Type"] == "AWS::StepFunctions::StateMachine"]
    return json.loads(_resolve(sm["Properties"]["DefinitionString"]))


def _resolve(value):
    """Resolve the intrinsics of a definition with stand-in values (bucket 'lake-bucket', fake ARNs)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    (fn, arg), = value.items()
    if fn == "Fn::Join":
        return arg[0].join(_resolve(p) for p in arg[1])
    if fn == "Ref":
        return {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}.get(
            arg, "arn:aws:sns:us-east-1:123456789012:bt-topic" if "Notifications" in arg else "lake-bucket")
    if fn == "Fn::GetAtt":
        return f"arn:aws:iam::123456789012:role/{arg[0]}" if "Role" in arg[0] else f"arn:aws:kms:us-east-1:123456789012:key/{arg[0]}"
    raise AssertionError(f"unexpected intrinsic {fn}")


def test_poll_loop_without_sync(with_processing):
    _, _, t = with_processing
    d = _definition(t)
    states = d["States"]
    resources = [s.get("Resource", "") for s in states.values()]
    assert not any(r.endswith(".sync") for r in resources)
    assert states["CreateTransformJob"]["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:createTransformJob"
    assert states["CreateTransformJob"]["Next"] == "WaitTransform"
    assert states["WaitTransform"] == {"Type": "Wait", "Seconds": 1, "Next": "DescribeTransformJob"}
    choice = states["TransformDone?"]
    assert choice["Type"] == "Choice" and choice["Default"] == "WaitTransform"
    assert d["StartAt"] == "Defaults"
    assert states["MergeInput"]["Next"] == "CreateProcessingJob"
    assert states["ProcessingDone?"]["Default"] == "WaitProcessing"


def test_transform_request(with_processing):
    _, _, t = with_processing
    p = _definition(t)["States"]["CreateTransformJob"]["Parameters"]
    assert (p["BatchStrategy"], p["MaxPayloadInMB"], p["MaxConcurrentTransforms"]) == ("MultiRecord", 10, 8)
    assert p["TransformInput"]["SplitType"] == "Line"
    assert p["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri.$"] == "$.processed.uri"
    out = p["TransformOutput"]["S3OutputPath.$"]
    assert out == ("States.Format('s3://lake-bucket/batch-inference/output/{}/{}/{}/', "
                   "$.job.model_name, $.job.model_version, $.job_name)")
    assert "KmsKeyId" in p["TransformOutput"] and "VolumeKmsKeyId" in p["TransformResources"]
    assert p["TransformResources"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1,
                                       "VolumeKmsKeyId": p["TransformResources"]["VolumeKmsKeyId"]}


def test_retry_and_catch_to_sns_then_fail(with_processing):
    _, _, t = with_processing
    states = _definition(t)["States"]
    for name in ("CreateProcessingJob", "DescribeProcessingJob", "CreateTransformJob", "DescribeTransformJob"):
        assert states[name]["Retry"][0]["MaxAttempts"] == 4, name
        assert states[name]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "NotifyFailure"}]
    assert states["NotifyFailure"]["Resource"] == "arn:aws:states:::sns:publish"
    assert states["NotifyFailure"]["Next"] == "Failed" and states["Failed"]["Type"] == "Fail"


def test_logs_xray_encrypted_topic_and_alarms(with_processing):
    _, _, t = with_processing
    (sm,) = [v["Properties"] for v in t["Resources"].values() if v["Type"] == "AWS::StepFunctions::StateMachine"]
    assert sm["TracingConfiguration"] == {"Enabled": True}
    assert sm["LoggingConfiguration"]["Level"] == "ALL" and sm["LoggingConfiguration"]["IncludeExecutionData"] is True
    (lg,) = [v["Properties"] for v in t["Resources"].values() if v["Type"] == "AWS::Logs::LogGroup"]
    assert lg["LogGroupName"].startswith("/aws/vendedlogs/states/") and "KmsKeyId" in lg
    (topic,) = [v["Properties"] for v in t["Resources"].values() if v["Type"] == "AWS::SNS::Topic"]
    assert "KmsMasterKeyId" in topic
    metrics = sorted(v["Properties"]["MetricName"] for v in t["Resources"].values() if v["Type"] == "AWS::CloudWatch::Alarm")
    assert metrics == ["ExecutionThrottled", "ExecutionsAborted", "ExecutionsFailed", "ExecutionsTimedOut"]


def test_schedule_and_new_data_triggers(with_processing):
    _, _, t = with_processing
    rules = [v["Properties"] for v in t["Resources"].values() if v["Type"] == "AWS::Events::Rule"]
    assert any(r.get("ScheduleExpression") == "cron(0 3 * * ? *)" for r in rules)
    (data,) = [r for r in rules if "EventPattern" in r]
    assert data["EventPattern"]["detail-type"] == ["Object Created"]
    assert data["EventPattern"]["detail"]["object"]["key"] == [{"prefix": "batch-inference/input/"}]
    assert "<detail-object-key>" in json.dumps(data["Targets"][0]["InputTransformer"])


def test_iam_pass_role_names_one_role_and_jobs_scoped(with_processing):
    _, _, t = with_processing
    statements = [s for v in t["Resources"].values() if v["Type"] == "AWS::IAM::Policy"
                  for s in v["Properties"]["PolicyDocument"]["Statement"]]
    pass_role = [s for s in statements if s["Action"] == "iam:PassRole"]
    assert len(pass_role) == 1 and "ProcessingRole" in json.dumps(pass_role[0]["Resource"])
    assert pass_role[0]["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    create = [s for s in statements if s["Action"] == "sagemaker:createTransformJob"]
    assert "transform-job/*" in json.dumps(create[0]["Resource"])


def test_no_volume_key_for_instance_storage_types():
    _, _, t = _build(False, instance_type="ml.g4dn.xlarge")
    p = _definition(t)["States"]["CreateTransformJob"]["Parameters"]
    assert "VolumeKmsKeyId" not in p["TransformResources"]


def _execute(definition: dict, execution_input: dict, create_model: bool = True, history: bool = False):
    import boto3
    from moto import mock_aws

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        sm = boto3.client("sagemaker", region_name="us-east-1")
        if create_model:
            sm.create_model(ModelName="churn-model", ExecutionRoleArn="arn:aws:iam::123456789012:role/m",
                            PrimaryContainer={"Image": PRE_IMAGE})
        boto3.client("sns", region_name="us-east-1").create_topic(Name="bt-topic")
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        arn = sfn.create_state_machine(name="bt", definition=json.dumps(definition),
                                       roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
        ex = sfn.start_execution(stateMachineArn=arn, name="run-1", input=json.dumps(execution_input))["executionArn"]
        for _ in range(300):
            desc = sfn.describe_execution(executionArn=ex)
            if desc["status"] != "RUNNING":
                break
            time.sleep(0.1)
        events_ = sfn.get_execution_history(executionArn=ex)["events"]
        if history:
            return {"status": desc["status"], "events": events_}, None, None
        jobs = sm.list_transform_jobs()["TransformJobSummaries"]
        out = [sm.describe_transform_job(TransformJobName=j["TransformJobName"]) for j in jobs]
        return desc["status"], json.loads(desc.get("output") or "{}"), out


def test_workflow_runs_in_the_emulator_and_writes_versioned_output(plain):
    _, _, t = plain
    status, output, jobs = _execute(_definition(t), {"model_version": "8"})
    assert status == "SUCCEEDED", output
    assert output["transform"]["status"] == "Completed"
    (job,) = jobs
    assert job["ModelName"] == "churn-model"
    assert job["TransformOutput"]["S3OutputPath"] == f"s3://lake-bucket/batch-inference/output/churn-model/8/{job['TransformJobName']}/"
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://lake-bucket/batch-inference/input/"


def test_workflow_with_preprocessing_runs_in_the_emulator(with_processing):
    status, output, jobs = _execute(_definition(with_processing[2]), {"input_uri": "s3://lake-bucket/batch-inference/input/day=1/x.csv"})
    assert status == "SUCCEEDED", output
    assert output["processing"]["status"] == "Completed"
    (job,) = jobs
    name = job["TransformJobName"]
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://lake-bucket/batch-inference/processed/{name}/"
    assert job["TransformOutput"]["S3OutputPath"] == f"s3://lake-bucket/batch-inference/output/churn-model/7/{name}/"


@pytest.mark.parametrize("failure", ["create_raises", "job_failed"])
def test_workflow_failure_is_notified_and_fails(plain, monkeypatch, failure):
    from moto.sagemaker import models as sm_models
    from moto.sagemaker.exceptions import ValidationError

    if failure == "create_raises":  # a SageMaker error: caught (after retries for throttling only)
        def create(self, **kwargs):
            raise ValidationError(message="Could not find model churn-model")
        monkeypatch.setattr(sm_models.SageMakerModelBackend, "create_transform_job", create)
    else:  # the job ran and failed: the Choice routes to the failure notification
        original = sm_models.SageMakerModelBackend.describe_transform_job

        def describe(self, transform_job_name):
            return {**original(self, transform_job_name), "TransformJobStatus": "Failed"}
        monkeypatch.setattr(sm_models.SageMakerModelBackend, "describe_transform_job", describe)
    status, _, _ = _execute(_definition(plain[2]), {}, history=True)
    assert status["status"] == "FAILED"
    names = [e["type"] for e in status["events"]]
    entered = [e["stateEnteredEventDetails"]["name"] for e in status["events"] if "stateEnteredEventDetails" in e]
    assert "NotifyFailure" in entered and "Failed" in entered
    assert ("TransformJobFailed" in entered) == (failure == "job_failed")
    assert "ExecutionFailed" in names


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(max_payload_mb=101), r"max_payload_mb must be between 0 and 100 MB, got: 101"),
        (dict(max_payload_mb=30, max_concurrent_transforms=4), r"max_concurrent_transforms x max_payload_mb must be <= 100 MB, got: 4 x 30 = 120"),
        (dict(instance_type="p3.2xlarge"), r"starting with 'ml\.'"),
        (dict(instance_type="ml.q9.large"), r"unknown SageMaker hosting instance family"),
        (dict(instance_count=0), r"instance_count must be >= 1"),
        (dict(schedule=None), r"give a schedule, trigger_on_new_data=True or both"),
        (dict(input_prefix="/bad"), r"input_prefix must be"),
        (dict(model_name=""), r"model_name: required"),
        (dict(model_version="v 1"), r"model_version must be"),
        (dict(poll_interval=cdk.Duration.hours(2)), r"poll_interval must be between 1 and 3600"),
        (dict(split_type="Line"), r"split_type must be a SplitType"),
        (dict(processing=ProcessingStep(image_uri=PRE_IMAGE, entrypoint=[])), r"processing.entrypoint: required"),
        (dict(processing=ProcessingStep(image_uri=PRE_IMAGE, entrypoint=["x"], instance_type="c5.xlarge")), r"processing.instance_type"),
    ],
)
def test_validation(kwargs, match):
    stack = new_stack()
    bucket = s3.Bucket(stack, "B")
    args = dict(model_name="m", input_bucket=bucket, output_bucket=bucket, schedule=events.Schedule.rate(cdk.Duration.days(1)))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        BatchTransform(stack, "Bt", **args)
