"""BatchTransform (issue 12 item 11): one job per READY batch (completion marker), scored with the newest APPROVED
model package resolved at run time; template (poll loop without .sync, retries, catch, SNS, logs, X-Ray, triggers,
alarms, IAM), the definition executed by moto's Step Functions interpreter, the marker rule run through moto's
EventBridge, and validation."""

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
SERVE_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1"
GROUP = "churn-models"
BUCKET = "lake-bucket"
MARKER = "batch-inference/input/_ready/day-2026-11-30"
VERSION_ID = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"
SEQUENCER = "00617F08299329D189"
EMPTY_ETAG = "d41d8cd98f00b204e9800998ecf8427e"


def _build(processing: bool, **kw):
    stack = new_stack()
    bucket = s3.Bucket(stack, "Lake", encryption=s3.BucketEncryption.KMS)
    role = iam.Role(stack, "ModelRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    kw.setdefault("schedule", events.Schedule.cron(hour="3", minute="0"))
    kw.setdefault("trigger_on_ready_marker", True)
    bt = BatchTransform(
        stack, "Bt", model_package_group_name=GROUP, input_bucket=bucket, output_bucket=bucket, job_prefix="bt",
        model_role=role, poll_interval=cdk.Duration.seconds(1), timeout=kw.pop("timeout", cdk.Duration.minutes(10)),
        processing=ProcessingStep(image_uri=PRE_IMAGE, entrypoint=["python3", "/opt/ml/code/pre.py"],
                                  max_runtime=cdk.Duration.minutes(10)) if processing else None,
        **kw,
    )
    return stack, bt, Template.from_stack(stack).to_json()


@pytest.fixture(scope="module")
def with_processing():
    return _build(True, split_type=SplitType.LINE, batch_strategy=BatchStrategy.MULTI_RECORD,
                  max_payload_mb=10, max_concurrent_transforms=8)


@pytest.fixture(scope="module")
def plain():
    return _build(False)


def _definition(t) -> dict:
    (sm,) = [v for v in t["Resources"].values() if v["Type"] == "AWS::StepFunctions::StateMachine"]
    return json.loads(_resolve(sm["Properties"]["DefinitionString"]))


def _resolve(value):
    """Resolve the intrinsics of a definition or rule with stand-in values (bucket 'lake-bucket', fake ARNs)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("Fn::Join", "Ref", "Fn::GetAtt"):
        (fn, arg), = value.items()
        if fn == "Fn::Join":
            return arg[0].join(_resolve(p) for p in arg[1])
        if fn == "Ref":
            return {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}.get(
                arg, "arn:aws:sns:us-east-1:123456789012:bt-topic" if "Notifications" in arg else BUCKET)
        return f"arn:aws:iam::123456789012:role/{arg[0]}" if "Role" in arg[0] else f"arn:aws:kms:us-east-1:123456789012:key/{arg[0]}"
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    return value


def _marker_event(key: str = MARKER, version_id: str | None = VERSION_ID, sequencer: str = SEQUENCER) -> dict:
    return {"marker": {"key": key, "version_id": version_id, "sequencer": sequencer}}


# --- template ---------------------------------------------------------------------------------------------

def test_poll_loop_without_sync(with_processing):
    _, _, t = with_processing
    d = _definition(t)
    states = d["States"]
    assert not any(s.get("Resource", "").endswith(".sync") for s in states.values())
    assert states["CreateTransformJob"]["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:createTransformJob"
    assert states["CreateTransformJob"]["Next"] == "CountTransformPoll"
    assert states["WaitTransform"] == {"Type": "Wait", "Seconds": 1, "Next": "DescribeTransformJob"}
    choice = states["TransformDone?"]
    assert choice["Type"] == "Choice" and choice["Default"] == "CountTransformPoll"
    assert d["StartAt"] == "MarkerEvent?"
    assert states["CreateModel"]["Next"] == "CreateProcessingJob"
    assert states["ProcessingDone?"]["Default"] == "WaitProcessing"


def test_the_model_is_the_newest_approved_package_version(plain):
    states = _definition(plain[2])["States"]
    assert states["FindApprovedModel"]["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:listModelPackages"
    assert states["FindApprovedModel"]["Parameters"] == {
        "ModelPackageGroupName": GROUP, "ModelApprovalStatus": "Approved", "SortBy": "CreationTime",
        "SortOrder": "Descending", "MaxResults": 100}
    assert states["CreateModel"]["Parameters"]["PrimaryContainer"] == {"ModelPackageName.$": "$.model.package_arn"}
    assert states["CreateModel"]["Parameters"]["EnableNetworkIsolation"] is True
    assert states["CreateTransformJob"]["Parameters"]["ModelName.$"] == "$.job.job_name"


def test_transform_request(with_processing):
    _, _, t = with_processing
    p = _definition(t)["States"]["CreateTransformJob"]["Parameters"]
    assert (p["BatchStrategy"], p["MaxPayloadInMB"], p["MaxConcurrentTransforms"]) == ("MultiRecord", 10, 8)
    assert p["TransformInput"]["SplitType"] == "Line"
    assert p["TransformInput"]["DataSource"]["S3DataSource"] == {"S3DataType": "S3Prefix", "S3Uri.$": "$.processed.uri"}
    assert p["TransformOutput"]["S3OutputPath.$"] == (
        "States.Format('s3://lake-bucket/batch-inference/output/{}/model-version={}/{}/', "
        "$.job.batch, $.model.version, $.job.job_name)")
    assert "KmsKeyId" in p["TransformOutput"] and "VolumeKmsKeyId" in p["TransformResources"]
    assert p["Tags"] == [{"Key": "mlinfra:model-package", "Value.$": "$.model.package_arn"},
                         {"Key": "mlinfra:execution", "Value.$": "$.job.owner"}]


def test_job_name_is_derived_from_batch_and_run_key(plain):
    plan = _definition(plain[2])["States"]["Plan"]["Parameters"]
    assert plan["job_name.$"] == ("States.Format('bt-{}', States.Hash(States.Format('{}#{}', $.run.batch, "
                                  "$.run.run_key), 'SHA-1'))")


def test_retry_and_catch_to_sns_then_fail(with_processing):
    _, _, t = with_processing
    states = _definition(t)["States"]
    for name in ("FindApprovedModel", "DescribeProcessingJob", "DescribeTransformJob"):
        assert states[name]["Retry"][0]["MaxAttempts"] == 4, name
        assert states[name]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "NotifyFailure"}]
    # A failed create checks whether the resource exists (a duplicate run) before it notifies.
    assert states["CreateModel"]["Catch"][-1]["Next"] == "FindExistingModel"
    assert states["CreateProcessingJob"]["Catch"][-1]["Next"] == "FindExistingProcessingJob"
    assert [c["ErrorEquals"] for c in states["CreateTransformJob"]["Catch"]] == [
        ["SageMaker.ResourceInUseException"], ["States.ALL"]]
    assert {c["Next"] for c in states["CreateTransformJob"]["Catch"]} == {"FindStartedJob"}
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
    assert metrics == ["ApproximateNumberOfMessagesVisible", "ExecutionThrottled", "ExecutionsAborted", "ExecutionsFailed",
                       "ExecutionsTimedOut"]


def _rules(t) -> list[dict]:
    return [_resolve(v["Properties"]) for v in t["Resources"].values() if v["Type"] == "AWS::Events::Rule"]


def test_schedule_and_marker_triggers(plain):
    rules = _rules(plain[2])
    (scheduled,) = [r for r in rules if r.get("ScheduleExpression") == "cron(0 3 * * ? *)"]
    # The scheduled event's id names the run (a duplicated delivery of one event starts no second job).
    transformer = scheduled["Targets"][0]["InputTransformer"]
    assert transformer["InputTemplate"] == '{"run_key":<id>}' and transformer["InputPathsMap"] == {"id": "$.id"}
    (marker,) = [r for r in rules if "EventPattern" in r]
    assert marker["EventPattern"]["detail-type"] == ["Object Created"]
    # Only completion markers match: a data object under the batch's prefix starts nothing (old: every object).
    assert marker["EventPattern"]["detail"]["object"]["key"] == [{"prefix": "batch-inference/input/_ready/"}]
    paths = marker["Targets"][0]["InputTransformer"]["InputPathsMap"]
    # The run key is the marker's version id, else the event's sequencer; never the ETag (same bytes, same ETag).
    assert sorted(paths.values()) == ["$.detail.object.key", "$.detail.object.sequencer", "$.detail.object.version-id"]


def _statements(t) -> list[dict]:
    return [s for v in t["Resources"].values() if v["Type"] == "AWS::IAM::Policy"
            for s in v["Properties"]["PolicyDocument"]["Statement"]]


def test_iam_pass_role_names_one_role_each_and_names_are_scoped(with_processing):
    _, _, t = with_processing
    statements = _statements(t)
    pass_role = [s for s in statements if s["Action"] == "iam:PassRole"]
    assert sorted(json.dumps(s["Resource"]).count("ProcessingRole") + json.dumps(s["Resource"]).count("ModelRole")
                  for s in pass_role) == [1, 1]
    for s in pass_role:
        assert s["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    by_action = {s["Action"]: json.dumps(_resolve(s["Resource"])) for s in statements if isinstance(s["Action"], str)}
    assert by_action["sagemaker:createTransformJob"].endswith(':transform-job/bt-*"')
    assert by_action["sagemaker:createModel"].endswith(':model/bt-*"')
    assert by_action["sagemaker:deleteModel"].endswith(':model/bt-*"')
    assert by_action["sagemaker:ListModelPackages"] == '"*"'  # no resource-level permissions
    assert by_action["sagemaker:DescribeModelPackage"].endswith(f':model-package/{GROUP}/*"')


def test_no_volume_key_for_instance_storage_types():
    _, _, t = _build(False, instance_type="ml.g4dn.xlarge")
    p = _definition(t)["States"]["CreateTransformJob"]["Parameters"]
    assert "VolumeKmsKeyId" not in p["TransformResources"]


def test_vpc_config_goes_to_the_model():
    vpc = {"SecurityGroupIds": ["sg-0123456789abcdef0"], "Subnets": ["subnet-0123456789abcdef0"]}
    _, _, t = _build(False, vpc_config=vpc, enable_network_isolation=False)
    p = _definition(t)["States"]["CreateModel"]["Parameters"]
    assert p["VpcConfig"] == vpc and p["EnableNetworkIsolation"] is False


# --- the definition, executed in moto ------------------------------------------------------------------------

def _register(sm, statuses: list[str]) -> list[str]:
    """Register one package version per status, oldest first; returns their ARNs."""
    sm.create_model_package_group(ModelPackageGroupName=GROUP)
    arns = []
    for status in statuses:
        arns.append(sm.create_model_package(
            ModelPackageGroupName=GROUP, ModelApprovalStatus=status,
            InferenceSpecification={"Containers": [{"Image": SERVE_IMAGE, "ModelDataUrl": f"s3://models/{len(arns)}.tar.gz"}],
                                    "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
        )["ModelPackageArn"])
        time.sleep(0.01)  # distinct creation times
    return arns


def _run(sfn, arn: str, name: str, payload: dict) -> dict:
    ex = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(payload))["executionArn"]
    for _ in range(300):
        desc = sfn.describe_execution(executionArn=ex)
        if desc["status"] != "RUNNING":
            break
        time.sleep(0.05)
    history = sfn.get_execution_history(executionArn=ex, maxResults=1000)["events"]
    desc["states"] = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    tasks = [e["taskScheduledEventDetails"] for e in history if "taskScheduledEventDetails" in e]
    desc["requests"] = {f"{t['resourceType'].split(':')[-1]}:{t['resource']}": json.loads(t["parameters"]) for t in tasks}
    return desc


class _Emulator:
    """moto with the definition created, a model package group, and helpers to run and inspect."""

    def __init__(self, definition: dict, packages: list[str]) -> None:
        import boto3

        self.sm = boto3.client("sagemaker", region_name="us-east-1")
        self.packages = _register(self.sm, packages) if packages else []
        boto3.client("sns", region_name="us-east-1").create_topic(Name="bt-topic")
        self.sfn = boto3.client("stepfunctions", region_name="us-east-1")
        self.arn = self.sfn.create_state_machine(name="bt", definition=json.dumps(definition),
                                                 roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]

    def run(self, name: str, payload: dict) -> dict:
        return _run(self.sfn, self.arn, name, payload)

    def jobs(self) -> list[dict]:
        return [self.sm.describe_transform_job(TransformJobName=j["TransformJobName"])
                for j in self.sm.list_transform_jobs()["TransformJobSummaries"]]


def _names_are_unique_as_in_aws(monkeypatch) -> None:
    """moto overwrites a model or job of an existing name; SageMaker refuses it (CreateModel: "Cannot create already
    existing model", a ValidationException; CreateTransformJob/CreateProcessingJob: ResourceInUse, botocore's
    model). Rule sagemaker.transform-job-name-unique: the duplicate paths run against the real behaviour."""
    from moto.sagemaker import models as sm_models
    from moto.sagemaker.exceptions import ResourceInUseException, ValidationError

    backend = sm_models.SageMakerModelBackend
    for method, store, name_arg, error in (
            ("create_model", "_models", "model_name", lambda n: ValidationError(message=f'Cannot create already existing model "{n}".')),
            ("create_transform_job", "transform_jobs", "transform_job_name", lambda n: ResourceInUseException(message=f"Job {n} already exists")),
            ("create_processing_job", "processing_jobs", "processing_job_name", lambda n: ResourceInUseException(message=f"Job {n} already exists"))):
        original = getattr(backend, method)

        def unique(self, *args, _original=original, _store=store, _name=name_arg, _error=error, **kwargs):
            if kwargs[_name] in getattr(self, _store):
                raise _error(kwargs[_name])
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(backend, method, unique)


@pytest.fixture
def emulator(monkeypatch):
    from moto import mock_aws

    _names_are_unique_as_in_aws(monkeypatch)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        yield lambda definition, packages: _Emulator(definition, packages)


def test_scores_the_marked_batch_with_the_newest_approved_version(plain, emulator):
    emu = emulator(_definition(plain[2]), ["Approved", "Approved"])
    result = emu.run("run-1", _marker_event())
    assert result["status"] == "SUCCEEDED", result
    (job,) = emu.jobs()
    model = result["requests"]["sagemaker:createModel"]
    assert model["PrimaryContainer"] == {"ModelPackageName": emu.packages[1]}  # the newer of two approved
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://lake-bucket/batch-inference/input/day-2026-11-30/"
    assert job["TransformOutput"]["S3OutputPath"] == (
        f"s3://lake-bucket/batch-inference/output/day-2026-11-30/model-version=2/{job['TransformJobName']}/")
    assert job["TransformJobName"].startswith("bt-") and len(job["TransformJobName"]) == 43
    assert "DeleteRunModel" in result["states"]  # the per-run model does not accumulate


def test_a_newer_rejected_version_is_skipped(plain, emulator):
    emu = emulator(_definition(plain[2]), ["Approved", "Rejected", "PendingManualApproval"])
    result = emu.run("run-1", _marker_event())
    assert result["status"] == "SUCCEEDED", result
    assert result["requests"]["sagemaker:createModel"]["PrimaryContainer"] == {"ModelPackageName": emu.packages[0]}
    (job,) = emu.jobs()
    assert "/model-version=1/" in job["TransformOutput"]["S3OutputPath"]


@pytest.mark.parametrize("packages", [[], ["Rejected", "PendingManualApproval"]], ids=["no-versions", "none-approved"])
def test_no_approved_version_fails_clearly_and_notifies(plain, emulator, packages):
    emu = emulator(_definition(plain[2]), packages)
    if not packages:
        emu.sm.create_model_package_group(ModelPackageGroupName=GROUP)
    result = emu.run("run-1", _marker_event())
    assert result["status"] == "FAILED"
    assert result["states"][-3:] == ["NoApprovedModel", "NotifyFailure", "Failed"]
    message = result["requests"]["sns:publish"]["Message"]
    error = json.loads(message["error"])["error"]
    assert error["Error"] == "NoApprovedModel"
    assert error["Cause"] == (f"model package group {GROUP} has no Approved model package: batch day-2026-11-30 "
                              "was not scored")
    assert emu.jobs() == [] and "sagemaker:createModel" not in result["requests"]


def test_an_empty_first_page_with_a_next_token_pages_on(plain, emulator, monkeypatch):
    """SageMaker may answer ListModelPackages (Approved filter) with an EMPTY page and a NextToken when newer versions
    that are not approved fill the page before filtering (boto/boto3#2521; AWS's SageMaker Python SDK pages on while
    the list is empty). moto filters before it paginates and never answers so: the page sequence is faked here
    (first page [] + token, then moto's real answer). The old lookup (MaxResults 1, no paging) failed NoApprovedModel."""
    from moto.sagemaker import models as sm_models

    real = sm_models.SageMakerModelBackend.list_model_packages
    calls = []

    def paged(self, **kwargs):
        calls.append(kwargs.get("next_token"))
        if kwargs.get("next_token") is None:
            return [], "page-2"
        return real(self, **{**kwargs, "next_token": None})
    monkeypatch.setattr(sm_models.SageMakerModelBackend, "list_model_packages", paged)
    emu = emulator(_definition(plain[2]), ["Approved", "PendingManualApproval"])
    result = emu.run("run-1", _marker_event())
    assert result["status"] == "SUCCEEDED", result["states"]
    assert calls == [None, "page-2"]
    assert result["requests"]["sagemaker:createModel"]["PrimaryContainer"] == {"ModelPackageName": emu.packages[0]}


def test_an_empty_last_page_fails_no_approved_model(plain, emulator, monkeypatch):
    """Empty with no NextToken is the end of the list: NoApprovedModel (faked pages, as above)."""
    from moto.sagemaker import models as sm_models

    pages = iter([([], "page-2"), ([], None)])
    monkeypatch.setattr(sm_models.SageMakerModelBackend, "list_model_packages", lambda self, **kw: next(pages))
    emu = emulator(_definition(plain[2]), ["Approved"])
    result = emu.run("run-1", _marker_event())
    assert result["status"] == "FAILED"
    assert result["states"][-6:] == ["ApprovedModelFound?", "FindApprovedModelNextPage", "ApprovedModelFound?",
                                     "NoApprovedModel", "NotifyFailure", "Failed"]


def test_a_run_whose_create_reported_an_error_after_creating_keeps_watching_its_job(plain, emulator, monkeypatch):
    """The create's outcome is unknown (SageMaker made the job, the answer was an error): the run finds the job, sees
    its own execution tag and polls it to the end instead of ending AlreadyStarted unwatched (old behaviour)."""
    from moto.sagemaker import models as sm_models
    from moto.sagemaker.exceptions import ValidationError

    emu = emulator(_definition(plain[2]), ["Approved"])
    unique_create = sm_models.SageMakerModelBackend.create_transform_job

    def create_then_fail(self, **kwargs):
        unique_create(self, **kwargs)
        raise ValidationError(message="the answer was lost")
    monkeypatch.setattr(sm_models.SageMakerModelBackend, "create_transform_job", create_then_fail)
    result = emu.run("run-1", _marker_event())
    assert result["status"] == "SUCCEEDED", result["states"]
    states = result["states"]
    assert states[states.index("FindStartedJob"):][:5] == [
        "FindStartedJob", "ListTransformJobTags", "TransformJobOwner", "OwnTransformJob?", "CountTransformPoll"]
    assert states[-3:] == ["TransformDone?", "DeleteRunModel", "Succeeded"] and "AlreadyStarted" not in states
    (job,) = emu.jobs()
    tags = emu.sm.list_tags(ResourceArn=job["TransformJobArn"])["Tags"]
    assert {"Key": "mlinfra:model-package", "Value": emu.packages[0]} in tags
    assert [t["Key"] for t in tags].count("mlinfra:execution") == 1


def test_an_unversioned_marker_is_keyed_on_its_sequencer(plain, emulator):
    """Without a version id (absent, null or the suspended-versioning "null"), the event's sequencer is the run key:
    a redelivery (same sequencer) starts nothing, a new write (new sequencer) of identical bytes scores again."""
    emu = emulator(_definition(plain[2]), ["Approved"])
    assert emu.run("a", _marker_event(version_id=None))["status"] == "SUCCEEDED"
    assert emu.run("a-again", _marker_event(version_id="null"))["states"][-1] == "AlreadyStarted"
    assert emu.run("b", _marker_event(version_id="", sequencer="00617F0829932A0000"))["status"] == "SUCCEEDED"
    assert len(emu.jobs()) == 2
    no_id = {"marker": {"key": MARKER}}
    result = emu.run("c", no_id)
    assert result["status"] == "FAILED" and result["states"][-3:] == ["BadMarker", "NotifyFailure", "Failed"]


def test_a_duplicate_marker_event_starts_no_second_job(plain, emulator):
    emu = emulator(_definition(plain[2]), ["Approved"])
    first = emu.run("event-1", _marker_event())
    second = emu.run("event-1-redelivered", _marker_event())
    assert first["status"] == second["status"] == "SUCCEEDED"
    assert second["states"][-1] == "AlreadyStarted" and "sagemaker:createModel" not in second["requests"]
    assert len(emu.jobs()) == 1
    # The same batch marked again, even with the same bytes (same ETag), is a new version: scored again.
    third = emu.run("event-2", _marker_event(version_id="Rb2ExaZ2DhkJPnTHzl0kWQb4fwmVS0xx", sequencer="00617F0829932A0000"))
    assert third["status"] == "SUCCEEDED" and len(emu.jobs()) == 2


def test_a_concurrent_duplicate_that_loses_the_create_race_ends_already_started(plain, emulator, monkeypatch):
    """The pre-check missed the job (it did not exist yet); the create fails as SageMaker fails a duplicate name
    (ResourceInUse): no failure, no second job."""
    from moto.sagemaker import models as sm_models

    emu = emulator(_definition(plain[2]), ["Approved"])
    assert emu.run("first", _marker_event())["status"] == "SUCCEEDED"
    original = sm_models.SageMakerModelBackend.describe_transform_job
    calls = {"n": 0}

    def describe(self, transform_job_name):
        calls["n"] += 1
        if calls["n"] == 1:  # the pre-check runs before the other execution created the job
            raise sm_models.ValidationError(message=f"Could not find requested job with name {transform_job_name}")
        return original(self, transform_job_name)

    monkeypatch.setattr(sm_models.SageMakerModelBackend, "describe_transform_job", describe)
    second = emu.run("second", _marker_event())
    assert second["status"] == "SUCCEEDED", second
    assert second["states"][-6:] == ["CreateTransformJob", "FindStartedJob", "ListTransformJobTags", "TransformJobOwner",
                                     "OwnTransformJob?", "AlreadyStarted"]
    assert len(emu.jobs()) == 1


def test_a_duplicate_during_preprocessing_ends_already_started(with_processing, emulator, monkeypatch):
    """The first run is still preprocessing (its model and processing job exist, no transform job yet): the
    duplicate's creates fail on the taken names, it finds them and ends without a failure or a second job."""
    from moto.sagemaker import models as sm_models

    emu = emulator(_definition(with_processing[2]), ["Approved"])
    real_create = sm_models.SageMakerModelBackend.create_transform_job
    monkeypatch.setattr(sm_models.SageMakerModelBackend, "create_transform_job",
                        lambda self, **kw: (_ for _ in ()).throw(RuntimeError("first run still preprocessing")))
    first = emu.run("first", _marker_event())
    assert first["status"] == "FAILED" and emu.sm.list_processing_jobs()["ProcessingJobSummaries"]
    monkeypatch.setattr(sm_models.SageMakerModelBackend, "create_transform_job", real_create)
    second = emu.run("second", _marker_event())
    assert second["status"] == "SUCCEEDED", second
    assert second["states"][-8:] == ["CreateModel", "FindExistingModel", "CreateProcessingJob", "FindExistingProcessingJob",
                                     "ListProcessingJobTags", "ProcessingJobOwner", "OwnProcessingJob?", "AlreadyStarted"]
    assert len(emu.sm.list_processing_jobs()["ProcessingJobSummaries"]) == 1 and emu.jobs() == []


def test_a_real_create_failure_is_notified(plain, emulator, monkeypatch):
    from moto.sagemaker import models as sm_models
    from moto.sagemaker.exceptions import ValidationError

    emu = emulator(_definition(plain[2]), ["Approved"])

    def create(self, **kwargs):
        raise ValidationError(message="Could not find model")
    monkeypatch.setattr(sm_models.SageMakerModelBackend, "create_transform_job", create)
    result = emu.run("run-1", _marker_event())
    assert result["status"] == "FAILED"
    assert result["states"][-3:] == ["FindStartedJob", "NotifyFailure", "Failed"]


def test_a_failed_job_is_notified(plain, emulator, monkeypatch):
    from moto.sagemaker import models as sm_models

    original = sm_models.SageMakerModelBackend.describe_transform_job
    emu = emulator(_definition(plain[2]), ["Approved"])
    state = {"created": False}
    real_create = sm_models.SageMakerModelBackend.create_transform_job

    def create(self, **kwargs):
        state["created"] = True
        return real_create(self, **kwargs)

    def describe(self, transform_job_name):
        if not state["created"]:
            return original(self, transform_job_name)
        return {**original(self, transform_job_name), "TransformJobStatus": "Failed"}
    monkeypatch.setattr(sm_models.SageMakerModelBackend, "create_transform_job", create)
    monkeypatch.setattr(sm_models.SageMakerModelBackend, "describe_transform_job", describe)
    result = emu.run("run-1", _marker_event())
    assert result["status"] == "FAILED"
    assert "TransformJobFailed" in result["states"] and result["states"][-2:] == ["NotifyFailure", "Failed"]


@pytest.mark.parametrize("key", [
    "batch-inference/input/_ready/",              # a console "folder" object
    "batch-inference/input/_ready/a/b",           # nested: one path segment only
    "batch-inference/input/_ready/a%3Db",         # URL-encoded key
])
def test_a_marker_that_names_no_batch_fails_clearly(plain, emulator, key):
    emu = emulator(_definition(plain[2]), ["Approved"])
    result = emu.run("run-1", _marker_event(key=key))
    assert result["status"] == "FAILED"
    assert result["states"][-3:] == ["BadMarker", "NotifyFailure", "Failed"] and emu.jobs() == []


def test_scheduled_and_manual_runs_score_a_named_batch(plain, emulator):
    emu = emulator(_definition(plain[2]), ["Approved"])
    assert emu.run("scheduled", {"run_key": "event-id-1"})["status"] == "SUCCEEDED"
    assert emu.run("scheduled-again", {"run_key": "event-id-1"})["states"][-1] == "AlreadyStarted"
    assert emu.run("manual", {"batch": "backfill-7"})["status"] == "SUCCEEDED"
    uris = sorted(j["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] for j in emu.jobs())
    assert uris == ["s3://lake-bucket/batch-inference/input/backfill-7/", "s3://lake-bucket/batch-inference/input/current/"]


def test_workflow_with_preprocessing_runs_in_the_emulator(with_processing, emulator):
    emu = emulator(_definition(with_processing[2]), ["Approved"])
    result = emu.run("run-1", _marker_event())
    assert result["status"] == "SUCCEEDED", result
    (job,) = emu.jobs()
    name = job["TransformJobName"]
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://lake-bucket/batch-inference/processed/{name}/"
    proc = result["requests"]["sagemaker:createProcessingJob"]
    assert proc["ProcessingInputs"][0]["S3Input"]["S3Uri"] == "s3://lake-bucket/batch-inference/input/day-2026-11-30/"


@pytest.mark.parametrize("batch", ["a/b", "_ready", "", "a%3Db", 7])
def test_a_manual_batch_that_is_no_path_segment_fails_clearly(plain, emulator, batch):
    """A manual {"batch": ...} obeys the marker's rule (one path segment, not _ready): before, "a/b" scored
    input/a/b/ and "_ready" scored the markers."""
    emu = emulator(_definition(plain[2]), ["Approved"])
    result = emu.run("manual", {"batch": batch})
    assert result["status"] == "FAILED"
    assert result["states"][-3:] == ["BadBatch", "NotifyFailure", "Failed"] and emu.jobs() == []


def test_creates_wait_out_a_quota_bounded(with_processing):
    """ResourceLimitExceeded (a quota: two markers at once over the concurrent-job limit) is retried with a long,
    bounded backoff instead of failing at once; the name is checked against botocore's model in test_aws_models."""
    states = _definition(with_processing[2])["States"]
    for name in ("CreateModel", "CreateProcessingJob", "CreateTransformJob"):
        (quota,) = [r for r in states[name]["Retry"] if r["ErrorEquals"] == ["SageMaker.ResourceLimitExceededException"]]
        assert (quota["IntervalSeconds"], quota["MaxAttempts"], quota["BackoffRate"], quota["MaxDelaySeconds"]) == (
            300, 5, 2, 1800), name


def test_a_job_past_the_timeout_is_stopped_and_notified(emulator, monkeypatch):
    """The poll budget (timeout / poll_interval) ends in StopTransformJob and a notification; before, the execution
    timed out (no Catch runs) and the job kept running. moto has no StopTransformJob: the test records the call."""
    from moto.sagemaker import models as sm_models
    from moto.sagemaker.responses import SageMakerResponse

    _, _, t = _build(False, timeout=cdk.Duration.seconds(3))
    original = sm_models.SageMakerModelBackend.describe_transform_job
    monkeypatch.setattr(sm_models.SageMakerModelBackend, "describe_transform_job",
                        lambda self, transform_job_name: {**original(self, transform_job_name), "TransformJobStatus": "InProgress"})
    stopped = []

    def stop_transform_job(self):
        stopped.append(self._get_param("TransformJobName"))
        return "{}"
    monkeypatch.setattr(SageMakerResponse, "stop_transform_job", stop_transform_job, raising=False)
    emu = emulator(_definition(t), ["Approved"])
    result = emu.run("run-1", _marker_event())
    assert result["status"] == "FAILED", result["states"]
    assert result["states"][-4:] == ["StopTransformJob", "TransformTimedOut", "NotifyFailure", "Failed"]
    assert result["states"].count("DescribeTransformJob") == 3 and len(stopped) == 1
    error = json.loads(result["requests"]["sns:publish"]["Message"]["error"])["error"]
    assert error["Error"] == "TransformTimedOut" and "after 3 polls of 1 s" in error["Cause"]
    # The execution timeout is only a backstop above the poll budget: 3 s + 3 x 95 min of quota retries + 1 h.
    assert _definition(t)["TimeoutSeconds"] == 3 + 3 * 95 * 60 + 3600


def test_events_per_poll_is_counted_from_the_definition(plain):
    """EVENTS_PER_POLL (FACTS.md: about 13) equals the history events of one transform poll iteration."""
    from mlinfra.constructs.batch_transform.validation import EVENTS_PER_POLL

    states = _definition(plain[2])["States"]
    loop, name = [], "CountTransformPoll"
    while name not in loop:
        loop.append(name)
        state = states[name]
        name = state.get("Next") or state["Default"]
    events_of = {"Task": 5, "Pass": 2, "Wait": 2, "Choice": 2}
    assert loop == ["CountTransformPoll", "TransformPollBudget?", "WaitTransform", "DescribeTransformJob", "TransformDone?"]
    assert sum(events_of[states[n]["Type"]] for n in loop) == EVENTS_PER_POLL == 13


def test_trigger_targets_have_a_dead_letter_queue_and_retry_policy(plain):
    rules = _rules(plain[2])
    assert len(rules) == 2
    for rule in rules:
        (target,) = rule["Targets"]
        assert "Arn" in target["DeadLetterConfig"]
        assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 8}
    metrics = [v["Properties"].get("MetricName") for v in plain[2]["Resources"].values() if v["Type"] == "AWS::CloudWatch::Alarm"]
    assert "ApproximateNumberOfMessagesVisible" in metrics


# --- the trigger: S3 events through the synthesized rule (moto's EventBridge) ------------------------------

def _s3_event(key: str, etag: str, version_id: str = VERSION_ID, sequencer: str = SEQUENCER) -> dict:
    """An S3 ``Object Created`` event as EventBridge delivers it (S3 user guide, "EventBridge event message structure")."""
    return {"Source": "aws.s3", "DetailType": "Object Created", "Resources": [f"arn:aws:s3:::{BUCKET}"],
            "Detail": json.dumps({"version": "0", "bucket": {"name": BUCKET},
                                  "object": {"key": key, "size": 0, "etag": etag, "version-id": version_id,
                                             "sequencer": sequencer},
                                  "reason": "PutObject"})}


def _render(transformer: dict, event: dict) -> dict:
    """EventBridge's input transformation: each InputPathsMap value (a simple ``$.a.b`` path) replaces its
    ``<name>`` in InputTemplate as JSON, a string in quotes (EventBridge user guide, "Input transformation");
    moto inserts strings without quotes, so its rendering is not used."""
    text = transformer["InputTemplate"]
    for name, path in transformer["InputPathsMap"].items():
        value = event
        for part in path.removeprefix("$.").split("."):
            value = value[part]
        text = text.replace(f"<{name}>", json.dumps(value))
    return json.loads(text)


def _deliveries(t, s3_events: list[dict]) -> list[dict]:
    """The execution inputs the marker rule sends for these events (its pattern matched by moto's EventBridge)."""
    import boto3

    (rule,) = [r for r in _rules(t) if "EventPattern" in r]
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="deliveries")["QueueUrl"]
    eb = boto3.client("events", region_name="us-east-1")
    eb.put_rule(Name="marker", EventPattern=json.dumps(rule["EventPattern"]))
    eb.put_targets(Rule="marker", Targets=[{"Id": "q", "Arn": "arn:aws:sqs:us-east-1:123456789012:deliveries"}])
    for i in range(0, len(s3_events), 10):
        assert eb.put_events(Entries=s3_events[i:i + 10])["FailedEntryCount"] == 0
    bodies = []
    while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        bodies += [_render(rule["Targets"][0]["InputTransformer"], json.loads(m["Body"])) for m in msgs]
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                        for i, m in enumerate(msgs)])
    return bodies


def test_a_thousand_objects_and_one_marker_start_exactly_one_job(plain, emulator):
    emu = emulator(_definition(plain[2]), ["Approved"])
    data = [_s3_event(f"batch-inference/input/day-2026-11-30/part-{i:04d}.csv", f"{i:032x}") for i in range(1000)]
    deliveries = _deliveries(plain[2], [*data, _s3_event(MARKER, EMPTY_ETAG)])
    assert deliveries == [_marker_event()]
    for i, payload in enumerate(deliveries):
        assert emu.run(f"run-{i}", payload)["status"] == "SUCCEEDED"
    assert len(emu.jobs()) == 1


def test_a_duplicated_marker_delivery_still_makes_one_job(plain, emulator):
    emu = emulator(_definition(plain[2]), ["Approved"])
    deliveries = _deliveries(plain[2], [_s3_event(MARKER, EMPTY_ETAG)] * 2)
    assert len(deliveries) == 2  # EventBridge delivers at least once: two executions start
    results = [emu.run(f"run-{i}", payload) for i, payload in enumerate(deliveries)]
    assert [r["status"] for r in results] == ["SUCCEEDED", "SUCCEEDED"]
    assert results[1]["states"][-1] == "AlreadyStarted" and len(emu.jobs()) == 1


# --- validation ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(max_payload_mb=101), r"max_payload_mb must be between 0 and 100 MB, got: 101"),
        (dict(max_payload_mb=30, max_concurrent_transforms=4), r"max_concurrent_transforms x max_payload_mb must be <= 100 MB, got: 4 x 30 = 120"),
        (dict(instance_type="p3.2xlarge"), r"instance_type must be a SageMaker instance type .*starting with 'ml\.'"),
        (dict(instance_type="ml.q9.large"), r"instance_type has an unknown SageMaker hosting instance family 'q9'"),
        (dict(instance_count=0), r"instance_count must be >= 1"),
        (dict(schedule=None), r"schedule/trigger_on_ready_marker: give a schedule, trigger_on_ready_marker=True or both, got: neither"),
        (dict(input_prefix="/bad"), r"input_prefix must be"),
        (dict(model_package_group_name=""), r"model_package_group_name must be 1-63 letters, digits or hyphens .*got: ''"),
        (dict(model_package_group_name="a_b"), r"model_package_group_name must be .*got: 'a_b'"),
        (dict(scheduled_batch="a/b"), r"scheduled_batch must be 1-128 letters, .*got: 'a/b'"),
        (dict(scheduled_batch="_ready"), r"scheduled_batch must be .*not '_ready'.*got: '_ready'"),
        (dict(job_prefix="-x"), r"job_prefix must be 1-20 lowercase letters, digits or '-'.*got: '-x'"),
        (dict(job_prefix="x" * 21), r"job_prefix must be 1-20"),
        (dict(job_prefix="Bt-x"), r"job_prefix must be 1-20 lowercase letters, digits or '-'.*got: 'Bt-x'"),
        (dict(vpc_config={"Subnets": ["s"]}), r"vpc_config must have exactly the keys SecurityGroupIds and Subnets, got: \['Subnets'\]"),
        (dict(poll_interval=cdk.Duration.hours(2)), r"poll_interval must be between 1 and 3600"),
        (dict(poll_interval=cdk.Duration.seconds(1)),  # default timeout 6 h
         r"timeout / poll_interval must keep a run under 25000 history events .*got: 21600 s / 1 s = 21600 polls, "
         r"about 281000 events \(AWS rule stepfunctions.history-event-limit"),
        (dict(split_type="Line"), r"split_type must be a SplitType"),
        (dict(processing=ProcessingStep(image_uri=PRE_IMAGE, entrypoint=[])), r"processing.entrypoint: required"),
        (dict(processing=ProcessingStep(image_uri=PRE_IMAGE, entrypoint=["x"], instance_type="c5.xlarge")), r"processing.instance_type"),
    ],
)
def test_validation(kwargs, match):
    stack = new_stack()
    bucket = s3.Bucket(stack, "B")
    role = iam.Role(stack, "R", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    args = dict(model_package_group_name="m", model_role=role, input_bucket=bucket, output_bucket=bucket,
                schedule=events.Schedule.rate(cdk.Duration.days(1)))
    args.update(kwargs)
    with pytest.raises(ValueError, match=rf"^TestStack/Bt: {match}" if not match.startswith("^") else match):
        BatchTransform(stack, "Bt", **args)


def test_a_token_input_prefix_is_refused_with_the_marker_trigger():
    stack = new_stack()
    bucket = s3.Bucket(stack, "B")
    role = iam.Role(stack, "R", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    prefix = cdk.Fn.join("", [cdk.Aws.ACCOUNT_ID, "/"])
    with pytest.raises(ValueError, match=r"input_prefix must be a literal with trigger_on_ready_marker"):
        BatchTransform(stack, "Bt", model_package_group_name="m", model_role=role, input_bucket=bucket,
                       output_bucket=bucket, input_prefix=prefix, trigger_on_ready_marker=True)


def test_a_token_group_name_is_accepted():
    stack = new_stack()
    bucket = s3.Bucket(stack, "B")
    role = iam.Role(stack, "R", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    group = cdk.Fn.import_value("ModelGroupName")
    bt = BatchTransform(stack, "Bt", model_package_group_name=group, model_role=role, input_bucket=bucket,
                        output_bucket=bucket, trigger_on_ready_marker=True)
    assert bt.model_package_group_name == group
