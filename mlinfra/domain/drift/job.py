"""Entry point of the drift job (a SageMaker Processing job on the stock scikit-learn image).

Two commands::

    python3 -m drift.job monitor --endpoint NAME --capture s3://B/data-capture/realtime/NAME/ \\
        --baseline s3://B/baselines/NAME/latest.json --report s3://B/drift-reports/ \\
        --window-end 2026-11-30T10:00:00Z --window-hours 24 [--ground-truth s3://B/ground-truth/NAME/] \\
        [--thresholds '{"default": {"psi": 0.2}}'] [--namespace mlinfra/Drift] [--event-bus default]
    python3 -m drift.job baseline --data s3://B/dataset=x/version=3/ --output s3://B/baselines/NAME/latest.json \\
        [--label-column y] [--predictions s3://B/holdout-predictions.csv] [--model ARN]

``monitor`` reads every capture file of the window: for each variant folder under ``--capture`` and each hour
``YYYY/MM/DD/HH/`` of the window, every object, listed with pagination (no 1,000-file cap). It writes
``report.json`` and ``report.html`` under ``<report>/<endpoint>/<YYYY/MM/DD/HHMM of window end>/``, puts the
metrics (docs/monitoring.md) and, when drift is detected, puts a ``Model Drift Detected`` event (source
``mlinfra.drift``) naming the report. Without a baseline it fails with the command that makes one.

boto3 is imported when a command runs, never at import, so the engine stays importable without it.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import numpy as np

from .capture import CaptureParser, parse_ground_truth
from .contract import EVENT_DETAIL_TYPE, EVENT_SOURCE, NAMESPACE
from .detect import compare, report_json
from .html import render_html
from .profile import Baseline, build_baseline
from .quality import quality_metrics

#: PutMetricData takes at most 1,000 metric data items per request (CloudWatch API reference).
METRICS_PER_CALL = 500


class NoBaselineError(RuntimeError):
    """The model has no baseline: the message says how to produce one."""


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[5:].partition("/") if uri.startswith("s3://") else ("", "", "")
    if not bucket:
        raise ValueError(f"expected an s3://bucket/key URI, got: {uri!r}")
    return bucket, key


def parse_time(value: str) -> datetime:
    t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def window_hours(end: datetime, hours: int) -> list[str]:
    """``YYYY/MM/DD/HH/`` of every hour in ``[end - hours, end)`` (SageMaker's capture layout), oldest first."""
    last = end.replace(minute=0, second=0, microsecond=0)
    if last == end:
        last -= timedelta(hours=1)
    return [(last - timedelta(hours=h)).strftime("%Y/%m/%d/%H/") for h in range(hours - 1, -1, -1)]


def list_keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"]


def read_text(s3: Any, bucket: str, key: str) -> str:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    if key.endswith(".gz"):
        body = gzip.decompress(body)
    return body.decode("utf-8", errors="replace")


def window_keys(s3: Any, bucket: str, prefix: str, hours: list[str]) -> list[str]:
    """Every object of the window under each variant folder (``prefix/<variant>/YYYY/MM/DD/HH/``)."""
    prefix = prefix if prefix.endswith("/") or not prefix else prefix + "/"
    variants: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        variants += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    keys: list[str] = []
    for variant in sorted(variants):
        for hour in hours:
            keys += list_keys(s3, bucket, variant + hour)
    return sorted(keys)


def read_baseline(s3: Any, uri: str) -> Baseline:
    bucket, key = split_s3(uri)
    try:
        text = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        raise NoBaselineError(
            f"no baseline at {uri}: a model without a baseline cannot be monitored. Produce one from the training "
            f"data with `python3 -m drift.job baseline --data s3://<training data prefix>/ --output {uri}` (the "
            f"retrain pipeline does it after each successful run when the DriftMonitor has a baseline hook)") from None
    return Baseline.from_json(text)


def monitor(args: argparse.Namespace, clients: dict[str, Any]) -> dict[str, Any]:
    s3 = clients["s3"]
    baseline = read_baseline(s3, args.baseline)
    end = parse_time(args.window_end)
    hours = window_hours(end, args.window_hours)
    bucket, prefix = split_s3(args.capture)
    keys = window_keys(s3, bucket, prefix, hours)
    kinds = {f.name: f.kind for f in baseline.features}
    parser = CaptureParser(baseline.feature_order, kinds, baseline.prediction.kind if baseline.prediction else "numeric")
    for key in keys:
        parser.feed_text(read_text(s3, bucket, key))
    data = parser.finish()
    quality = None
    if args.ground_truth:
        gt_bucket, gt_prefix = split_s3(args.ground_truth)
        labels: dict[str, str] = {}
        bad = 0
        for key in [k for h in hours for k in list_keys(s3, gt_bucket, gt_prefix.rstrip("/") + "/" + h)]:
            got, b = parse_ground_truth(read_text(s3, gt_bucket, key).splitlines())
            labels.update(got)
            bad += b
        quality = quality_metrics(data.inference_ids, data.predictions, labels, problem=args.problem)
        quality["malformed_lines"] = bad
    thresholds = json.loads(args.thresholds) if args.thresholds else None
    window = {"end": end.strftime("%Y-%m-%dT%H:%M:%SZ"), "hours": args.window_hours, "files": len(keys)}
    report = compare(baseline, data, thresholds=thresholds, window=window, quality=quality,
                     schema_drift=args.schema_changes_retrain, sources={"endpoint": args.endpoint, "capture": args.capture, "baseline": args.baseline})
    out_bucket, out_prefix = split_s3(args.report)
    folder = f"{out_prefix.rstrip('/') + '/' if out_prefix.strip('/') else ''}{args.endpoint}/{end.strftime('%Y/%m/%d/%H%M')}/"
    report["location"] = {"json": f"s3://{out_bucket}/{folder}report.json", "html": f"s3://{out_bucket}/{folder}report.html"}
    s3.put_object(Bucket=out_bucket, Key=folder + "report.json", Body=report_json(report).encode(), ContentType="application/json")
    s3.put_object(Bucket=out_bucket, Key=folder + "report.html", Body=render_html(report, f"Drift report: {args.endpoint}").encode(),
                  ContentType="text/html")
    put_metrics(clients["cloudwatch"], args.namespace, args.endpoint, report)
    if report["drift_detected"]:
        put_event(clients["events"], args.event_bus, args.endpoint, report)
    return report


def metric_data(endpoint: str, report: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics of one report (names and dimensions as docs/monitoring.md lists them)."""
    dims = [{"Name": "EndpointName", "Value": endpoint}]
    s = report["summary"]
    c = report["counts"]
    overall = {
        "DriftDetected": 1.0 if report["drift_detected"] else 0.0,
        "DriftedFeatures": float(s["drifted_count"]),
        "Records": float(c["records"]),
        "MalformedRecords": float(c["malformed_lines"] + c["malformed_payloads"] + c["schema_mismatch_rows"]),
        "SchemaChanges": 1.0 if s["schema_changed"] else 0.0,
        "NotEnoughData": 1.0 if report["status"] in ("not_enough_data", "empty_window") else 0.0,
    }
    if s["drift_share"] is not None:
        overall["DriftShare"] = float(s["drift_share"])
    pred = report.get("prediction") or {}
    for key, name in (("psi", "PredictionPSI"), ("js_distance", "PredictionJSDistance")):
        if pred.get(key) is not None:
            overall[name] = float(pred[key])
    quality = report.get("quality") or {}
    for key, name in (("accuracy", "ModelAccuracy"), ("f1_macro", "ModelF1"), ("auc", "ModelAUC"),
                      ("rmse", "ModelRMSE"), ("mae", "ModelMAE")):
        if quality.get(key) is not None:
            overall[name] = float(quality[key])
    data = [{"MetricName": k, "Dimensions": dims, "Value": v, "Unit": "Count" if k in ("Records", "MalformedRecords", "DriftedFeatures") else "None"}
            for k, v in overall.items()]
    for feature, f in sorted(report["features"].items()):
        fdims = dims + [{"Name": "Feature", "Value": feature[:255]}]
        values = {"FeatureDrift": 1.0 if f["drifted"] else 0.0, "PSI": f.get("psi"), "KSStatistic": f.get("ks_statistic"),
                  "JSDistance": f.get("js_distance"), "MissingRateChange": f.get("missing_rate_change")}
        data += [{"MetricName": k, "Dimensions": fdims, "Value": float(v), "Unit": "None"} for k, v in values.items() if v is not None]
    return data


def put_metrics(cloudwatch: Any, namespace: str, endpoint: str, report: dict[str, Any]) -> int:
    data = metric_data(endpoint, report)
    for i in range(0, len(data), METRICS_PER_CALL):
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[i:i + METRICS_PER_CALL])
    return len(data)


def event_detail(endpoint: str, report: dict[str, Any]) -> dict[str, Any]:
    """The event's detail (kept far below EventBridge's 256 KB entry limit: at most 50 feature names)."""
    s = report["summary"]
    return {"endpoint": endpoint, "status": report["status"], "report_uri": report["location"]["json"],
            "html_uri": report["location"]["html"], "window": report["window"],
            "drifted_features": s["drifted_features"][:50], "drifted_count": s["drifted_count"],
            "drift_share": s["drift_share"], "prediction_drifted": s["prediction_drifted"],
            "schema_changed": s["schema_changed"]}


def put_event(events: Any, bus: str, endpoint: str, report: dict[str, Any]) -> None:
    resp = events.put_events(Entries=[{"Source": EVENT_SOURCE, "DetailType": EVENT_DETAIL_TYPE, "EventBusName": bus,
                                       "Detail": json.dumps(event_detail(endpoint, report), sort_keys=True)}])
    if resp.get("FailedEntryCount"):
        raise RuntimeError(f"events:PutEvents failed: {resp.get('Entries')}")


# ---- baseline -------------------------------------------------------------------------------------------

def read_table(text: str, name: str) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of a CSV file with a header row or a JSON Lines file of objects."""
    if name.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz")):
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        cols: list[str] = []
        for r in records:
            cols += [k for k in r if k not in cols]
        return cols, [[r.get(c) for c in cols] for r in records]
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    return header, [row for row in reader if row]


def baseline(args: argparse.Namespace, clients: dict[str, Any]) -> dict[str, Any]:
    s3 = clients["s3"]
    bucket, prefix = split_s3(args.data)
    keys = sorted(k for k in list_keys(s3, bucket, prefix) if k.endswith((".csv", ".csv.gz", ".jsonl", ".json", ".jsonl.gz")))
    if not keys:
        raise NoBaselineError(f"baseline: no .csv or .jsonl training data under {args.data}")
    header: list[str] | None = None
    rows: list[list[Any]] = []
    for key in keys:
        cols, part = read_table(read_text(s3, bucket, key), key)
        if header is None:
            header = cols
        elif cols != header:
            raise ValueError(f"baseline: {key} has columns {cols[:10]}, the first file had {header[:10]}")
        rows += part[: max(0, args.max_rows - len(rows))]
        if len(rows) >= args.max_rows:
            break
    assert header is not None
    columns = {name: np.array([r[j] if j < len(r) else None for r in rows], dtype=object)
               for j, name in enumerate(header) if name != args.label_column}
    preds = None
    if args.predictions:
        pb, pk = split_s3(args.predictions)
        preds = np.array([line.split(",")[0] for line in read_text(s3, pb, pk).splitlines() if line.strip()], dtype=object)
    result = build_baseline(columns, predictions=preds, source=args.data, model=args.model or "")
    out_bucket, out_key = split_s3(args.output)
    body = result.to_json().encode()
    s3.put_object(Bucket=out_bucket, Key=out_key, Body=body, ContentType="application/json")
    if args.copy_to:
        copy_bucket, copy_key = split_s3(args.copy_to)
        s3.put_object(Bucket=copy_bucket, Key=copy_key, Body=body, ContentType="application/json")
    return {"baseline_uri": args.output, "features": len(result.features), "rows": len(rows)}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="drift.job", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("monitor", help="compare a window of captured traffic with the baseline")
    m.add_argument("--endpoint", required=True)
    m.add_argument("--capture", required=True, help="s3:// prefix of the endpoint's captures (its variant folders below)")
    m.add_argument("--baseline", required=True, help="s3:// URI of the baseline JSON")
    m.add_argument("--report", required=True, help="s3:// prefix the reports go under")
    m.add_argument("--window-end", default=os.environ.get("DRIFT_WINDOW_END", ""),
                   help="ISO time; the window is [end - hours, end) (default: $DRIFT_WINDOW_END)")
    m.add_argument("--window-hours", type=int, default=24)
    m.add_argument("--ground-truth", default="", help="s3:// prefix of ground-truth JSON Lines (YYYY/MM/DD/HH/ below)")
    m.add_argument("--problem", default="auto", choices=["auto", "classification", "regression"])
    m.add_argument("--thresholds", default="", help="JSON: {\"default\": {...}, \"features\": {name: {...}}}")
    m.add_argument("--namespace", default=NAMESPACE)
    m.add_argument("--event-bus", default="default")
    m.add_argument("--schema-changes-retrain", action="store_true",
                   help="schema changes alone count as drift (the drift event and retrain); default: reported and alarmed only")
    b = sub.add_parser("baseline", help="profile training data (and holdout predictions) into a baseline")
    b.add_argument("--data", default=os.environ.get("DRIFT_DATA", ""),
                   help="s3:// prefix of CSV (with header) or JSON Lines training data (default: $DRIFT_DATA)")
    b.add_argument("--output", default=os.environ.get("DRIFT_OUTPUT", ""),
                   help="s3:// URI of the baseline JSON to write (default: $DRIFT_OUTPUT)")
    b.add_argument("--copy-to", default="", help="s3:// URI of a second copy (the baseline a monitor reads)")
    b.add_argument("--label-column", default="")
    b.add_argument("--predictions", default="", help="s3:// URI of the model's holdout predictions, one per line")
    b.add_argument("--model", default=os.environ.get("DRIFT_MODEL", ""), help="model package ARN or run id recorded in the baseline")
    b.add_argument("--max-rows", type=int, default=1_000_000)
    return p


def main(argv: list[str] | None = None, clients: dict[str, Any] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    if args.command == "monitor" and not 1 <= args.window_hours <= 24 * 31:
        raise SystemExit(f"--window-hours must be between 1 and 744, got: {args.window_hours}")
    missing = [flag for flag, value in ((("--window-end", args.window_end),) if args.command == "monitor" else
                                        (("--data", args.data), ("--output", args.output))) if not value]
    if missing:
        raise SystemExit(f"{args.command}: {', '.join(missing)} required (or their DRIFT_* environment variables)")
    if clients is None:
        import boto3  # only when the job runs

        clients = {name: boto3.client(name) for name in ("s3", "cloudwatch", "events")}
    try:
        result = monitor(args, clients) if args.command == "monitor" else baseline(args, clients)
    except NoBaselineError as err:
        _exit_message(str(err))
        raise SystemExit(str(err)) from None
    summary = {k: result[k] for k in ("status", "summary", "location") if k in result} if args.command == "monitor" else result
    print(json.dumps(summary, sort_keys=True))
    return result


def _exit_message(text: str) -> None:
    """SageMaker shows /opt/ml/output/message as the Processing job's ExitMessage."""
    try:
        with open("/opt/ml/output/message", "w") as fh:
            fh.write(text[:1024])
    except OSError:
        pass


if __name__ == "__main__":  # pragma: no cover - the Processing job's entry point
    main(sys.argv[1:])
    sys.exit(0)
