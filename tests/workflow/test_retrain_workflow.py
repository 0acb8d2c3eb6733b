"""Workflow tests: the RetrainPipeline definition AS SYNTHESIZED (substitutions resolved against resources
created in moto) executed by moto's Step Functions interpreter, with the real handler code in-process.

moto's limits, and what covers them instead:
- SageMaker jobs complete at once: the describe loops run one iteration; a failed training job is simulated
  by patching moto's DescribeTrainingJob to report ``Failed`` with a FailureReason.
- ``sagemaker:UpdateEndpoint`` is not implemented in moto: most runs take the CREATE path (the endpoint does
  not exist yet); the UPDATE path runs against a test stub of UpdateEndpoint (last two tests: the blue/green
  request reaches it; an auto-rollback fails the run), and tests/unit/test_retrain_pipeline.py asserts the
  template's UpdateEndpoint request and IAM.
"""

from __future__ import annotations

import json
import re
from unittest import mock

import boto3
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template
from moto import mock_aws

import aws_cdk as cdk
from mlinfra.constructs.data_lake import DataLake
from mlinfra.constructs.endpoint_target import EndpointTarget
from mlinfra.constructs.retrain_pipeline import JobWait, ProcessingProps, RetrainPipeline, TrainingProps
from tests.helpers import new_stack
from tests.workflow.sfn_harness import TemplateResolver, load_handler, real_lambdas, run_execution, state_machine_definition

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/train@sha256:" + "ab" * 32
SERVE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1"
DATASET, VERSION = "images", "2026-11-24"
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


@pytest.fixture(scope="module")
def template() -> dict:
    stack = new_stack()
    lake = DataLake(stack, "Lake")
    model_role = iam.Role(stack, "ModelRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    target = EndpointTarget(
        endpoint_name="prod-endpoint", endpoint_arn="arn:aws:sagemaker:us-east-1:123456789012:endpoint/prod-endpoint",
        variant_name="AllTraffic", instance_type="ml.m5.large", initial_instance_count=1, model_execution_role=model_role,
        deployment_config={"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE"}}},
    )
    common = dict(lake=lake, metric_name="accuracy", datasets=[DATASET], threshold=0.8, min_improvement=0.01,
                  poll_interval=cdk.Duration.seconds(1), deploy_target=target, inference_image_uri=SERVE,
                  job_wait=JobWait.POLL)  # the emulator variant: moto's interpreter cannot run .sync
    RetrainPipeline(stack, "Auto", training=TrainingProps(image_uri=IMAGE, hyperparameters={"epochs": "3"}, max_attempts=2),
                    preprocessing=ProcessingProps(image_uri=IMAGE), state_machine_name="auto", **common)
    RetrainPipeline(stack, "Manual", training=TrainingProps(image_uri=IMAGE), manual_approval=True,
                    approval_timeout=cdk.Duration.seconds(2), state_machine_name="manual", **common)
    RetrainPipeline(stack, "Reviewed", training=TrainingProps(image_uri=IMAGE), manual_approval=True,
                    approval_timeout=cdk.Duration.minutes(5), state_machine_name="reviewed", **common)
    # A short lock wait (two retries 5 s apart): issue 12 item 7, a version that meets a lock waits its turn.
    RetrainPipeline(stack, "Queued", training=TrainingProps(image_uri=IMAGE), state_machine_name="queued",
                    lock_wait=cdk.Duration.seconds(10), **common)
    return Template.from_stack(stack).to_json()


class _Machines(dict):
    """State machine name -> ARN, each created (from the synthesized definition) on first use."""

    def __init__(self, env: "Env") -> None:
        super().__init__()
        self.env = env

    def __missing__(self, name: str) -> str:
        resolver = self.env.resolver
        logical = next(k for k in resolver.logical_ids("AWS::StepFunctions::StateMachine")
                       if resolver.resources[k]["Properties"]["StateMachineName"] == name)
        group = next(k for k in resolver.logical_ids("AWS::SageMaker::ModelPackageGroup") if k.split("ModelPackageGroup")[0] == logical.split("StateMachine")[0])
        resolver.ensure(group)
        arn = self.env.sfn.create_state_machine(name=name, definition=state_machine_definition(resolver, logical),
                                                roleArn=resolver.role_arn())["stateMachineArn"]
        self[name] = arn
        return arn


class Env:
    def __init__(self, template: dict) -> None:
        self.resolver = TemplateResolver(template)
        self.sfn, self.s3, self.sm = boto3.client("stepfunctions"), boto3.client("sagemaker"), boto3.client("sagemaker")
        self.s3 = boto3.client("s3")
        self.machines = _Machines(self)
        self.buckets = {zone: self.bucket(zone) for zone in ("Raw", "Artifacts")}
        # Every pipeline topic delivers to a queue of its own, so a test reads what was notified, and where. One
        # client, made here: creating a client reads os.environ, which the harness patches in the executor's thread
        # while a test polls these queues (a KeyError from the environment's iterator, seen once).
        self.sqs = sqs = boto3.client("sqs")
        self.queues: dict[str, str] = {}
        for i, logical in enumerate(self.resolver.logical_ids("AWS::SNS::Topic")):
            # (creating the topics first: a few resources, but every pipeline's notifications are captured)
            self.queues[logical] = queue = sqs.create_queue(QueueName=f"topic-{i}")["QueueUrl"]
            queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            boto3.client("sns").subscribe(TopicArn=self.resolver.ensure(logical)["Ref"], Protocol="sqs", Endpoint=queue_arn,
                                          Attributes={"RawMessageDelivery": "true"})
        self.s3.put_object(Bucket=self.buckets["Raw"], Key=f"dataset={DATASET}/version={VERSION}/part-0.parquet", Body=b"rows")
        # the landing glue's ready marker: validate trains only on versions declared ready
        self.s3.put_object(Bucket=self.buckets["Raw"], Key=f"dataset={DATASET}/_ready/20261124T000000Z_{VERSION}.json", Body=b"{}")

    def bucket(self, zone: str) -> str:
        logical = next(k for k in self.resolver.logical_ids("AWS::S3::Bucket") if k.startswith(f"Lake{zone}Bucket"))
        return self.resolver.ensure(logical)["Ref"]

    def group(self, pipeline: str) -> str:
        logical = next(k for k in self.resolver.logical_ids("AWS::SageMaker::ModelPackageGroup") if k.startswith(pipeline))
        return self.resolver.ensure(logical)["Ref"]

    def table(self, pipeline: str):
        logical = next(k for k in self.resolver.logical_ids("AWS::DynamoDB::Table") if k.startswith(pipeline))
        return boto3.resource("dynamodb").Table(self.resolver.ensure(logical)["Ref"])

    def report(self, run: str, accuracy: float) -> None:
        key = f"evaluation/{DATASET}/{VERSION}/{run}/evaluation.json"
        self.s3.put_object(Bucket=self.buckets["Artifacts"], Key=key, Body=json.dumps({"metrics": {"accuracy": accuracy}}))

    def run(self, machine: str, name: str, payload: dict | None = None, timeout: float = 60) -> dict:
        return run_execution(self.sfn, self.machines[machine], name, payload or {"dataset": DATASET, "version": VERSION,
                                                                                "code_version": "abc1234"}, timeout)

    def messages(self, topics: dict[str, list[dict]] | None = None) -> list[dict]:
        """Every message notified since the last call; ``topics`` (when given) collects them by topic logical id."""
        out = []
        sqs = self.sqs
        for logical, queue in self.queues.items():
            while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
                for m in batch:
                    out.append(json.loads(m["Body"]))
                    if topics is not None:
                        topics.setdefault(logical, []).append(out[-1])
                    sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
        return out

    def packages(self, pipeline: str) -> list[dict]:
        return self.sm.list_model_packages(ModelPackageGroupName=self.group(pipeline))["ModelPackageSummaryList"]


@pytest.fixture()
def env(template):
    with mock_aws(config=MOTO_CONFIG):
        e = Env(template)
        with real_lambdas(e.resolver) as calls:
            e.calls = calls
            yield e


def test_happy_path_trains_registers_and_deploys(env):
    env.report("run-1", 0.91)
    result = env.run("auto", "run-1")
    assert result["status"] == "SUCCEEDED", result
    states = result["states"]
    for state in ("ValidateInput", "AcquireLock", "RecordRunStart", "StartPreprocessingJob", "StartTrainingJob", "GetTrainingResult",
                  "ReadEvaluationReport", "CompareMetrics", "RegisterModelPackage", "CreateModel", "CreateInitialEndpointConfig",
                  "FindEndpoint", "CreateEndpoint", "DescribeEndpoint", "ApproveModelPackage", "RecordSuccess", "NotifySuccess",
                  "ReleaseLockSuccess", "Succeeded"):
        assert state in states, f"{state} not in {states}"
    assert "UpdateEndpoint" not in states  # moto lacks UpdateEndpoint: the endpoint did not exist, so it was created

    plan = json.loads(result["output"])["plan"]
    job = env.sm.describe_training_job(TrainingJobName=f"{plan['names']['training_job_base']}-1")
    assert job["EnableManagedSpotTraining"] is True
    assert job["CheckpointConfig"]["S3Uri"] == plan["uris"]["checkpoints"]
    assert job["StoppingCondition"]["MaxWaitTimeInSeconds"] >= job["StoppingCondition"]["MaxRuntimeInSeconds"]
    assert job["HyperParameters"]["epochs"] == "3"
    assert job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"].startswith(f"s3://{env.bucket('Curated')}/")

    endpoint = env.sm.describe_endpoint(EndpointName="prod-endpoint")
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == plan["names"]["endpoint_config"]

    (package,) = env.packages("Auto")
    assert package["ModelApprovalStatus"] == "Approved"
    meta = env.sm.describe_model_package(ModelPackageName=package["ModelPackageArn"])["CustomerMetadataProperties"]
    assert meta["metric:accuracy"] == "0.91"
    assert meta["dataset_version"] == VERSION and meta["code_version"] == "abc1234"
    assert meta["image_digest"] == "sha256:" + "ab" * 32
    assert meta["training_job_arn"].endswith(f"training-job/{plan['names']['training_job_base']}-1")
    # JSON is outside CustomerMetadataProperties' character set: the registry keeps a digest (issue 19 item 8)
    assert meta["hyperparameters"].startswith("sha256:") and len(meta["hyperparameters"]) == 71

    table = env.table("Auto")
    item = table.get_item(Key={"pk": f"dataset#{DATASET}", "sk": f"version#{VERSION}#run#run-1"})["Item"]
    assert item["outcome"] == "Succeeded" and item["model_package_arn"] == package["ModelPackageArn"]
    assert "Item" not in table.get_item(Key={"pk": f"lock#{DATASET}", "sk": "lock"})  # released
    (message,) = env.messages()
    assert message["message"]["status"] == "Succeeded" and message["message"]["endpoint"] == "prod-endpoint"


def test_worse_model_is_rejected_and_not_approved(env):
    group = env.group("Auto")
    baseline = env.sm.create_model_package(
        ModelPackageGroupName=group, ModelApprovalStatus="Approved", CustomerMetadataProperties={"metric:accuracy": "0.95"},
        InferenceSpecification={"Containers": [{"Image": IMAGE}], "SupportedContentTypes": ["application/json"],
                                "SupportedResponseMIMETypes": ["application/json"]},
    )["ModelPackageArn"]
    env.report("run-worse", 0.93)  # above the 0.8 threshold, below production's 0.95
    result = env.run("auto", "run-worse")
    assert result["status"] == "SUCCEEDED"
    assert result["states"][-1] == "ModelRejected"
    assert "CreateModel" not in result["states"] and "ApproveModelPackage" not in result["states"]
    statuses = {p["ModelPackageArn"]: p["ModelApprovalStatus"] for p in env.packages("Auto")}
    assert statuses.pop(baseline) == "Approved"
    assert list(statuses.values()) == ["Rejected"]
    gate = next(c for c in env.calls if c["function"] == "pipeline_gate")
    assert gate["event"]["metric_name"] == "accuracy" and gate["result"]["baseline"] == 0.95
    with pytest.raises(env.sm.exceptions.ClientError):
        env.sm.describe_endpoint(EndpointName="prod-endpoint")
    (message,) = env.messages()
    assert message["message"]["status"] == "Rejected"
    assert any("FAIL" in r for r in message["message"]["gate_reasons"])


def test_training_failure_reaches_failure_notification_with_reason(env):
    from moto.sagemaker.models import SageMakerModelBackend

    original = SageMakerModelBackend.describe_training_job

    def failed(self, name):
        response = dict(original(self, name))
        response.update(TrainingJobStatus="Failed", SecondaryStatus="Failed", FailureReason="AlgorithmError: CUDA out of memory")
        return response

    env.report("run-fail", 0.99)
    with mock.patch.object(SageMakerModelBackend, "describe_training_job", failed):
        result = env.run("auto", "run-fail")
    assert result["status"] == "FAILED"
    assert result["error"] == "TrainingJobFailed"
    assert "CUDA out of memory" in result["cause"]
    states = result["states"]
    assert states.count("StartTrainingJob") == 2 and "RetryTraining" in states  # max_attempts=2
    assert states[-4:] == ["NotifyFailure", "LockTaken", "ReleaseLockAfterFailure", "ExecutionFailed"]
    # Both attempts resume from the same checkpoint URI.
    jobs = [j["TrainingJobName"] for j in env.sm.list_training_jobs()["TrainingJobSummaries"]]
    assert len(jobs) == 2
    uris = {original(_backend(), j)["CheckpointConfig"]["S3Uri"] for j in jobs}
    assert len(uris) == 1
    (message,) = env.messages()
    assert message["message"]["status"] == "Failed" and message["message"]["error"] == "TrainingJobFailed"
    assert "CUDA out of memory" in message["message"]["cause"]
    assert env.packages("Auto") == []
    assert "Item" not in env.table("Auto").get_item(Key={"pk": f"lock#{DATASET}", "sk": "lock"})


def _backend():
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends["123456789012"]["us-east-1"]


def test_approval_timeout_rejects(env):
    env.report("run-timeout", 0.9)
    result = env.run("manual", "run-timeout")
    assert result["status"] == "SUCCEEDED"
    assert "RequestApproval" in result["states"] and "RejectModelPackage" in result["states"]
    assert result["states"][-1] == "ModelRejected" and "CreateModel" not in result["states"]
    (package,) = env.packages("Manual")
    assert package["ModelApprovalStatus"] == "Rejected"
    topics: dict[str, list[dict]] = {}
    env.messages(topics)
    # Issue 13 item 7: the request (with the task token) goes to the approval topic only; the failure/outcome topic
    # gets the outcome and never a token.
    (request,) = next(msgs for logical, msgs in topics.items() if logical.startswith("ManualApprovalRequests"))
    (outcome,) = next(msgs for logical, msgs in topics.items() if logical.startswith("ManualNotifications"))
    assert request["type"] == "approval-request" and request["token"]
    assert request["token"] not in json.dumps(outcome) and "approval-request" not in json.dumps(outcome)
    # The message gives the reviewer the exact command (the signed function URL), with this run's token filled in.
    assert re.match(r"mlinfra approve --url \S+ --decision approve\|reject --reason <why> --token ", request["decide_with"])
    assert request["decide_with"].endswith(f"--token {request['token']}")
    assert outcome["message"]["status"] == "Rejected" and outcome["message"]["approval"] == "States.Timeout"


def test_manual_approval_through_the_callback_deploys(env):
    import threading
    import time

    env.report("run-reviewed", 0.9)
    box: dict = {}
    runner = threading.Thread(target=lambda: box.update(result=env.run("reviewed", "run-reviewed")))
    runner.start()
    deadline = time.monotonic() + 30
    while not (requests := [m for m in env.messages() if m.get("type") == "approval-request"]):
        assert time.monotonic() < deadline, "no approval request was published"
        time.sleep(0.2)
    approval = load_handler("pipeline_approval")
    from tests.workflow.sfn_harness import _Context

    reviewer = "arn:aws:sts::123456789012:assumed-role/Reviewer/alice"
    sent = approval.handler({"body": json.dumps({"token": requests[0]["token"], "decision": "approve", "reason": "ok"}),
                             "requestContext": {"authorizer": {"iam": {"userArn": reviewer}}}}, _Context("a"))
    assert json.loads(sent["body"]) == {"status": "sent", "decision": "approve", "reviewer": reviewer}
    runner.join(60)
    result = box["result"]
    assert result["status"] == "SUCCEEDED", result
    assert "ApproveModelPackage" in result["states"] and "CreateEndpoint" in result["states"]
    assert json.loads(result["output"])["approval"]["reviewer"] == reviewer
    (package,) = env.packages("Reviewed")
    assert package["ModelApprovalStatus"] == "Approved"


def test_duplicate_trigger_does_not_start_a_second_run(env):
    trigger = load_handler("pipeline_trigger")
    event = {"id": "e-1", "source": "mlinfra.ingestion", "detail-type": "Dataset Version Ready",
             "detail": {"dataset": DATASET, "version": VERSION}}
    from tests.workflow.sfn_harness import _Context

    with mock.patch.dict("os.environ", {"STATE_MACHINE_ARN": env.machines["auto"], "RAW_BUCKET": env.buckets["Raw"]}):
        first = trigger.handler(event, _Context("t"))
        second = trigger.handler(event, _Context("t"))
    assert first["started"] is True
    assert second == {"started": False, "reason": "duplicate", "name": first["name"]}
    (execution,) = env.sfn.list_executions(stateMachineArn=env.machines["auto"])["executions"]
    assert execution["name"] == first["name"]
    # Let the started run finish while the real handlers are still patched in (it fails: no evaluation report).
    import time

    deadline = time.monotonic() + 60
    while env.sfn.describe_execution(executionArn=execution["executionArn"])["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)


def _hold_lock(env, pipeline: str, owner: str = "arn:other-execution") -> None:
    import time

    env.table(pipeline).put_item(Item={"pk": f"lock#{DATASET}", "sk": "lock", "owner": owner,
                                       "expires_at": int(time.time()) + 3600})


def test_a_version_that_meets_a_lock_waits_and_then_trains(env):
    # issue 12 item 7: it used to end as a SUCCESSFUL "AlreadyRunning", never trained, its name used up.
    import threading
    import time

    _hold_lock(env, "Queued")
    env.report("run-queued", 0.91)
    box: dict = {}
    machine = env.machines["queued"]  # created here, not concurrently by the runner thread
    runner = threading.Thread(target=lambda: box.update(result=env.run("queued", "run-queued")))
    runner.start()
    deadline = time.monotonic() + 60
    while not (arns := [e["executionArn"] for e in env.sfn.list_executions(stateMachineArn=machine)["executions"]]) or \
            not any(e.get("stateEnteredEventDetails", {}).get("name") == "WaitForLock"
                    for e in env.sfn.get_execution_history(executionArn=arns[0], maxResults=1000)["events"]):
        assert time.monotonic() < deadline, "the run never waited for the lock"
        time.sleep(0.2)
    env.table("Queued").delete_item(Key={"pk": f"lock#{DATASET}", "sk": "lock"})  # the other run ends
    runner.join(90)
    result = box["result"]
    assert result["status"] == "SUCCEEDED", result
    states = result["states"]
    assert states[:5] == ["ValidateInput", "PrepareLock", "AcquireLock", "CountLockWait", "LockWaitLimit"]
    assert "WaitForLock" in states and "StartTrainingJob" in states and states[-1] == "Succeeded"


def test_a_version_that_never_gets_the_lock_fails_and_notifies(env):
    _hold_lock(env, "Queued")
    result = env.run("queued", "run-locked", timeout=90)
    assert result["status"] == "FAILED" and result["error"] == "DatasetLocked"
    assert VERSION in result["cause"] and "not trained" in result["cause"]
    assert result["states"].count("WaitForLock") == 2
    assert env.sm.list_training_jobs()["TrainingJobSummaries"] == []
    # the other run's lock is untouched; the skip is notified
    assert env.table("Queued").get_item(Key={"pk": f"lock#{DATASET}", "sk": "lock"})["Item"]["owner"] == "arn:other-execution"
    (message,) = env.messages()
    assert message["message"]["status"] == "Failed" and message["message"]["error"] == "DatasetLocked"


def test_an_aborted_execution_releases_its_lock_from_the_status_change_event(env):
    # issue 12 item 7: an execution-level end (abort, timeout, history limit) runs no exit state. moto's
    # EventBridge cannot invoke Lambda: the test delivers the event the ExecutionEndRule matches.
    import time

    env.report("run-aborted", 0.9)
    arn = env.machines["reviewed"]
    started = env.sfn.start_execution(stateMachineArn=arn, name="run-aborted",
                                      input=json.dumps({"dataset": DATASET, "version": VERSION}))["executionArn"]
    deadline = time.monotonic() + 30
    while "Item" not in env.table("Reviewed").get_item(Key={"pk": f"lock#{DATASET}", "sk": "lock"}):
        assert time.monotonic() < deadline, "the run never took the lock"
        time.sleep(0.2)
    # (moto's executor does not stop a running execution: the event the rule would deliver on ABORTED is built here)
    detail = env.sfn.describe_execution(executionArn=started)
    assert "Item" in env.table("Reviewed").get_item(Key={"pk": f"lock#{DATASET}", "sk": "lock"})  # held by the run
    lineage = load_handler("pipeline_lineage")
    from tests.workflow.sfn_harness import _Context

    event = {"source": "aws.states", "detail-type": "Step Functions Execution Status Change",
             "detail": {"executionArn": started, "stateMachineArn": arn, "status": "ABORTED", "input": detail["input"]}}
    with mock.patch.dict("os.environ", {"LINEAGE_TABLE": env.table("Reviewed").name}):
        lineage._clients.clear()
        out = lineage.handler(event, _Context("l"))
        lineage._clients.clear()
    assert out == {"released": True, "lock": f"lock#{DATASET}", "status": "ABORTED"}
    assert "Item" not in env.table("Reviewed").get_item(Key={"pk": f"lock#{DATASET}", "sk": "lock"})
    # end the waiting run (reject its approval) so no execution outlives the test
    while not (requests := [m for m in env.messages() if m.get("type") == "approval-request"]):
        assert time.monotonic() < deadline + 30, "no approval request was published"
        time.sleep(0.2)
    request = requests[0]
    answer = load_handler("pipeline_approval").handler(
        {"body": json.dumps({"token": request["token"], "decision": "reject", "reason": "end"}),
         "requestContext": {"authorizer": {"iam": {"userArn": "arn:aws:sts::123456789012:assumed-role/Reviewer/t"}}}},
        _Context("a"))
    assert answer["statusCode"] == 200, answer
    while env.sfn.describe_execution(executionArn=started)["status"] == "RUNNING":
        assert time.monotonic() < deadline + 60
        time.sleep(0.2)


def test_invalid_input_fails_with_a_clear_error_and_notifies(env):
    result = env.run("auto", "run-bad", {"dataset": "Images!", "hyperparameters": {"lr": [1]}})
    assert result["status"] == "FAILED"
    assert result["error"] == "InvalidInputError"
    assert "dataset: must be" in result["cause"] and "version: must be" in result["cause"] and "hyperparameters.lr" in result["cause"]
    assert result["states"][-3:] == ["NotifyFailure", "LockTaken", "ExecutionFailed"]
    (message,) = env.messages()
    assert message["message"]["status"] == "Failed" and message["message"]["error"] == "InvalidInputError"


# --- the UPDATE path, with a stub for the UpdateEndpoint moto lacks -------------------------------------------

@pytest.fixture()
def update_endpoint_stub():
    """Give moto an UpdateEndpoint: record the request; switch the endpoint to the new config, or (rollback=True)
    leave it on the old one as SageMaker does after an auto-rollback."""
    from moto.core.responses import ActionResult
    from moto.sagemaker.responses import SageMakerResponse

    stub = {"requests": [], "rollback": False}

    def update_endpoint(self):
        request = json.loads(self.body)
        stub["requests"].append(request)
        endpoint = self.sagemaker_backend.endpoints[request["EndpointName"]]
        if not stub["rollback"]:
            endpoint.endpoint_config_name = request["EndpointConfigName"]
        return ActionResult({"EndpointArn": endpoint.arn})

    with mock.patch.object(SageMakerResponse, "update_endpoint", update_endpoint, create=True):
        yield stub


def _existing_endpoint(env) -> None:
    env.sm.create_model(ModelName="old-model", ExecutionRoleArn=env.resolver.role_arn(), PrimaryContainer={"Image": IMAGE})
    env.sm.create_endpoint_config(EndpointConfigName="old-config", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "old-model", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    env.sm.create_endpoint(EndpointName="prod-endpoint", EndpointConfigName="old-config")


def test_existing_endpoint_is_updated_blue_green(env, update_endpoint_stub):
    _existing_endpoint(env)
    env.report("run-update", 0.92)
    result = env.run("auto", "run-update")
    assert result["status"] == "SUCCEEDED", result
    assert "UpdateEndpoint" in result["states"] and "CreateEndpoint" not in result["states"]
    # issue 12 item 4: the new config is the current one with the model swapped (built by the real handler)
    assert "CreateEndpointConfig" in result["states"]
    new_config = env.sm.describe_endpoint_config(EndpointConfigName=json.loads(result["output"])["plan"]["names"]["endpoint_config"])
    (variant,) = new_config["ProductionVariants"]
    assert variant["ModelName"] == json.loads(result["output"])["plan"]["names"]["model"]
    assert variant["InstanceType"] == "ml.m5.large" and variant["VariantName"] == "AllTraffic"
    (request,) = update_endpoint_stub["requests"]
    plan = json.loads(result["output"])["plan"]
    assert request["EndpointConfigName"] == plan["names"]["endpoint_config"]
    assert request["DeploymentConfig"] == {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE"}}}
    assert env.sm.describe_endpoint(EndpointName="prod-endpoint")["EndpointConfigName"] == plan["names"]["endpoint_config"]
    (package,) = env.packages("Auto")
    assert package["ModelApprovalStatus"] == "Approved"


def test_rolled_back_update_fails_and_is_not_approved(env, update_endpoint_stub):
    update_endpoint_stub["rollback"] = True
    _existing_endpoint(env)
    env.report("run-rollback", 0.92)
    result = env.run("auto", "run-rollback")
    assert result["status"] == "FAILED" and result["error"] == "DeploymentRolledBack"
    assert "old-config" in result["cause"]
    (package,) = env.packages("Auto")
    # issue 12 item 9: a rolled-back model is Rejected (never Approved, never left for a later manual approval)
    assert package["ModelApprovalStatus"] == "Rejected"
    assert "RejectUndeployedPackage" in result["states"]
    (message,) = env.messages()
    assert message["message"]["error"] == "DeploymentRolledBack"
