"""Retrain pipeline, first state: validate the run's input and plan every name and URI of the run.

Event (built by the state machine)::

    {"input": <the execution input>, "execution": {"name": ..., "id": ..., "start_time": ...},
     "settings": <static settings of the pipeline, from the construct>}

The execution input (the pipeline's input schema, also used by manual ``StartExecution``)::

    {"dataset": "images", "version": "2026-11-24", "hyperparameters": {"epochs": 10},
     "code_version": "9f1c2e7", "trigger": "manual"}

Returns ``{"plan": {...}}``: dataset, version, run id, job and model names, S3 URIs (input, checkpoints,
output, evaluation report), hyperparameters as strings, code version, image and its digest, lock expiry.
Pure and deterministic for one execution (safe to retry); the only AWS calls are reads (S3 list, ECR).

A run trains only on a version the landing glue declared ready (its marker
``dataset=<d>/_ready/<UTC stamp>_<version>.json`` in the raw bucket; settings ``require_ready: false`` turns
this off for lakes fed without the glue). At most 100 hyperparameters reach CreateTrainingJob (its
``HyperParameters`` map: 0-100 entries, keys up to 256 and values up to 2500 characters, botocore's SageMaker
model), counting the defaults and the report URI the plan adds. Every malformed input raises
:class:`InvalidInputError` naming the field.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from typing import Any

import boto3
from aws_lambda_powertools import Logger

logger = Logger()

DATASET_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
HYPERPARAMETER_KEY_RE = re.compile(r"^[A-Za-z0-9_.:/-]{1,256}$")
MAX_HYPERPARAMETERS = 100  # CreateTrainingJob HyperParameters: at most 100 entries (rule sagemaker.hyperparameters)
MAX_HYPERPARAMETER_VALUE = 2500
REQUIRED_SETTINGS = ("raw_bucket", "curated_bucket", "artifacts_bucket", "models_bucket", "job_prefix")
READY_MARKER_DIR = "_ready/"  # the landing glue's ready markers (same layout as its ready_marker_key)
ALLOWED_INPUT_KEYS = {"dataset", "version", "hyperparameters", "code_version", "trigger", "event_id", "note"}
_ECR_RE = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([^:@]+)(?::([^@]+))?(?:@(sha256:[0-9a-f]{64}))?$")

_clients: dict[str, Any] = {}


def client(name: str):
    if name not in _clients:
        _clients[name] = boto3.client(name)
    return _clients[name]


class InvalidInputError(ValueError):
    """The execution input does not match the pipeline's input schema."""


def dataset_prefix(dataset: str, version: str) -> str:
    """Raw-zone prefix of one dataset version (same layout as mlinfra.constructs.data_lake.dataset_prefix)."""
    return f"dataset={dataset}/version={version}/"


def validate_input(data: Any, settings: dict[str, Any]) -> list[str]:
    """Every problem of the execution input, as ``<field>: <what>, got: <value>`` lines."""
    if not isinstance(data, dict):
        return [f"input: must be a JSON object, got: {type(data).__name__}"]
    errors: list[str] = []
    unknown = sorted(set(data) - ALLOWED_INPUT_KEYS)
    if unknown:
        errors.append(f"input: unknown field(s) {unknown}; allowed: {sorted(ALLOWED_INPUT_KEYS)}")
    dataset = data.get("dataset")
    if not isinstance(dataset, str) or not DATASET_RE.fullmatch(dataset):
        errors.append(f"dataset: must be 1-63 lowercase letters, digits, '_' or '-', got: {dataset!r}")
    elif settings.get("datasets") and dataset not in settings["datasets"]:
        errors.append(f"dataset: this pipeline trains on {settings['datasets']}, got: {dataset!r}")
    version = data.get("version")
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        errors.append(f"version: must be 1-63 letters, digits, '.', '_' or '-', got: {version!r}")
    hps = data.get("hyperparameters", {})
    if not isinstance(hps, dict):
        errors.append(f"hyperparameters: must be an object of names to scalar values, got: {hps!r}")
    else:
        for key, value in hps.items():
            if not HYPERPARAMETER_KEY_RE.fullmatch(str(key)):
                errors.append(f"hyperparameters.{key}: invalid name (1-256 of A-Za-z0-9_.:/-)")
            if isinstance(value, (dict, list)) or value is None:
                errors.append(f"hyperparameters.{key}: must be a string, number or boolean, got: {value!r}"[:300])
            elif isinstance(value, float) and not math.isfinite(value):
                errors.append(f"hyperparameters.{key}: must be a finite number, got: {value!r}")
            elif len(to_hyperparameter_string(value)) > MAX_HYPERPARAMETER_VALUE:
                errors.append(f"hyperparameters.{key}: SageMaker allows at most {MAX_HYPERPARAMETER_VALUE} characters per value")
        merged = {str(k) for k in settings.get("default_hyperparameters") or {}} | {str(k) for k in hps}
        merged.add("mlinfra_evaluation_report_uri")
        if len(merged) > MAX_HYPERPARAMETERS:
            errors.append(f"hyperparameters: CreateTrainingJob accepts at most {MAX_HYPERPARAMETERS}, got: {len(merged)} "
                          "(with the pipeline's defaults and mlinfra_evaluation_report_uri; AWS rule sagemaker.hyperparameters)")
    for key in ("code_version", "trigger", "event_id", "note"):
        if key in data and not isinstance(data[key], str):
            errors.append(f"{key}: must be a string, got: {data[key]!r}")
    return errors


def to_hyperparameter_string(value: Any) -> str:
    """SageMaker hyperparameters are strings: booleans as ``true``/``false``, numbers as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def short_hash(text: str, length: int = 10) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def plan_run(data: dict[str, Any], execution: dict[str, Any], settings: dict[str, Any], image_digest: str) -> dict[str, Any]:
    """Names and URIs of one run, all derived from the execution name (so retries reuse them)."""
    dataset, version = data["dataset"], data["version"]
    run_id = execution["name"]
    base = f"{settings['job_prefix']}-{short_hash(execution['id'] or run_id)}"
    run_path = f"{dataset}/{version}/{run_id}/"
    artifacts = settings["artifacts_bucket"]
    raw_uri = f"s3://{settings['raw_bucket']}/{dataset_prefix(dataset, version)}"
    preprocessed_uri = f"s3://{settings['curated_bucket']}/{dataset_prefix(dataset, version)}run={run_id}/"
    report_uri = f"s3://{artifacts}/evaluation/{run_path}evaluation.json"
    hps = {**settings.get("default_hyperparameters", {}), **data.get("hyperparameters", {})}
    hyperparameters = {str(k): to_hyperparameter_string(v) for k, v in hps.items()}
    # The training container may write the report itself (no evaluation job): tell it where.
    hyperparameters.setdefault("mlinfra_evaluation_report_uri", report_uri)
    lock_ttl = int(settings.get("lock_ttl_seconds", 7 * 24 * 3600))
    now = int(time.time())
    return {
        "dataset": dataset,
        "version": version,
        "run_id": run_id,
        "execution_id": execution.get("id", ""),
        "trigger": data.get("trigger", "manual"),
        "code_version": data.get("code_version") or settings.get("code_version", "unknown"),
        "image": settings.get("training_image", ""),
        "image_digest": image_digest,
        "hyperparameters": hyperparameters,
        "names": {
            "training_job_base": f"{base}-train",
            "preprocessing_job": f"{base}-prep",
            "evaluation_job": f"{base}-eval",
            "model": f"{base}-model",
            "endpoint_config": f"{base}-epc",
            "client_token": short_hash(execution.get("id") or run_id, 32),
        },
        "uris": {
            "raw_input": raw_uri,
            "preprocessed": preprocessed_uri,
            "train_input": preprocessed_uri if settings.get("preprocessing") else raw_uri,
            "checkpoints": f"s3://{artifacts}/checkpoints/{run_path}",
            "output": f"s3://{settings['models_bucket']}/{dataset}/{version}/",
            "evaluation_output": f"s3://{artifacts}/evaluation/{run_path}",
            "evaluation_report": report_uri,
        },
        "lock": {"key": f"lock#{dataset}", "now": str(now), "expires_at": str(now + lock_ttl)},
    }


def validate_event(event: Any) -> list[str]:
    """Problems of the state's event itself (built by the state machine, so each names a construct bug)."""
    if not isinstance(event, dict):
        return [f"event: must be {{'input', 'execution', 'settings'}} as sent by the pipeline, got: {type(event).__name__}"]
    errors = []
    execution, settings = event.get("execution"), event.get("settings")
    if not isinstance(execution, dict) or not isinstance(execution.get("name"), str) or not execution.get("name"):
        errors.append(f"execution.name: the execution's name (a string) is required, got: {execution!r}"[:300])
    if not isinstance(settings, dict):
        errors.append(f"settings: must be an object, got: {type(settings).__name__}")
    else:
        for key in REQUIRED_SETTINGS:
            if not isinstance(settings.get(key), str) or not settings[key]:
                errors.append(f"settings.{key}: a non-empty string is required, got: {settings.get(key)!r}")
        if not isinstance(settings.get("default_hyperparameters") or {}, dict):
            errors.append("settings.default_hyperparameters: must be an object")
    return errors


def declared_ready(bucket: str, dataset: str, version: str) -> bool:
    """Whether the landing glue declared ``dataset``/``version`` ready (its marker exists in the raw bucket)."""
    prefix = f"dataset={dataset}/{READY_MARKER_DIR}"
    for page in client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        if any(obj["Key"].endswith(f"_{version}.json") for obj in page.get("Contents", [])):
            return True
    return False


def dataset_exists(bucket: str, dataset: str, version: str) -> bool:
    resp = client("s3").list_objects_v2(Bucket=bucket, Prefix=dataset_prefix(dataset, version), MaxKeys=1)
    return resp.get("KeyCount", 0) > 0


def resolve_image_digest(image: str) -> str:
    """The image's ``sha256:`` digest: from the URI when pinned, else from ECR; ``unresolved`` otherwise."""
    if "@sha256:" in image:
        return image.split("@", 1)[1]
    match = _ECR_RE.fullmatch(image or "")
    if not match:
        return "unresolved"
    registry, _region, repository, tag, _ = match.groups()
    try:
        resp = client("ecr").describe_images(
            registryId=registry, repositoryName=repository, imageIds=[{"imageTag": tag or "latest"}]
        )
        return resp["imageDetails"][0]["imageDigest"]
    except Exception as exc:  # a lineage detail must not fail the run; it is recorded as unresolved
        logger.warning("cannot resolve image digest", extra={"image": image, "error": str(exc)})
        return "unresolved"


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    problems = validate_event(event)
    if problems:
        raise InvalidInputError("event must be {'input': ..., 'execution': {...}, 'settings': {...}} as sent by the "
                                "pipeline: " + "; ".join(problems))
    settings, data = event["settings"], event.get("input")
    errors = validate_input(data, settings)
    if errors:
        raise InvalidInputError("invalid pipeline input: " + "; ".join(errors))
    if settings.get("check_data", True) and not dataset_exists(settings["raw_bucket"], data["dataset"], data["version"]):
        raise InvalidInputError(
            f"dataset: no objects under s3://{settings['raw_bucket']}/{dataset_prefix(data['dataset'], data['version'])}"
        )
    if settings.get("check_data", True) and settings.get("require_ready", True) and not declared_ready(
            settings["raw_bucket"], data["dataset"], data["version"]):
        raise InvalidInputError(
            f"version: {data['dataset']}/{data['version']} was not declared ready by the landing glue (no marker "
            f"under s3://{settings['raw_bucket']}/dataset={data['dataset']}/{READY_MARKER_DIR}); a half-ingested "
            "version is never trained")
    digest = resolve_image_digest(settings.get("training_image", ""))
    plan = plan_run(data, event["execution"], settings, digest)
    logger.info("run planned", extra={"dataset": plan["dataset"], "version": plan["version"], "run_id": plan["run_id"]})
    return {"plan": plan}
