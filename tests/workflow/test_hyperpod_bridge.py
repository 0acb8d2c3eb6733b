"""Training on HyperPod from a state machine, executed in moto's Step Functions interpreter: the task state sends
the job request with a task token, the REAL Slurm job bridge (slurm_bridge.Bridge, boto3 against moto instead of
the node's AWS CLI, a fake Slurm) submits the job once, heartbeats, and ends the task; the execution ends with it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from mlinfra.domain.hyperpod_jobs import SLURM_FAILURE_ERRORS, training_task_state
from mlinfra.userdata.hyperpod import scripts_dir

sys.path.insert(0, str(scripts_dir()))
import slurm_bridge  # noqa: E402  (the controller-side module, stdlib only)

ROLE = "arn:aws:iam::123456789012:role/sfn"


class MotoAws:
    """slurm_bridge.Aws over boto3 (moto), in place of the node's AWS CLI."""

    def __init__(self, queue_url: str) -> None:
        self.sqs, self.sfn, self.queue_url = boto3.client("sqs"), boto3.client("stepfunctions"), queue_url
        self.heartbeats = 0
        self.causes: list[str] = []

    def receive(self, max_messages: int, wait_seconds: int) -> list[dict[str, str]]:
        return self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=max_messages,
                                        WaitTimeSeconds=0, VisibilityTimeout=0).get("Messages", [])

    def delete(self, receipt_handle: str) -> None:
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle)

    def task_success(self, token: str, output: dict[str, Any]) -> None:
        self._callback(self.sfn.send_task_success, taskToken=token, output=json.dumps(output))

    def task_failure(self, token: str, error: str, cause: str) -> None:
        self.causes.append(cause)  # moto's history drops the cause; AWS keeps it
        self._callback(self.sfn.send_task_failure, taskToken=token, error=error, cause=cause)

    def task_heartbeat(self, token: str) -> None:
        self.heartbeats += 1
        self._callback(self.sfn.send_task_heartbeat, taskToken=token)

    @staticmethod
    def _callback(call, **kwargs) -> None:
        from botocore.exceptions import ClientError

        try:
            call(**kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in slurm_bridge.GONE_ERRORS:
                raise slurm_bridge.TaskGone(str(exc)) from None
            raise


class FakeSlurm:
    def __init__(self, states: list[str], refuse: str = "") -> None:
        self.states, self.scripts, self.cancelled, self.refuse = states, [], [], refuse

    def submit(self, script: str) -> str:
        if self.refuse:
            import subprocess

            raise subprocess.CalledProcessError(1, ["sbatch"], "", self.refuse)
        self.scripts.append(script)
        return str(100 + len(self.scripts))

    def find(self, job_name: str) -> str | None:
        return None

    def state(self, job_id: str) -> str:
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)


@pytest.fixture()
def machine():
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        queue_url = boto3.client("sqs").create_queue(QueueName="jobs")["QueueUrl"]
        state = training_task_state(
            queue_url=queue_url, partition="gpu", nodes=2, image="123456789012.dkr.ecr.us-east-1.amazonaws.com/t:1",
            command=["python", "train.py", "--epochs", "3"], checkpoint_uri_path="$.checkpoint_uri",
            output_uri_path="$.output_uri", heartbeat_seconds=60, next_state="Trained")
        definition = {"StartAt": "Train", "States": {
            "Train": {**state, "Catch": [{"ErrorEquals": list(SLURM_FAILURE_ERRORS), "Next": "TrainingFailed",
                                          "ResultPath": "$.error"}]},
            "Trained": {"Type": "Pass", "End": True},
            "TrainingFailed": {"Type": "Fail", "Error": "TrainingFailed"},
        }}
        sfn = boto3.client("stepfunctions")
        arn = sfn.create_state_machine(name="hyperpod", definition=json.dumps(definition), roleArn=ROLE)["stateMachineArn"]
        yield sfn, arn, queue_url


def _start(sfn, arn, name="run-1") -> str:
    return sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(
        {"checkpoint_uri": "s3://art/checkpoints/run-1/", "output_uri": "s3://models/run-1/"}))["executionArn"]


def _wait_for_message(aws: MotoAws, seconds: float = 10) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        attrs = aws.sqs.get_queue_attributes(QueueUrl=aws.queue_url, AttributeNames=["ApproximateNumberOfMessages"])
        if int(attrs["Attributes"]["ApproximateNumberOfMessages"]):
            return
        time.sleep(0.05)
    raise AssertionError("the state machine sent no job request")


def _status(sfn, execution: str, seconds: float = 10) -> dict:
    deadline = time.time() + seconds
    while time.time() < deadline:
        desc = sfn.describe_execution(executionArn=execution)
        if desc["status"] != "RUNNING":
            return desc
        time.sleep(0.05)
    return desc


def test_job_runs_once_and_the_execution_ends_with_it(machine, tmp_path) -> None:
    sfn, arn, queue_url = machine
    execution = _start(sfn, arn)
    aws, slurm = MotoAws(queue_url), FakeSlurm(["PENDING", "RUNNING", "COMPLETED"])
    clock = iter(range(0, 10_000, 100))
    bridge = slurm_bridge.Bridge(aws=aws, slurm=slurm, state_file=tmp_path / "jobs.json", heartbeat_seconds=60,
                                 clock=lambda: next(clock), shared_path="/fsx")
    _wait_for_message(aws)
    bridge.step(wait_seconds=0)   # submit; PENDING
    bridge.step(wait_seconds=0)   # RUNNING: heartbeat
    assert _status(sfn, execution, 0.2)["status"] == "RUNNING"
    bridge.step(wait_seconds=0)   # COMPLETED: task success
    desc = _status(sfn, execution)
    assert desc["status"] == "SUCCEEDED", desc
    training = json.loads(desc["output"])["training"]
    assert training == {"JobName": "run-1-Train-r0", "JobId": "101", "State": "COMPLETED"}
    assert len(slurm.scripts) == 1 and aws.heartbeats >= 1
    script = slurm.scripts[0]
    assert "#SBATCH --nodes=2" in script and "#SBATCH --partition=gpu" in script
    assert "export CHECKPOINT_URI=s3://art/checkpoints/run-1/" in script
    assert "srun --auto-resume=1 --container-image=" in script and "python train.py --epochs 3" in script
    assert "--container-mounts=/fsx:/fsx" in script and "#SBATCH --output=/fsx/mlinfra/jobs/run-1-Train-r0-%j.out" in script
    assert bridge.jobs == {} and json.loads((tmp_path / "jobs.json").read_text()) == {}


def test_failed_job_fails_the_task_with_the_slurm_state(machine, tmp_path) -> None:
    sfn, arn, queue_url = machine
    execution = _start(sfn, arn, "run-2")
    aws = MotoAws(queue_url)
    bridge = slurm_bridge.Bridge(aws=aws, slurm=FakeSlurm(["NODE_FAIL"]), state_file=tmp_path / "jobs.json")
    _wait_for_message(aws)
    bridge.step(wait_seconds=0)
    desc = _status(sfn, execution)
    assert desc["status"] == "FAILED"
    history = sfn.get_execution_history(executionArn=execution)["events"]
    failed = [e for e in history if e["type"] == "TaskFailed"]
    assert failed and failed[0]["taskFailedEventDetails"]["error"] == "Slurm.NODE_FAIL"


def test_redelivered_request_adopts_the_job_instead_of_submitting_again(tmp_path) -> None:
    body = json.dumps({"TaskToken": "t", "JobName": "run-3", "Partition": "gpu", "Nodes": 1, "Image": "img",
                       "Command": ["true"], "CheckpointUri": "s3://a/c/", "OutputUri": "s3://a/o/"})

    class Queue:
        def __init__(self) -> None:
            self.deliveries, self.deleted = [[{"Body": body, "ReceiptHandle": "r1"}],
                                             [{"Body": body, "ReceiptHandle": "r2"}]], []

        def receive(self, *_):
            return self.deliveries.pop(0) if self.deliveries else []

        def delete(self, handle):
            self.deleted.append(handle)

        def task_success(self, *_):
            pass

        task_failure = task_success

        def task_heartbeat(self, _):
            pass

    slurm = FakeSlurm(["RUNNING"])
    queue = Queue()
    bridge = slurm_bridge.Bridge(aws=queue, slurm=slurm, state_file=tmp_path / "jobs.json")
    bridge.step(0)
    # the bridge restarts (state from its file) and the same request is delivered again
    restarted = slurm_bridge.Bridge(aws=queue, slurm=slurm, state_file=tmp_path / "jobs.json")
    restarted.step(0)
    assert len(slurm.scripts) == 1 and queue.deleted == ["r1", "r2"]


def test_a_request_it_cannot_run_fails_the_task_and_leaves_the_queue(tmp_path) -> None:
    failures = []

    class Queue:
        def receive(self, *_):
            return [{"Body": json.dumps({"TaskToken": "tok", "JobName": "x", "Nodes": 0}), "ReceiptHandle": "r"}]

        def delete(self, handle):
            failures.append(("deleted", handle))

        def task_failure(self, token, error, cause):
            failures.append((token, error, cause))

    slurm = FakeSlurm(["RUNNING"])
    slurm_bridge.Bridge(aws=Queue(), slurm=slurm, state_file=tmp_path / "j.json").step(0)
    assert failures[0][:2] == ("tok", "Bridge.InvalidRequest") and "Command: must be" in failures[0][2]
    assert failures[1] == ("deleted", "r") and slurm.scripts == []


def test_lost_execution_cancels_its_job(tmp_path) -> None:
    class Queue:
        def receive(self, *_):
            return []

        def task_heartbeat(self, _):
            raise slurm_bridge.TaskGone("TaskTimedOut")  # nobody waits for this job any more

    slurm = FakeSlurm(["RUNNING"])
    (tmp_path / "jobs.json").write_text(json.dumps({"run-4": {"job_id": "7", "token": "t", "beat": 0}}))
    bridge = slurm_bridge.Bridge(aws=Queue(), slurm=slurm, state_file=tmp_path / "jobs.json",
                                 heartbeat_seconds=60, clock=lambda: 1000)
    bridge.step(0)
    assert slurm.cancelled == ["7"] and bridge.jobs == {}


def test_a_transient_heartbeat_error_keeps_the_job(tmp_path) -> None:
    import subprocess

    class Queue:
        def receive(self, *_):
            return []

        def task_heartbeat(self, _):
            raise subprocess.CalledProcessError(255, ["aws"], "", "ThrottlingException")

    slurm = FakeSlurm(["RUNNING"])
    (tmp_path / "jobs.json").write_text(json.dumps({"run-5": {"job_id": "8", "token": "t", "beat": 0},
                                                    "run-6": {"job_id": "9", "token": "u", "beat": 0}}))
    logged = []
    bridge = slurm_bridge.Bridge(aws=Queue(), slurm=slurm, state_file=tmp_path / "jobs.json", heartbeat_seconds=60,
                                 clock=lambda: 1000, log=logged.append)
    bridge.step(0)
    assert slurm.cancelled == [] and set(bridge.jobs) == {"run-5", "run-6"} and len(logged) == 2


def test_a_closed_task_drops_only_its_job(tmp_path) -> None:
    class Queue:
        def receive(self, *_):
            return []

        def task_success(self, token, _):
            if token == "closed":
                raise slurm_bridge.TaskGone("InvalidToken")

        def task_heartbeat(self, _):
            pass

    class Slurm(FakeSlurm):
        def state(self, job_id):
            return "COMPLETED" if job_id == "1" else "RUNNING"

    (tmp_path / "jobs.json").write_text(json.dumps({"dup": {"job_id": "1", "token": "closed", "beat": 0},
                                                    "live": {"job_id": "2", "token": "ok", "beat": 0}}))
    slurm = Slurm(["RUNNING"])
    bridge = slurm_bridge.Bridge(aws=Queue(), slurm=slurm, state_file=tmp_path / "jobs.json", heartbeat_seconds=60,
                                 clock=lambda: 1000)
    bridge.step(0)
    assert set(bridge.jobs) == {"live"} and slurm.cancelled == []


def test_a_job_slurm_refuses_fails_its_task_at_once(machine, tmp_path) -> None:
    sfn, arn, queue_url = machine
    execution = _start(sfn, arn, "run-7")
    aws = MotoAws(queue_url)
    bridge = slurm_bridge.Bridge(aws=aws, slurm=FakeSlurm(["RUNNING"], refuse="invalid partition specified: gpu"),
                                 state_file=tmp_path / "jobs.json")
    _wait_for_message(aws)
    bridge.step(wait_seconds=0)
    assert _status(sfn, execution)["status"] == "FAILED"
    failed = [e for e in sfn.get_execution_history(executionArn=execution)["events"] if e["type"] == "TaskFailed"]
    assert failed[0]["taskFailedEventDetails"]["error"] == "Slurm.Rejected"
    assert "invalid partition specified: gpu" in aws.causes[0]
    attrs = aws.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"


@pytest.mark.parametrize(("body", "message"), [
    ("{", "body: not JSON"),
    ("[]", "body: must be a JSON object"),
    (json.dumps({"TaskToken": "t" * 2049}), "TaskToken: must be a task token of 1-2048 characters"),
    (json.dumps({"TaskToken": "t", "Command": ["a"], "JobName": "bad name"}), "JobName: must be 1-256"),
    (json.dumps({"TaskToken": "t", "Command": ["a"], "JobName": "j", "Partition": "gpu", "Nodes": True}),
     "Nodes: must be an integer"),
    (json.dumps({"TaskToken": "t", "Command": ["a"], "JobName": "j", "Partition": "gpu", "Nodes": 1,
                 "Image": "i", "CheckpointUri": "/fsx/c", "OutputUri": "s3://o/"}), "CheckpointUri: must be an s3://"),
    (json.dumps({"TaskToken": "t", "Command": ["a"], "Environment": {"lower": "x"}}), "Environment: must be"),
])
def test_bad_requests_name_the_field(body, message) -> None:
    with pytest.raises(slurm_bridge.RequestError) as exc:
        slurm_bridge.parse_request(body)
    assert message in str(exc.value)


def test_sacct_states_classified() -> None:
    assert slurm_bridge.classify("COMPLETED") == "succeeded"
    assert slurm_bridge.classify("CANCELLED by 0") == "failed"
    assert slurm_bridge.classify("REQUEUED") == slurm_bridge.classify("RUNNING") == "running"


def test_cli_adapters_call_the_documented_commands() -> None:
    calls = []

    class Done:
        def __init__(self, stdout: str = "", returncode: int = 0, stderr: str = "") -> None:
            self.stdout, self.returncode, self.stderr = stdout, returncode, stderr

    def run(args, **kwargs):
        calls.append(args)
        if "send-task-heartbeat" in args:
            return Done(returncode=254, stderr="An error occurred (TaskTimedOut) when calling the SendTaskHeartbeat")
        return Done('{"Messages": []}' if "receive-message" in args else "42;cluster\n")

    aws = slurm_bridge.AwsCli("https://sqs/q", "us-east-1", run=run)
    assert aws.receive(10, 20) == []
    aws.task_failure("tok", "Slurm.FAILED", "x")
    assert slurm_bridge.SlurmCli(run=run).submit("#!/bin/bash\n") == "42"
    assert calls[0][:7] == ["aws", "--region", "us-east-1", "--output", "json", "sqs", "receive-message"]
    assert calls[1][5:7] == ["stepfunctions", "send-task-failure"]
    assert calls[2] == ["sbatch", "--parsable"]
    with pytest.raises(slurm_bridge.TaskGone):
        aws.task_heartbeat("tok")
    # the CLI subcommands are the botocore operations the bridge's IAM grants
    from mlinfra.domain.api_model import service_model
    assert {"SendTaskFailure", "SendTaskSuccess", "SendTaskHeartbeat"} <= set(service_model("stepfunctions").operation_names)
    assert {"ReceiveMessage", "DeleteMessage"} <= set(service_model("sqs").operation_names)


def test_task_state_request_matches_the_sqs_model() -> None:
    from mlinfra.domain.api_model import request_errors

    state = training_task_state(queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/jobs", partition="gpu",
                                nodes=2, image="img", command=["true"], checkpoint_uri_path="$.c",
                                output_uri_path="$.o")
    params = dict(state["Parameters"])
    params["MessageBody"] = json.dumps(params["MessageBody"])
    assert request_errors("sqs", "SendMessage", params) == []
    assert state["Resource"] == "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
    assert state["TimeoutSeconds"] == (1440 + 1440) * 60 + 3600, "job limit + queue wait + an hour to report"
    named = training_task_state(queue_url="q", partition="gpu", nodes=1, image="i", command=["x"],
                                checkpoint_uri_path="$.c", output_uri_path="$.o", job_name="finetune")
    assert named["Parameters"]["MessageBody"]["JobName.$"] == \
        "States.Format('{}-finetune-r{}', $$.Execution.Name, $$.State.RetryCount)"
    with pytest.raises(ValueError, match="heartbeat_seconds must be 60 to 3600"):
        training_task_state(queue_url="q", partition="gpu", nodes=1, image="i", command=["x"],
                            checkpoint_uri_path="$.c", output_uri_path="$.o", heartbeat_seconds=10)
