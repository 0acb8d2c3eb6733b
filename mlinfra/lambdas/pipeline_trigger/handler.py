"""Retrain pipeline trigger: start one execution per dataset version, idempotently.

Invoked by two EventBridge rules:

- the ingestion capability's ``Dataset Version Ready`` event (source ``mlinfra.ingestion``), whose detail
  names ``dataset`` and ``version`` (``dataset_version`` is accepted too);
- a schedule, with input ``{"trigger": "schedule", "dataset": "<name>", "time": "<event time>"}``: the run
  trains on the newest version the landing glue DECLARED READY, by the time it recorded: the glue writes
  ``dataset=<name>/_ready/<UTC stamp>_<version>.json`` in the raw bucket when it emits the ready event, so a
  half-ingested version (no marker) is never picked, and ``v10`` beats ``v9`` when it became ready later
  (versions are never compared as strings).

The execution name is derived from dataset and version (and the schedule's minute), so a duplicate event
maps to the same name and Step Functions refuses a second run (``ExecutionAlreadyExists``): the handler
reports ``{"started": false, "reason": "duplicate"}``. Concurrent runs on one dataset are prevented by the
state machine's lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
from aws_lambda_powertools import Logger

logger = Logger()
READY_DETAIL_TYPE = "Dataset Version Ready"
_clients: dict[str, Any] = {}


def client(name: str):
    if name not in _clients:
        _clients[name] = boto3.client(name)
    return _clients[name]


class MalformedTriggerError(ValueError):
    """The event is neither a dataset-version-ready event nor a schedule input."""


def execution_name(dataset: str, version: str, suffix: str = "") -> str:
    """1-80 characters of ``[A-Za-z0-9-_]``, unique per (dataset, version, suffix) through a hash."""
    digest = hashlib.sha256(f"{dataset}\n{version}\n{suffix}".encode()).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{dataset}-{version}").strip("-")[:56]
    tail = f"-{re.sub(r'[^0-9A-Za-z]', '', suffix)[:12]}" if suffix else ""
    return f"{slug}{tail}-{digest}"[:80]


#: Where the landing glue records the versions it declared ready (same layout as the glue's ``ready_marker_key``).
READY_MARKER_DIR = "_ready/"
_MARKER_RE = re.compile(r"^(\d{8}T\d{6}Z)_([A-Za-z0-9._-]{1,128})\.json$")


def ready_versions(bucket: str, dataset: str) -> list[tuple[str, str]]:
    """``(ready stamp, version)`` of every version of ``dataset`` the glue declared ready, oldest first."""
    prefix = f"dataset={dataset}/{READY_MARKER_DIR}"
    found: list[tuple[str, str]] = []
    for page in client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            match = _MARKER_RE.fullmatch(obj["Key"][len(prefix):])
            if match:
                found.append((match.group(1), match.group(2)))
    return sorted(found)


def latest_version(bucket: str, dataset: str) -> str | None:
    """The version declared ready most recently (ties: the later name); None when none is ready."""
    versions = ready_versions(bucket, dataset)
    return versions[-1][1] if versions else None


def run_request(event: Any) -> dict[str, str]:
    """``{"dataset", "version", "trigger", "name", "event_id"}`` of the run an event asks for."""
    if not isinstance(event, dict):
        raise MalformedTriggerError(f"event must be an object, got: {type(event).__name__}")
    if event.get("detail-type") == READY_DETAIL_TYPE:
        detail = event.get("detail")
        if not isinstance(detail, dict):
            raise MalformedTriggerError(f"detail must be an object naming 'dataset' and 'version', got: {type(detail).__name__}")
        dataset, version = detail.get("dataset"), detail.get("version", detail.get("dataset_version"))
        if not isinstance(dataset, str) or not dataset or not isinstance(version, str) or not version:
            raise MalformedTriggerError(f"detail must name 'dataset' and 'version' (strings), got: {json.dumps(detail)[:300]}")
        return {"dataset": dataset, "version": version, "trigger": "dataset-ready",
                "event_id": str(event.get("id", "")), "name": execution_name(dataset, version)}
    if event.get("trigger") == "schedule":
        dataset = event.get("dataset")
        if not isinstance(dataset, str) or not dataset:
            raise MalformedTriggerError(f"a schedule input must name 'dataset', got: {dataset!r}")
        bucket = os.environ.get("RAW_BUCKET", "")
        if not bucket:
            raise RuntimeError("RAW_BUCKET environment variable is not set (the raw bucket holding the ready markers)")
        version = latest_version(bucket, dataset)
        if version is None:
            raise MalformedTriggerError(
                f"schedule: no version of dataset {dataset!r} was declared ready "
                f"(no marker under s3://{bucket}/dataset={dataset}/{READY_MARKER_DIR})")
        minute = re.sub(r"[^0-9]", "", str(event.get("time", "")))[:12]
        return {"dataset": dataset, "version": version, "trigger": "schedule", "event_id": minute,
                "name": execution_name(dataset, version, f"s{minute}")}
    raise MalformedTriggerError(
        f"expected detail-type {READY_DETAIL_TYPE!r} or a schedule input {{'trigger': 'schedule'}}, "
        f"got keys: {sorted(event)[:10]}"
    )


# ---- drift events (issue 15): kept apart from the dataset/schedule validation above ---------------------------
DRIFT_SOURCE = "mlinfra.drift"
DRIFT_DETAIL_TYPE = "Model Drift Detected"
#: Defaults when the drift rule's input does not set them (hours).
DRIFT_COOLDOWN_HOURS = 24.0
DRIFT_MIN_INTERVAL_HOURS = 6.0
#: The tail execution_name() gives a drift-triggered run: ``-drift<7 hex>-<8 hex>``.
DRIFT_RUN_NAME = re.compile(r"-drift[0-9a-f]{7}-[0-9a-f]{8}$")


def is_drift_event(event: Any) -> bool:
    return isinstance(event, dict) and (event.get("trigger") == "drift" or event.get("detail-type") == DRIFT_DETAIL_TYPE)


def drift_request(event: dict[str, Any], now: datetime, executions: list[dict[str, Any]]) -> dict[str, Any]:
    """The run a drift event asks for, or ``{"skip": reason}``.

    ``event`` is the drift rule's input (``{"trigger": "drift", "dataset", "endpoint", "report_uri", "event_id",
    "time", "cooldown_hours", "min_interval_hours", "lineage_table"}``) or a raw ``Model Drift Detected`` event
    whose detail names ``dataset``. ``executions`` are the state machine's recent executions (name, startDate).
    Cool-down: no drift-triggered run within ``cooldown_hours`` of the last one. Minimum interval: no run of any
    kind within ``min_interval_hours`` of the last start. The run trains on the newest dataset version and goes
    through the pipeline's gate and approval like any other run.
    """
    detail = event.get("detail") if isinstance(event.get("detail"), dict) else event
    dataset = detail.get("dataset") or event.get("dataset")
    report = detail.get("report_uri") or event.get("report_uri")
    if not isinstance(dataset, str) or not dataset:
        raise MalformedTriggerError(f"a drift event must name 'dataset' (the drift rule's input sets it), got: {dataset!r}")
    if not isinstance(report, str) or not report.startswith("s3://"):
        raise MalformedTriggerError(f"a drift event must carry 'report_uri' (s3://...), got: {report!r}")
    cooldown = float(event.get("cooldown_hours", DRIFT_COOLDOWN_HOURS))
    interval = float(event.get("min_interval_hours", DRIFT_MIN_INTERVAL_HOURS))
    if cooldown < 0 or interval < 0:
        raise MalformedTriggerError(f"cooldown_hours and min_interval_hours must be >= 0, got: {cooldown}, {interval}")
    starts = sorted(executions, key=lambda e: e["startDate"], reverse=True)
    if starts and now - starts[0]["startDate"] < timedelta(hours=interval):
        return {"skip": f"min-interval: last run {starts[0]['name']} started {starts[0]['startDate'].isoformat()}"}
    drift_runs = [e for e in starts if DRIFT_RUN_NAME.search(e["name"])]
    if drift_runs and now - drift_runs[0]["startDate"] < timedelta(hours=cooldown):
        return {"skip": f"cooldown: last drift run {drift_runs[0]['name']} started {drift_runs[0]['startDate'].isoformat()}"}
    version = latest_version(os.environ.get("RAW_BUCKET", ""), dataset)
    if version is None:
        raise MalformedTriggerError(f"drift: no version of dataset {dataset!r} in the raw zone was declared ready "
                                    f"(no marker under dataset={dataset}/{READY_MARKER_DIR})")
    event_id = str(event.get("event_id") or event.get("id") or hashlib.sha256(report.encode()).hexdigest()[:12])
    return {"dataset": dataset, "version": version, "trigger": "drift", "event_id": event_id, "report_uri": report,
            "endpoint": str(detail.get("endpoint", "")), "lineage_table": event.get("lineage_table", ""),
            "name": execution_name(dataset, version, f"drift{hashlib.sha256(event_id.encode()).hexdigest()[:7]}")}


def recent_executions(arn: str, since: datetime) -> list[dict[str, Any]]:
    """Executions started since ``since`` (ListExecutions returns the newest first: stop at the first older page)."""
    out: list[dict[str, Any]] = []
    for page in client("stepfunctions").get_paginator("list_executions").paginate(stateMachineArn=arn):
        executions = page.get("executions", [])
        out += [e for e in executions if e["startDate"] >= since]
        if any(e["startDate"] < since for e in executions):
            break
    return out


def record_drift_cause(req: dict[str, Any]) -> None:
    """Lineage of a drift-triggered run: an item beside the run's own (``sk = version#<v>#run#<run>#cause``), so
    the pipeline's own writes to the run item never erase it."""
    if not req.get("lineage_table"):
        return
    client("dynamodb").put_item(TableName=req["lineage_table"], Item={
        "pk": {"S": f"dataset#{req['dataset']}"}, "sk": {"S": f"version#{req['version']}#run#{req['name']}#cause"},
        "trigger": {"S": "drift"}, "drift_report": {"S": req["report_uri"]}, "endpoint": {"S": req["endpoint"]},
        "event_id": {"S": req["event_id"]}, "run_id": {"S": req["name"]},
    })


def drift_handler(event: dict[str, Any], arn: str) -> dict[str, Any] | dict[str, str]:
    now = datetime.now(timezone.utc)
    window = max(float(event.get("cooldown_hours", DRIFT_COOLDOWN_HOURS)), float(event.get("min_interval_hours", DRIFT_MIN_INTERVAL_HOURS)))
    req = drift_request(event, now, recent_executions(arn, now - timedelta(hours=window)))
    if "skip" in req:
        logger.info("drift event skipped", extra={"reason": req["skip"]})
        return {"started": False, "reason": req["skip"]}
    return req


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    drift = is_drift_event(event)
    req = {} if drift else run_request(event)
    arn = os.environ.get("STATE_MACHINE_ARN")
    if not arn:
        raise RuntimeError("STATE_MACHINE_ARN environment variable is not set")
    if drift:
        req = drift_handler(event, arn)
        if "name" not in req:
            return req
    body = {"dataset": req["dataset"], "version": req["version"], "trigger": req["trigger"], "event_id": req["event_id"]}
    if req.get("report_uri"):
        body["note"] = f"drift report {req['report_uri']}"
    sfn = client("stepfunctions")
    existing = arn.replace(":stateMachine:", ":execution:", 1) + ":" + req["name"]
    try:  # StartExecution is idempotent for a RUNNING execution with the same input: check first
        sfn.describe_execution(executionArn=existing)
        logger.info("duplicate trigger: execution exists", extra={"execution_name": req["name"]})
        return {"started": False, "reason": "duplicate", "name": req["name"]}
    except sfn.exceptions.ExecutionDoesNotExist:
        pass
    if req["trigger"] == "drift":
        # before the run starts: a run never exists without its cause (the item's key is the run's name, so a
        # retried event writes the same item; a cause whose start then failed names a run that does not exist)
        record_drift_cause(req)
    try:
        resp = sfn.start_execution(stateMachineArn=arn, name=req["name"], input=json.dumps(body))
    except sfn.exceptions.ExecutionAlreadyExists:
        logger.info("duplicate trigger: execution exists", extra={"execution_name": req["name"]})
        return {"started": False, "reason": "duplicate", "name": req["name"]}
    logger.info("execution started", extra={"execution_name": req["name"], "dataset": req["dataset"], "version": req["version"]})
    return {"started": True, "name": req["name"], "execution_arn": resp["executionArn"]}
