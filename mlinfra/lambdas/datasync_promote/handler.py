"""DataSync completion: each successful DataSync execution becomes a NEW dataset version in the landing zone.

A DataSync S3 location has one fixed subdirectory and StartTaskExecution cannot override the destination, so the
task writes into a fixed staging prefix and this handler, on the execution's ``SUCCESS`` event, lands that run's
files (and only those, from the task report) as their own version, then hands the version to the landing glue by
writing its manifest. The glue validates, promotes to raw, catalogues and declares the version ready (its ready
marker and ``Dataset Version Ready`` event start the retrain pipeline); this handler promotes nothing itself.

Landing key layout (``DataSyncTask(dataset=...)``; the glue ignores ``_datasync/``)::

    _datasync/<dataset>/<task>/staging/<path>            where the DataSync task writes (its S3 location)
    <dataset>/<version>/<path>                           the run's files, copied here (conditional copies)
    <dataset>/<version>/_manifest.json                   written LAST: the glue's manifest of the version
    _datasync/<dataset>/<task>/rejected/<version>.json   a run that was not promoted, and why

``<version>`` is ``<UTC start time YYYYMMDDTHHMMSSZ>-<execution id>`` (``DescribeTaskExecution.StartTime``): one
version per execution, sorted by start time, and the same for every delivery of the same event.

- Idempotent: every copy and the manifest are conditional writes (``IfNoneMatch="*"``); a redelivered or duplicated
  event finds the manifest and does nothing; a run interrupted half-way resumes (copies already made answer 412).
- Never promotes a failed or partial run: only the ``SUCCESS`` state is acted on (``ERROR`` reaches the alarm topic
  through the task's error rule); a run whose report lists any file that failed to transfer or verify, a report that
  DataSync could not create, or a path the landing layout cannot hold, is REJECTED: the alarm topic is notified once
  and ``rejected/<version>.json`` records the reasons. Staged files stay where they are: nothing is ever deleted.
- The manifest's SHA-256 of each file is computed by S3 during the copy (``ChecksumAlgorithm=SHA256``; above
  CopyObject's 5 GiB, by streaming the staged object), so the glue's checksum check proves that landing holds the
  bytes DataSync wrote and verified.

Task report (``TaskReportConfig``: STANDARD, SUCCESSES_AND_ERRORS, object version ids INCLUDED): the detailed
reports of an execution are JSON objects whose list (``Transferred``, ``Verified``, ...) holds one entry per file with
``RelativePath``, ``TransferStatus``/``VerifyStatus``, the source metadata (``Type``, ``ContentSize``) and
``DstS3VersionId``. They are looked up under ``<report prefix>Detailed-Reports/<task id>/<execution id>/`` and,
failing that, anywhere under the report prefix by the execution id (docs/ingestion.md says what was verified only
offline).

Invocation: an SQS batch whose bodies are EventBridge ``DataSync Task Execution State Change`` events (partial batch
failures reported; a report still being written fails the record so SQS redelivers it), one event directly, or the
reconciler's scheduled input ``{"mlinfra": "reconcile"}``: EventBridge delivers DataSync's events best effort, so
the reconciler lists the task's executions (ListTaskExecutions) and lands every SUCCESS one not landed or rejected
yet, through the same idempotent path. Configuration: environment variables (:class:`Settings`).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import time
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

logger = Logger()

EVENT_SOURCE = "aws.datasync"
EVENT_DETAIL_TYPE = "DataSync Task Execution State Change"
RECONCILE_INPUT = {"mlinfra": "reconcile"}
#: At most this many SUCCESS executions are examined per reconciler run (newest listed first are not guaranteed).
RECONCILE_MAX_EXECUTIONS = 200
MANIFEST_NAME = "_manifest.json"
#: The landing prefix the glue ignores: DataSync staging areas and rejection records live under it.
DATASYNC_PREFIX = "_datasync/"
TAG_EXECUTION = "mlinfra:datasync-execution"
SINGLE_COPY_LIMIT = 5 * 1024**3  # CopyObject's limit; larger objects use a managed multipart copy
MAX_KEY_BYTES = 1024  # S3 object key limit (rule ingestion.s3-key-length)
_EXECUTION_ARN_RE = re.compile(
    r"^(arn:aws[a-z-]*:datasync:[a-z0-9-]+:\d{12}:task/(task-[0-9a-f]{17}))/execution/(exec-[0-9a-f]{17})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_GONE_CODES = ("404", "NoSuchKey", "NotFound")


class MalformedEventError(ValueError):
    """The event is not a DataSync task execution state change of this task."""


class SettingsError(ValueError):
    """An environment variable of the function has a value it cannot use (the message names it)."""


class RetryableError(RuntimeError):
    """The task report is not written yet, or a copy raced: fail the record, SQS redelivers it."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """From the environment. Required: DATASET, LANDING_BUCKET, STAGING_PREFIX, REJECTED_PREFIX, REPORT_BUCKET,
    REPORT_PREFIX, TASK_ARN. Optional: ALARM_TOPIC_ARN (notified of rejected runs), MAX_HASH_BYTES (largest file
    above 5 GiB hashed here; default 10 GiB), REPORT_WAIT_SECONDS (how long one delivery waits for a PENDING report
    before failing the record for a redelivery; default 60)."""

    dataset: str
    landing_bucket: str
    staging_prefix: str
    rejected_prefix: str
    report_bucket: str
    report_prefix: str
    task_arn: str
    alarm_topic_arn: str = ""
    max_hash_bytes: int = 10 * 1024**3
    report_wait_seconds: int = 60

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        required = ("DATASET", "LANDING_BUCKET", "STAGING_PREFIX", "REJECTED_PREFIX", "REPORT_BUCKET", "REPORT_PREFIX", "TASK_ARN")
        missing = [k for k in required if not env.get(k)]
        if missing:
            raise SettingsError(f"datasync promote: environment variable(s) {missing} must be set")
        if not _NAME_RE.fullmatch(env["DATASET"]) or env["DATASET"].startswith("_"):
            raise SettingsError(f"DATASET must be 1-128 letters, digits, '.', '_', '-' not starting with '_', got: {env['DATASET'][:140]!r}")
        numbers = {}
        for name, default in (("MAX_HASH_BYTES", 10 * 1024**3), ("REPORT_WAIT_SECONDS", 60)):
            raw = env.get(name) or str(default)
            if not raw.isdigit():
                raise SettingsError(f"{name} must be a whole number, got: {raw[:40]!r}")
            numbers[name] = int(raw)
        return cls(
            dataset=env["DATASET"], landing_bucket=env["LANDING_BUCKET"], staging_prefix=env["STAGING_PREFIX"],
            rejected_prefix=env["REJECTED_PREFIX"], report_bucket=env["REPORT_BUCKET"], report_prefix=env["REPORT_PREFIX"],
            task_arn=env["TASK_ARN"], alarm_topic_arn=env.get("ALARM_TOPIC_ARN", ""),
            max_hash_bytes=numbers["MAX_HASH_BYTES"], report_wait_seconds=numbers["REPORT_WAIT_SECONDS"],
        )


class Clients:
    """boto3 clients, created on first use; tests inject their own."""

    def __init__(self, **given: Any) -> None:
        self._given = given

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._given:
            self._given[name] = boto3.client(name)
        return self._given[name]


clients = Clients()


# --------------------------------------------------------------------------------------------------
# Pure logic
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Execution:
    arn: str
    task_arn: str
    task_id: str
    execution_id: str
    state: str


@dataclasses.dataclass(frozen=True)
class RunFile:
    path: str  # relative to the task's staging prefix, no leading "/"
    size: int
    version_id: str | None


@dataclasses.dataclass(frozen=True)
class RunReport:
    files: tuple[RunFile, ...]
    failures: tuple[str, ...]
    empty_files: tuple[str, ...] = ()


def parse_event(event: Any) -> Execution:
    """The execution of a ``DataSync Task Execution State Change`` event; raises MalformedEventError otherwise."""
    if not isinstance(event, dict) or event.get("source") != EVENT_SOURCE or event.get("detail-type") != EVENT_DETAIL_TYPE:
        got = (event.get("source"), event.get("detail-type")) if isinstance(event, dict) else type(event).__name__
        raise MalformedEventError(f"expected source {EVENT_SOURCE!r} and detail-type {EVENT_DETAIL_TYPE!r}, got: {got!r}")
    detail, resources = event.get("detail"), event.get("resources")
    state = detail.get("State") if isinstance(detail, dict) else None
    arns = [r for r in resources if isinstance(r, str) and _EXECUTION_ARN_RE.fullmatch(r)] if isinstance(resources, list) else []
    if not isinstance(state, str) or len(arns) != 1:
        raise MalformedEventError(f"the event must hold detail.State and one task execution ARN in resources, got: "
                                  f"{json.dumps({'detail': detail, 'resources': resources}, default=str)[:300]}")
    match = _EXECUTION_ARN_RE.fullmatch(arns[0])
    return Execution(arn=arns[0], task_arn=match.group(1), task_id=match.group(2), execution_id=match.group(3), state=state)


def version_name(start_time: dt.datetime, execution_id: str) -> str:
    """``<UTC start YYYYMMDDTHHMMSSZ>-<execution id>``: unique per execution, chronological as a string."""
    if start_time.tzinfo is None:
        start_time = start_time.replace(tzinfo=dt.timezone.utc)
    return f"{start_time.astimezone(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{execution_id}"


def _entries(doc: Any) -> list[dict[str, Any]]:
    """The per-file entries of one detailed report: the list of objects holding ``RelativePath``."""
    if isinstance(doc, list):
        return [e for e in doc if isinstance(e, dict)]
    if isinstance(doc, dict):
        for value in doc.values():
            if isinstance(value, list) and value and all(isinstance(e, dict) for e in value) and "RelativePath" in value[0]:
                return value
    return []


def _metadata(entry: dict[str, Any]) -> dict[str, Any]:
    meta = entry.get("SourceMetadata", entry.get("SrcMetadata"))
    return meta if isinstance(meta, dict) else {}


def path_problem(dataset: str, version: str, path: str) -> str | None:
    """Why ``path`` cannot be a file of the version in the glue's layout (None when it can)."""
    if not path or path.endswith("/") or path == MANIFEST_NAME:
        return "not a file path the landing layout accepts"
    if any(seg in ("", ".", "..") for seg in path.split("/")) or any(ord(c) < 32 for c in path):
        return "empty, '.' or '..' segment or a control character"
    if len(f"dataset={dataset}/version={version}/{path}".encode()) > MAX_KEY_BYTES:
        return "the raw key would pass S3's 1,024 bytes"
    return None


def read_reports(reports: dict[str, Any], dataset: str, version: str) -> RunReport:
    """Files to land and failures, from the detailed reports of one execution (``{key: parsed JSON}``).

    Any entry whose ``TransferStatus``/``VerifyStatus`` is not SUCCESS is a failure (the run is not promoted);
    transferred regular files are the version's files (zero-byte files are left out: the glue refuses them)."""
    files: dict[str, RunFile] = {}
    failures, empty = [], []
    for key in sorted(reports):
        for entry in _entries(reports[key]):
            rel = entry.get("RelativePath")
            status = entry.get("TransferStatus", entry.get("VerifyStatus", entry.get("DeleteStatus", entry.get("SkipStatus"))))
            if status is not None and status != "SUCCESS":
                code = entry.get("ErrorCode") or status
                failures.append(f"{rel}: {code} {entry.get('ErrorDetail') or ''}".strip()[:300])
                continue
            if "TransferStatus" not in entry or _metadata(entry).get("Type", "Regular") != "Regular" or not isinstance(rel, str):
                continue
            path = rel.lstrip("/")
            if (problem := path_problem(dataset, version, path)) is not None:
                failures.append(f"{rel}: {problem}")
                continue
            size = _metadata(entry).get("ContentSize")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                failures.append(f"{rel}: the report gives no ContentSize")
                continue
            if size == 0:
                empty.append(path)
                continue
            vid = entry.get("DstS3VersionId")
            files[path] = RunFile(path=path, size=size, version_id=vid if isinstance(vid, str) and vid else None)
    return RunReport(files=tuple(files[p] for p in sorted(files)), failures=tuple(failures), empty_files=tuple(empty))


def manifest_body(dataset: str, version: str, execution_arn: str, entries: list[dict[str, Any]]) -> bytes:
    """The glue's manifest (``files``: path, sha256, size), with the execution it came from."""
    return json.dumps({"dataset": dataset, "version": version, "source": {"datasync_task_execution": execution_arn},
                       "files": entries}, separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------------------
# Side effects
# --------------------------------------------------------------------------------------------------


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _exists(bucket: str, key: str) -> bool:
    try:
        clients.s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if _code(exc) in _GONE_CODES:
            return False
        raise


def _put_once(bucket: str, key: str, body: bytes) -> bool:
    """Write ``key`` only if it does not exist; False when it did."""
    try:
        clients.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", IfNoneMatch="*")
        return True
    except ClientError as exc:
        if _code(exc) not in ("PreconditionFailed", "412"):
            raise
        return False


def wait_for_report(settings: Settings, execution: Execution) -> dict[str, Any]:
    """DescribeTaskExecution once the report is no longer PENDING (raises RetryableError after the wait)."""
    deadline = time.monotonic() + settings.report_wait_seconds
    while True:
        described = clients.datasync.describe_task_execution(TaskExecutionArn=execution.arn)
        if (described.get("ReportResult") or {}).get("Status") not in (None, "PENDING"):
            return described
        if time.monotonic() >= deadline:
            raise RetryableError(f"the task report of {execution.arn} is still pending")
        time.sleep(min(10, settings.report_wait_seconds))


def report_documents(settings: Settings, execution: Execution) -> dict[str, Any]:
    """The execution's detailed reports (``{key: JSON}``): the documented folder first, else any key under the report
    prefix naming the execution id."""
    prefix = f"{settings.report_prefix}Detailed-Reports/{execution.task_id}/{execution.execution_id}/"
    keys = _keys(settings.report_bucket, prefix) or [
        k for k in _keys(settings.report_bucket, settings.report_prefix) if execution.execution_id in k and "Detailed" in k]
    docs = {}
    for key in keys:
        if key.endswith(".json"):
            body = clients.s3.get_object(Bucket=settings.report_bucket, Key=key)["Body"].read()
            docs[key] = json.loads(body)
    return docs


def _keys(bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in clients.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def _sha256_of(bucket: str, key: str, version_id: str | None = None) -> str:
    head = clients.s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED", **({"VersionId": version_id} if version_id else {}))
    stored = head.get("ChecksumSHA256")
    if stored and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT" and "-" not in stored:
        return base64.b64decode(stored).hex()
    digest = hashlib.sha256()
    body = clients.s3.get_object(Bucket=bucket, Key=key, **({"VersionId": version_id} if version_id else {}))["Body"]
    for chunk in iter(lambda: body.read(8 * 1024 * 1024), b""):
        digest.update(chunk)
    return digest.hexdigest()


def land_file(settings: Settings, execution: Execution, version: str, f: RunFile) -> str:
    """Copy one staged file (the version DataSync wrote) to ``<dataset>/<version>/<path>`` once; its SHA-256 (hex)."""
    bucket = settings.landing_bucket
    target = f"{settings.dataset}/{version}/{f.path}"
    source = {"Bucket": bucket, "Key": settings.staging_prefix + f.path, **({"VersionId": f.version_id} if f.version_id else {})}
    tagging = f"{TAG_EXECUTION.replace(':', '%3A')}={execution.execution_id}"
    if f.size > SINGLE_COPY_LIMIT:
        if _exists(bucket, target):
            return _sha256_of(bucket, target)
        if f.size > settings.max_hash_bytes:
            raise RetryableError(f"{target}: {f.size} bytes is more than MAX_HASH_BYTES ({settings.max_hash_bytes})")
        sha = _sha256_of(bucket, source["Key"], f.version_id)
        clients.s3.copy(source, bucket, target)  # managed multipart copy (tags are not carried by every path)
        clients.s3.put_object_tagging(Bucket=bucket, Key=target, Tagging={"TagSet": [{"Key": TAG_EXECUTION, "Value": execution.execution_id}]})
        return sha
    try:
        out = clients.s3.copy_object(CopySource=source, Bucket=bucket, Key=target, ChecksumAlgorithm="SHA256",
                                     IfNoneMatch="*", Tagging=tagging, TaggingDirective="REPLACE")
        return base64.b64decode(out["CopyObjectResult"]["ChecksumSHA256"]).hex()
    except ClientError as exc:
        if _code(exc) not in ("PreconditionFailed", "412"):
            raise  # 409 (a concurrent copy) and 5xx: the record is retried
    return _sha256_of(bucket, target)  # an earlier delivery copied it


def reject(settings: Settings, execution: Execution, version: str, reasons: list[str]) -> dict[str, Any]:
    """Record and notify (once) a run that is not promoted. Nothing is deleted: staged files stay staged."""
    key = f"{settings.rejected_prefix}{version}.json"
    if _exists(settings.landing_bucket, key):
        return {"outcome": "rejected", "version": version, "duplicate": True}
    summary = f"DataSync run {execution.execution_id} of dataset {settings.dataset} was NOT promoted ({len(reasons)} problem(s))"
    if settings.alarm_topic_arn:  # notify before recording: a failed publish is retried with the record
        clients.sns.publish(TopicArn=settings.alarm_topic_arn, Subject=summary[:99],
                            Message=json.dumps({"execution": execution.arn, "dataset": settings.dataset, "version": version,
                                                "reasons": reasons[:50]}, indent=1)[:200_000])
    _put_once(settings.landing_bucket, key, json.dumps({
        "execution": execution.arn, "dataset": settings.dataset, "version": version, "reasons": reasons[:1000],
        "reason_count": len(reasons), "staging": f"s3://{settings.landing_bucket}/{settings.staging_prefix}",
    }).encode())
    logger.warning("run rejected", extra={"execution": execution.arn, "reasons": reasons[:20]})
    return {"outcome": "rejected", "version": version, "reasons": reasons[:20]}


def process_event(event: Any, settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or Settings.from_env()
    execution = parse_event(event)
    if execution.task_arn != settings.task_arn:
        raise MalformedEventError(f"the event is about task {execution.task_arn}, this function serves {settings.task_arn}")
    if execution.state != "SUCCESS":  # ERROR goes to the alarm topic through the task's error rule
        logger.info("not a successful execution: nothing to land", extra={"execution": execution.arn, "state": execution.state})
        return {"outcome": "ignored", "state": execution.state}
    described = wait_for_report(settings, execution)
    version = version_name(described["StartTime"], execution.execution_id)
    manifest_key = f"{settings.dataset}/{version}/{MANIFEST_NAME}"
    if _exists(settings.landing_bucket, manifest_key):
        return {"outcome": "duplicate", "version": version}
    if described.get("Status") != "SUCCESS":
        return reject(settings, execution, version, [f"DescribeTaskExecution says {described.get('Status')!r}, not SUCCESS"])
    report = described.get("ReportResult") or {}
    if report.get("Status") != "SUCCESS":
        return reject(settings, execution, version, [f"task report {report.get('Status')}: {report.get('ErrorCode')} {report.get('ErrorDetail')}"])
    docs = report_documents(settings, execution)
    if not docs:
        return reject(settings, execution, version, ["no detailed task report found for the execution"])
    run = read_reports(docs, settings.dataset, version)
    if run.failures:
        return reject(settings, execution, version, list(run.failures))
    if not run.files:
        logger.info("the run transferred no file: no new version", extra={"execution": execution.arn})
        return {"outcome": "empty", "version": version, "empty_files": list(run.empty_files)}
    entries = [{"path": f.path, "sha256": land_file(settings, execution, version, f), "size": f.size} for f in run.files]
    _put_once(settings.landing_bucket, manifest_key, manifest_body(settings.dataset, version, execution.arn, entries))
    logger.info("run landed as a new version", extra={"dataset": settings.dataset, "version": version, "files": len(entries)})
    result = {"outcome": "landed", "dataset": settings.dataset, "version": version, "files": len(entries),
              "manifest": f"s3://{settings.landing_bucket}/{manifest_key}"}
    if run.empty_files:
        result["empty_files_left_out"] = list(run.empty_files)
    return result


def reconcile(settings: Settings | None = None, max_executions: int = RECONCILE_MAX_EXECUTIONS) -> dict[str, Any]:
    """Land every SUCCESS execution of the task whose event was lost (idempotent: landed or rejected runs answer
    ``duplicate``). A report still pending is left for the next run."""
    settings = settings or Settings.from_env()
    outcomes: dict[str, int] = {}
    seen, token = 0, None
    while seen < max_executions:
        page = clients.datasync.list_task_executions(TaskArn=settings.task_arn, MaxResults=100, **({"NextToken": token} if token else {}))
        for entry in page.get("TaskExecutions", []):
            if entry.get("Status") != "SUCCESS" or seen >= max_executions:
                continue
            seen += 1
            event = {"source": EVENT_SOURCE, "detail-type": EVENT_DETAIL_TYPE, "resources": [entry["TaskExecutionArn"]],
                     "detail": {"State": "SUCCESS"}}
            try:
                result = process_event(event, settings)
                outcome = "duplicate" if result.get("duplicate") else result["outcome"]
            except RetryableError:
                outcome = "pending"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        token = page.get("NextToken")
        if not token:
            break
    logger.info("reconciled", extra={"outcomes": outcomes})
    return {"outcome": "reconciled", "executions": seen, "outcomes": outcomes}


@logger.inject_lambda_context(clear_state=True)
def handler(event: Any, context: Any) -> dict[str, Any]:
    """An SQS batch of EventBridge events (failed records reported for redelivery), one event, or the reconciler's
    input."""
    if event == RECONCILE_INPUT:
        return reconcile()
    if isinstance(event, dict) and isinstance(event.get("Records"), list):
        failures = []
        for record in event["Records"]:
            try:
                process_event(json.loads(record["body"]))
            except Exception:  # noqa: BLE001 - every failure is logged and the record redelivered, then dead-lettered
                logger.exception("record failed", extra={"message_id": record.get("messageId")})
                failures.append({"itemIdentifier": record.get("messageId")})
        return {"batchItemFailures": failures}
    return process_event(event)
