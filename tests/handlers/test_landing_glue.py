"""Landing glue handler against moto in-process: promotion, quarantine, idempotency, manifests, batches."""

from __future__ import annotations

import hashlib
import json
import types

import boto3
import pytest
from moto import mock_aws

from mlinfra.lambdas.landing_glue import handler as glue
from tests.handlers.faults import Faults
from tests.handlers.lake import glue_lake

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
        s3, ddb = glue_lake(TABLE, LANDING, RAW)
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


def qkey(aws, key: str) -> str:
    """The quarantine key of the newest version of a landing key."""
    newest = [v for v in versions(aws, LANDING)[0] if v["Key"] == key and v["IsLatest"]][0]
    return glue.quarantine_key(key, newest["VersionId"])


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
    assert tags(aws, LANDING, qkey(aws, "images/v1/empty.csv"))["mlinfra:quarantine-reason"] == "empty-file"
    assert tags(aws, LANDING, "images/v1/empty.csv")["mlinfra:quarantine-reason"] == "empty-file"
    assert versions(aws, RAW)[0] == [] and files(aws) == []
    assert_nothing_deleted(aws, {"images/v1/empty.csv", qkey(aws, "images/v1/empty.csv")})


def test_disallowed_extension_and_bad_layout_are_quarantined(aws):
    assert glue.handler(put(aws, "images/v1/run.exe", b"MZ"), context())["reason"] == "extension-not-allowed"
    assert glue.handler(put(aws, "loose-file.csv", b"x"), context())["reason"] == "bad-key-layout"
    assert versions(aws, RAW)[0] == []
    assert_nothing_deleted(aws, {"images/v1/run.exe", "loose-file.csv"})


def test_unknown_dataset_is_quarantined(aws):
    result = glue.handler(put(aws, "secrets/v1/a.csv", b"1"), context())
    assert result["reason"] == "unknown-dataset"
    assert tags(aws, LANDING, qkey(aws, "secrets/v1/a.csv"))["mlinfra:quarantine-reason"] == "unknown-dataset"
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
    sks = {i["sk"]["S"] for i in catalog(aws) if i["kind"]["S"] != "manifest-shard"}
    assert {"v2#MANIFEST", "#READY#v2", "v2#FILE#a.csv", "v2#FILE#sub/b.csv"} == sks


def test_bad_checksum_is_quarantined_and_version_not_ready(aws):
    good = b"good"
    manifest = {"files": [{"path": "a.csv", "sha256": sha(b"something else")}]}
    glue.handler(put(aws, "images/v3/_manifest.json", json.dumps(manifest).encode()), context())
    result = glue.handler(put(aws, "images/v3/a.csv", good), context())
    assert result["reason"] == "checksum-mismatch"
    assert tags(aws, LANDING, qkey(aws, "images/v3/a.csv"))["mlinfra:quarantine-reason"] == "checksum-mismatch"
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
    assert tags(aws, LANDING, qkey(aws, "images/v9/extra.csv"))["mlinfra:quarantine-reason"] == "not-in-manifest"
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
        {"messageId": "m3", "body": json.dumps({**event("images/v7/a.csv", 3, None), "detail-type": "Object Deleted"}), "receiptHandle": "r3",
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
    with pytest.raises(glue.SettingsError, match="RAW_BUCKET"):
        glue.Settings.from_env({"CATALOG_TABLE": "t"})


@pytest.mark.parametrize("path,ext", [("a/b.CSV", ".csv"), ("x.tar.gz", ".tar.gz"), ("noext", ""), (".hidden", "")])
def test_extension_of(path, ext):
    assert glue.extension_of(path) == ext


def test_split_key_rejects_traversal_and_reserved():
    assert glue.split_key("d/v/../x") is None
    assert glue.split_key("_quarantine/v/x") is None
    assert glue.split_key("d/v/") is None
    assert glue.split_key("d/v/a/b.csv") == glue.KeyParts("d", "v", "a/b.csv")


# --- issue 19: nothing lost under retries, concurrency and bad input ------------------------------------------------


def _hook(aws, plan, scheduler=None):
    """Hooked clients for the glue: faults from ``plan``, conditional copies emulated, optional scheduler."""
    faults = Faults(plan, scheduler=scheduler, s3_probe=boto3.client("s3", region_name="us-east-1"))
    clients = {n: faults.attach(boto3.client(n, region_name="us-east-1")) for n in ("s3", "dynamodb", "events")}
    glue.set_clients(glue.Clients(**clients))
    return faults


def _manifest(version: str, files: dict[str, bytes]) -> bytes:
    return json.dumps({"files": [{"path": p, "sha256": sha(b)} for p, b in files.items()]}).encode()


@pytest.mark.parametrize("operation,kind", [("PutEvents", "partial"), ("PutEvents", "before"),
                                            ("TransactWriteItems", "after"), ("Query", "before"),
                                            ("GetItem", "before"), ("PutItem", "after")])
def test_a_fault_while_the_last_file_completes_the_version_is_healed_by_redelivery(aws, operation, kind):
    """Issue 19 item 1: a transient failure on the last file, then the normal redelivery: one ready event."""
    files = {"a.csv": b"a\n", "b.csv": b"b\n"}
    glue.handler(put(aws, "images/r1/_manifest.json", _manifest("r1", files)), context())
    glue.handler(put(aws, "images/r1/a.csv", files["a.csv"]), context())
    last = put(aws, "images/r1/b.csv", files["b.csv"])
    faults = _hook(aws, __import__("tests.handlers.faults", fromlist=["on_operation"]).on_operation(operation, kind))
    with pytest.raises(Exception):
        glue.process_event(last, glue.Settings.from_env())
    assert faults.injected, "the fault was not injected"
    glue.process_event(last, glue.Settings.from_env())  # redelivery
    (ev,) = ready_events(aws)
    assert ev["detail"]["version"] == "r1" and ev["detail"]["file_count"] == 2


def test_manifest_and_last_file_processed_concurrently_in_every_interleaving(aws):
    """Issue 19 item 1: the file's delivery makes k AWS calls, then the manifest's delivery runs to the end, then
    the file's finishes: for every k the version becomes ready (the old glue missed it when the manifest was
    written between the file's manifest read and its catalog write)."""
    from tests.handlers.faults import Scheduler

    files = {"a.csv": b"a\n"}
    runs = range(12)
    for k in runs:
        version = f"c{k}"
        m_ev = put(aws, f"images/{version}/_manifest.json", _manifest(version, files))
        f_ev = put(aws, f"images/{version}/a.csv", files["a.csv"])
        choices = [1] * k + [0] * 40  # waiting threads sorted: 0 = manifest, 1 = file
        scheduler = Scheduler(lambda n: choices.pop(0) % n if choices else 0)
        _hook(aws, None, scheduler)
        settings = glue.Settings.from_env()
        errors = scheduler.run([lambda: glue.process_event(m_ev, settings), lambda: glue.process_event(f_ev, settings)])
        assert errors == [None, None]
    got = []
    while batch := ready_events(aws):
        got += [e["detail"]["version"] for e in batch]
    assert sorted(set(got)) == sorted(f"c{k}" for k in runs)


def test_the_same_event_delivered_twice_concurrently_leaves_one_raw_version(aws):
    """Issue 19 item 2: two concurrent deliveries of one event: one raw version, the catalog names it."""
    from tests.handlers.faults import Scheduler

    ev = put(aws, "images/d1/a.csv", b"1,2\n")
    choices = [0, 1] * 20
    scheduler = Scheduler(lambda n: choices.pop(0) % n if choices else 0)
    _hook(aws, None, scheduler)
    settings = glue.Settings.from_env()
    assert scheduler.run([lambda: glue.process_event(ev, settings)] * 2) == [None, None]
    raw_versions = versions(aws, RAW)[0]
    (item,) = files(aws)
    assert len(raw_versions) == 1 and item["raw_version_id"]["S"] == raw_versions[0]["VersionId"]


def test_two_uploads_to_one_key_processed_concurrently_agree_with_raw(aws):
    """Issue 19 item 2: content A and B at one key, concurrently: the catalog records what raw serves and the other
    upload is quarantined under its own key."""
    from tests.handlers.faults import Scheduler

    ev_a, ev_b = put(aws, "images/d2/a.csv", b"A\n"), put(aws, "images/d2/a.csv", b"B\n")
    choices = [0, 1] * 20
    scheduler = Scheduler(lambda n: choices.pop(0) % n if choices else 0)
    _hook(aws, None, scheduler)
    settings = glue.Settings.from_env()
    outcomes = scheduler.run([lambda: glue.process_event(ev_a, settings), lambda: glue.process_event(ev_b, settings)])
    assert outcomes == [None, None]
    (item,) = files(aws)
    raw = aws.s3.get_object(Bucket=RAW, Key="dataset=images/version=d2/a.csv")
    assert sha(raw["Body"].read()) == item["sha256"]["S"] and len(versions(aws, RAW)[0]) == 1
    loser = ev_b if item["landing_version_id"]["S"] == ev_a["detail"]["object"]["version-id"] else ev_a
    qkey = glue.quarantine_key("images/d2/a.csv", loser["detail"]["object"]["version-id"])
    assert tags(aws, LANDING, qkey)[glue.TAG_REASON] == "version-immutable"


def test_a_5000_file_manifest_of_600_kb_is_accepted(aws):
    """Issue 19 item 3: the manifest is stored in shards, never one item over DynamoDB's 400 KB."""
    entries = {f"train/shard-{i:06d}/part-{i:06d}.csv": hashlib.sha256(str(i).encode()).hexdigest() for i in range(5000)}
    body = json.dumps({"files": [{"path": p, "sha256": s, "size": 10 + i} for i, (p, s) in enumerate(entries.items())]}).encode()
    assert len(body) > 500_000
    out = glue.handler(put(aws, "images/big/_manifest.json", body), context())
    assert out["outcome"] == "manifest" and out["files"] == 5000
    largest = max(len(json.dumps(i, default=lambda b: "x" * len(b))) for i in catalog(aws))
    assert largest < 400_000
    # a listed file is checked against its shard
    path = "train/shard-000007/part-000007.csv"
    aws.s3.put_object(Bucket=LANDING, Key=f"images/big/{path}", Body=b"not it")
    assert glue.handler(event(f"images/big/{path}", 6, None), context())["reason"] == "checksum-mismatch"


@pytest.mark.slow
def test_a_100000_file_manifest_is_accepted_and_each_file_found(aws):
    """Issue 19 item 3 at the size the issue asks for: 100,000 files (about 12 MB of JSON)."""
    files = {f"train/{i // 1000:03d}/part-{i:06d}.csv": f"{i}\n".encode() for i in range(100_000)}
    body = _manifest("huge", files)
    out = glue.handler(put(aws, "images/huge/_manifest.json", body), context())
    assert out["outcome"] == "manifest" and out["files"] == 100_000 and out["ready"] is False
    assert max(len(json.dumps(i, default=lambda b: "x" * len(b))) for i in catalog(aws)) < 400_000
    for path in ("train/000/part-000000.csv", "train/099/part-099999.csv"):
        assert glue.handler(put(aws, f"images/huge/{path}", files[path]), context())["outcome"] == "promoted"
    header = aws.ddb.get_item(TableName=TABLE, Key={"dataset": {"S": "images"}, "sk": {"S": "huge#MANIFEST"}})["Item"]
    assert header["ok_count"]["N"] == "2" and header["file_count"]["N"] == "100000"


def test_a_deeply_nested_manifest_is_quarantined_not_retried(aws):
    """Issue 19 item 3: 100,000 nested lists raise RecursionError in json; the glue quarantines the manifest."""
    out = glue.handler(put(aws, "images/deep/_manifest.json", b"[" * 100_000 + b"]" * 100_000), context())
    assert out["reason"] == "invalid-manifest" and "nested" in out["detail"]


def test_each_rejected_upload_keeps_its_own_quarantine_key(aws):
    """Issue 19 item 4: a second rejected upload to the same key does not make the first non-current."""
    first, second = put(aws, "images/q1/e.csv", b""), put(aws, "images/q1/e.csv", b"")
    glue.handler(first, context())
    glue.handler(second, context())
    keys = {v["Key"] for v in versions(aws, LANDING)[0] if v["Key"].startswith(glue.QUARANTINE_PREFIX)}
    assert keys == {glue.quarantine_key("images/q1/e.csv", e["detail"]["object"]["version-id"]) for e in (first, second)}
    assert all(v["IsLatest"] for v in versions(aws, LANDING)[0] if v["Key"] in keys)


def test_a_crash_after_a_multipart_copy_leaves_no_untagged_raw_object(aws, monkeypatch):
    """Issue 19 item 5: tags and metadata are set with the multipart copy itself; redelivery catalogues it."""
    monkeypatch.setattr(glue, "SINGLE_COPY_LIMIT", 1024)
    monkeypatch.setattr(glue, "MULTIPART_PART_BYTES", 5 * 1024 * 1024)
    body = b"x" * (6 * 1024 * 1024)
    ev = put(aws, "images/mp/big.csv", body)
    from tests.handlers.faults import on_operation

    _hook(aws, on_operation("CompleteMultipartUpload", "after"))
    with pytest.raises(Exception, match="injected"):
        glue.process_event(ev, glue.Settings.from_env())
    assert tags(aws, RAW, "dataset=images/version=mp/big.csv") == {"mlinfra:dataset": "images", "mlinfra:dataset-version": "mp"}
    assert glue.process_event(ev, glue.Settings.from_env())["outcome"] == "promoted"
    assert len(versions(aws, RAW)[0]) == 1 and len(files(aws)) == 1


def test_an_object_deleted_before_processing_is_recorded_as_gone(aws):
    """Issue 19 item 5: the version was permanently deleted: outcome 'gone', no exception, no retry."""
    ev = put(aws, "images/g1/a.csv", b"1")
    aws.s3.delete_object(Bucket=LANDING, Key="images/g1/a.csv", VersionId=ev["detail"]["object"]["version-id"])
    assert glue.handler(ev, context())["outcome"] == "gone"
    assert files(aws) == []


def test_a_raw_key_over_1024_bytes_is_quarantined(aws):
    """Issue 19 item 5: S3 keys are at most 1,024 bytes; the raw key adds 'dataset=' and 'version='."""
    key = "images/long/" + "d/" * 200 + "x" * (1010 - 12 - 400) + ".csv"
    assert len(key.encode()) <= 1024 < len(glue.raw_key(glue.split_key(key)).encode())
    out = glue.handler(put(aws, key, b"1"), context())
    assert out["reason"] == "key-too-long"
    qkey = glue.quarantine_key(key, [v for v in versions(aws, LANDING)[0] if v["Key"] == key][0]["VersionId"])
    assert qkey.startswith("_quarantine/_long/") and len(qkey.encode()) <= 1024
    meta = aws.s3.head_object(Bucket=LANDING, Key=qkey)["Metadata"]
    assert __import__("base64").b64decode(meta[glue.META_SOURCE_KEY]).decode() == key


@pytest.mark.parametrize("env,match", [
    ({"DATASETS": "{not json"}, "DATASETS must be a JSON object"),
    ({"DATASETS": "[1]"}, "DATASETS must be a JSON object"),
    ({"DATASETS": '{"a": {"extensions": ".csv"}}'}, r"DATASETS\['a'\].extensions must be a list"),
    ({"MAX_HASH_BYTES": "10GiB"}, "MAX_HASH_BYTES must be a positive whole number of bytes, got: '10GiB'"),
    ({"MAX_HASH_BYTES": "-1"}, "MAX_HASH_BYTES must be a positive"),
    ({"ALLOW_UNREGISTERED_DATASETS": "yes"}, "ALLOW_UNREGISTERED_DATASETS must be 'true' or 'false'"),
])
def test_bad_configuration_names_the_variable(env, match):
    """Issue 19 item 5."""
    with pytest.raises(glue.SettingsError, match=match):
        glue.Settings.from_env({"RAW_BUCKET": "r", "CATALOG_TABLE": "t", **env})


def test_the_reconciler_entry_point_runs_on_the_scheduled_input(aws):
    files_ = {"a.csv": b"a\n"}
    glue.handler(put(aws, "images/rc/_manifest.json", _manifest("rc", files_)), context())
    ev = put(aws, "images/rc/a.csv", files_["a.csv"])
    from tests.handlers.faults import on_operation

    _hook(aws, on_operation("PutEvents", "partial", times=1))
    with pytest.raises(glue.RetryableError):
        glue.process_event(ev, glue.Settings.from_env())
    assert ready_events(aws) == []
    glue.set_clients(glue.Clients(s3=aws.s3, dynamodb=aws.ddb, events=boto3.client("events", region_name="us-east-1")))
    out = glue.handler(glue.RECONCILE_INPUT, context())
    assert out["finished"] == ["images/rc"]
    assert [e["detail"]["version"] for e in ready_events(aws)] == ["rc"]
    assert glue.handler(glue.RECONCILE_INPUT, context())["finished"] == []
