"""DataSync completion: each successful DataSync execution becomes a NEW dataset version in the landing zone.

A DataSync S3 location has one fixed subdirectory and StartTaskExecution cannot override the destination, so the
task writes into a fixed staging prefix and this handler, on the execution's ``SUCCESS`` event, lands that run's
files (and only those, from the task report) as their own version, then hands the version to the landing glue by
writing its manifest. The glue validates, promotes to raw, catalogues and declares the version ready (its ready
marker and ``Dataset Version Ready`` event start the retrain pipeline); this handler promotes nothing itself.

Landing key layout (``DataSyncTask(dataset=...)``; the glue ignores ``_datasync/``)::

    _datasync/<dataset>/<task>/staging/<path>            where the DataSync task writes (its S3 location)
    <dataset>/<version>/<path>                           the run's files, copied here (copied only when absent)
    <dataset>/<version>/_manifest.json                   written LAST: the glue's manifest of the version
    _datasync/<dataset>/<task>/landed/<version>.json     a run that became a version (the reconciler's record)
    _datasync/<dataset>/<task>/rejected/<version>.json   a run that was not promoted, and why
    _datasync/<dataset>/<task>/empty/<version>.json      a run that transferred no file (no version)

``<version>`` is ``<UTC start time YYYYMMDDTHHMMSSZ>-<execution id>`` (``DescribeTaskExecution.StartTime``): one
version per execution, sorted by start time, and the same for every delivery of the same event.

- Idempotent: a file is copied only when its target is absent (HeadObject first; the copy is pinned to the staged
  object's ``VersionId``, so two racing deliveries write identical bytes); the manifest is written once (``If-None-Match: *``:
  the parameter where the runtime's botocore models it, else the same HTTP header, atomic either way); a redelivered or duplicated event finds the manifest and does nothing; a run interrupted half-way
  resumes. Requests use only parameters of botocore 1.34.0's models (the oldest SDK the Lambda runtime may ship;
  a test checks every request against them), never CopyObject ``IfNoneMatch`` (botocore 1.41+).
- Never promotes a failed or partial run: only the ``SUCCESS`` state is acted on (``ERROR`` reaches the alarm topic
  through the task's error rule); a run whose report lists any file that failed to transfer or verify, a report that
  DataSync could not create, or a path the landing layout cannot hold, is REJECTED: the alarm topic is notified once
  and ``rejected/<version>.json`` records the reasons. Staged files stay where they are: nothing is ever deleted.
- The manifest's SHA-256 of each file is computed by S3 during the copy (``ChecksumAlgorithm=SHA256``; above
  CopyObject's 5 GiB, by streaming the staged object once and storing the digest in the target's metadata
  ``mlinfra-sha256``, read back on a retry), so the glue's checksum check proves that landing holds the bytes DataSync
  wrote and verified. A file above 5 GiB and ``MAX_HASH_BYTES`` rejects the run (permanent, notified).

Task report (``TaskReportConfig``: STANDARD, SUCCESSES_AND_ERRORS, Skipped and Deleted overridden to ERRORS_ONLY,
object version ids INCLUDED): the detailed reports of an execution are JSON objects whose list (``Transferred``,
``Verified``, ...) holds one entry per file with ``RelativePath``, ``TransferStatus``/``VerifyStatus``, the source
metadata and ``DstS3VersionId`` (DataSync user guide, "task reports"). Both task modes are read: Basic mode (ours:
the construct pins ``TaskMode: BASIC``) writes ``SrcMetadata`` with ``Type: "Regular"``, paths with a leading ``/``,
and failures as ``FailureCode`` (integer) / ``FailureReason``; Enhanced mode writes ``SourceMetadata`` with
``Type: "Object"``, paths without ``/`` and ``ErrorCode``/``ErrorDetail``. Reports are looked up under
``<report prefix>Detailed-Reports/<task id>/<execution id>/`` and, failing that, anywhere under the report prefix by
the execution id, and read one file at a time (docs/ingestion.md says what was verified only offline).

Invocation: an SQS batch whose bodies are EventBridge ``DataSync Task Execution State Change`` events (partial batch
failures reported; a report still being written fails the record so SQS redelivers it), one event directly, or the
reconciler's scheduled input ``{"mlinfra": "reconcile"}``: EventBridge delivers DataSync's events best effort, so
the reconciler pages through all of the task's executions (ListTaskExecutions; its order is not documented), skips
those with a landed/rejected/empty record, and runs at most ``RECONCILE_MAX_EXECUTIONS`` of the others per sweep
through the same idempotent path (the rest carry on next sweep; one failing execution does not stop the sweep). Configuration: environment variables (:class:`Settings`).
"""

from __future__ import annotations

import base64
import contextvars
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
#: At most this many unsettled SUCCESS executions are processed per reconciler sweep (the rest wait for the next).
RECONCILE_MAX_EXECUTIONS = 50
#: At most this many ListTaskExecutions pages (100 executions each) are read per sweep.
RECONCILE_MAX_PAGES = 200
MANIFEST_NAME = "_manifest.json"
#: The landing prefix the glue ignores: DataSync staging areas and rejection records live under it.
DATASYNC_PREFIX = "_datasync/"
TAG_EXECUTION = "mlinfra:datasync-execution"
#: User metadata of a landed file above 5 GiB: its SHA-256 (hex), computed once before the copy.
SHA256_METADATA = "mlinfra-sha256"
#: Report entry ``Type`` values that are files: Basic mode "Regular", Enhanced mode "Object" (task-reports page).
FILE_TYPES = ("Regular", "Object")
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
    """The task report is not written yet: fail the record, SQS redelivers it."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """From the environment. Required: DATASET, LANDING_BUCKET, STAGING_PREFIX, REJECTED_PREFIX, REPORT_BUCKET,
    REPORT_PREFIX, TASK_ARN. Optional: ALARM_TOPIC_ARN (notified of rejected runs), MAX_HASH_BYTES (largest file
    above 5 GiB hashed here; default 10 GiB), REPORT_WAIT_SECONDS (how long one delivery waits for a PENDING report
    before failing the record for a redelivery; default 60), LANDED_PREFIX and EMPTY_PREFIX (records of landed and
    empty runs; default: ``landed/`` and ``empty/`` beside REJECTED_PREFIX's ``rejected/``)."""

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
    landed_prefix: str = ""
    empty_prefix: str = ""

    def __post_init__(self) -> None:
        # Records of settled runs live beside the rejected ones unless given (LANDED_PREFIX, EMPTY_PREFIX).
        base = self.rejected_prefix[: -len("rejected/")] if self.rejected_prefix.endswith("rejected/") else self.rejected_prefix
        if not self.landed_prefix:
            object.__setattr__(self, "landed_prefix", f"{base}landed/")
        if not self.empty_prefix:
            object.__setattr__(self, "empty_prefix", f"{base}empty/")

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
            landed_prefix=env.get("LANDED_PREFIX", ""), empty_prefix=env.get("EMPTY_PREFIX", ""),
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


def _failure(entry: dict[str, Any], status: str) -> str:
    """Why an entry failed: Basic mode's ``FailureCode`` (integer) and ``FailureReason``, Enhanced mode's
    ``ErrorCode`` and ``ErrorDetail``, else the status itself."""
    code = entry.get("FailureCode", entry.get("ErrorCode"))
    detail = entry.get("FailureReason", entry.get("ErrorDetail"))
    parts = [status] + [str(v) for v in (code, detail) if v not in (None, "")]
    return " ".join(parts)


class ReportReader:
    """Files to land and failures, fed one detailed report document at a time (:meth:`add`), so only one report file
    is in memory at once.

    Any entry whose ``TransferStatus``/``VerifyStatus``/``DeleteStatus``/``SkipStatus`` is not SUCCESS is a failure
    (the run is not promoted); transferred files (``Type`` "Regular" in Basic mode, "Object" in Enhanced mode) are the
    version's files (zero-byte files are left out: the glue refuses them)."""

    def __init__(self, dataset: str, version: str) -> None:
        self.dataset, self.version = dataset, version
        self._files: dict[str, RunFile] = {}
        self._failures: list[str] = []
        self._empty: list[str] = []

    def add(self, doc: Any) -> None:
        for entry in _entries(doc):
            self._entry(entry)

    def _entry(self, entry: dict[str, Any]) -> None:
        rel = entry.get("RelativePath")
        status = entry.get("TransferStatus", entry.get("VerifyStatus", entry.get("DeleteStatus", entry.get("SkipStatus"))))
        if status is not None and status != "SUCCESS":
            self._failures.append(f"{rel}: {_failure(entry, str(status))}"[:300])
            return
        if "TransferStatus" not in entry or _metadata(entry).get("Type", "Regular") not in FILE_TYPES or not isinstance(rel, str):
            return
        path = rel.lstrip("/")
        if (problem := path_problem(self.dataset, self.version, path)) is not None:
            self._failures.append(f"{rel}: {problem}")
            return
        size = _metadata(entry).get("ContentSize")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            self._failures.append(f"{rel}: the report gives no ContentSize")
            return
        if size == 0:
            self._empty.append(path)
            return
        vid = entry.get("DstS3VersionId")
        self._files[path] = RunFile(path=path, size=size, version_id=vid if isinstance(vid, str) and vid else None)

    def result(self) -> RunReport:
        return RunReport(files=tuple(self._files[p] for p in sorted(self._files)), failures=tuple(self._failures),
                         empty_files=tuple(self._empty))


def read_reports(reports: dict[str, Any], dataset: str, version: str) -> RunReport:
    """:class:`ReportReader` over ``{key: parsed JSON}`` (in key order)."""
    reader = ReportReader(dataset, version)
    for key in sorted(reports):
        reader.add(reports[key])
    return reader.result()


def too_large(files: tuple[RunFile, ...], max_hash_bytes: int) -> list[str]:
    """Files this handler cannot land: above CopyObject's 5 GiB (so S3 computes no checksum) and above
    ``MAX_HASH_BYTES`` (so the handler does not stream them either). A permanent reason to reject the run."""
    return [f"{f.path}: {f.size} bytes is above CopyObject's {SINGLE_COPY_LIMIT} and MAX_HASH_BYTES ({max_hash_bytes}); "
            "raise MAX_HASH_BYTES (the function streams the file once to hash it) or split the file"
            for f in files if f.size > SINGLE_COPY_LIMIT and f.size > max_hash_bytes]


def manifest_body(dataset: str, version: str, execution_arn: str, entries: list[dict[str, Any]]) -> bytes:
    """The glue's manifest (``files``: path, sha256, size), with the execution it came from."""
    return json.dumps({"dataset": dataset, "version": version, "source": {"datasync_task_execution": execution_arn},
                       "files": entries}, separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------------------
# Side effects
# --------------------------------------------------------------------------------------------------


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# Create-only writes on any runtime botocore: a copy of landing_glue/handler.py's three functions (handlers import
# no other handler; tests/handlers/test_write_once.py checks the copies are identical).
_IF_NONE_MATCH: contextvars.ContextVar[bool] = contextvars.ContextVar("mlinfra_if_none_match", default=False)


def _models_member(client: Any, operation: str, member: str) -> bool:
    """Whether the client's (the runtime's botocore) model of ``operation`` has ``member``."""
    return member in client.meta.service_model.operation_model(operation).input_shape.members


def _send_if_none_match(params: dict[str, Any], **_: Any) -> None:
    """botocore ``before-call`` handler: the header, for the calls :func:`_write_once` makes only."""
    if _IF_NONE_MATCH.get():
        params["headers"]["If-None-Match"] = "*"


def _write_once(client: Any, operation: str, method: str, **params: Any) -> dict[str, Any]:
    """``client.<method>(**params)`` (S3 ``operation``: PutObject, CopyObject, CompleteMultipartUpload) only if the
    key does not exist: ``IfNoneMatch="*"`` where the client models it, else the same ``If-None-Match: *`` header.
    S3 answers 412 PreconditionFailed when the key exists, 409 ConditionalRequestConflict on a concurrent write."""
    if _models_member(client, operation, "IfNoneMatch"):
        return getattr(client, method)(**params, IfNoneMatch="*")
    client.meta.events.register(f"before-call.s3.{operation}", _send_if_none_match,
                                unique_id=f"mlinfra-if-none-match-{operation}")
    token = _IF_NONE_MATCH.set(True)
    try:
        return getattr(client, method)(**params)
    finally:
        _IF_NONE_MATCH.reset(token)


def _put_once(bucket: str, key: str, body: bytes) -> bool:
    """Write ``key`` only if it does not exist (:func:`_write_once`, atomic on any runtime botocore); False when it
    did."""
    try:
        _write_once(clients.s3, "PutObject", "put_object", Bucket=bucket, Key=key, Body=body,
                    ContentType="application/json")
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


def report_keys(settings: Settings, execution: Execution) -> list[str]:
    """The execution's detailed report files: the documented folder first, else any key under the report prefix naming
    the execution id."""
    prefix = f"{settings.report_prefix}Detailed-Reports/{execution.task_id}/{execution.execution_id}/"
    keys = _keys(settings.report_bucket, prefix) or [
        k for k in _keys(settings.report_bucket, settings.report_prefix) if execution.execution_id in k and "Detailed" in k]
    return sorted(k for k in keys if k.endswith(".json"))


def read_run(settings: Settings, execution: Execution, version: str) -> RunReport | None:
    """The run's files and failures from its detailed reports, read one file at a time (None: no report found).
    Skipped and Deleted reports are ERRORS_ONLY (the construct's overrides), so they hold only failures."""
    keys = report_keys(settings, execution)
    if not keys:
        return None
    reader = ReportReader(settings.dataset, version)
    for key in keys:
        body = clients.s3.get_object(Bucket=settings.report_bucket, Key=key)["Body"]
        try:
            doc = json.load(body)
        finally:
            body.close()
        reader.add(doc)
        del doc
    return reader.result()


def _keys(bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in clients.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def _head(bucket: str, key: str, **extra: Any) -> dict[str, Any] | None:
    try:
        return clients.s3.head_object(Bucket=bucket, Key=key, **extra)
    except ClientError as exc:
        if _code(exc) in _GONE_CODES:
            return None
        raise


def _sha256_from_head(head: dict[str, Any]) -> str | None:
    """The SHA-256 (hex) a head already tells: the stored full-object checksum, or our metadata on a large copy."""
    stored = head.get("ChecksumSHA256")
    if stored and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT" and "-" not in stored:
        return base64.b64decode(stored).hex()
    meta = (head.get("Metadata") or {}).get(SHA256_METADATA)
    return meta if isinstance(meta, str) and re.fullmatch(r"[0-9a-f]{64}", meta) else None


def _stream_sha256(bucket: str, key: str, version_id: str | None = None) -> str:
    digest = hashlib.sha256()
    body = clients.s3.get_object(Bucket=bucket, Key=key, **({"VersionId": version_id} if version_id else {}))["Body"]
    for chunk in iter(lambda: body.read(8 * 1024 * 1024), b""):
        digest.update(chunk)
    return digest.hexdigest()


def land_file(settings: Settings, execution: Execution, version: str, f: RunFile) -> str:
    """Copy one staged file (the version DataSync wrote) to ``<dataset>/<version>/<path>`` unless already there; its
    SHA-256 (hex). The target is looked up first (HeadObject) and the copy is pinned to the staged ``VersionId``, so a
    repeated or racing copy writes the same bytes; no conditional-copy parameter is needed (CopyObject's
    ``IfNoneMatch`` is absent from older botocore models the Lambda runtime may ship)."""
    bucket = settings.landing_bucket
    target = f"{settings.dataset}/{version}/{f.path}"
    source = {"Bucket": bucket, "Key": settings.staging_prefix + f.path, **({"VersionId": f.version_id} if f.version_id else {})}
    existing = _head(bucket, target, ChecksumMode="ENABLED")
    if existing is not None:  # an earlier delivery copied it: no copy, and no re-hash when the digest is recorded
        return _sha256_from_head(existing) or _stream_sha256(bucket, target)
    if f.size > SINGLE_COPY_LIMIT:
        if f.size > settings.max_hash_bytes:  # process_event rejects such runs before copying; never loop on it
            raise ValueError(too_large((f,), settings.max_hash_bytes)[0])
        staged = clients.s3.head_object(Bucket=bucket, Key=source["Key"], **({"VersionId": f.version_id} if f.version_id else {}))
        sha = _stream_sha256(bucket, source["Key"], f.version_id)
        extra = {"Metadata": {SHA256_METADATA: sha}, "MetadataDirective": "REPLACE",
                 **({"ContentType": staged["ContentType"]} if staged.get("ContentType") else {})}
        clients.s3.copy(source, bucket, target, ExtraArgs=extra)  # managed multipart copy (tags are not carried by every path)
        clients.s3.put_object_tagging(Bucket=bucket, Key=target, Tagging={"TagSet": [{"Key": TAG_EXECUTION, "Value": execution.execution_id}]})
        return sha
    tagging = f"{TAG_EXECUTION.replace(':', '%3A')}={execution.execution_id}"
    out = clients.s3.copy_object(CopySource=source, Bucket=bucket, Key=target, ChecksumAlgorithm="SHA256",
                                 Tagging=tagging, TaggingDirective="REPLACE")
    return base64.b64decode(out["CopyObjectResult"]["ChecksumSHA256"]).hex()


def _record(settings: Settings, prefix: str, version: str, body: dict[str, Any]) -> bool:
    return _put_once(settings.landing_bucket, f"{prefix}{version}.json", json.dumps(body).encode())


def reject(settings: Settings, execution: Execution, version: str, reasons: list[str]) -> dict[str, Any]:
    """Record and notify (once) a run that is not promoted. Nothing is deleted: staged files stay staged."""
    key = f"{settings.rejected_prefix}{version}.json"
    if _head(settings.landing_bucket, key) is not None:
        return {"outcome": "rejected", "version": version, "duplicate": True}
    summary = f"DataSync run {execution.execution_id} of dataset {settings.dataset} was NOT promoted ({len(reasons)} problem(s))"
    if settings.alarm_topic_arn:  # notify before recording: a failed publish is retried with the record
        clients.sns.publish(TopicArn=settings.alarm_topic_arn, Subject=summary[:99],
                            Message=json.dumps({"execution": execution.arn, "dataset": settings.dataset, "version": version,
                                                "reasons": reasons[:50]}, indent=1)[:200_000])
    _record(settings, settings.rejected_prefix, version, {
        "execution": execution.arn, "dataset": settings.dataset, "version": version, "reasons": reasons[:1000],
        "reason_count": len(reasons), "staging": f"s3://{settings.landing_bucket}/{settings.staging_prefix}",
    })
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
    landed_record = {"execution": execution.arn, "dataset": settings.dataset, "version": version,
                     "manifest": f"s3://{settings.landing_bucket}/{manifest_key}"}
    if _head(settings.landing_bucket, manifest_key) is not None:
        _record(settings, settings.landed_prefix, version, landed_record)  # a crash after the manifest left none
        return {"outcome": "duplicate", "version": version}
    if _head(settings.landing_bucket, f"{settings.empty_prefix}{version}.json") is not None:
        return {"outcome": "empty", "version": version, "duplicate": True}
    if described.get("Status") != "SUCCESS":
        return reject(settings, execution, version, [f"DescribeTaskExecution says {described.get('Status')!r}, not SUCCESS"])
    report = described.get("ReportResult") or {}
    if report.get("Status") != "SUCCESS":
        return reject(settings, execution, version, [f"task report {report.get('Status')}: {report.get('ErrorCode')} {report.get('ErrorDetail')}"])
    run = read_run(settings, execution, version)
    if run is None:
        return reject(settings, execution, version, ["no detailed task report found for the execution"])
    if run.failures:
        return reject(settings, execution, version, list(run.failures))
    if problems := too_large(run.files, settings.max_hash_bytes):
        return reject(settings, execution, version, problems)
    if not run.files:
        logger.info("the run transferred no file: no new version", extra={"execution": execution.arn})
        _record(settings, settings.empty_prefix, version, {"execution": execution.arn, "dataset": settings.dataset,
                                                           "version": version, "empty_files": list(run.empty_files)[:1000]})
        return {"outcome": "empty", "version": version, "empty_files": list(run.empty_files)}
    entries = [{"path": f.path, "sha256": land_file(settings, execution, version, f), "size": f.size} for f in run.files]
    _put_once(settings.landing_bucket, manifest_key, manifest_body(settings.dataset, version, execution.arn, entries))
    _record(settings, settings.landed_prefix, version, landed_record)
    logger.info("run landed as a new version", extra={"dataset": settings.dataset, "version": version, "files": len(entries)})
    result = {"outcome": "landed", "dataset": settings.dataset, "version": version, "files": len(entries),
              "manifest": f"s3://{settings.landing_bucket}/{manifest_key}"}
    if run.empty_files:
        result["empty_files_left_out"] = list(run.empty_files)
    return result


_RECORD_EXECUTION_RE = re.compile(r"-(exec-[0-9a-f]{17})\.json$")


def settled_executions(settings: Settings) -> set[str]:
    """Execution ids with a landed, rejected or empty record (the reconciler skips them without any request)."""
    ids = set()
    for prefix in (settings.landed_prefix, settings.rejected_prefix, settings.empty_prefix):
        for key in _keys(settings.landing_bucket, prefix):
            if match := _RECORD_EXECUTION_RE.search(key):
                ids.add(match.group(1))
    return ids


def reconcile(settings: Settings | None = None, max_executions: int = RECONCILE_MAX_EXECUTIONS,
              max_pages: int = RECONCILE_MAX_PAGES) -> dict[str, Any]:
    """Land every SUCCESS execution of the task whose event was lost. Pages through all executions (ListTaskExecutions
    documents no order), skips those with a record, processes at most ``max_executions`` others per sweep (the rest:
    next sweep) and catches errors per execution. A report still pending is left for the next sweep."""
    settings = settings or Settings.from_env()
    settled = settled_executions(settings)
    outcomes: dict[str, int] = {}
    processed, deferred, token, pages = 0, 0, None, 0
    while pages < max_pages:
        page = clients.datasync.list_task_executions(TaskArn=settings.task_arn, MaxResults=100, **({"NextToken": token} if token else {}))
        pages += 1
        for entry in page.get("TaskExecutions", []):
            arn = entry.get("TaskExecutionArn", "")
            if entry.get("Status") != "SUCCESS" or arn.rsplit("/", 1)[-1] in settled:
                continue
            if processed >= max_executions:
                deferred += 1
                continue
            processed += 1
            event = {"source": EVENT_SOURCE, "detail-type": EVENT_DETAIL_TYPE, "resources": [arn], "detail": {"State": "SUCCESS"}}
            try:
                result = process_event(event, settings)
                outcome = "duplicate" if result.get("duplicate") else result["outcome"]
            except RetryableError:
                outcome = "pending"
            except Exception:  # noqa: BLE001 - one bad execution must not stop the sweep; the next sweep retries it
                logger.exception("reconciling an execution failed", extra={"execution": arn})
                outcome = "error"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        token = page.get("NextToken")
        if not token:
            break
    result = {"outcome": "reconciled", "executions": processed, "outcomes": outcomes}
    if deferred or token:
        result["deferred"] = deferred
        result["complete"] = False
    logger.info("reconciled", extra=result)
    if outcomes.get("error"):
        logger.error("some executions could not be reconciled (logged above); the next sweep retries them",
                     extra={"errors": outcomes["error"]})
    return result


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
