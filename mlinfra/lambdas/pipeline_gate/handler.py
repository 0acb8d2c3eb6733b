"""Retrain pipeline: the gate. Compare the candidate's metric with a threshold AND with the production model.

Event::

    {"metric_name": "accuracy", "direction": "higher", "threshold": 0.9, "min_improvement": 0.005,
     "candidate": 0.93, "model_package_group": "my-group", "manual_approval": false,
     "lineage": {"dataset": ..., "dataset_version": ..., "code_version": ..., "image_digest": ...,
                 "training_job_arn": ..., "hyperparameters": {...}, "report_uri": ...}}

The production model is the newest *Approved* package of the Model Package Group (the pipeline marks a
package Approved only once it is deployed); its metric is read from the package's customer metadata
``metric:<name>``. With no production model, only the threshold applies.

Returns ``{"passed", "approval_status", "reasons", "candidate", "baseline", "baseline_model_package_arn",
"customer_metadata", "approval_description"}``: ``approval_status`` is ``PendingManualApproval`` when the
candidate passes (the pipeline approves it after approval and deployment) and ``Rejected`` otherwise;
``customer_metadata`` is the lineage to attach to the model package, within SageMaker's
CustomerMetadataProperties rules (botocore's model: at most 50 entries, keys 1-128 and values 1-256 characters of
letters, digits, spaces and ``_.:/=+-@``; other characters become ``_``, the hyperparameters a ``sha256:`` digest).
A production metric that is NaN or infinite counts as missing (the gate looks at older approved packages).
Read-only, so retries are safe.
"""

from __future__ import annotations

import hashlib
import json
import math
import unicodedata
from typing import Any

import boto3
from aws_lambda_powertools import Logger

logger = Logger()
DIRECTIONS = ("higher", "lower")
#: CustomerMetadataProperties (CreateModelPackage): entries, key and value lengths, extra characters besides
#: letters (L), separators (Z) and numbers (N) (rule sagemaker.customer-metadata).
META_MAX_ENTRIES, META_KEY_MAX, META_VALUE_MAX = 50, 128, 256
_META_EXTRA = frozenset("_.:/=+-@")
_clients: dict[str, Any] = {}


def sagemaker():
    if "sagemaker" not in _clients:
        _clients["sagemaker"] = boto3.client("sagemaker")
    return _clients["sagemaker"]


class GateConfigurationError(ValueError):
    """The gate event is malformed (missing metric, bad direction, non-numeric values)."""


def _num(event: dict[str, Any], key: str, required: bool = True) -> float | None:
    value = event.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GateConfigurationError(f"{key} must be a finite number, got: {value!r}")
    return float(value)


def decide(candidate: float, baseline: float | None, direction: str, threshold: float | None, min_improvement: float) -> tuple[bool, list[str]]:
    """(passed, reasons). ``higher``: candidate >= threshold and candidate - baseline >= min_improvement;
    ``lower``: candidate <= threshold and baseline - candidate >= min_improvement."""
    reasons: list[str] = []
    better_sign = 1.0 if direction == "higher" else -1.0
    if threshold is not None:
        ok = candidate >= threshold if direction == "higher" else candidate <= threshold
        op = ">=" if direction == "higher" else "<="
        reasons.append(f"threshold: {candidate} {op} {threshold}: {'pass' if ok else 'FAIL'}")
    else:
        ok = True
    if baseline is None:
        reasons.append("baseline: no production model in the registry; threshold only")
    else:
        improvement = (candidate - baseline) * better_sign
        improved = improvement >= min_improvement - 1e-12
        reasons.append(
            f"baseline: improvement {improvement:.6g} over production {baseline} (minimum {min_improvement}): "
            f"{'pass' if improved else 'FAIL'}"
        )
        ok = ok and improved
    return ok, reasons


def production_model(group: str, metric_name: str) -> tuple[float | None, str | None]:
    """(metric, arn) of the newest Approved package of ``group``; (None, None) when there is none."""
    resp = sagemaker().list_model_packages(
        ModelPackageGroupName=group, ModelApprovalStatus="Approved", SortBy="CreationTime", SortOrder="Descending", MaxResults=10
    )
    summaries = sorted(resp.get("ModelPackageSummaryList", []), key=lambda s: s.get("CreationTime", 0), reverse=True)
    for summary in summaries:
        arn = summary["ModelPackageArn"]
        desc = sagemaker().describe_model_package(ModelPackageName=arn)
        raw = (desc.get("CustomerMetadataProperties") or {}).get(metric_key(metric_name))
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = math.nan
        if math.isfinite(value):
            return value, arn
        logger.warning("approved package lacks a finite metric; looking at older ones", extra={"arn": arn, "value": str(raw)[:50]})
    return None, None


def _meta_text(text: str, limit: int) -> str:
    """``text`` in the metadata character set (others become ``_``); longer than ``limit``: cut, with a digest of
    the whole so distinct long texts stay distinct."""
    clean = "".join(c if c in _META_EXTRA or unicodedata.category(c)[0] in "LZN" else "_" for c in text)
    if len(clean) <= limit:
        return clean
    return clean[: limit - 17] + "_" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def metric_key(metric_name: str) -> str:
    """The metadata key of a metric (the same for writing and for reading the production model's)."""
    return _meta_text(f"metric:{metric_name}", META_KEY_MAX)


def customer_metadata(lineage: dict[str, Any], metric_name: str, candidate: float) -> dict[str, str]:
    # JSON's braces and quotes are outside the metadata character set: the registry keeps a verifiable digest of
    # the hyperparameters (the full set is in the lineage table).
    hps = json.dumps(lineage.get("hyperparameters") or {}, sort_keys=True, separators=(",", ":"))
    hps = "sha256:" + hashlib.sha256(hps.encode("utf-8", "surrogatepass")).hexdigest()
    meta = {
        metric_key(metric_name): repr(candidate),
        "dataset": lineage.get("dataset"),
        "dataset_version": lineage.get("dataset_version"),
        "code_version": lineage.get("code_version"),
        "image_digest": lineage.get("image_digest"),
        "training_job_arn": lineage.get("training_job_arn"),
        "hyperparameters": hps,
        "run_id": lineage.get("run_id"),
    }
    out = {}
    for key, value in meta.items():
        text = _meta_text(str(value), META_VALUE_MAX) if value not in (None, "") else ""
        if text:
            out[key] = text
    return dict(list(out.items())[:META_MAX_ENTRIES])


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise GateConfigurationError(f"event must be an object, got: {type(event).__name__}")
    metric_name = event.get("metric_name")
    if not isinstance(metric_name, str) or not metric_name:
        raise GateConfigurationError(f"metric_name must be a non-empty string, got: {metric_name!r}")
    direction = event.get("direction")
    if direction not in DIRECTIONS:
        raise GateConfigurationError(f"direction must be one of {list(DIRECTIONS)}, got: {direction!r}")
    candidate = _num(event, "candidate")
    threshold = _num(event, "threshold", required=False)
    min_improvement = _num(event, "min_improvement", required=False) or 0.0
    if min_improvement < 0:
        raise GateConfigurationError(f"min_improvement must be >= 0, got: {min_improvement}")
    group = event.get("model_package_group")
    if not isinstance(group, str) or not group:
        raise GateConfigurationError(f"model_package_group must be a non-empty string, got: {group!r}")
    lineage = event.get("lineage") or {}
    if not isinstance(lineage, dict):
        raise GateConfigurationError(f"lineage must be an object, got: {type(lineage).__name__}")
    if not isinstance(event.get("manual_approval", False), bool):
        raise GateConfigurationError(f"manual_approval must be true or false, got: {event.get('manual_approval')!r}")
    baseline, baseline_arn = production_model(group, metric_name)
    passed, reasons = decide(candidate, baseline, direction, threshold, min_improvement)
    status = "PendingManualApproval" if passed else "Rejected"
    description = f"gate {'passed' if passed else 'failed'} on {metric_name} ({direction} is better): " + "; ".join(reasons)
    logger.info("gate decided", extra={"passed": passed, "candidate": candidate, "baseline": baseline})
    return {
        "passed": passed,
        "approval_status": status,
        "reasons": reasons,
        "candidate": candidate,
        "baseline": baseline,
        "baseline_model_package_arn": baseline_arn,
        "customer_metadata": customer_metadata(lineage, metric_name, candidate),
        "approval_description": description[:1000],
    }
