"""Landing-zone glue: validate, tag, promote to raw and catalogue every object that lands.

Landing key layout (see docs/ingestion.md)::

    <dataset>/<version>/<relative path>          a data file of one dataset version
    <dataset>/<version>/_manifest.json           the optional manifest of that version
    _quarantine/<original key>/<version id>      copies of rejected objects (written by this handler)
    _datasync/...                                DataSync staging areas and rejected runs (ignored here; the
                                                 datasync_promote handler lands each run as <dataset>/<version>/)

``<dataset>`` and ``<version>`` are 1-128 characters of letters, digits, ``.``, ``_`` and ``-``. A valid file is
copied to the raw bucket under ``dataset=<dataset>/version=<version>/<relative path>`` (the lake's
``dataset_prefix``), tagged ``mlinfra:dataset`` / ``mlinfra:dataset-version``, and recorded in the DynamoDB
catalog. A rejected object is COPIED to ``_quarantine/<key>/<landing version id>`` in the landing bucket (its
own key: a second rejected upload to the same key never hides the first) with the reason as the tag
``mlinfra:quarantine-reason``; the original is tagged too and stays where it is: nothing is ever deleted. A
quarantine key longer than S3's 1,024 bytes becomes ``_quarantine/_long/<sha256 of key>/<version id>`` with the
original key (base64) in the ``mlinfra-source-key`` metadata.

Correct under at-least-once, duplicated, concurrent and partially failed deliveries (property-tested with
injected faults at every AWS call, tests/handlers/test_glue_properties.py):

- Every copy (raw and quarantine) is a conditional write, ``If-None-Match: *`` (S3 conditional writes, on any
  runtime botocore: :func:`_write_once`): a raw key
  is written once, so raw holds exactly one version per file. The copy names the landing version (and its ETag),
  so what is copied is what was hashed. Tags and metadata are part of the copy (also of the multipart copy above
  5 GiB), so no untagged object is ever visible.
- The catalog entry of a file is written only by the delivery whose landing version is the one raw holds, so the
  catalog and raw agree under any interleaving; a different upload that loses the race is quarantined as
  ``version-immutable`` (or reported ``duplicate`` when its content is the same).
- A manifest is stored as a header item plus compressed shards (``<version>#MANIFEST#<digest>#<n>``), never one
  item, so a manifest of 100,000 files stays far below DynamoDB's 400 KB item limit. Readiness is a counter on the
  header (``ok_count``) advanced in one transaction with the file's ``counted`` flag, so each matching file counts
  exactly once whichever of (file, manifest, redelivery, reconciler) gets there first; every writer re-reads the
  other side after its own write, so some delivery always sees both.
- ``Dataset Version Ready`` is sent by any delivery (or the reconciler) that finds ``ok_count == file_count`` and
  the marker ``#READY#<version>`` not yet ``event_sent``: at least once, deduplicated by consumers on
  (dataset, version). PutEvents reporting a failed entry raises, so the message is redelivered.
- A periodic reconciler (``{"mlinfra": "reconcile"}``, an EventBridge schedule in the ingestion stack) finishes
  versions whose deliveries were all lost after their catalog writes.

Manifest: ``{"files": [{"path": "train/a.csv", "sha256": "<64 hex>", "size": 123}, ...]}`` (``size``
optional; ``dataset``/``version`` optional and, when present, must match the key). A manifest that is not JSON,
nested too deeply or otherwise invalid is quarantined (``invalid-manifest``), never retried.

Invocation: an SQS batch (records whose body is an EventBridge event; partial batch failures reported), one
EventBridge event directly, or the reconciler input. Configuration comes from environment variables (see
``Settings``); a bad value raises :class:`SettingsError` naming the variable.
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
import urllib.parse
import zlib
from typing import Any, Iterable

import boto3
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

logger = Logger()

MANIFEST_NAME = "_manifest.json"
QUARANTINE_PREFIX = "_quarantine/"
#: DataSync tasks stage their runs here; ``mlinfra/lambdas/datasync_promote`` lands each run as a version.
DATASYNC_PREFIX = "_datasync/"
EVENT_SOURCE = "mlinfra.ingestion"
READY_DETAIL_TYPE = "Dataset Version Ready"
RECONCILE_INPUT = {"mlinfra": "reconcile"}
TAG_DATASET = "mlinfra:dataset"
TAG_VERSION = "mlinfra:dataset-version"
TAG_REASON = "mlinfra:quarantine-reason"
TAG_STATUS = "mlinfra:status"
META_SOURCE_VERSION = "mlinfra-source-version-id"
META_SOURCE_KEY = "mlinfra-source-key"
META_SHA256 = "mlinfra-sha256"
SINGLE_COPY_LIMIT = 5 * 1024**3  # CopyObject's limit; larger objects use a multipart copy
MULTIPART_PART_BYTES = 512 * 1024**2
MAX_PARTS = 10_000  # S3 multipart upload limit
MAX_KEY_BYTES = 1024  # S3 object key limit (rule ingestion.s3-key-length)
MAX_SHARD_BYTES = 300 * 1024  # well below DynamoDB's 400 KB item limit (rule ingestion.dynamodb-item-size)
TRANSACT_MAX_ITEMS = 100  # TransactWriteItems limit
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_MAX_MANIFEST_BYTES = 64 * 1024 * 1024
_GONE_CODES = ("404", "NoSuchKey", "NotFound", "NoSuchVersion")


class MalformedEventError(ValueError):
    """The event is not an S3 'Object Created' (or DataSync state change) EventBridge event."""


class SettingsError(ValueError):
    """An environment variable of the function has a value it cannot use (the message names it)."""


class RetryableError(RuntimeError):
    """A transient condition (a failed PutEvents entry, a source changed under a copy): fail the record, retry."""


@dataclasses.dataclass(frozen=True)
class DatasetRule:
    """What one registered dataset accepts."""

    extensions: tuple[str, ...] = ()  # lower-case, with the dot; empty: any extension
    content_types: tuple[str, ...] = ()  # empty: any content type


def _parse_datasets(raw: str) -> dict[str, DatasetRule]:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise SettingsError(f"DATASETS must be a JSON object of dataset names to rules, got: {raw[:100]!r} ({exc})") from None
    if not isinstance(doc, dict):
        raise SettingsError(f"DATASETS must be a JSON object of dataset names to rules, got: {type(doc).__name__}")
    datasets = {}
    for name, rule in doc.items():
        if not isinstance(rule, dict):
            raise SettingsError(f"DATASETS[{name!r}] must be an object with 'extensions'/'content_types', got: {rule!r}"[:300])
        lists = {}
        for field in ("extensions", "content_types"):
            value = rule.get(field, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise SettingsError(f"DATASETS[{name!r}].{field} must be a list of strings, got: {value!r}"[:300])
            lists[field] = tuple(v.lower() for v in value)
        datasets[name] = DatasetRule(**lists)
    return datasets


def _parse_positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a positive whole number of bytes, got: {raw[:50]!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be a positive whole number of bytes, got: {value}")
    return value


@dataclasses.dataclass(frozen=True)
class Settings:
    """Handler configuration, from the environment.

    RAW_BUCKET, CATALOG_TABLE: required. EVENT_BUS_NAME: bus of the ready event (default ``default``).
    DATASETS: JSON ``{"<name>": {"extensions": [".csv"], "content_types": ["text/csv"]}}``; a dataset not listed
    is quarantined as ``unknown-dataset`` unless ALLOW_UNREGISTERED_DATASETS is ``true`` (then DEFAULT_EXTENSIONS,
    a comma list, applies). MAX_HASH_BYTES: the largest object hashed in the function (bytes, default 10 GiB).
    """

    raw_bucket: str
    catalog_table: str
    event_bus_name: str = "default"
    datasets: dict[str, DatasetRule] = dataclasses.field(default_factory=dict)
    allow_unregistered: bool = False
    default_extensions: tuple[str, ...] = ()
    max_hash_bytes: int = 10 * 1024**3

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        missing = [k for k in ("RAW_BUCKET", "CATALOG_TABLE") if not env.get(k)]
        if missing:
            raise SettingsError(f"landing glue: environment variable(s) {missing} must be set")
        allow = env.get("ALLOW_UNREGISTERED_DATASETS", "false").strip().lower()
        if allow not in ("true", "false", ""):
            raise SettingsError(f"ALLOW_UNREGISTERED_DATASETS must be 'true' or 'false', got: {allow[:20]!r}")
        return cls(
            raw_bucket=env["RAW_BUCKET"],
            catalog_table=env["CATALOG_TABLE"],
            event_bus_name=env.get("EVENT_BUS_NAME") or "default",
            datasets=_parse_datasets(env.get("DATASETS") or "{}"),
            allow_unregistered=allow == "true",
            default_extensions=tuple(e.strip().lower() for e in env.get("DEFAULT_EXTENSIONS", "").split(",") if e.strip()),
            max_hash_bytes=_parse_positive_int("MAX_HASH_BYTES", env.get("MAX_HASH_BYTES") or str(10 * 1024**3)),
        )
class Clients:
    """boto3 clients, created on first use; tests inject their own with :func:`set_clients`."""

    def __init__(self, s3=None, dynamodb=None, events=None) -> None:
        self._s3, self._dynamodb, self._events = s3, dynamodb, events

    @property
    def s3(self):
        self._s3 = self._s3 or boto3.client("s3")
        return self._s3

    @property
    def dynamodb(self):
        self._dynamodb = self._dynamodb or boto3.client("dynamodb")
        return self._dynamodb

    @property
    def events(self):
        self._events = self._events or boto3.client("events")
        return self._events


_clients = Clients()


def set_clients(clients: Clients) -> None:
    global _clients
    _clients = clients


# --------------------------------------------------------------------------------------------------
# Pure logic
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LandingObject:
    bucket: str
    key: str
    size: int | None
    version_id: str | None
    requester: str | None = None
    source_ip: str | None = None


@dataclasses.dataclass(frozen=True)
class KeyParts:
    dataset: str
    version: str
    path: str  # relative path inside the version

    @property
    def is_manifest(self) -> bool:
        return self.path == MANIFEST_NAME


def parse_event(event: Any) -> LandingObject | None:
    """The landing object of an S3 'Object Created' EventBridge event; None for a DataSync state change
    (logged only). Raises :class:`MalformedEventError` for anything else."""
    if not isinstance(event, dict):
        raise MalformedEventError(f"expected an EventBridge event object, got: {type(event).__name__}")
    detail_type = event.get("detail-type")
    detail = event.get("detail")
    if event.get("source") == "aws.datasync" and isinstance(detail, dict):
        return None
    if event.get("source") != "aws.s3" or detail_type != "Object Created" or not isinstance(detail, dict):
        raise MalformedEventError(
            f"expected source 'aws.s3' and detail-type 'Object Created', got: {event.get('source')!r} / {detail_type!r}"
        )
    bucket = (detail.get("bucket") or {}).get("name")
    obj = detail.get("object") or {}
    key = obj.get("key")
    if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
        raise MalformedEventError("the event's detail must hold bucket.name and object.key")
    size = obj.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise MalformedEventError(f"object.size must be a non-negative integer, got: {size!r}")
    return LandingObject(
        bucket=bucket,
        key=key,
        size=size,
        version_id=obj.get("version-id"),
        requester=detail.get("requester"),
        source_ip=detail.get("source-ip-address"),
    )


def split_key(key: str) -> KeyParts | None:
    """``<dataset>/<version>/<path>`` -> parts; None when the key does not follow the layout."""
    parts = key.split("/", 2)
    if len(parts) != 3 or not parts[2] or parts[2].endswith("/"):
        return None
    dataset, version, path = parts
    if not _NAME_RE.fullmatch(dataset) or not _NAME_RE.fullmatch(version) or dataset.startswith("_"):
        return None
    if any(seg in ("", ".", "..") for seg in path.split("/")):
        return None
    return KeyParts(dataset, version, path)


def raw_key(parts: KeyParts) -> str:
    """The raw-zone key: ``dataset=<name>/version=<v>/<path>`` (DataLake's ``dataset_prefix``)."""
    return f"dataset={parts.dataset}/version={parts.version}/{parts.path}"


def extension_of(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    for compound in (".tar.gz", ".tar.zst", ".tar.bz2", ".csv.gz", ".json.gz", ".jsonl.gz"):
        if name.endswith(compound):
            return compound
    return "." + name.rsplit(".", 1)[1] if "." in name.lstrip(".") else ""


def check_file(parts: KeyParts, size: int, content_type: str | None, rule: DatasetRule) -> str | None:
    """The quarantine reason of a data file, or None when it is acceptable."""
    if size <= 0:
        return "empty-file"
    if rule.extensions and extension_of(parts.path) not in rule.extensions:
        return "extension-not-allowed"
    base_type = (content_type or "").split(";")[0].strip().lower()
    if rule.content_types and base_type not in rule.content_types:
        return "content-type-not-allowed"
    return None


def parse_manifest(body: bytes, parts: KeyParts) -> dict[str, dict[str, Any]]:
    """``path -> {"sha256", "size"}`` from a manifest; raises ValueError describing the first problem."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    except RecursionError:  # a hostile manifest ([[[[...]]]]): quarantine it, never retry it
        raise ValueError("nested too deeply to be a manifest") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list) or not doc["files"]:
        raise ValueError("must be an object with a non-empty 'files' list")
    for field, expected in (("dataset", parts.dataset), ("version", parts.version)):
        if field in doc and doc[field] != expected:
            raise ValueError(f"{field} {doc[field]!r} does not match the key ({expected!r})")
    files: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(doc["files"]):
        if not isinstance(entry, dict):
            raise ValueError(f"files[{i}] must be an object")
        path, sha, size = entry.get("path"), entry.get("sha256"), entry.get("size")
        probe = split_key(f"{parts.dataset}/{parts.version}/{path}") if isinstance(path, str) else None
        if probe is None or probe.is_manifest:
            raise ValueError(f"files[{i}].path must be a relative path inside the version, got: {path!r}")
        if not isinstance(sha, str) or not _SHA_RE.fullmatch(sha.lower()):
            raise ValueError(f"files[{i}].sha256 must be 64 hex digits, got: {sha!r}")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
            raise ValueError(f"files[{i}].size must be a positive integer, got: {size!r}")
        if path in files:
            raise ValueError(f"files[{i}].path is listed twice: {path!r}")
        files[path] = {"sha256": sha.lower(), "size": size}
    return files


def manifest_mismatch(entry: dict[str, Any], sha256: str, size: int) -> str | None:
    if entry["sha256"] != sha256:
        return "checksum-mismatch"
    if entry.get("size") is not None and entry["size"] != size:
        return "size-mismatch"
    return None


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------------
# Side effects
# --------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------
# Side effects
# --------------------------------------------------------------------------------------------------


# --- create-only writes (If-None-Match: *) on any botocore -------------------------------------------------------
# The function ships only this file: it runs on the Lambda runtime's boto3/botocore, which may predate the
# ``IfNoneMatch`` parameter (PutObject/CompleteMultipartUpload: 2024, after botocore 1.34; CopyObject: 1.41), and an
# older client refuses it (ParamValidationError). S3 honours the ``If-None-Match: *`` HTTP header whatever the
# client's model, so where the model lacks the member the header is added to the request instead: the write stays
# atomic. A copy of these three functions lives in datasync_promote/handler.py (handlers import no other handler);
# tests/handlers/test_write_once.py checks the copies are identical.

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


def _version_args(version_id: str | None) -> dict[str, str]:
    return {"VersionId": version_id} if version_id and version_id != "null" else {}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _head(bucket: str, key: str, version_id: str | None) -> dict[str, Any] | None:
    try:
        return _clients.s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED", **_version_args(version_id))
    except ClientError as exc:
        if _code(exc) in _GONE_CODES:
            return None
        raise


def sha256_of(bucket: str, key: str, version_id: str | None, head: dict[str, Any]) -> str:
    """The object's SHA-256 (hex): S3's full-object checksum when it has one, else computed by streaming."""
    stored = head.get("ChecksumSHA256")
    if stored and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT" and "-" not in stored:
        return base64.b64decode(stored).hex()
    digest = hashlib.sha256()
    body = _clients.s3.get_object(Bucket=bucket, Key=key, **_version_args(version_id))["Body"]
    for chunk in iter(lambda: body.read(8 * 1024 * 1024), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _tagging(tags: dict[str, str]) -> str:
    return urllib.parse.urlencode(tags)


def _tag_set(tags: dict[str, str]) -> dict[str, Any]:
    return {"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}


def _safe_tag_value(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9 +\-=._:/@]", "_", value)[:256]


def quarantine_key(key: str, version_id: str | None) -> str:
    """The object's own quarantine key: ``_quarantine/<key>/<version id>``; over S3's 1,024 bytes,
    ``_quarantine/_long/<sha256 of key>/<version id>``. Version ids hold no ``/``, so the mapping is one-to-one."""
    vid = version_id or "null"
    target = f"{QUARANTINE_PREFIX}{key}/{vid}"
    if len(target.encode()) <= MAX_KEY_BYTES:
        return target
    return f"{QUARANTINE_PREFIX}_long/{hashlib.sha256(key.encode()).hexdigest()}/{vid}"


def quarantine(obj: LandingObject, reason: str, extra_tags: dict[str, str] | None = None) -> str:
    """Copy ``obj`` to its own quarantine key with the reason as a tag, and tag the original. Never deletes,
    never overwrites (a conditional copy; a retry finds its earlier copy). Returns the quarantine key."""
    target = quarantine_key(obj.key, obj.version_id)
    tags = {TAG_REASON: reason, **(extra_tags or {})}
    source = {"Bucket": obj.bucket, "Key": obj.key, **_version_args(obj.version_id)}
    metadata = {META_SOURCE_VERSION: obj.version_id or "null",
                META_SOURCE_KEY: base64.b64encode(obj.key.encode()).decode()}
    written = _copy_once(source, None, obj.bucket, target, obj.size, tags, metadata)
    if written is None:
        logger.info("quarantine copy exists (earlier attempt)", extra={"key": obj.key, "quarantine_key": target})
    _clients.s3.put_object_tagging(Bucket=obj.bucket, Key=obj.key, Tagging=_tag_set(tags), **_version_args(obj.version_id))
    logger.warning("quarantined", extra={"key": obj.key, "reason": reason, "quarantine_key": target})
    return target


def _copy_once(source: dict[str, str], etag: str | None, bucket: str, key: str, size: int | None,
               tags: dict[str, str], metadata: dict[str, str]) -> str | None:
    """Copy ``source`` to ``bucket/key`` only if ``key`` does not exist (``IfNoneMatch="*"``), with its tags and
    metadata in the same request; a multipart copy above CopyObject's 5 GiB limit (tags and metadata set at
    CreateMultipartUpload, the condition at CompleteMultipartUpload). Returns the new version id ("null" when the
    bucket is unversioned), or None when ``key`` already exists. ``etag`` pins the source's content further
    (CopySourceIfMatch) where the source has no version id."""
    condition = {"CopySourceIfMatch": etag} if etag and "VersionId" not in source else {}
    try:
        if size is not None and size > SINGLE_COPY_LIMIT:
            return _multipart_copy(source, condition, bucket, key, size, tags, metadata)
        out = _write_once(
            _clients.s3, "CopyObject", "copy_object", CopySource=source, Bucket=bucket, Key=key, Metadata=metadata,
            MetadataDirective="REPLACE", Tagging=_tagging(tags), TaggingDirective="REPLACE", **condition,
        )
        return out.get("VersionId") or "null"
    except ClientError as exc:
        if _code(exc) not in ("PreconditionFailed", "412"):
            raise  # 409 ConditionalRequestConflict (a concurrent write) and 5xx: retry the record
    if _head(bucket, key, None) is None:  # the 412 was about the source: it changed under us
        raise RetryableError(f"s3://{source['Bucket']}/{source['Key']} changed during the copy to s3://{bucket}/{key}")
    return None


def _multipart_copy(source: dict[str, str], condition: dict[str, str], bucket: str, key: str, size: int,
                    tags: dict[str, str], metadata: dict[str, str]) -> str:
    part = max(MULTIPART_PART_BYTES, -(-size // MAX_PARTS))
    upload = _clients.s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata=metadata, Tagging=_tagging(tags))
    upload_id = upload["UploadId"]
    try:
        parts = []
        for number, start in enumerate(range(0, size, part), start=1):
            out = _clients.s3.upload_part_copy(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, CopySource=source,
                CopySourceRange=f"bytes={start}-{min(start + part, size) - 1}", **condition,
            )
            parts.append({"PartNumber": number, "ETag": out["CopyPartResult"]["ETag"]})
        done = _write_once(
            _clients.s3, "CompleteMultipartUpload", "complete_multipart_upload",
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts},
        )
        return done.get("VersionId") or "null"
    except Exception:
        try:  # an incomplete upload holds storage until the lake's lifecycle rule aborts it
            _clients.s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except ClientError:
            logger.warning("could not abort a failed multipart copy", extra={"key": key})
        raise


def _pk(parts: KeyParts) -> dict[str, Any]:
    return {"dataset": {"S": parts.dataset}}


def _file_sk(parts: KeyParts, path: str | None = None) -> str:
    return f"{parts.version}#FILE#{parts.path if path is None else path}"


def _manifest_sk(version: str) -> str:
    return f"{version}#MANIFEST"


def _ready_sk(version: str) -> str:
    """``#READY#<version>``: versions never start with ``#``, so ``begins_with(sk, "#READY#")`` lists them all."""
    return f"#READY#{version}"


READY_MARKER_DIR = "_ready/"


def ready_marker_key(dataset: str, version: str, ready_at: str) -> str:
    """``dataset=<d>/_ready/<UTC stamp>_<version>.json`` in raw: how the retrain trigger and validate find the
    versions declared ready, newest by recorded time, with S3 read access only. Outside every ``version=``
    prefix (never training input); Athena and Glue skip ``_`` paths."""
    stamp = re.sub(r"[^0-9T]", "", ready_at[:19]) + "Z"
    return f"dataset={dataset}/{READY_MARKER_DIR}{stamp}_{version}.json"


def _get_item(settings: Settings, dataset: str, sk: str) -> dict[str, Any] | None:
    out = _clients.dynamodb.get_item(
        TableName=settings.catalog_table, Key={"dataset": {"S": dataset}, "sk": {"S": sk}}, ConsistentRead=True
    )
    return out.get("Item")


def _s(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return None if value is None else value.get("S", value.get("N"))


def _conditional(call, **kwargs) -> bool:
    """A conditional DynamoDB write: True when written, False when the condition failed."""
    try:
        call(**kwargs)
        return True
    except ClientError as exc:
        if _code(exc) != "ConditionalCheckFailedException":
            raise
        return False


# --- manifests: a header item plus compressed shards ---------------------------------------------------------------


def manifest_digest(files: dict[str, dict[str, Any]]) -> str:
    """Content digest of a parsed manifest (so a reformatted but equal manifest is the same manifest)."""
    return hashlib.sha256(json.dumps(files, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def shard_of(path: str, shard_count: int) -> int:
    return int(hashlib.sha256(path.encode()).hexdigest()[:8], 16) % shard_count


def manifest_shards(files: dict[str, dict[str, Any]]) -> list[bytes]:
    """The manifest as zlib-compressed JSON shards, each under MAX_SHARD_BYTES (split by a hash of the path)."""
    count = max(1, -(-len(files) // 2000))
    while True:
        buckets: list[dict[str, list[Any]]] = [{} for _ in range(count)]
        for path, entry in files.items():
            buckets[shard_of(path, count)][path] = [entry["sha256"], entry.get("size")]
        shards = [zlib.compress(json.dumps(b, separators=(",", ":")).encode(), 6) for b in buckets]
        if max(len(s) for s in shards) <= MAX_SHARD_BYTES:
            return shards
        count *= 2


def _shard_sk(version: str, digest: str, index: int) -> str:
    return f"{version}#MANIFEST#{digest[:16]}#{index:05d}"


def _decode_shard(item: dict[str, Any]) -> dict[str, dict[str, Any]]:
    doc = json.loads(zlib.decompress(item["files"]["B"]))
    return {path: {"sha256": sha, "size": size} for path, (sha, size) in doc.items()}


def _store_manifest(settings: Settings, parts: KeyParts, obj: LandingObject, files: dict[str, dict[str, Any]],
                    body_sha: str) -> dict[str, Any]:
    """Write the shards, then the header (conditional). Returns the header that is in the catalog (ours or the
    earlier one)."""
    digest = manifest_digest(files)
    shards = manifest_shards(files)
    for index, blob in enumerate(shards):  # deterministic content under a digest-named key: a rewrite is harmless
        _clients.dynamodb.put_item(TableName=settings.catalog_table, Item={
            **_pk(parts), "sk": {"S": _shard_sk(parts.version, digest, index)}, "kind": {"S": "manifest-shard"},
            "version": {"S": parts.version}, "files": {"B": blob},
        })
    header = {
        **_pk(parts), "sk": {"S": _manifest_sk(parts.version)}, "kind": {"S": "manifest"},
        "version": {"S": parts.version}, "digest": {"S": digest}, "file_count": {"N": str(len(files))},
        "shard_count": {"N": str(len(shards))}, "ok_count": {"N": "0"}, "ok_bytes": {"N": "0"},
        "landing_key": {"S": obj.key}, "landing_version_id": {"S": obj.version_id or "null"},
        "sha256": {"S": body_sha}, "ingested_at": {"S": now_iso()},
    }
    if _conditional(_clients.dynamodb.put_item, TableName=settings.catalog_table, Item=header,
                    ConditionExpression="attribute_not_exists(sk)"):
        return header
    return _get_item(settings, parts.dataset, _manifest_sk(parts.version)) or header


def _manifest_entry(settings: Settings, parts: KeyParts, header: dict[str, Any], path: str) -> dict[str, Any] | None:
    index = shard_of(path, int(_s(header, "shard_count")))
    shard = _get_item(settings, parts.dataset, _shard_sk(parts.version, _s(header, "digest"), index))
    if shard is None:
        raise RetryableError(f"manifest shard {index} of {parts.dataset}/{parts.version} is missing")
    return _decode_shard(shard).get(path)


def _manifest_files(settings: Settings, parts: KeyParts, header: dict[str, Any]) -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    prefix = _shard_sk(parts.version, _s(header, "digest"), 0)[:-5]
    for item in _query(settings, parts.dataset, prefix):
        files.update(_decode_shard(item))
    if len(files) != int(_s(header, "file_count")):
        raise RetryableError(f"manifest of {parts.dataset}/{parts.version}: shards hold {len(files)} files, "
                             f"header says {_s(header, 'file_count')}")
    return files


def _query(settings: Settings, dataset: str, prefix: str, limit: int | None = None) -> Iterable[dict[str, Any]]:
    kwargs: dict[str, Any] = {
        "TableName": settings.catalog_table,
        "KeyConditionExpression": "dataset = :d AND begins_with(sk, :p)",
        "ExpressionAttributeValues": {":d": {"S": dataset}, ":p": {"S": prefix}},
        "ConsistentRead": True,
    }
    if limit:
        kwargs["Limit"] = limit
    while True:
        page = _clients.dynamodb.query(**kwargs)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _catalogued_files(settings: Settings, parts: KeyParts) -> dict[str, dict[str, Any]]:
    return {_s(i, "path"): i for i in _query(settings, parts.dataset, f"{parts.version}#FILE#")}


# --- files --------------------------------------------------------------------------------------------------------


def promote(settings: Settings, obj: LandingObject, parts: KeyParts, rule: DatasetRule) -> dict[str, Any]:
    """Validate one data file, copy it to raw and catalogue it (idempotent, safe under concurrency)."""
    head = _head(obj.bucket, obj.key, obj.version_id)
    if head is None:
        return _gone(obj)
    size = int(head.get("ContentLength", obj.size or 0))
    version_id = obj.version_id or head.get("VersionId") or "null"
    obj = dataclasses.replace(obj, version_id=version_id, size=size)
    existing = _get_item(settings, parts.dataset, _file_sk(parts))
    if existing is not None and _s(existing, "landing_version_id") == version_id:
        logger.info("duplicate event: already catalogued", extra={"key": obj.key})
        return {"outcome": "duplicate", "key": obj.key, **settle_file(settings, parts, existing)}

    reason = check_file(parts, size, head.get("ContentType"), rule)
    if not reason and len(raw_key(parts).encode()) > MAX_KEY_BYTES:
        reason = "key-too-long"
    if not reason and size > settings.max_hash_bytes and not head.get("ChecksumSHA256"):
        reason = "too-large-to-verify"
    if reason:
        quarantine(obj, reason)
        return {"outcome": "quarantined", "key": obj.key, "reason": reason}
    sha = sha256_of(obj.bucket, obj.key, version_id, head)
    if existing is not None:
        if _s(existing, "sha256") == sha:
            logger.info("same content re-uploaded: already catalogued", extra={"key": obj.key})
            return {"outcome": "duplicate", "key": obj.key}
        quarantine(obj, "version-immutable")
        return {"outcome": "quarantined", "key": obj.key, "reason": "version-immutable"}
    header = _get_item(settings, parts.dataset, _manifest_sk(parts.version))
    if header is not None:
        entry = _manifest_entry(settings, parts, header, parts.path)
        reason = "not-in-manifest" if entry is None else manifest_mismatch(entry, sha, size)
        if reason:
            quarantine(obj, reason)
            return {"outcome": "quarantined", "key": obj.key, "reason": reason}

    target = raw_key(parts)
    tags = {TAG_DATASET: parts.dataset, TAG_VERSION: parts.version}
    raw_version = _copy_once(
        {"Bucket": obj.bucket, "Key": obj.key, **_version_args(version_id)}, head.get("ETag"),
        settings.raw_bucket, target, size, tags, {META_SOURCE_VERSION: version_id, META_SHA256: sha},
    )
    if raw_version is None:  # raw already holds this key: ours (an earlier attempt) or another upload's
        current = _head(settings.raw_bucket, target, None) or {}
        meta = current.get("Metadata", {})
        if meta.get(META_SOURCE_VERSION) != version_id:
            if meta.get(META_SHA256) == sha:
                logger.info("same content uploaded twice: raw holds the other upload", extra={"key": obj.key})
                return {"outcome": "duplicate", "key": obj.key}
            quarantine(obj, "version-immutable")
            return {"outcome": "quarantined", "key": obj.key, "reason": "version-immutable"}
        raw_version = current.get("VersionId") or "null"
    _clients.s3.put_object_tagging(Bucket=obj.bucket, Key=obj.key, Tagging=_tag_set(tags), **_version_args(version_id))
    item = {
        **_pk(parts),
        "sk": {"S": _file_sk(parts)},
        "kind": {"S": "file"},
        "version": {"S": parts.version},
        "path": {"S": parts.path},
        "object_key": {"S": target},
        "raw_bucket": {"S": settings.raw_bucket},
        "raw_version_id": {"S": raw_version},
        "landing_bucket": {"S": obj.bucket},
        "landing_key": {"S": obj.key},
        "landing_version_id": {"S": version_id},
        "size": {"N": str(size)},
        "sha256": {"S": sha},
        "content_type": {"S": head.get("ContentType") or "application/octet-stream"},
        "source": {"S": _source(obj)},
        "ingested_at": {"S": now_iso()},
    }
    # Only the delivery whose landing version raw holds gets here, so an existing entry is this one's (a retry).
    if not _conditional(_clients.dynamodb.put_item, TableName=settings.catalog_table, Item=item,
                        ConditionExpression="attribute_not_exists(sk)"):
        logger.info("concurrent duplicate: already catalogued", extra={"key": obj.key})
        item = _get_item(settings, parts.dataset, _file_sk(parts)) or item
        return {"outcome": "duplicate", "key": obj.key, **settle_file(settings, parts, item)}
    logger.info("promoted", extra={"key": obj.key, "raw_key": target, "sha256": sha})
    return {"outcome": "promoted", "key": obj.key, "raw_key": target, "raw_version_id": raw_version,
            **settle_file(settings, parts, item)}


def settle_file(settings: Settings, parts: KeyParts, item: dict[str, Any]) -> dict[str, Any]:
    """After a file's catalog entry exists: re-read the manifest (it may have been written meanwhile), reject
    the file if the manifest contradicts it, else count it, and emit the ready event when the version is complete.
    Returns ``{"ready": bool}`` when the version has a manifest, ``{}`` otherwise."""
    header = _get_item(settings, parts.dataset, _manifest_sk(parts.version))
    if header is None:
        return {}
    if "rejected" not in item and "counted" not in item:
        path = _s(item, "path")
        entry = _manifest_entry(settings, parts, header, path)
        reason = "not-in-manifest" if entry is None else manifest_mismatch(entry, _s(item, "sha256"), int(_s(item, "size")))
        if reason:
            reject_file(settings, parts, item, reason, blocks=entry is not None)
        else:
            count_files(settings, parts, [item])
    return {"ready": maybe_emit_ready(settings, parts)}


def count_files(settings: Settings, parts: KeyParts, items: list[dict[str, Any]]) -> None:
    """Mark each file counted and add it to the manifest header's ``ok_count``/``ok_bytes`` in ONE transaction per
    batch, so a file is counted exactly once whoever counts it and however often."""
    batch_size = TRANSACT_MAX_ITEMS - 1
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        if _count_batch(settings, parts, batch) or len(batch) == 1:
            continue
        for item in batch:  # some were counted concurrently: count the rest one by one
            _count_batch(settings, parts, [item])


def _count_batch(settings: Settings, parts: KeyParts, batch: list[dict[str, Any]]) -> bool:
    actions: list[dict[str, Any]] = [
        {"Update": {
            "TableName": settings.catalog_table, "Key": {**_pk(parts), "sk": item["sk"]},
            "UpdateExpression": "SET counted = :t",
            "ConditionExpression": "attribute_exists(sk) AND attribute_not_exists(counted) AND attribute_not_exists(rejected)",
            "ExpressionAttributeValues": {":t": {"BOOL": True}},
        }} for item in batch
    ]
    actions.append({"Update": {
        "TableName": settings.catalog_table, "Key": {**_pk(parts), "sk": {"S": _manifest_sk(parts.version)}},
        "UpdateExpression": "ADD ok_count :n, ok_bytes :b", "ConditionExpression": "attribute_exists(sk)",
        "ExpressionAttributeValues": {":n": {"N": str(len(batch))},
                                      ":b": {"N": str(sum(int(_s(i, "size")) for i in batch))}},
    }})
    try:
        _clients.dynamodb.transact_write_items(TransactItems=actions)
        return True
    except ClientError as exc:
        if _code(exc) != "TransactionCanceledException":
            raise
        reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
        if any(code not in (None, "None", "ConditionalCheckFailed") for code in reasons):
            raise RetryableError(f"counting files of {parts.dataset}/{parts.version}: transaction cancelled: {reasons}") from exc
        return False


def reject_file(settings: Settings, parts: KeyParts, item: dict[str, Any], reason: str, blocks: bool) -> None:
    """A catalogued file the manifest contradicts: quarantine the landing object, tag the raw copy
    ``mlinfra:status=rejected`` and record the reason in the catalog. Nothing is deleted. ``blocks``: the file is
    one the manifest lists (with other content), so the version can never become ready (upload a new version)."""
    quarantine(LandingObject(bucket=_s(item, "landing_bucket"), key=_s(item, "landing_key"), size=int(_s(item, "size")),
                             version_id=_s(item, "landing_version_id")), reason)
    raw_tags = {TAG_DATASET: parts.dataset, TAG_VERSION: parts.version, TAG_STATUS: "rejected", TAG_REASON: reason}
    _clients.s3.put_object_tagging(Bucket=_s(item, "raw_bucket"), Key=_s(item, "object_key"), Tagging=_tag_set(raw_tags),
                                   **_version_args(_s(item, "raw_version_id")))
    # Never reject a counted file (a concurrent counter won): the condition keeps the count and the flags agreeing.
    _conditional(_clients.dynamodb.update_item, TableName=settings.catalog_table,
                 Key={**_pk(parts), "sk": item["sk"]}, UpdateExpression="SET rejected = :r",
                 ConditionExpression="attribute_exists(sk) AND attribute_not_exists(counted)",
                 ExpressionAttributeValues={":r": {"S": reason}})
    if blocks:
        _clients.dynamodb.update_item(
            TableName=settings.catalog_table, Key={**_pk(parts), "sk": {"S": _manifest_sk(parts.version)}},
            UpdateExpression="SET blocked = :r", ExpressionAttributeValues={":r": {"S": reason}},
        )


def _source(obj: LandingObject) -> str:
    who = obj.requester or "unknown"
    return f"s3://{obj.bucket}/{obj.key} requester={who}" + (f" ip={obj.source_ip}" if obj.source_ip else "")


def _gone(obj: LandingObject) -> dict[str, Any]:
    """The object (version) was deleted between the event and now: nothing to promote; recorded in the log."""
    logger.warning("object gone before processing", extra={"key": obj.key, "version_id": obj.version_id})
    return {"outcome": "gone", "key": obj.key, "version_id": obj.version_id}


# --- manifests ------------------------------------------------------------------------------------------------------


def accept_manifest(settings: Settings, obj: LandingObject, parts: KeyParts) -> dict[str, Any]:
    """Validate and record a manifest, settle files catalogued before it, emit the ready event if complete."""
    head = _head(obj.bucket, obj.key, obj.version_id)
    if head is None:
        return _gone(obj)
    version_id = obj.version_id or head.get("VersionId") or "null"
    obj = dataclasses.replace(obj, version_id=version_id, size=int(head.get("ContentLength", 0)))
    if obj.size <= 0 or obj.size > _MAX_MANIFEST_BYTES:
        quarantine(obj, "invalid-manifest")
        return {"outcome": "quarantined", "key": obj.key, "reason": "invalid-manifest"}
    body = _clients.s3.get_object(Bucket=obj.bucket, Key=obj.key, **_version_args(version_id))["Body"].read()
    try:
        files = parse_manifest(body, parts)
    except ValueError as exc:
        quarantine(obj, "invalid-manifest")
        return {"outcome": "quarantined", "key": obj.key, "reason": "invalid-manifest", "detail": str(exc)[:500]}
    existing = _get_item(settings, parts.dataset, _manifest_sk(parts.version))
    if existing is not None and _s(existing, "digest") != manifest_digest(files):
        quarantine(obj, "version-immutable")
        return {"outcome": "quarantined", "key": obj.key, "reason": "version-immutable"}
    header = existing or _store_manifest(settings, parts, obj, files, hashlib.sha256(body).hexdigest())
    if _s(header, "digest") != manifest_digest(files):  # a different manifest won a concurrent race
        quarantine(obj, "version-immutable")
        return {"outcome": "quarantined", "key": obj.key, "reason": "version-immutable"}
    rejected = settle_version(settings, parts, files)
    result = {"outcome": "manifest", "key": obj.key, "files": len(files), "ready": maybe_emit_ready(settings, parts)}
    if rejected:
        result["rejected"] = rejected
    return result


def settle_version(settings: Settings, parts: KeyParts, manifest: dict[str, dict[str, Any]]) -> list[str]:
    """Every file catalogued for the version (read AFTER the manifest header was written): reject those the manifest
    contradicts, count the others. Returns the paths rejected now."""
    rejected, to_count = [], []
    for path, item in sorted(_catalogued_files(settings, parts).items()):
        if "rejected" in item or "counted" in item:
            continue
        entry = manifest.get(path)
        reason = "not-in-manifest" if entry is None else manifest_mismatch(entry, _s(item, "sha256"), int(_s(item, "size")))
        if reason:
            reject_file(settings, parts, item, reason, blocks=entry is not None)
            rejected.append(path)
        else:
            to_count.append(item)
    count_files(settings, parts, to_count)
    return rejected


def maybe_emit_ready(settings: Settings, parts: KeyParts) -> bool:
    """Emit 'Dataset Version Ready' when every manifest file is counted. At least once: any caller that finds the
    version complete and the marker not ``event_sent`` sends it (consumers deduplicate on (dataset, version))."""
    header = _get_item(settings, parts.dataset, _manifest_sk(parts.version))
    if header is None or int(_s(header, "ok_count")) < int(_s(header, "file_count")):
        return False
    marker_key = {**_pk(parts), "sk": {"S": _ready_sk(parts.version)}}
    marker = _get_item(settings, parts.dataset, _ready_sk(parts.version))
    if marker is None:
        marker = {**marker_key, "kind": {"S": "ready"}, "version": {"S": parts.version},
                  "event_sent": {"BOOL": False}, "ready_at": {"S": now_iso()}}
        if not _conditional(_clients.dynamodb.put_item, TableName=settings.catalog_table, Item=marker,
                            ConditionExpression="attribute_not_exists(sk)"):
            marker = _get_item(settings, parts.dataset, _ready_sk(parts.version)) or marker
    if marker.get("event_sent", {}).get("BOOL"):
        return True
    objects = []
    for item in _query(settings, parts.dataset, f"{parts.version}#FILE#", limit=200):
        if "counted" in item:
            objects.append({"key": _s(item, "object_key"), "version_id": _s(item, "raw_version_id")})
        if len(objects) == 100:
            break
    detail = {
        "dataset": parts.dataset,
        "version": parts.version,
        "ready_at": _s(marker, "ready_at"),
        "raw_bucket": settings.raw_bucket,
        "raw_prefix": f"dataset={parts.dataset}/version={parts.version}/",
        "s3_uri": f"s3://{settings.raw_bucket}/dataset={parts.dataset}/version={parts.version}/",
        "file_count": int(_s(header, "file_count")),
        "total_bytes": int(_s(header, "ok_bytes") or 0),
        "catalog_table": settings.catalog_table,
        "objects": objects,
    }
    marker_key_s3 = ready_marker_key(parts.dataset, parts.version, detail["ready_at"])
    try:  # written once (a conditional put); a retry finds it
        _write_once(_clients.s3, "PutObject", "put_object", Bucket=settings.raw_bucket, Key=marker_key_s3,
                    ContentType="application/json",
                    Body=json.dumps({k: v for k, v in detail.items() if k != "objects"}).encode())
    except ClientError as exc:
        if _code(exc) not in ("PreconditionFailed", "412"):
            raise
    out = _clients.events.put_events(Entries=[{
        "Source": EVENT_SOURCE, "DetailType": READY_DETAIL_TYPE, "Detail": json.dumps(detail),
        "EventBusName": settings.event_bus_name,
    }])
    if out.get("FailedEntryCount"):  # PutEvents reports failed entries without raising
        raise RetryableError(f"put_events failed: {out.get('Entries')}")
    _clients.dynamodb.update_item(
        TableName=settings.catalog_table, Key=marker_key, UpdateExpression="SET event_sent = :t",
        ExpressionAttributeValues={":t": {"BOOL": True}},
    )
    _clients.dynamodb.update_item(
        TableName=settings.catalog_table, Key={**_pk(parts), "sk": {"S": _manifest_sk(parts.version)}},
        UpdateExpression="SET ready_sent = :t", ExpressionAttributeValues={":t": {"BOOL": True}},
    )
    logger.info("dataset version ready", extra={"dataset": parts.dataset, "version": parts.version})
    return True


# --- the reconciler -------------------------------------------------------------------------------------------------


def reconcile(settings: Settings | None = None, max_versions: int = 1000) -> dict[str, Any]:
    """Finish versions whose files are all catalogued but that are not marked ready (every delivery that could
    have finished them failed after its catalog write, or the messages went to the DLQ). Scans the catalog for
    manifest headers without ``ready_sent`` (and not ``blocked``), counts what is uncounted and emits. Run by a
    schedule; idempotent."""
    settings = settings or Settings.from_env()
    kwargs: dict[str, Any] = {
        "TableName": settings.catalog_table,
        "FilterExpression": "#k = :m AND attribute_not_exists(ready_sent) AND attribute_not_exists(blocked)",
        "ExpressionAttributeNames": {"#k": "kind", "#d": "dataset", "#v": "version"},
        "ExpressionAttributeValues": {":m": {"S": "manifest"}},
        "ProjectionExpression": "#d, #v",
    }
    pending: list[tuple[str, str]] = []
    while len(pending) < max_versions:
        page = _clients.dynamodb.scan(**kwargs)
        pending += [(_s(i, "dataset"), _s(i, "version")) for i in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    finished = []
    for dataset, version in pending[:max_versions]:
        parts = KeyParts(dataset, version, MANIFEST_NAME)
        header = _get_item(settings, dataset, _manifest_sk(version))
        if header is None:
            continue
        settle_version(settings, parts, _manifest_files(settings, parts, header))
        if maybe_emit_ready(settings, parts):
            finished.append(f"{dataset}/{version}")
    logger.info("reconciled", extra={"pending": len(pending), "finished": len(finished)})
    return {"outcome": "reconciled", "pending": len(pending), "finished": finished}


# --------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------


def process_event(event: Any, settings: Settings | None = None) -> dict[str, Any]:
    """Handle one EventBridge event; returns what happened. Raises on malformed events and transient errors."""
    settings = settings or Settings.from_env()
    obj = parse_event(event)
    if obj is None:
        detail = event.get("detail", {})
        logger.info("DataSync state change", extra={"detail_type": event.get("detail-type"), "state": detail.get("State")})
        return {"outcome": "datasync-state", "state": detail.get("State")}
    if obj.key.startswith((QUARANTINE_PREFIX, DATASYNC_PREFIX)) or obj.key.endswith("/"):
        return {"outcome": "ignored", "key": obj.key}
    obj = _resolve_key(obj)
    parts = split_key(obj.key)
    if parts is None:
        quarantine(obj, "bad-key-layout")
        return {"outcome": "quarantined", "key": obj.key, "reason": "bad-key-layout"}
    rule = settings.datasets.get(parts.dataset)
    if rule is None:
        if not settings.allow_unregistered:
            quarantine(obj, "unknown-dataset", {TAG_DATASET: _safe_tag_value(parts.dataset)})
            return {"outcome": "quarantined", "key": obj.key, "reason": "unknown-dataset"}
        rule = DatasetRule(extensions=settings.default_extensions)
    if parts.is_manifest:
        return accept_manifest(settings, obj, parts)
    return promote(settings, obj, parts, rule)


def _resolve_key(obj: LandingObject) -> LandingObject:
    """EventBridge usually sends the key as stored; fall back to URL-decoding when only that form exists."""
    decoded = urllib.parse.unquote_plus(obj.key)
    if decoded != obj.key and _head(obj.bucket, obj.key, obj.version_id) is None:
        if _head(obj.bucket, decoded, obj.version_id) is not None:
            return dataclasses.replace(obj, key=decoded)
    return obj


def _record_handler(record) -> dict[str, Any]:
    try:
        event = json.loads(record.body)
    except (TypeError, ValueError, RecursionError) as exc:
        raise MalformedEventError(f"SQS message body is not JSON: {exc}") from exc
    return process_event(event)


_processor = None  # Powertools' SQS batch processor, made on the first SQS batch


def _process_sqs_batch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Partial batch response through Powertools' batch utility. Its import (asyncio and the event data classes,
    about 0.15 s) happens here, on the SQS path, not when Lambda imports the module (docs/performance.md)."""
    global _processor
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    _processor = _processor or BatchProcessor(event_type=EventType.SQS)
    return process_partial_response(event=event, record_handler=_record_handler, processor=_processor, context=context)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS batch of EventBridge events (partial failures reported), one EventBridge event, or the reconciler's
    scheduled input ``{"mlinfra": "reconcile"}``."""
    if isinstance(event, dict) and isinstance(event.get("Records"), list):
        return _process_sqs_batch(event, context)
    if event == RECONCILE_INPUT:
        return reconcile()
    return process_event(event)
