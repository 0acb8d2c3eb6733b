"""Landing-zone glue: validate, tag, promote to raw and catalogue every object that lands.

Landing key layout (see docs/ingestion.md)::

    <dataset>/<version>/<relative path>          a data file of one dataset version
    <dataset>/<version>/_manifest.json           the optional manifest of that version
    _quarantine/<original key>                   copies of rejected objects (written by this handler)

``<dataset>`` and ``<version>`` are 1-128 characters of letters, digits, ``.``, ``_`` and ``-``. A valid file is
copied to the raw bucket under ``dataset=<dataset>/version=<version>/<relative path>`` (the lake's
``dataset_prefix``), tagged ``mlinfra:dataset`` / ``mlinfra:dataset-version``, and recorded in the DynamoDB
catalog. A rejected object is COPIED to ``_quarantine/`` in the landing bucket with the reason as the tag
``mlinfra:quarantine-reason`` (the original is tagged too and stays where it is): nothing is ever deleted.

Idempotency: the catalog entry of a file is written with a conditional put keyed by (dataset, version,
path); the raw copy carries the landing version id in its metadata, so a retried event neither copies twice
nor writes a second entry. A dataset version is immutable: a different object uploaded later to an already
catalogued path is quarantined (``version-immutable``).

Manifest: ``{"files": [{"path": "train/a.csv", "sha256": "<64 hex>", "size": 123}, ...]}`` (``size``
optional; ``dataset``/``version`` optional and, when present, must match the key). When every listed file is
catalogued with a matching checksum, the handler emits ``Dataset Version Ready`` (source
``mlinfra.ingestion``) once (a conditional marker in the catalog; delivery is at-least-once if a put fails
after the marker is written, so consumers deduplicate on (dataset, version)).

Invocation: an SQS batch (records whose body is an EventBridge event; partial batch failures reported) or
one EventBridge event directly. Configuration comes from environment variables (see ``Settings``).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import urllib.parse
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from botocore.exceptions import ClientError

logger = Logger()
tracer = Tracer()

MANIFEST_NAME = "_manifest.json"
QUARANTINE_PREFIX = "_quarantine/"
EVENT_SOURCE = "mlinfra.ingestion"
READY_DETAIL_TYPE = "Dataset Version Ready"
TAG_DATASET = "mlinfra:dataset"
TAG_VERSION = "mlinfra:dataset-version"
TAG_REASON = "mlinfra:quarantine-reason"
TAG_STATUS = "mlinfra:status"
META_SOURCE_VERSION = "mlinfra-source-version-id"
META_SHA256 = "mlinfra-sha256"
SINGLE_COPY_LIMIT = 5 * 1024**3  # CopyObject's limit; larger objects use a multipart copy
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024


class MalformedEventError(ValueError):
    """The event is not an S3 'Object Created' (or DataSync state change) EventBridge event."""


@dataclasses.dataclass(frozen=True)
class DatasetRule:
    """What one registered dataset accepts."""

    extensions: tuple[str, ...] = ()  # lower-case, with the dot; empty: any extension
    content_types: tuple[str, ...] = ()  # empty: any content type


@dataclasses.dataclass(frozen=True)
class Settings:
    """Handler configuration, from the environment.

    RAW_BUCKET, CATALOG_TABLE: required. EVENT_BUS_NAME: bus of the ready event (default ``default``).
    DATASETS: JSON ``{"<name>": {"extensions": [".csv"], "content_types": ["text/csv"]}}``; a dataset not listed
    is quarantined as ``unknown-dataset`` unless ALLOW_UNREGISTERED_DATASETS is ``true`` (then DEFAULT_EXTENSIONS,
    a comma list, applies). MAX_HASH_BYTES: the largest object hashed in the function (default 10 GiB).
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
            raise RuntimeError(f"landing glue: environment variable(s) {missing} must be set")
        datasets = {
            name: DatasetRule(
                extensions=tuple(e.lower() for e in rule.get("extensions", [])),
                content_types=tuple(c.lower() for c in rule.get("content_types", [])),
            )
            for name, rule in json.loads(env.get("DATASETS") or "{}").items()
        }
        return cls(
            raw_bucket=env["RAW_BUCKET"],
            catalog_table=env["CATALOG_TABLE"],
            event_bus_name=env.get("EVENT_BUS_NAME") or "default",
            datasets=datasets,
            allow_unregistered=env.get("ALLOW_UNREGISTERED_DATASETS", "false").lower() == "true",
            default_extensions=tuple(e.strip().lower() for e in env.get("DEFAULT_EXTENSIONS", "").split(",") if e.strip()),
            max_hash_bytes=int(env.get("MAX_HASH_BYTES") or 10 * 1024**3),
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


def _version_args(version_id: str | None) -> dict[str, str]:
    return {"VersionId": version_id} if version_id and version_id != "null" else {}


def _head(bucket: str, key: str, version_id: str | None) -> dict[str, Any] | None:
    try:
        return _clients.s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED", **_version_args(version_id))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound", "NoSuchVersion"):
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


def _safe_tag_value(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9 +\-=._:/@]", "_", value)[:256]


def quarantine(obj: LandingObject, reason: str, extra_tags: dict[str, str] | None = None) -> str:
    """Copy ``obj`` to ``_quarantine/<key>`` in its bucket with the reason as a tag and tag the original.
    Never deletes. Returns the quarantine key."""
    target = QUARANTINE_PREFIX + obj.key
    tags = {TAG_REASON: reason, **(extra_tags or {})}
    source = {"Bucket": obj.bucket, "Key": obj.key, **_version_args(obj.version_id)}
    existing = _head(obj.bucket, target, None)
    already = existing is not None and existing.get("Metadata", {}).get(META_SOURCE_VERSION) == (obj.version_id or "null")
    if not already:
        _copy(source, obj.bucket, target, obj.size, tags, {META_SOURCE_VERSION: obj.version_id or "null"})
    _clients.s3.put_object_tagging(
        Bucket=obj.bucket, Key=obj.key, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]},
        **_version_args(obj.version_id),
    )
    logger.warning("quarantined", extra={"key": obj.key, "reason": reason, "quarantine_key": target})
    return target


def _copy(source: dict[str, str], bucket: str, key: str, size: int | None, tags: dict[str, str], metadata: dict[str, str]) -> str | None:
    """Copy with tags and metadata; multipart above CopyObject's 5 GiB limit. Returns the new version id."""
    if size is not None and size > SINGLE_COPY_LIMIT:
        _clients.s3.copy(source, bucket, key, ExtraArgs={"Metadata": metadata, "MetadataDirective": "REPLACE"})
        _clients.s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})
        return (_head(bucket, key, None) or {}).get("VersionId")
    out = _clients.s3.copy_object(
        CopySource=source, Bucket=bucket, Key=key, Metadata=metadata, MetadataDirective="REPLACE",
        Tagging=_tagging(tags), TaggingDirective="REPLACE",
    )
    return out.get("VersionId")


def _pk(parts: KeyParts) -> dict[str, Any]:
    return {"dataset": {"S": parts.dataset}}


def _file_sk(parts: KeyParts) -> str:
    return f"{parts.version}#FILE#{parts.path}"


def _get_item(settings: Settings, dataset: str, sk: str) -> dict[str, Any] | None:
    out = _clients.dynamodb.get_item(
        TableName=settings.catalog_table, Key={"dataset": {"S": dataset}, "sk": {"S": sk}}, ConsistentRead=True
    )
    return out.get("Item")


def _s(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return None if value is None else value.get("S", value.get("N"))


def promote(settings: Settings, obj: LandingObject, parts: KeyParts, rule: DatasetRule) -> dict[str, Any]:
    """Validate one data file, copy it to raw and catalogue it (idempotent). Returns the outcome."""
    head = _head(obj.bucket, obj.key, obj.version_id)
    if head is None:
        raise LookupError(f"s3://{obj.bucket}/{obj.key} (version {obj.version_id}) does not exist (yet)")
    size = int(head.get("ContentLength", obj.size or 0))
    version_id = obj.version_id or head.get("VersionId") or "null"
    obj = dataclasses.replace(obj, version_id=version_id, size=size)
    existing = _get_item(settings, parts.dataset, _file_sk(parts))
    if existing is not None and _s(existing, "landing_version_id") == version_id:
        logger.info("duplicate event: already catalogued", extra={"key": obj.key})
        return {"outcome": "duplicate", "key": obj.key}

    reason = check_file(parts, size, head.get("ContentType"), rule)
    if reason:
        quarantine(obj, reason)
        return {"outcome": "quarantined", "key": obj.key, "reason": reason}
    if size > settings.max_hash_bytes and not head.get("ChecksumSHA256"):
        quarantine(obj, "too-large-to-verify")
        return {"outcome": "quarantined", "key": obj.key, "reason": "too-large-to-verify"}
    sha = sha256_of(obj.bucket, obj.key, version_id, head)
    if existing is not None:
        if _s(existing, "sha256") == sha:
            logger.info("same content re-uploaded: already catalogued", extra={"key": obj.key})
            return {"outcome": "duplicate", "key": obj.key}
        quarantine(obj, "version-immutable")
        return {"outcome": "quarantined", "key": obj.key, "reason": "version-immutable"}
    manifest = _manifest_files(settings, parts)
    if manifest is not None:
        entry = manifest.get(parts.path)
        reason = "not-in-manifest" if entry is None else manifest_mismatch(entry, sha, size)
        if reason:
            quarantine(obj, reason)
            return {"outcome": "quarantined", "key": obj.key, "reason": reason}

    target = raw_key(parts)
    tags = {TAG_DATASET: parts.dataset, TAG_VERSION: parts.version}
    current = _head(settings.raw_bucket, target, None)
    if current is not None and current.get("Metadata", {}).get(META_SOURCE_VERSION) == version_id:
        raw_version = current.get("VersionId") or "null"  # copied by an earlier attempt of this event
    else:
        raw_version = _copy(
            {"Bucket": obj.bucket, "Key": obj.key, **_version_args(version_id)},
            settings.raw_bucket, target, size, tags, {META_SOURCE_VERSION: version_id, META_SHA256: sha},
        ) or "null"
    _clients.s3.put_object_tagging(
        Bucket=obj.bucket, Key=obj.key, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]},
        **_version_args(version_id),
    )
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
    try:
        _clients.dynamodb.put_item(
            TableName=settings.catalog_table, Item=item, ConditionExpression="attribute_not_exists(sk)"
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        logger.info("concurrent duplicate: already catalogued", extra={"key": obj.key})
        return {"outcome": "duplicate", "key": obj.key}
    logger.info("promoted", extra={"key": obj.key, "raw_key": target, "sha256": sha})
    result = {"outcome": "promoted", "key": obj.key, "raw_key": target, "raw_version_id": raw_version}
    if manifest is not None:
        result["ready"] = maybe_emit_ready(settings, parts, manifest)
    return result


def _source(obj: LandingObject) -> str:
    who = obj.requester or "unknown"
    return f"s3://{obj.bucket}/{obj.key} requester={who}" + (f" ip={obj.source_ip}" if obj.source_ip else "")


def _manifest_files(settings: Settings, parts: KeyParts) -> dict[str, dict[str, Any]] | None:
    item = _get_item(settings, parts.dataset, f"{parts.version}#MANIFEST")
    return None if item is None else json.loads(item["files"]["S"])


def accept_manifest(settings: Settings, obj: LandingObject, parts: KeyParts) -> dict[str, Any]:
    """Validate and record a manifest, check files catalogued before it, emit the ready event if complete."""
    head = _head(obj.bucket, obj.key, obj.version_id)
    if head is None:
        raise LookupError(f"s3://{obj.bucket}/{obj.key} does not exist (yet)")
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
        return {"outcome": "quarantined", "key": obj.key, "reason": "invalid-manifest", "detail": str(exc)}
    existing = _get_item(settings, parts.dataset, f"{parts.version}#MANIFEST")
    if existing is not None:
        if json.loads(existing["files"]["S"]) != files:
            quarantine(obj, "version-immutable")
            return {"outcome": "quarantined", "key": obj.key, "reason": "version-immutable"}
    else:
        try:
            _clients.dynamodb.put_item(
                TableName=settings.catalog_table,
                Item={
                    **_pk(parts), "sk": {"S": f"{parts.version}#MANIFEST"}, "kind": {"S": "manifest"},
                    "version": {"S": parts.version}, "files": {"S": json.dumps(files, sort_keys=True)},
                    "file_count": {"N": str(len(files))}, "landing_key": {"S": obj.key},
                    "landing_version_id": {"S": version_id}, "sha256": {"S": hashlib.sha256(body).hexdigest()},
                    "ingested_at": {"S": now_iso()},
                },
                ConditionExpression="attribute_not_exists(sk)",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
    rejected = reject_mismatches(settings, parts, files)
    result = {"outcome": "manifest", "key": obj.key, "files": len(files), "ready": maybe_emit_ready(settings, parts, files)}
    if rejected:
        result["rejected"] = rejected
    return result


def reject_mismatches(settings: Settings, parts: KeyParts, manifest: dict[str, dict[str, Any]]) -> list[str]:
    """Files catalogued BEFORE the manifest arrived that it contradicts: the landing object is quarantined
    with the reason, the raw copy is tagged ``mlinfra:status=rejected`` and the catalog entry records the
    reason. Nothing is deleted; the version never becomes ready (upload a new version)."""
    rejected = []
    for path, item in sorted(_catalogued_files(settings, parts).items()):
        if "rejected" in item:
            continue
        entry = manifest.get(path)
        reason = "not-in-manifest" if entry is None else manifest_mismatch(entry, _s(item, "sha256"), int(_s(item, "size")))
        if not reason:
            continue
        quarantine(LandingObject(bucket=_s(item, "landing_bucket"), key=_s(item, "landing_key"), size=int(_s(item, "size")),
                                 version_id=_s(item, "landing_version_id")), reason)
        raw_tags = {TAG_DATASET: parts.dataset, TAG_VERSION: parts.version, TAG_STATUS: "rejected", TAG_REASON: reason}
        _clients.s3.put_object_tagging(
            Bucket=_s(item, "raw_bucket"), Key=_s(item, "object_key"),
            Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in raw_tags.items()]},
            **_version_args(_s(item, "raw_version_id")),
        )
        _clients.dynamodb.update_item(
            TableName=settings.catalog_table, Key={**_pk(parts), "sk": {"S": f"{parts.version}#FILE#{path}"}},
            UpdateExpression="SET rejected = :r", ExpressionAttributeValues={":r": {"S": reason}},
        )
        rejected.append(path)
    return rejected


def _catalogued_files(settings: Settings, parts: KeyParts) -> dict[str, dict[str, Any]]:
    items: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {
        "TableName": settings.catalog_table,
        "KeyConditionExpression": "dataset = :d AND begins_with(sk, :p)",
        "ExpressionAttributeValues": {":d": {"S": parts.dataset}, ":p": {"S": f"{parts.version}#FILE#"}},
        "ConsistentRead": True,
    }
    while True:
        page = _clients.dynamodb.query(**kwargs)
        for item in page.get("Items", []):
            items[_s(item, "path")] = item
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def maybe_emit_ready(settings: Settings, parts: KeyParts, manifest: dict[str, dict[str, Any]]) -> bool:
    """Emit 'Dataset Version Ready' once every manifest file is catalogued with a matching checksum."""
    catalogued = _catalogued_files(settings, parts)
    for path, entry in manifest.items():
        item = catalogued.get(path)
        if item is None or "rejected" in item or manifest_mismatch(entry, _s(item, "sha256"), int(_s(item, "size"))):
            return False
    marker_key = {**_pk(parts), "sk": {"S": f"{parts.version}#READY"}}
    marker = _get_item(settings, parts.dataset, f"{parts.version}#READY")
    if marker is not None and marker.get("event_sent", {}).get("BOOL"):
        return True
    if marker is None:
        try:
            _clients.dynamodb.put_item(
                TableName=settings.catalog_table,
                Item={**marker_key, "kind": {"S": "ready"}, "version": {"S": parts.version},
                      "event_sent": {"BOOL": False}, "ready_at": {"S": now_iso()}},
                ConditionExpression="attribute_not_exists(sk)",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return True  # a concurrent invocation owns the emission
    total = sum(int(_s(catalogued[p], "size")) for p in manifest)
    detail = {
        "dataset": parts.dataset,
        "version": parts.version,
        "raw_bucket": settings.raw_bucket,
        "raw_prefix": f"dataset={parts.dataset}/version={parts.version}/",
        "s3_uri": f"s3://{settings.raw_bucket}/dataset={parts.dataset}/version={parts.version}/",
        "file_count": len(manifest),
        "total_bytes": total,
        "catalog_table": settings.catalog_table,
        "objects": [
            {"key": _s(catalogued[p], "object_key"), "version_id": _s(catalogued[p], "raw_version_id")}
            for p in sorted(manifest)
        ][:100],
    }
    out = _clients.events.put_events(Entries=[{
        "Source": EVENT_SOURCE, "DetailType": READY_DETAIL_TYPE, "Detail": json.dumps(detail),
        "EventBusName": settings.event_bus_name,
    }])
    if out.get("FailedEntryCount"):
        raise RuntimeError(f"put_events failed: {out.get('Entries')}")
    _clients.dynamodb.update_item(
        TableName=settings.catalog_table, Key=marker_key, UpdateExpression="SET event_sent = :t",
        ExpressionAttributeValues={":t": {"BOOL": True}},
    )
    logger.info("dataset version ready", extra={"dataset": parts.dataset, "version": parts.version})
    return True


def process_event(event: Any, settings: Settings | None = None) -> dict[str, Any]:
    """Handle one EventBridge event; returns what happened. Raises on malformed events and transient errors."""
    settings = settings or Settings.from_env()
    obj = parse_event(event)
    if obj is None:
        detail = event.get("detail", {})
        logger.info("DataSync state change", extra={"detail_type": event.get("detail-type"), "state": detail.get("State")})
        return {"outcome": "datasync-state", "state": detail.get("State")}
    if obj.key.startswith(QUARANTINE_PREFIX) or obj.key.endswith("/"):
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
    except (TypeError, json.JSONDecodeError) as exc:
        raise MalformedEventError(f"SQS message body is not JSON: {exc}") from exc
    return process_event(event)


_processor = BatchProcessor(event_type=EventType.SQS)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS batch of EventBridge events (partial failures reported) or one EventBridge event."""
    if isinstance(event, dict) and isinstance(event.get("Records"), list):
        return process_partial_response(event=event, record_handler=_record_handler, processor=_processor, context=context)
    return process_event(event)
