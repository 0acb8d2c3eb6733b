"""Train on SageMaker HyperPod from a state machine: the task state that hands a job to the cluster's Slurm job
bridge and waits for its end (``sqs:sendMessage.waitForTaskToken``).

The bridge (``mlinfra/userdata/hyperpod/slurm_bridge.py``, a service on the controller) submits the job with
``srun --auto-resume=1`` (HyperPod requeues the step on a replaced node and the job resumes from
``CHECKPOINT_URI``), heartbeats while it runs and ends the task with ``SendTaskSuccess`` or ``SendTaskFailure``
(``Slurm.<STATE>``). The state waits without polling: a run of any length costs a handful of history events, far
from Step Functions' 25,000-event limit. Pure Python (ASL as dicts), no CDK.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["WAIT_FOR_TASK_TOKEN_SEND_MESSAGE", "training_task_state", "SLURM_FAILURE_ERRORS"]

WAIT_FOR_TASK_TOKEN_SEND_MESSAGE = "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
#: The errors a HyperPod training task ends with when the job fails (the bridge's ``Slurm.<STATE>``), when
#: sbatch refuses it (``Slurm.Rejected``: e.g. a partition without nodes) or the bridge refuses the request;
#: ``States.HeartbeatTimeout`` when the bridge stops reporting.
SLURM_FAILURE_ERRORS: tuple[str, ...] = (
    "Slurm.FAILED", "Slurm.CANCELLED", "Slurm.TIMEOUT", "Slurm.NODE_FAIL", "Slurm.OUT_OF_MEMORY",
    "Slurm.PREEMPTED", "Slurm.BOOT_FAIL", "Slurm.DEADLINE", "Slurm.Rejected", "Bridge.InvalidRequest",
)


def training_task_state(
    *,
    queue_url: str,
    partition: str,
    nodes: int,
    image: str,
    command: Sequence[str],
    checkpoint_uri_path: str,
    output_uri_path: str,
    job_name: str | None = None,
    environment: dict[str, str] | None = None,
    time_limit_minutes: int = 1440,
    queue_wait_minutes: int = 1440,
    heartbeat_seconds: int = 600,
    result_path: str = "$.training",
    next_state: str | None = None,
) -> dict[str, Any]:
    """The ASL Task state. ``*_path`` arguments are JSONPaths into the state input (or ``$$`` context).

    The job's name is the execution's name, the state's name and the retry count (``job_name`` replaces the
    state's name when several states of one machine share it), so a Retry or a second HyperPod step submits a new
    job instead of adopting the first. The task times out after the job's time limit plus ``queue_wait_minutes``
    for nodes to free up, plus an hour to report."""
    if not 1 <= nodes <= 6758:
        raise ValueError(f"nodes must be 1 to 6758, got: {nodes}")
    if not 60 <= heartbeat_seconds <= 3600:
        raise ValueError(f"heartbeat_seconds must be 60 to 3600 (the bridge beats every minute), got: {heartbeat_seconds}")
    if not 1 <= time_limit_minutes <= 40320:
        raise ValueError(f"time_limit_minutes must be 1 to 40320, got: {time_limit_minutes}")
    if not 0 <= queue_wait_minutes <= 40320:
        raise ValueError(f"queue_wait_minutes must be 0 to 40320, got: {queue_wait_minutes}")
    body: dict[str, Any] = {
        "TaskToken.$": "$$.Task.Token",
        "JobName.$": ("States.Format('{}-{}-r{}', $$.Execution.Name, $$.State.Name, $$.State.RetryCount)"
                      if job_name is None else
                      f"States.Format('{{}}-{job_name}-r{{}}', $$.Execution.Name, $$.State.RetryCount)"),
        "Partition": partition,
        "Nodes": nodes,
        "Image": image,
        "Command": list(command),
        "CheckpointUri.$": checkpoint_uri_path,
        "OutputUri.$": output_uri_path,
        "TimeLimitMinutes": time_limit_minutes,
    }
    if environment:
        body["Environment"] = dict(environment)
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": WAIT_FOR_TASK_TOKEN_SEND_MESSAGE,
        "Parameters": {"QueueUrl": queue_url, "MessageBody": body},
        "HeartbeatSeconds": heartbeat_seconds,
        # Slurm's own limit ends the job first; the task allows the queue wait and an hour to report.
        "TimeoutSeconds": (time_limit_minutes + queue_wait_minutes) * 60 + 3600,
        "ResultPath": result_path,
    }
    if next_state:
        state["Next"] = next_state
    else:
        state["End"] = True
    return state
