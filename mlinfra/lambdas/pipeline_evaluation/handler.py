"""Retrain pipeline: read the evaluation report (JSON in S3) and return its metrics.

Event: ``{"report_uri": "s3://bucket/key.json", "metric_name": "accuracy"}``.

Accepted report shapes (the first two are what SageMaker model-quality/Clarify-style and simple evaluation
scripts write)::

    {"metrics": {"accuracy": 0.93, "loss": 0.21}}
    {"binary_classification_metrics": {"accuracy": {"value": 0.93, "standard_deviation": 0.01}}}
    {"accuracy": 0.93}

Returns ``{"report_uri", "metric_name", "metric_value", "metrics"}``. A missing or unreadable report, a report
that is not JSON, or a metric that is absent or not a number raises ``EvaluationReportError`` naming the
problem. Read-only, so retries are safe.
"""

from __future__ import annotations

import json
import math
from typing import Any

import boto3
from aws_lambda_powertools import Logger

logger = Logger()
MAX_REPORT_BYTES = 5 * 1024 * 1024
_clients: dict[str, Any] = {}


def s3():
    if "s3" not in _clients:
        _clients["s3"] = boto3.client("s3")
    return _clients["s3"]


class EvaluationReportError(ValueError):
    """The evaluation report is missing, malformed or lacks the metric."""


def parse_s3_uri(uri: Any) -> tuple[str, str]:
    if not isinstance(uri, str) or not uri.startswith("s3://") or "/" not in uri[5:] or uri.endswith("/"):
        raise EvaluationReportError(f"report_uri must be s3://bucket/key of a JSON file, got: {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if isinstance(value, dict) and "value" in value:
        return _number(value["value"])
    return None


def flatten_metrics(report: Any) -> dict[str, float]:
    """``{metric name: number}`` from any accepted report shape; later groups never override earlier ones."""
    if not isinstance(report, dict):
        raise EvaluationReportError(f"the report must be a JSON object, got: {type(report).__name__}")
    metrics: dict[str, float] = {}
    groups = [report["metrics"]] if isinstance(report.get("metrics"), dict) else []
    groups += [v for k, v in report.items() if k != "metrics" and isinstance(v, dict) and _number(v) is None]
    for group in groups:
        for name, value in group.items():
            num = _number(value)
            if num is not None:
                metrics.setdefault(str(name), num)
    for name, value in report.items():
        num = _number(value)
        if num is not None:
            metrics.setdefault(str(name), num)
    return metrics


def read_report(uri: str) -> Any:
    bucket, key = parse_s3_uri(uri)
    try:
        obj = s3().get_object(Bucket=bucket, Key=key)
    except (s3().exceptions.NoSuchKey, s3().exceptions.NoSuchBucket) as exc:
        raise EvaluationReportError(f"no evaluation report at {uri}: the training or evaluation job did not write it") from exc
    if obj.get("ContentLength", 0) > MAX_REPORT_BYTES:
        raise EvaluationReportError(f"evaluation report {uri} is larger than {MAX_REPORT_BYTES} bytes")
    try:
        return json.loads(obj["Body"].read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise EvaluationReportError(f"evaluation report {uri} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise EvaluationReportError(f"evaluation report {uri} is nested too deeply to be a report") from None


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise EvaluationReportError(f"event must be an object, got: {type(event).__name__}")
    metric_name = event.get("metric_name")
    if not isinstance(metric_name, str) or not metric_name:
        raise EvaluationReportError(f"metric_name must be a non-empty string, got: {metric_name!r}")
    uri = event.get("report_uri")
    try:
        metrics = flatten_metrics(read_report(uri))
    except RecursionError:
        raise EvaluationReportError(f"evaluation report {uri} is nested too deeply to be a report") from None
    if metric_name not in metrics:
        raise EvaluationReportError(
            f"metric {metric_name!r} is not a number in {uri}; numeric metrics found: {sorted(metrics)}"
        )
    logger.info("evaluation read", extra={"metric": metric_name, "value": metrics[metric_name]})
    return {"report_uri": uri, "metric_name": metric_name, "metric_value": metrics[metric_name], "metrics": metrics}
