#!/usr/bin/env python3
"""The Slurm job bridge: runs on the HyperPod controller and turns Step Functions task requests into Slurm jobs.

A state machine sends a job request to the cluster's SQS queue with ``sqs:sendMessage.waitForTaskToken``. The
bridge (a systemd service installed by the ``bridge`` lifecycle step) receives it, submits ``sbatch`` (one job
per request, named by the request), sends task heartbeats while the job runs, and ends the task with
``SendTaskSuccess`` (COMPLETED) or ``SendTaskFailure`` (``Slurm.<STATE>``) when Slurm says the job is over. No
polling loop in the state machine: a run of any length costs a handful of history events.

Idempotency: a redelivered request finds its job by name (``sacct --name``) and adopts it instead of submitting
again; the bridge's state file (on the shared file system when there is one) lets a restarted or replaced
controller resume watching its jobs. Failures stay local: a callback Step Functions refuses because the task is
gone (``TaskTimedOut``, ``TaskDoesNotExist``, ``InvalidToken``) drops that job (cancelling it if it still runs);
any other error is retried on the next step; a job Slurm refuses ends its task with ``Slurm.Rejected``. Standard library only: AWS calls
go through the AWS CLI on the node (:class:`AwsCli`); tests inject a boto3-backed client with the same methods.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Protocol

#: sacct states that end a job, and whether that end is a success.
TERMINAL: dict[str, bool] = {
    "COMPLETED": True,
    "FAILED": False, "CANCELLED": False, "TIMEOUT": False, "NODE_FAIL": False, "OUT_OF_MEMORY": False,
    "PREEMPTED": False, "BOOT_FAIL": False, "DEADLINE": False,
}
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,255}")
_PARTITION_RE = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")
_ENV_RE = re.compile(r"[A-Z_][A-Z0-9_]*")
#: Step Functions task token limit (botocore model: SendTaskSuccess.taskToken is 1 to 2048 characters).
MAX_TOKEN = 2048


class RequestError(ValueError):
    """A job request the bridge cannot run (the message names the field)."""


class TaskGone(Exception):
    """Step Functions no longer waits for this task (TaskTimedOut, TaskDoesNotExist, InvalidToken): its job is
    nobody's any more. Any other failure of a callback is transient and retried on the next step."""


#: The callback errors after which a task token is dead (SendTask* API reference).
GONE_ERRORS = ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken")


@dataclasses.dataclass(frozen=True)
class JobRequest:
    task_token: str
    job_name: str
    partition: str
    nodes: int
    image: str
    command: tuple[str, ...]
    checkpoint_uri: str
    output_uri: str
    environment: tuple[tuple[str, str], ...] = ()
    time_limit_minutes: int = 1440


def parse_request(body: str) -> JobRequest:
    """A job request from an SQS message body; RequestError naming the field otherwise."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise RequestError(f"body: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RequestError(f"body: must be a JSON object, got: {type(data).__name__}")

    def field(name: str, kind: type, check: Callable[[Any], bool], rule: str) -> Any:
        value = data.get(name)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is int or not check(value):
            raise RequestError(f"{name}: must be {rule}, got: {value!r}"[:300])
        return value

    token = field("TaskToken", str, lambda v: 1 <= len(v) <= MAX_TOKEN, f"a task token of 1-{MAX_TOKEN} characters")
    command = field("Command", list, lambda v: 1 <= len(v) <= 256 and all(isinstance(a, str) for a in v),
                    "a list of 1-256 strings")
    env = field("Environment", dict, lambda v: len(v) <= 100 and all(
        isinstance(k, str) and _ENV_RE.fullmatch(k) and isinstance(x, str) for k, x in v.items()),
        "a mapping of upper-case variable names to strings") if "Environment" in data else {}
    return JobRequest(
        task_token=token,
        job_name=field("JobName", str, _NAME_RE.fullmatch, "1-256 letters, digits, '_', '.', '-'"),
        partition=field("Partition", str, _PARTITION_RE.fullmatch, "a Slurm partition name"),
        nodes=field("Nodes", int, lambda v: 1 <= v <= 6758, "an integer from 1 to 6758"),
        image=field("Image", str, lambda v: 1 <= len(v) <= 1024 and not v.startswith("-"), "a container image"),
        command=tuple(command),
        checkpoint_uri=field("CheckpointUri", str, lambda v: v.startswith("s3://"), "an s3:// URI"),
        output_uri=field("OutputUri", str, lambda v: v.startswith("s3://"), "an s3:// URI"),
        environment=tuple(sorted(env.items())),
        time_limit_minutes=field("TimeLimitMinutes", int, lambda v: 1 <= v <= 60 * 24 * 28, "1 to 40320 minutes")
        if "TimeLimitMinutes" in data else 1440,
    )


def render_sbatch(req: JobRequest, shared_path: str = "") -> str:
    """The batch script of a request. HyperPod's ``srun --auto-resume=1`` requeues the step on a replaced node,
    and the job reads ``CHECKPOINT_URI`` to resume where it stopped (on some Slurm releases the whole batch script
    is requeued instead: the job's command must resume idempotently from the checkpoint either way). With a
    shared file system (the Lustre cache) logs go there and the container mounts it; without one, logs stay on
    the first node's /tmp."""
    log_dir = f"{shared_path}/mlinfra/jobs" if shared_path else "/tmp"
    mounts = f" --container-mounts={shared_path}:{shared_path}" if shared_path else ""
    env = dict(req.environment)
    env.update({"CHECKPOINT_URI": req.checkpoint_uri, "OUTPUT_URI": req.output_uri, "MLINFRA_JOB_NAME": req.job_name})
    exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items()))
    hours, minutes = divmod(req.time_limit_minutes, 60)
    return "\n".join([
        "#!/bin/bash",
        f"#SBATCH --job-name={req.job_name}",
        f"#SBATCH --partition={req.partition}",
        f"#SBATCH --nodes={req.nodes}",
        "#SBATCH --exclusive",
        f"#SBATCH --time={hours}:{minutes:02d}:00",
        f"#SBATCH --output={log_dir}/{req.job_name}-%j.out",
        "set -euo pipefail",
        exports,
        "srun --auto-resume=1 --container-image=" + shlex.quote(req.image)
        + mounts + " --container-env=" + ",".join(sorted(env)) + " "
        + " ".join(shlex.quote(a) for a in req.command),
        "",
    ])


def classify(state: str) -> str:
    """``running``, ``succeeded`` or ``failed`` for an sacct state (``CANCELLED by 0`` counts as CANCELLED)."""
    base = state.split()[0].rstrip("+") if state else ""
    if base not in TERMINAL:
        return "running"
    return "succeeded" if TERMINAL[base] else "failed"


class Aws(Protocol):
    def receive(self, max_messages: int, wait_seconds: int) -> list[dict[str, str]]: ...
    def delete(self, receipt_handle: str) -> None: ...
    def task_success(self, token: str, output: dict[str, Any]) -> None: ...
    def task_failure(self, token: str, error: str, cause: str) -> None: ...
    def task_heartbeat(self, token: str) -> None: ...


class Slurm(Protocol):
    def submit(self, script: str) -> str: ...
    def find(self, job_name: str) -> str | None: ...
    def state(self, job_id: str) -> str: ...
    def cancel(self, job_id: str) -> None: ...


@dataclasses.dataclass
class Bridge:
    """One loop iteration at a time (:meth:`step`), state kept in ``state_file`` between restarts (on the shared
    file system when there is one, so a replaced controller resumes watching)."""

    aws: Aws
    slurm: Slurm
    state_file: Path
    shared_path: str = ""
    heartbeat_seconds: int = 60
    clock: Callable[[], float] = time.monotonic
    log: Callable[[str], None] = lambda text: print(f"slurm-bridge: {text}", file=sys.stderr, flush=True)

    def __post_init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = (json.loads(self.state_file.read_text())
                                                if self.state_file.exists() else {})

    def _save(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.jobs))
        tmp.replace(self.state_file)

    def step(self, wait_seconds: int = 20) -> None:
        """Take new requests, then look at every job. A failure touches only its own message or job."""
        for message in self.aws.receive(10, wait_seconds):
            try:
                self._accept(message)
            except (subprocess.CalledProcessError, OSError, ValueError) as exc:
                self.log(f"request left for redelivery: {exc}")  # back after the visibility timeout
        for name in list(self.jobs):
            try:
                self._watch(name)
            except (subprocess.CalledProcessError, OSError, ValueError) as exc:
                self.log(f"job {name}: {exc}; retried next step")

    def _end(self, token: str, error: str, cause: str) -> None:
        try:
            self.aws.task_failure(token, error, cause)
        except TaskGone:
            pass

    def _accept(self, message: dict[str, str]) -> None:
        try:
            req = parse_request(message["Body"])
        except RequestError as exc:
            token = _token_of(message["Body"])
            if token:
                self._end(token, "Bridge.InvalidRequest", str(exc))
            self.aws.delete(message["ReceiptHandle"])
            return
        job_id = (self.jobs.get(req.job_name) or {}).get("job_id") or self.slurm.find(req.job_name)
        if job_id is None:
            try:
                job_id = self.slurm.submit(render_sbatch(req, self.shared_path))
            except subprocess.CalledProcessError as exc:
                # Slurm refuses the job (unknown partition, more nodes than the partition holds): permanent.
                self._end(req.task_token, "Slurm.Rejected", f"sbatch refused job {req.job_name}: "
                          f"{(exc.stderr or exc.stdout or '').strip()}"[:32768])
                self.aws.delete(message["ReceiptHandle"])
                return
        self.jobs[req.job_name] = {"job_id": job_id, "token": req.task_token, "beat": self.clock()}
        self._save()  # before deleting: a crash here redelivers the message, which adopts the job by name
        self.aws.delete(message["ReceiptHandle"])
        try:
            self.aws.task_heartbeat(req.task_token)  # the task knows at once that its job is queued
        except TaskGone:
            self._forget(req.job_name, cancel=True)

    def _forget(self, name: str, *, cancel: bool) -> None:
        job = self.jobs.pop(name)
        if cancel:
            self.slurm.cancel(job["job_id"])  # nobody waits for this job any more: stop paying for its nodes
        self._save()

    def _watch(self, name: str) -> None:
        job = self.jobs[name]
        state = self.slurm.state(job["job_id"])
        outcome = classify(state)
        try:
            if outcome == "succeeded":
                self.aws.task_success(job["token"], {"JobName": name, "JobId": job["job_id"], "State": state})
            elif outcome == "failed":
                self.aws.task_failure(job["token"], f"Slurm.{state.split()[0].rstrip('+')}",
                                      f"job {name} ({job['job_id']}) ended {state}")
            elif self.clock() - job["beat"] >= self.heartbeat_seconds:
                self.aws.task_heartbeat(job["token"])
                job["beat"] = self.clock()
                self._save()
        except TaskGone:
            self._forget(name, cancel=outcome == "running")
            return
        if outcome != "running":
            self._forget(name, cancel=False)


def _token_of(body: str) -> str | None:
    try:
        token = json.loads(body).get("TaskToken")
    except (ValueError, AttributeError, RecursionError):
        return None
    return token if isinstance(token, str) and 1 <= len(token) <= MAX_TOKEN else None


class AwsCli:
    """:class:`Aws` through the AWS CLI on the node (the HyperPod AMI ships it)."""

    def __init__(self, queue_url: str, region: str, run: Callable[..., subprocess.CompletedProcess] = subprocess.run):
        self.queue_url, self.region, self._run = queue_url, region, run

    def _aws(self, *args: str) -> subprocess.CompletedProcess:
        cmd = ["aws", "--region", self.region, "--output", "json", *args]
        done = self._run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            if any(f"({code})" in (done.stderr or "") for code in GONE_ERRORS):
                raise TaskGone(done.stderr.strip())
            raise subprocess.CalledProcessError(done.returncode, cmd[:7], done.stdout, done.stderr)
        return done

    def receive(self, max_messages: int, wait_seconds: int) -> list[dict[str, str]]:
        out = self._aws("sqs", "receive-message", "--queue-url", self.queue_url, "--max-number-of-messages",
                        str(max_messages), "--wait-time-seconds", str(wait_seconds)).stdout
        return json.loads(out).get("Messages", []) if out.strip() else []

    def delete(self, receipt_handle: str) -> None:
        self._aws("sqs", "delete-message", "--queue-url", self.queue_url, "--receipt-handle", receipt_handle)

    def task_success(self, token: str, output: dict[str, Any]) -> None:
        self._aws("stepfunctions", "send-task-success", "--task-token", token, "--task-output", json.dumps(output))

    def task_failure(self, token: str, error: str, cause: str) -> None:
        self._aws("stepfunctions", "send-task-failure", "--task-token", token, "--error", error[:256],
                  "--cause", cause[:32768])

    def task_heartbeat(self, token: str) -> None:
        self._aws("stepfunctions", "send-task-heartbeat", "--task-token", token)


class SlurmCli:
    """:class:`Slurm` through sbatch, sacct and scancel on the controller."""

    def __init__(self, run: Callable[..., subprocess.CompletedProcess] = subprocess.run):
        self._run = run

    def submit(self, script: str) -> str:
        out = self._run(["sbatch", "--parsable"], input=script, capture_output=True, text=True, check=True).stdout
        return out.strip().split(";")[0]

    def find(self, job_name: str) -> str | None:
        out = self._run(["sacct", "--name", job_name, "-X", "-n", "-P", "-o", "JobID", "-S", "now-28days"],
                        capture_output=True, text=True, check=True).stdout.split()
        return out[-1] if out else None

    def state(self, job_id: str) -> str:
        out = self._run(["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "State"],
                        capture_output=True, text=True, check=True).stdout.strip().splitlines()
        return out[0] if out else "PENDING"

    def cancel(self, job_id: str) -> None:
        self._run(["scancel", job_id], capture_output=True, text=True, check=False)


def main() -> int:  # pragma: no cover - the service loop; its steps are tested
    shared = os.environ.get("MLINFRA_SHARED_PATH", "")
    state = f"{shared}/mlinfra/bridge/jobs.json" if shared else "/var/lib/mlinfra-bridge/jobs.json"
    bridge = Bridge(aws=AwsCli(os.environ["MLINFRA_JOB_QUEUE_URL"], os.environ["AWS_REGION"]), slurm=SlurmCli(),
                    state_file=Path(state), shared_path=shared)
    while True:
        try:
            bridge.step()
        except (subprocess.CalledProcessError, OSError, ValueError) as exc:  # receive itself failed
            bridge.log(str(exc))
            time.sleep(10)


if __name__ == "__main__":
    sys.exit(main())
