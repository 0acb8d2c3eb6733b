"""Smoke check of the ingestion stack on the local emulator (ORDER 20, after the data lake).

Uploads a small dataset version (two CSV files and a ``_manifest.json`` with their SHA-256) into the landing
bucket, then runs the landing glue handler IN-PROCESS with boto3 pointed at the emulator (moto cannot run
Lambda code, and its S3 does not deliver EventBridge notifications, so the check builds the same
"Object Created" events S3 would send). It then shows the files promoted to raw under
``dataset=<name>/version=<v>/``, catalogued in the DynamoDB table, and the version marked ready.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

ORDER = 20


def _dataset(config) -> str:
    """A registered dataset that accepts .csv (the smoke files), else the first one."""
    datasets = config.ingestion.datasets
    for name, rule in sorted(datasets.items()):
        if not rule.extensions or ".csv" in rule.extensions:
            return name
    if datasets:
        raise RuntimeError("ingestion smoke: no registered dataset accepts .csv files")
    return "smoke"


def _event(bucket: str, key: str, size: int, version_id: str | None) -> dict:
    return {
        "version": "0", "id": f"smoke-{key}", "source": "aws.s3", "detail-type": "Object Created",
        "account": "123456789012", "region": "us-east-1", "time": dt.datetime.now(dt.timezone.utc).isoformat(),
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": size, "version-id": version_id},
                   "reason": "PutObject", "requester": "mlinfra-smoke"},
    }


def run(ctx) -> list[str]:
    from mlinfra.lambdas.landing_glue import handler as glue

    if hasattr(ctx, "has_stack") and not ctx.has_stack("ingestion"):
        return []
    lake, ingestion = ctx.outputs("data-lake"), ctx.outputs("ingestion")
    landing, raw = lake.get("LandingBucketName"), lake.get("RawBucketName")
    table = ingestion.get("CatalogTableName")
    if not (landing and raw and table):
        raise RuntimeError(
            f"ingestion smoke: missing stack outputs (landing={landing!r}, raw={raw!r}, catalog={table!r})"
        )
    dataset = _dataset(ctx.config)
    version = "smoke-" + dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    files = {"train/part-0.csv": b"x,y\n1,2\n3,4\n", "val/part-0.csv": b"x,y\n5,6\n"}
    manifest = {"dataset": dataset, "version": version, "files": [
        {"path": p, "sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for p, b in files.items()]}

    s3 = ctx.client("s3")
    events = []
    for path, body in [*files.items(), ("_manifest.json", json.dumps(manifest).encode())]:
        key = f"{dataset}/{version}/{path}"
        out = s3.put_object(Bucket=landing, Key=key, Body=body, ContentType="text/csv" if path.endswith(".csv") else "application/json")
        events.append(_event(landing, key, len(body), out.get("VersionId")))

    settings = glue.Settings(
        raw_bucket=raw, catalog_table=table, event_bus_name="default",
        datasets={n: glue.DatasetRule(tuple(r.extensions), tuple(r.content_types)) for n, r in ctx.config.ingestion.datasets.items()},
        allow_unregistered=ctx.config.ingestion.allow_unregistered_datasets or not ctx.config.ingestion.datasets,
    )
    glue.set_clients(glue.Clients(s3=s3, dynamodb=ctx.client("dynamodb"), events=ctx.client("events")))
    level = glue.logger.log_level
    glue.logger.setLevel("WARNING")  # keep the handler's INFO lines out of the deploy report
    try:
        outcomes = [glue.process_event(e, settings) for e in events]
    finally:
        glue.set_clients(glue.Clients())
        glue.logger.setLevel(level)
    bad = [o for o in outcomes if o["outcome"] not in ("promoted", "manifest")]
    if bad:
        raise RuntimeError(f"ingestion smoke: the glue rejected smoke files: {bad}")

    prefix = f"dataset={dataset}/version={version}/"
    promoted = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=raw, Prefix=prefix).get("Contents", []))
    if promoted != sorted(prefix + p for p in files):
        raise RuntimeError(f"ingestion smoke: expected {sorted(files)} under s3://{raw}/{prefix}, found {promoted}")
    ddb = ctx.client("dynamodb")
    items = ddb.query(TableName=table, KeyConditionExpression="dataset = :d AND begins_with(sk, :v)",
                      ExpressionAttributeValues={":d": {"S": dataset}, ":v": {"S": f"{version}#"}}, ConsistentRead=True)["Items"]
    marker = ddb.get_item(TableName=table, Key={"dataset": {"S": dataset}, "sk": {"S": f"#READY#{version}"}},
                          ConsistentRead=True).get("Item")
    items += [marker] if marker else []
    kinds = sorted(i["kind"]["S"] for i in items if i["kind"]["S"] != "manifest-shard")  # the manifest's shards
    if kinds != ["file", "file", "manifest", "ready"]:
        raise RuntimeError(f"ingestion smoke: catalog entries for {dataset}/{version} are {kinds}")
    ready = marker
    if not ready.get("event_sent", {}).get("BOOL"):
        raise RuntimeError("ingestion smoke: the version is complete but the ready event was not sent")
    lines = [
        f"ingestion: uploaded {len(files)} files + _manifest.json to s3://{landing}/{dataset}/{version}/",
        "ingestion: ran the landing glue handler in-process against the emulator (moto runs no Lambda code and "
        "sends no S3 EventBridge notifications; the check builds the 'Object Created' events)",
        f"ingestion: promoted to s3://{raw}/{prefix}: {', '.join(p.removeprefix(prefix) for p in promoted)}",
        f"ingestion: catalogued in {table}: {len(files)} files, manifest, ready marker; "
        f"'Dataset Version Ready' put on the default bus (source mlinfra.ingestion)",
    ]
    if ingestion.get("GlueQueueUrl"):
        lines.append(f"ingestion: glue queue deployed: {ingestion['GlueQueueUrl']}")
    return lines
