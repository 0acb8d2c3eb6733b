"""Retrain pipeline: record a run's lineage and outcome in the lineage DynamoDB table.

Actions (``event["action"]``):

- ``start``: ``{"action": "start", "plan": {...}}`` writes the run's item (dataset version, code version, image
  digest, hyperparameters, URIs). Idempotent: a retry rewrites the same item, never one that has an outcome.
- ``outcome``: ``{"action": "outcome", "status": "Succeeded|Rejected|Failed", "state": <the execution state>,
  "execution": {...}}`` records how the run ended (model package, training job, metrics, error and cause)
  and returns ``{"message": {...}}``, the notification to publish. Works on whatever the state holds, so it
  also records runs whose input never validated.
- an EventBridge ``Step Functions Execution Status Change`` event (FAILED, TIMED_OUT, ABORTED) of the pipeline's
  state machine: an execution that ended at execution level (timeout, abort, history limit) ran none of its
  own exit states, so its dataset lock is released here (a conditional delete: only the lock this execution
  owns) and the end is recorded under ``pk = run#<execution name>``. Lock items (``pk = lock#<dataset>``) are
  the only items ever deleted.

Items: ``pk = dataset#<dataset>``, ``sk = version#<version>#run#<run id>``; a run without a valid plan is
kept under ``pk = run#<execution name>``, ``sk = run``. Nothing but lock items is ever deleted.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from typing import Any

import boto3
from aws_lambda_powertools import Logger

logger = Logger()

STATUSES = ("Succeeded", "Rejected", "Failed")
_clients: dict[str, Any] = {}


def table():
    if "table" not in _clients:
        name = os.environ.get("LINEAGE_TABLE")
        if not name:
            raise RuntimeError("LINEAGE_TABLE environment variable is not set")
        _clients["table"] = boto3.resource("dynamodb").Table(name)
    return _clients["table"]


class MalformedEventError(ValueError):
    """The event is not one the lineage recorder understands."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def item_key(plan: dict[str, Any] | None, execution_name: str) -> dict[str, str]:
    if plan and plan.get("dataset") and plan.get("version") and plan.get("run_id"):
        return {"pk": f"dataset#{plan['dataset']}", "sk": f"version#{plan['version']}#run#{plan['run_id']}"}
    return {"pk": f"run#{execution_name}", "sk": "run"}


def start_item(plan: dict[str, Any]) -> dict[str, Any]:
    for field in ("dataset", "version", "run_id", "hyperparameters", "uris"):
        if field not in plan:
            raise MalformedEventError(f"plan.{field} is required for action 'start'")
    return {
        **item_key(plan, plan["run_id"]),
        "run_id": plan["run_id"],
        "execution_id": plan.get("execution_id", ""),
        "dataset": plan["dataset"],
        "dataset_version": plan["version"],
        "trigger": plan.get("trigger", "manual"),
        "code_version": plan.get("code_version", "unknown"),
        "image": plan.get("image", ""),
        "image_digest": plan.get("image_digest", "unresolved"),
        "hyperparameters": json.dumps(plan["hyperparameters"], sort_keys=True),
        "input_uri": plan["uris"].get("train_input", ""),
        "checkpoint_uri": plan["uris"].get("checkpoints", ""),
        "status": "Running",
        "started_at": now_iso(),
    }


def summarize(status: str, state: dict[str, Any], execution: dict[str, Any]) -> dict[str, Any]:
    """The outcome attributes and notification of a run, from whatever the execution state holds."""
    plan = state.get("plan") or {}
    training = (state.get("training") or {}).get("describe") or {}
    error = state.get("error") or {}
    cause = error.get("Cause", "")
    if isinstance(cause, str):
        try:  # Step Functions wraps Lambda errors as a JSON string
            parsed = json.loads(cause)
            if isinstance(parsed, dict) and "errorMessage" in parsed:
                cause = f"{parsed.get('errorType', 'Error')}: {parsed['errorMessage']}"
        except ValueError:
            pass
    out = {
        "status": status,
        "execution": execution.get("id") or execution.get("name", ""),
        "dataset": plan.get("dataset"),
        "dataset_version": plan.get("version"),
        "run_id": plan.get("run_id") or execution.get("name"),
        "training_job_arn": training.get("TrainingJobArn"),
        "model_package_arn": (state.get("registration") or {}).get("ModelPackageArn"),
        "metric": (state.get("evaluation") or {}).get("metric_name"),
        "metric_value": (state.get("evaluation") or {}).get("metric_value"),
        "baseline_value": (state.get("gate") or {}).get("baseline"),
        "gate_reasons": (state.get("gate") or {}).get("reasons"),
        "endpoint": (state.get("deploy") or {}).get("endpoint_name"),
        "approval": (state.get("approval_error") or {}).get("Error") or (state.get("approval") or {}).get("decision"),
        "error": error.get("Error"),
        "cause": str(cause)[:4000] if cause else None,
    }
    return {k: v for k, v in out.items() if v not in (None, "", [])}


def record_start(plan: dict[str, Any]) -> dict[str, Any]:
    item = start_item(plan)
    try:
        table().put_item(Item=item, ConditionExpression="attribute_not_exists(outcome)")
    except table().meta.client.exceptions.ConditionalCheckFailedException:
        logger.info("run already has an outcome; start not rewritten", extra={"run_id": plan["run_id"]})
    return {"pk": item["pk"], "sk": item["sk"]}


def record_outcome(status: str, state: dict[str, Any], execution: dict[str, Any]) -> dict[str, Any]:
    summary = summarize(status, state, execution)
    key = item_key(state.get("plan"), execution.get("name", "unknown"))
    fields = {k: v for k, v in summary.items() if k not in ("status", "dataset", "dataset_version", "run_id")}
    names = {"#outcome": "outcome", "#status": "status", "#finished": "finished_at"}
    values: dict[str, Any] = {":o": status, ":f": now_iso()}
    sets = ["#outcome = :o", "#status = :o", "#finished = :f"]
    for i, (k, v) in enumerate(sorted(fields.items())):
        names[f"#a{i}"] = k
        values[f":v{i}"] = json.dumps(v) if isinstance(v, (dict, list, float)) else str(v)
        sets.append(f"#a{i} = :v{i}")
    table().update_item(
        Key=key, UpdateExpression="SET " + ", ".join(sets), ExpressionAttributeNames=names, ExpressionAttributeValues=values
    )
    return {"message": {"subject": f"Retrain run {status.lower()}", **summary}}


EXECUTION_END_EVENT = "Step Functions Execution Status Change"
EXECUTION_LEVEL_ENDS = ("FAILED", "TIMED_OUT", "ABORTED")
_DATASET_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def lock_of_ended_execution(detail: dict[str, Any]) -> tuple[str, str] | None:
    """(lock key, execution ARN) of an execution-level end, or None when there is nothing to release."""
    if detail.get("status") not in EXECUTION_LEVEL_ENDS or not detail.get("executionArn"):
        return None
    try:
        run_input = json.loads(detail.get("input") or "{}")
    except ValueError:
        return None
    dataset = run_input.get("dataset") if isinstance(run_input, dict) else None
    if not isinstance(dataset, str) or not _DATASET_RE.fullmatch(dataset):
        return None  # an input that never validated never took a lock
    return f"lock#{dataset}", detail["executionArn"]


def release_after_execution_end(detail: dict[str, Any]) -> dict[str, Any]:
    lock = lock_of_ended_execution(detail)
    if lock is None:
        return {"released": False, "reason": "no lock to release"}
    key, owner = lock
    try:
        table().delete_item(Key={"pk": key, "sk": "lock"}, ConditionExpression="#owner = :me",
                            ExpressionAttributeNames={"#owner": "owner"}, ExpressionAttributeValues={":me": owner})
        released = True
    except table().meta.client.exceptions.ConditionalCheckFailedException:
        released = False  # released by the execution itself, expired, or another run's
    name = owner.rsplit(":", 1)[-1]
    table().update_item(
        Key={"pk": f"run#{name}", "sk": "run"}, UpdateExpression="SET #ended = :s, #arn = :a, #at = :t",
        ExpressionAttributeNames={"#ended": "execution_end", "#arn": "execution_arn", "#at": "finished_at"},
        ExpressionAttributeValues={":s": detail["status"], ":a": owner, ":t": now_iso()})
    logger.info("execution-level end", extra={"execution": owner, "status": detail["status"], "lock_released": released})
    return {"released": released, "lock": key, "status": detail["status"]}


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise MalformedEventError(f"event must be an object, got: {type(event).__name__}")
    if event.get("detail-type") == EXECUTION_END_EVENT and isinstance(event.get("detail"), dict):
        return release_after_execution_end(event["detail"])
    action = event.get("action")
    if action == "start":
        if not isinstance(event.get("plan"), dict):
            raise MalformedEventError("action 'start' needs 'plan' (an object)")
        return record_start(event["plan"])
    if action == "outcome":
        status = event.get("status")
        if status not in STATUSES:
            raise MalformedEventError(f"status must be one of {list(STATUSES)}, got: {status!r}")
        state = event.get("state")
        if not isinstance(state, dict):
            raise MalformedEventError("action 'outcome' needs 'state' (the execution state, an object)")
        return record_outcome(status, state, event.get("execution") or {})
    raise MalformedEventError(f"action must be 'start' or 'outcome', got: {action!r}")
