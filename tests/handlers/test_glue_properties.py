"""Property tests of the landing glue: any order, duplicates, concurrency and a fault at any AWS call.

Each example uploads one dataset version (files, sometimes a manifest with a wrong checksum, a second upload with
other or equal content to one path, an extra file, an empty file, a key outside the layout), then delivers every
event (some twice) in a drawn order, in waves of concurrent deliveries whose AWS calls interleave in a drawn order
(:class:`tests.handlers.faults.Scheduler`), with faults injected before or after drawn calls. A delivery that
raises is redelivered later (SQS at-least-once). When the queue is empty the invariants must hold:

1. catalog = raw: every catalog entry names the one raw version, whose content and source version it records;
   every raw object is catalogued;
2. one raw version per file;
3. ready event(s) for a version if and only if it is complete (at least once; consumers deduplicate);
   a version whose uploads all match its manifest is always complete;
4. nothing deleted (no delete markers, every landing version still there);
5. every rejected object is quarantined under its own key with its own content.

Examples are bounded (``max_examples``) so the handlers tier stays fast; the seed is derandomized.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import json
import types
from collections import deque

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from mlinfra.lambdas.landing_glue import handler as glue
from tests.handlers.faults import KINDS, Faults, Scheduler, at_indices, on_operation

LANDING, RAW, TABLE = "prop-landing", "prop-raw", "prop-catalog"
DATASET = "images"
SETTINGS = glue.Settings(raw_bucket=RAW, catalog_table=TABLE, datasets={DATASET: glue.DatasetRule(extensions=(".csv",))})
_counter = itertools.count()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def env():
    level = glue.logger.log_level
    glue.logger.setLevel("ERROR")  # thousands of deliveries: keep the captured output small
    with mock_aws():
        plain = {name: boto3.client(name, region_name="us-east-1") for name in ("s3", "dynamodb", "events", "sqs")}
        for bucket in (LANDING, RAW):
            plain["s3"].create_bucket(Bucket=bucket)
            plain["s3"].put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        plain["dynamodb"].create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "dataset", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "dataset", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
        )
        queue_url = plain["sqs"].create_queue(QueueName="prop-ready")["QueueUrl"]
        arn = plain["sqs"].get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        plain["events"].put_rule(Name="prop-ready", EventPattern=json.dumps({"source": [glue.EVENT_SOURCE]}))
        plain["events"].put_targets(Rule="prop-ready", Targets=[{"Id": "q", "Arn": arn}])
        hooked = {name: boto3.client(name, region_name="us-east-1") for name in ("s3", "dynamodb", "events")}
        yield types.SimpleNamespace(plain=plain, hooked=hooked, queue_url=queue_url)
        glue.set_clients(glue.Clients())
    glue.logger.setLevel(level)


def event(key: str, size: int, version_id: str) -> dict:
    return {"source": "aws.s3", "detail-type": "Object Created", "id": f"e-{key}-{version_id}",
            "detail": {"bucket": {"name": LANDING}, "object": {"key": key, "size": size, "version-id": version_id}}}


@st.composite
def scenarios(draw):
    n_files = draw(st.integers(1, 3))
    files = {f"part-{i}.csv": f"row,{i},{draw(st.integers(0, 9))}\n".encode() for i in range(n_files)}
    extras = draw(st.sets(st.sampled_from(["conflict", "same-content", "not-in-manifest", "empty", "bad-layout",
                                            "bad-checksum", "no-manifest", "invalid-manifest"]), max_size=2))
    duplicates = draw(st.lists(st.booleans(), min_size=12, max_size=12))
    order_seed = draw(st.randoms(use_true_random=False))
    waves = draw(st.lists(st.integers(1, 3), min_size=1, max_size=6))
    faults = draw(st.dictionaries(st.integers(0, 120), st.sampled_from(KINDS), max_size=3))
    choices = draw(st.lists(st.integers(0, 2), max_size=60))
    return types.SimpleNamespace(files=files, extras=extras, duplicates=duplicates, rng=order_seed, waves=waves,
                                 faults=faults, choices=choices)


def upload(env, version: str, sc) -> tuple[list[dict], dict]:
    """Put the scenario's objects; returns the events and what the version should become."""
    s3 = env.plain["s3"]
    uploads: list[tuple[str, bytes]] = []
    expected_sha = {path: sha(body) for path, body in sc.files.items()}
    if "bad-checksum" in sc.extras:
        expected_sha[next(iter(sc.files))] = sha(b"what the producer meant")
    manifest = {"files": [{"path": p, "sha256": s} for p, s in sorted(expected_sha.items())]}
    for path, body in sc.files.items():
        uploads.append((f"{DATASET}/{version}/{path}", body))
    first = next(iter(sc.files))
    if "conflict" in sc.extras:
        uploads.append((f"{DATASET}/{version}/{first}", b"other content\n"))
    if "same-content" in sc.extras:
        uploads.append((f"{DATASET}/{version}/{first}", sc.files[first]))
    if "not-in-manifest" in sc.extras:
        uploads.append((f"{DATASET}/{version}/extra.csv", b"extra\n"))
    if "empty" in sc.extras:
        uploads.append((f"{DATASET}/{version}/empty.csv", b""))
    if "bad-layout" in sc.extras:
        uploads.append((f"loose-{version}.csv", b"x\n"))
    if "invalid-manifest" in sc.extras:
        uploads.append((f"{DATASET}/{version}/{glue.MANIFEST_NAME}", b"[" * 5000 + b"]" * 5000))
    elif "no-manifest" not in sc.extras:
        uploads.append((f"{DATASET}/{version}/{glue.MANIFEST_NAME}", json.dumps(manifest).encode()))
    events, landed = [], []
    for key, body in uploads:
        vid = s3.put_object(Bucket=LANDING, Key=key, Body=body, ContentType="text/csv")["VersionId"]
        landed.append((key, vid, body))
        events.append(event(key, len(body), vid))
    must_be_ready = not (sc.extras & {"conflict", "bad-checksum", "no-manifest", "invalid-manifest"})
    return events, {"landed": landed, "must_be_ready": must_be_ready, "manifest": expected_sha}


def deliver(env, sc, events: list[dict]) -> int:
    """Deliver every event at least once (duplicates, drawn order, concurrent waves, faults, redelivery)."""
    queue = deque()
    for i, ev in enumerate(events):
        queue.append(ev)
        if sc.duplicates[i % len(sc.duplicates)]:
            queue.append(ev)
    items = list(queue)
    sc.rng.shuffle(items)
    queue = deque(items)
    choices = deque(sc.choices)
    scheduler = Scheduler(lambda n: choices.popleft() % n if choices else 0)
    faults = Faults(at_indices(sc.faults), scheduler=scheduler, s3_probe=env.plain["s3"])
    clients = {name: client for name, client in env.hooked.items()}
    for client in clients.values():
        faults.attach(client)
    glue.set_clients(glue.Clients(s3=clients["s3"], dynamodb=clients["dynamodb"], events=clients["events"]))
    deliveries = 0
    try:
        for wave in itertools.cycle(sc.waves):
            if not queue:
                break
            assert deliveries < 200, "deliveries do not converge"
            batch = [queue.popleft() for _ in range(min(wave, len(queue)))]
            deliveries += len(batch)
            errors = scheduler.run([lambda ev=ev: glue.process_event(ev, SETTINGS) for ev in batch])
            for ev, error in zip(batch, errors):
                if error is not None:
                    assert not isinstance(error, (glue.MalformedEventError, TypeError, KeyError, AttributeError)), error
                    queue.append(ev)  # SQS redelivers after the visibility timeout
    finally:
        for client in clients.values():
            client.meta.events.unregister("before-parameter-build.*.*", faults._params)
            client.meta.events.unregister("before-call.*.*", faults._before)
            client.meta.events.unregister("after-call.*.*", faults._after)
            client.meta.events.unregister("after-call-error.*.*", faults._after_error)
    return deliveries


def ready_events(env, version: str) -> list[dict]:
    """Every ready event delivered so far for ``version`` (drains the queue into ``env.ready``)."""
    while True:
        msgs = env.plain["sqs"].receive_message(QueueUrl=env.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            return [d for d in env.ready if d["version"] == version]
        for m in msgs:
            body = json.loads(m["Body"])
            env.ready.append(body["detail"])
            env.plain["sqs"].delete_message(QueueUrl=env.queue_url, ReceiptHandle=m["ReceiptHandle"])


def check_invariants(env, version: str, outcome: dict) -> None:
    s3, ddb = env.plain["s3"], env.plain["dynamodb"]
    items = ddb.query(TableName=TABLE, KeyConditionExpression="dataset = :d AND begins_with(sk, :p)",
                      ExpressionAttributeValues={":d": {"S": DATASET}, ":p": {"S": f"{version}#FILE#"}},
                      ConsistentRead=True)["Items"]
    catalog = {i["path"]["S"]: i for i in items}
    prefix = f"dataset={DATASET}/version={version}/"
    raw = s3.list_object_versions(Bucket=RAW, Prefix=prefix)
    assert not raw.get("DeleteMarkers"), "a raw delete marker"
    raw_versions: dict[str, list[dict]] = {}
    for v in raw.get("Versions", []):
        raw_versions.setdefault(v["Key"], []).append(v)
    # 2. one raw version per file
    assert all(len(vs) == 1 for vs in raw_versions.values()), {k: len(v) for k, v in raw_versions.items()}
    # 1. catalog = raw
    assert {prefix + p for p in catalog} == set(raw_versions), (sorted(catalog), sorted(raw_versions))
    for path, item in catalog.items():
        (only,) = raw_versions[prefix + path]
        assert item["raw_version_id"]["S"] == only["VersionId"], path
        obj = s3.get_object(Bucket=RAW, Key=prefix + path, VersionId=only["VersionId"])
        assert sha(obj["Body"].read()) == item["sha256"]["S"], path
        assert obj["Metadata"][glue.META_SOURCE_VERSION] == item["landing_version_id"]["S"], path
    # 4. nothing deleted
    landing = s3.list_object_versions(Bucket=LANDING)
    assert not landing.get("DeleteMarkers")
    present = {(v["Key"], v["VersionId"]) for v in landing.get("Versions", [])}
    assert {(k, vid) for k, vid, _ in outcome["landed"]} <= present
    # 5. every rejected object quarantined under its own key
    header = ddb.get_item(TableName=TABLE, Key={"dataset": {"S": DATASET}, "sk": {"S": f"{version}#MANIFEST"}},
                          ConsistentRead=True).get("Item")
    for key, vid, body in outcome["landed"]:
        parts = glue.split_key(key)
        accepted = False
        if parts is not None and parts.is_manifest:
            accepted = header is not None and header["landing_version_id"]["S"] == vid
        elif parts is not None and parts.path in catalog:
            item = catalog[parts.path]
            same = item["landing_version_id"]["S"] == vid or item["sha256"]["S"] == sha(body)
            accepted = same and "rejected" not in item
            if same and "rejected" in item and item["landing_version_id"]["S"] != vid:
                accepted = True  # identical bytes to a quarantined upload: the quarantine holds them
        if accepted:
            continue
        qkey = glue.quarantine_key(key, vid)
        q = s3.get_object(Bucket=LANDING, Key=qkey)
        assert q["Body"].read() == body, key
        assert q["Metadata"][glue.META_SOURCE_VERSION] == vid
        tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=LANDING, Key=qkey)["TagSet"]}
        assert tags.get(glue.TAG_REASON), (key, tags)
    # 3. ready iff complete
    manifest = outcome["manifest"]
    complete = header is not None and all(
        p in catalog and catalog[p]["sha256"]["S"] == s and "rejected" not in catalog[p] for p, s in manifest.items())
    sent = ready_events(env, version)
    assert bool(sent) == complete, (len(sent), complete)
    if outcome["must_be_ready"]:
        assert complete, "a version whose uploads all match its manifest must become ready"
    if complete:
        assert sent[0]["file_count"] == len(manifest) and sent[0]["total_bytes"] == sum(
            int(catalog[p]["size"]["N"]) for p in manifest)
    # the reconciler finds nothing left to finish
    assert f"{DATASET}/{version}" not in glue.reconcile(SETTINGS)["finished"]


@settings(max_examples=int(os.environ.get("GLUE_EXAMPLES", "15")), deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                                   HealthCheck.too_slow])
@given(sc=scenarios())
def test_any_order_duplicates_concurrency_and_faults_keep_the_invariants(env, sc):
    env.ready = getattr(env, "ready", [])
    version = f"v{next(_counter)}"
    events, outcome = upload(env, version, sc)
    deliver(env, sc, events)
    glue.set_clients(glue.Clients(s3=env.plain["s3"], dynamodb=env.plain["dynamodb"], events=env.plain["events"]))
    check_invariants(env, version, outcome)


def test_lost_deliveries_are_finished_by_the_reconciler(env):
    """Every delivery of the last file fails at PutEvents and goes to the DLQ: the reconciler sends the event."""
    env.ready = getattr(env, "ready", [])
    version = f"v{next(_counter)}"
    sc = types.SimpleNamespace(files={"a.csv": b"a\n", "b.csv": b"b\n"}, extras=set())
    events, outcome = upload(env, version, sc)
    faults = Faults(on_operation("PutEvents", "before", times=100), s3_probe=env.plain["s3"])
    hooked = {name: faults.attach(boto3.client(name, region_name="us-east-1")) for name in ("s3", "dynamodb", "events")}
    glue.set_clients(glue.Clients(**hooked))
    for ev in events:
        try:
            glue.process_event(ev, SETTINGS)
        except glue.RetryableError:
            pass  # dropped: after maxReceiveCount the message sits in the DLQ
        except Exception as exc:  # noqa: BLE001
            assert "injected" in str(exc), exc
    assert ready_events(env, version) == []
    glue.set_clients(glue.Clients(s3=env.plain["s3"], dynamodb=env.plain["dynamodb"], events=env.plain["events"]))
    assert f"{DATASET}/{version}" in glue.reconcile(SETTINGS)["finished"]
    check_invariants(env, version, outcome)
    assert len(ready_events(env, version)) == 1
