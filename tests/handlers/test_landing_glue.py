"""Landing glue handler against moto in-process: promotion, quarantine, idempotency, manifests, batches."""

from __future__ import annotations

import hashlib
import json
import types

import boto3
import pytest
from moto import mock_aws

from mlinfra.lambdas.landing_glue import handler as glue

LANDING, RAW, TABLE = "landing-bucket", "raw-bucket", "catalog"
DATASETS = {"images": {"extensions": [".csv", ".jpg", ".tar.gz"], "content_types": []}}


def context():
    return types.SimpleNamespace(
        function_name="glue", memory_limit_in_mb=512, invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:glue",
        aws_request_id="req-1", log_group_name="/aws/lambda/glue", log_stream_name="s", function_version="$LATEST",
    )


@pytest.fixture()
def aws(monkeypatch):
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in (LANDING, RAW):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "dataset", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "dataset", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        )
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue_url = sqs.create_queue(QueueName="ready")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = boto3.client("events", region_name="us-east-1")
        events.put_rule(Name="ready", EventPattern=json.dumps({"source": [glue.EVENT_SOURCE]}))
        events.put_targets(Rule="ready", Targets=[{"Id": "q", "Arn": queue_arn}])
        for k, v in {"RAW_BUCKET": RAW, "CATALOG_TABLE": TABLE, "DATASETS": json.dumps(DATASETS)}.items():
            monkeypatch.setenv(k, v)
        glue.set_clients(glue.Clients(s3=s3, dynamodb=ddb, events=events))
        yield types.SimpleNamespace(s3=s3, ddb=ddb, sqs=sqs, queue_url=queue_url)
        glue.set_clients(glue.Clients())


def put(aws, key: str, body: bytes, content_type: str = "text/csv") -> dict:
    out = aws.s3.put_object(Bucket=LANDING, Key=key, Body=body, ContentType=content_type)
    return event(key, len(body), out["VersionId"])


def event(key: str, size: int, version_id: str | None) -> dict:
    return {
        "version": "0", "id": "e-1", "source": "aws.s3", "detail-type": "Object Created", "account": "123456789012",
        "region": "us-east-1", "time": "2026-11-24T00:00:00Z", "resources": [f"arn:aws:s3:::{LANDING}"],
        "detail": {"version": "0", "bucket": {"name": LANDING}, "reason": "PutObject", "requester": "123456789012",
                   "object": {"key": key, "size": size, "version-id": version_id, "etag": "x"}},
    }


def catalog(aws) -> list[dict]:
    return aws.ddb.scan(TableName=TABLE)["Items"]


def files(aws) -> list[dict]:
    return [i for i in catalog(aws) if i["kind"]["S"] == "file"]


def versions(aws, bucket: str) -> tuple[list[dict], list[dict]]:
    out = aws.s3.list_object_versions(Bucket=bucket)
    return out.get("Versions", []), out.get("DeleteMarkers", [])


def tags(aws, bucket: str, key: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in aws.s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}


def ready_events(aws) -> list[dict]:
    msgs = aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in msgs]


def assert_nothing_deleted(aws, landing_keys: set[str]) -> None:
    landing, markers = versions(aws, LANDING)
    assert not markers and not versions(aws, RAW)[1], "a delete marker was written"
    assert landing_keys <= {v["Key"] for v in landing}, "a landing object disappeared"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_good_file_is_tagged_promoted_and_catalogued(aws):
    body = b"a,b\n1,2\n"
    ev = put(aws, "images/v1/train/part-0.csv", body)
    result = glue.handler(ev, context())
    assert result["outcome"] == "promoted"
    raw_key = "dataset=images/version=v1/train/part-0.csv"
    assert aws.s3.get_object(Bucket=RAW, Key=raw_key)["Body"].read() == body
    assert tags(aws, RAW, raw_key) == {"mlinfra:dataset": "images", "mlinfra:dataset-version": "v1"}
    assert tags(aws, LANDING, "images/v1/train/part-0.csv")["mlinfra:dataset"] == "images"
    (item,) = files(aws)
    assert item["dataset"]["S"] == "images" and item["version"]["S"] == "v1"
    assert item["object_key"]["S"] == raw_key and item["sha256"]["S"] == sha(body)
    assert item["size"]["N"] == str(len(body)) and item["raw_version_id"]["S"] not in ("", "null")
    assert item["landing_version_id"]["S"] == ev["detail"]["object"]["version-id"]
    assert item["source"]["S"].startswith(f"s3://{LANDING}/images/v1/train/part-0.csv") and item["ingested_at"]["S"]
    assert_nothing_deleted(aws, {"images/v1/train/part-0.csv"})


def test_empty_file_is_quarantined_with_reason(aws):
    ev = put(aws, "images/v1/empty.csv", b"")
    result = glue.handler(ev, context())
    assert result == {"outcome": "quarantined", "key": "images/v1/empty.csv", "reason": "empty-file"}
    assert tags(aws, LANDING, "_quarantine/images/v1/empty.csv")["mlinfra:quarantine-reason"] == "empty-file"
    assert tags(aws, LANDING, "images/v1/empty.csv")["mlinfra:quarantine-reason"] == "empty-file"
    assert versions(aws, RAW)[0] == [] and files(aws) == []
    assert_nothing_deleted(aws, {"images/v1/empty.csv", "_quarantine/images/v1/empty.csv"})


def test_disallowed_extension_and_bad_layout_are_quarantined(aws):
    assert glue.handler(put(aws, "images/v1/run.exe", b"MZ"), context())["reason"] == "extension-not-allowed"
    assert glue.handler(put(aws, "loose-file.csv", b"x"), context())["reason"] == "bad-key-layout"
    assert versions(aws, RAW)[0] == []
    assert_nothing_deleted(aws, {"images/v1/run.exe", "loose-file.csv"})


def test_unknown_dataset_is_quarantined(aws):
    result = glue.handler(put(aws, "secrets/v1/a.csv", b"1"), context())
    assert result["reason"] == "unknown-dataset"
    assert tags(aws, LANDING, "_quarantine/secrets/v1/a.csv")["mlinfra:quarantine-reason"] == "unknown-dataset"
    assert versions(aws, RAW)[0] == [] and catalog(aws) == []


def test_duplicate_event_gives_one_entry_and_one_copy(aws):
    ev = put(aws, "images/v1/a.csv", b"1,2\n")
    assert glue.handler(ev, context())["outcome"] == "promoted"
    assert glue.handler(ev, context())["outcome"] == "duplicate"
    assert len(files(aws)) == 1
    assert len(versions(aws, RAW)[0]) == 1


def test_retry_after_copy_but_before_catalog_does_not_copy_again(aws, monkeypatch):
    ev = put(aws, "images/v1/a.csv", b"1,2\n")
    real_put = aws.ddb.put_item
    monkeypatch.setattr(aws.ddb, "put_item", lambda **kw: (_ for _ in ()).throw(RuntimeError("throttled")))
    with pytest.raises(RuntimeError):
        glue.handler(ev, context())
    monkeypatch.setattr(aws.ddb, "put_item", real_put)
    assert glue.handler(ev, context())["outcome"] == "promoted"
    assert len(versions(aws, RAW)[0]) == 1 and len(files(aws)) == 1


def test_changed_content_at_a_catalogued_path_is_quarantined(aws):
    glue.handler(put(aws, "images/v1/a.csv", b"1"), context())
    result = glue.handler(put(aws, "images/v1/a.csv", b"2"), context())
    assert result["reason"] == "version-immutable"
    assert len(files(aws)) == 1 and len(versions(aws, RAW)[0]) == 1
    assert_nothing_deleted(aws, {"images/v1/a.csv"})


def test_manifest_completion_emits_one_ready_event(aws):
    a, b = b"a\n", b"b\n"
    manifest = {"dataset": "images", "version": "v2", "files": [
        {"path": "a.csv", "sha256": sha(a), "size": len(a)}, {"path": "sub/b.csv", "sha256": sha(b)}]}
    # a file before the manifest, the manifest, then the last file
    assert glue.handler(put(aws, "images/v2/a.csv", a), context())["outcome"] == "promoted"
    m_event = put(aws, "images/v2/_manifest.json", json.dumps(manifest).encode(), "application/json")
    assert glue.handler(m_event, context()) == {"outcome": "manifest", "key": "images/v2/_manifest.json", "files": 2, "ready": False}
    assert ready_events(aws) == []
    last = put(aws, "images/v2/sub/b.csv", b)
    assert glue.handler(last, context())["ready"] is True
    (ev,) = ready_events(aws)
    assert ev["source"] == "mlinfra.ingestion" and ev["detail-type"] == "Dataset Version Ready"
    assert ev["detail"]["dataset"] == "images" and ev["detail"]["version"] == "v2"
    assert ev["detail"]["file_count"] == 2 and ev["detail"]["total_bytes"] == 4
    assert ev["detail"]["s3_uri"] == f"s3://{RAW}/dataset=images/version=v2/"
    # redelivered events do not emit again
    glue.handler(last, context())
    glue.handler(m_event, context())
    assert ready_events(aws) == []
    sks = {i["sk"]["S"] for i in catalog(aws)}
    assert {"v2#MANIFEST", "v2#READY", "v2#FILE#a.csv", "v2#FILE#sub/b.csv"} == sks


def test_bad_checksum_is_quarantined_and_version_not_ready(aws):
    good = b"good"
    manifest = {"files": [{"path": "a.csv", "sha256": sha(b"something else")}]}
    glue.handler(put(aws, "images/v3/_manifest.json", json.dumps(manifest).encode()), context())
    result = glue.handler(put(aws, "images/v3/a.csv", good), context())
    assert result["reason"] == "checksum-mismatch"
    assert tags(aws, LANDING, "_quarantine/images/v3/a.csv")["mlinfra:quarantine-reason"] == "checksum-mismatch"
    assert files(aws) == [] and ready_events(aws) == []
    assert_nothing_deleted(aws, {"images/v3/a.csv", "images/v3/_manifest.json"})


def test_manifest_arriving_late_rejects_mismatching_files(aws):
    glue.handler(put(aws, "images/v9/a.csv", b"real"), context())
    glue.handler(put(aws, "images/v9/extra.csv", b"x"), context())
    manifest = {"files": [{"path": "a.csv", "sha256": sha(b"expected")}]}
    out = glue.handler(put(aws, "images/v9/_manifest.json", json.dumps(manifest).encode()), context())
    assert out["ready"] is False and out["rejected"] == ["a.csv", "extra.csv"]
    raw_tags = tags(aws, RAW, "dataset=images/version=v9/a.csv")
    assert raw_tags["mlinfra:status"] == "rejected" and raw_tags["mlinfra:quarantine-reason"] == "checksum-mismatch"
    assert tags(aws, LANDING, "_quarantine/images/v9/extra.csv")["mlinfra:quarantine-reason"] == "not-in-manifest"
    assert {i["path"]["S"]: i["rejected"]["S"] for i in files(aws)} == {"a.csv": "checksum-mismatch", "extra.csv": "not-in-manifest"}
    assert ready_events(aws) == []
    # a redelivered manifest event does not reject twice
    assert "rejected" not in glue.handler(put(aws, "images/v9/_manifest.json", json.dumps(manifest).encode()), context())
    assert_nothing_deleted(aws, {"images/v9/a.csv", "images/v9/extra.csv"})
    assert len(versions(aws, RAW)[0]) == 2


def test_file_not_listed_in_manifest_and_invalid_manifest(aws):
    glue.handler(put(aws, "images/v4/_manifest.json", json.dumps({"files": [{"path": "a.csv", "sha256": "0" * 64}]}).encode()), context())
    assert glue.handler(put(aws, "images/v4/extra.csv", b"x"), context())["reason"] == "not-in-manifest"
    bad = glue.handler(put(aws, "images/v5/_manifest.json", b"{not json"), context())
    assert bad["reason"] == "invalid-manifest"
    traversal = {"files": [{"path": "../v1/a.csv", "sha256": "0" * 64}]}
    assert glue.handler(put(aws, "images/v6/_manifest.json", json.dumps(traversal).encode()), context())["reason"] == "invalid-manifest"


@pytest.mark.parametrize("bad", [
    None, [], {}, {"source": "aws.s3", "detail-type": "Object Deleted", "detail": {}},
    {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": LANDING}, "object": {}}},
    {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": LANDING}, "object": {"key": "a/b/c", "size": -1}}},
])
def test_malformed_event_raises_clear_error(aws, bad):
    with pytest.raises(glue.MalformedEventError):
        glue.handler(bad, context())


def test_quarantine_copies_are_ignored_and_datasync_events_logged(aws):
    assert glue.handler(event("_quarantine/images/v1/x.csv", 1, None), context())["outcome"] == "ignored"
    ds = {"source": "aws.datasync", "detail-type": "DataSync Task Execution State Change", "detail": {"State": "ERROR"}}
    assert glue.handler(ds, context()) == {"outcome": "datasync-state", "state": "ERROR"}


def test_sqs_batch_reports_partial_failures(aws):
    good = put(aws, "images/v7/a.csv", b"1")
    records = [
        {"messageId": "m1", "body": json.dumps(good), "receiptHandle": "r1", "attributes": {}, "messageAttributes": {},
         "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"},
        {"messageId": "m2", "body": "not json", "receiptHandle": "r2", "attributes": {}, "messageAttributes": {},
         "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"},
        {"messageId": "m3", "body": json.dumps(event("images/v7/missing.csv", 3, None)), "receiptHandle": "r3",
         "attributes": {}, "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"},
    ]
    out = glue.handler({"Records": records}, context())
    assert sorted(f["itemIdentifier"] for f in out["batchItemFailures"]) == ["m2", "m3"]
    assert len(files(aws)) == 1


def test_url_encoded_key_falls_back_to_decoded(aws):
    aws.s3.put_object(Bucket=LANDING, Key="images/v8/my file.csv", Body=b"1")
    assert glue.handler(event("images/v8/my+file.csv", 1, None), context())["outcome"] == "promoted"


def test_settings_require_bucket_and_table():
    with pytest.raises(RuntimeError, match="RAW_BUCKET"):
        glue.Settings.from_env({"CATALOG_TABLE": "t"})


@pytest.mark.parametrize("path,ext", [("a/b.CSV", ".csv"), ("x.tar.gz", ".tar.gz"), ("noext", ""), (".hidden", "")])
def test_extension_of(path, ext):
    assert glue.extension_of(path) == ext


def test_split_key_rejects_traversal_and_reserved():
    assert glue.split_key("d/v/../x") is None
    assert glue.split_key("_quarantine/v/x") is None
    assert glue.split_key("d/v/") is None
    assert glue.split_key("d/v/a/b.csv") == glue.KeyParts("d", "v", "a/b.csv")
