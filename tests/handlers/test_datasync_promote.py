"""DataSync completion handler against moto in-process (S3, SNS, SQS, DynamoDB, EventBridge), end to end through the
landing glue: a successful run with a task report becomes a NEW dataset version whose ready marker and event the
retrain trigger accepts; two runs, two versions; a redelivered event, one version; a failed execution or a report with
failed files promotes nothing, notifies once and deletes nothing. Every request the handler sends is checked against
botocore's input shape (``request_errors``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import pathlib
import types

import boto3
import pytest
from moto import mock_aws

from mlinfra.domain.api_model import request_errors
from mlinfra.lambdas.datasync_promote import handler as promote
from mlinfra.lambdas.landing_glue import handler as glue
from mlinfra.lambdas.pipeline_trigger import handler as trigger
from tests.handlers.lake import glue_lake

LANDING, RAW, REPORTS, TABLE = "landing-bucket", "raw-bucket", "artifacts-bucket", "catalog"
DATASET = "tabular"
TASK_ID = "task-0123456789abcdef0"
TASK_ARN = f"arn:aws:datasync:us-east-1:123456789012:task/{TASK_ID}"
STAGING = f"_datasync/{DATASET}/partner/staging/"
REJECTED = f"_datasync/{DATASET}/partner/rejected/"
REPORT_PREFIX = "datasync-reports/partner/"


def context():
    return types.SimpleNamespace(
        function_name="promote", memory_limit_in_mb=512, invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:p",
        aws_request_id="req-1", log_group_name="/aws/lambda/p", log_stream_name="s", function_version="$LATEST",
    )


class FakeDataSync:
    """DescribeTaskExecution answers (moto's DataSync moves executions through states on every describe call)."""

    def __init__(self) -> None:
        self.executions: dict[str, dict] = {}
        self.requests: list[dict] = []

    def describe_task_execution(self, **params):
        assert request_errors("datasync", "DescribeTaskExecution", params) == []
        self.requests.append(params)
        return self.executions[params["TaskExecutionArn"]]

    def list_task_executions(self, **params):
        """Two executions a page, so the reconciler pages."""
        assert request_errors("datasync", "ListTaskExecutions", params) == []
        arns = sorted(self.executions)
        start = int(params.get("NextToken", "0"))
        page = [{"TaskExecutionArn": a, "Status": self.executions[a]["Status"]} for a in arns[start:start + 2]]
        return {"TaskExecutions": page, **({"NextToken": str(start + 2)} if start + 2 < len(arns) else {})}


def _validate_requests(client) -> list[str]:
    """Check every request ``client`` sends against botocore's input shape (patterns, enums, limits)."""
    errors: list[str] = []

    def hook(params, model, **_):
        params = dict(params)
        if isinstance(params.get("CopySource"), dict):  # boto3 formats the dict as "bucket/key?versionId=..."
            params["CopySource"] = "{Bucket}/{Key}".format(**params["CopySource"])
        errors.extend(request_errors(model.service_model.service_name, model.name, params))

    client.meta.events.register("before-parameter-build.*.*", hook)
    return errors


@pytest.fixture()
def aws(monkeypatch):
    with mock_aws():
        s3, ddb = glue_lake(TABLE, LANDING, RAW, REPORTS)
        s3_errors = _validate_requests(s3)
        sqs = boto3.client("sqs", region_name="us-east-1")

        def queue(name):
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

        ready_url, ready_arn = queue("ready")
        alarm_url, alarm_arn = queue("alarms")
        events = boto3.client("events", region_name="us-east-1")
        events.put_rule(Name="ready", EventPattern=json.dumps({"source": [glue.EVENT_SOURCE]}))
        events.put_targets(Rule="ready", Targets=[{"Id": "q", "Arn": ready_arn}])
        sns = boto3.client("sns", region_name="us-east-1")
        sns_errors = _validate_requests(sns)
        topic = sns.create_topic(Name="alarms")["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=alarm_arn)
        datasync = FakeDataSync()
        for k, v in {"RAW_BUCKET": RAW, "CATALOG_TABLE": TABLE, "DATASETS": json.dumps({DATASET: {"extensions": [".csv"]}}),
                     "DATASET": DATASET, "LANDING_BUCKET": LANDING, "STAGING_PREFIX": STAGING, "REJECTED_PREFIX": REJECTED,
                     "REPORT_BUCKET": REPORTS, "REPORT_PREFIX": REPORT_PREFIX, "TASK_ARN": TASK_ARN,
                     "ALARM_TOPIC_ARN": topic, "REPORT_WAIT_SECONDS": "0"}.items():
            monkeypatch.setenv(k, v)
        glue.set_clients(glue.Clients(s3=s3, dynamodb=ddb, events=events))
        monkeypatch.setattr(promote, "clients", promote.Clients(s3=s3, sns=sns, datasync=datasync))
        monkeypatch.setattr(trigger, "_clients", {"s3": s3})
        yield types.SimpleNamespace(s3=s3, ddb=ddb, sqs=sqs, datasync=datasync, ready_url=ready_url, alarm_url=alarm_url,
                                    request_errors=s3_errors + sns_errors)
        glue.set_clients(glue.Clients())


def exec_arn(n: int) -> str:
    return f"{TASK_ARN}/execution/exec-{n:017x}"


def state_change(n: int, state: str = "SUCCESS") -> dict:
    """The EventBridge event DataSync sends (EventBridge reference: DataSync events)."""
    return {"version": "0", "id": f"ev-{n}", "detail-type": "DataSync Task Execution State Change", "source": "aws.datasync",
            "account": "123456789012", "time": "2026-11-30T02:10:00Z", "region": "us-east-1",
            "resources": [exec_arn(n)], "detail": {"State": state}}


def sqs_batch(*events: dict) -> dict:
    return {"Records": [{"messageId": f"m{i}", "body": json.dumps(e), "eventSource": "aws:sqs"} for i, e in enumerate(events)]}


def report_entry(mode: str, path: str, status_field: str, status: str, size: int | None = None, *,
                 kind: str | None = None, failure: tuple[int | str, str] | None = None, **extra) -> dict:
    """One detailed-report entry as DataSync writes it (user guide, "Monitoring your transfers with task reports"):
    Basic mode: ``SrcMetadata``, ``Type`` "Regular"/"Directory", paths with a leading "/", failures as
    ``FailureCode`` (integer) and ``FailureReason``. Enhanced mode: ``SourceMetadata``, ``Type`` "Object", paths
    without "/", failures as ``ErrorCode``/``ErrorDetail``."""
    basic = mode == "basic"
    meta = {"Type": kind or ("Regular" if basic else "Object"), **({"ContentSize": size} if size is not None else {})}
    entry = {"RelativePath": f"/{path}" if basic else path, ("SrcMetadata" if basic else "SourceMetadata"): meta,
             status_field: status, **extra}
    if failure is not None:
        code, reason = failure
        entry.update({"FailureCode": code, "FailureReason": reason} if basic else {"ErrorCode": str(code), "ErrorDetail": reason})
    return entry


def stage_run(aws, n: int, files: dict[str, bytes], *, failed: dict[str, tuple[int, str]] | None = None,
              verify_failed: tuple[str, ...] = (), status: str = "SUCCESS", report: str = "SUCCESS",
              start: dt.datetime | None = None, mode: str = "basic") -> None:
    """What DataSync leaves behind: the staged objects, the detailed reports and the execution's description."""
    transferred, verified = [], []
    for path, body in files.items():
        vid = aws.s3.put_object(Bucket=LANDING, Key=STAGING + path, Body=body, ContentType="text/csv")["VersionId"]
        transferred.append(report_entry(mode, path, "TransferStatus", "SUCCESS", len(body), Overwrite="False",
                                        DstS3VersionId=vid, TransferType="CONTENT_AND_METADATA"))
        verified.append(report_entry(mode, path, "VerifyStatus", "FAILED" if path in verify_failed else "SUCCESS", len(body),
                                     failure=(5, "checksum mismatch") if path in verify_failed else None))
    if mode == "basic":
        transferred.append({"RelativePath": "/", "SrcMetadata": {"Type": "Directory"}, "TransferStatus": "SUCCESS"})
    for path, failure in (failed or {}).items():
        transferred.append(report_entry(mode, path, "TransferStatus", "FAILED", 10, failure=failure))
    exec_id = exec_arn(n).rsplit("/", 1)[1]
    folder = f"{REPORT_PREFIX}Detailed-Reports/{TASK_ID}/{exec_id}/"
    aws.s3.put_object(Bucket=REPORTS, Key=f"{folder}{exec_id}.files-transferred-v1-00001-0a1b.json",
                      Body=json.dumps({"TaskExecutionId": exec_id, "Transferred": transferred}))
    aws.s3.put_object(Bucket=REPORTS, Key=f"{folder}{exec_id}.files-verified-v1-00001-0a1b.json",
                      Body=json.dumps({"TaskExecutionId": exec_id, "Verified": verified}))
    aws.datasync.executions[exec_arn(n)] = {
        "TaskExecutionArn": exec_arn(n), "Status": status,
        "StartTime": start or dt.datetime(2026, 11, 30, 2, 0, n % 60, tzinfo=dt.timezone.utc),
        "ReportResult": {"Status": report, **({"ErrorCode": "AccessDenied"} if report == "ERROR" else {})},
    }


def run_glue(aws) -> None:
    """What the landing bucket's EventBridge notifications do: every new landing object through the glue (the manifest
    last, as the handler writes it)."""
    keys = [v for v in aws.s3.list_object_versions(Bucket=LANDING).get("Versions", []) if v["IsLatest"]]
    keys.sort(key=lambda v: v["Key"].endswith(glue.MANIFEST_NAME))
    for v in keys:
        event = {"source": "aws.s3", "detail-type": "Object Created", "id": "e",
                 "detail": {"bucket": {"name": LANDING}, "object": {"key": v["Key"], "size": v["Size"], "version-id": v["VersionId"]}}}
        glue.process_event(event)


def ready_events(aws) -> list[dict]:
    msgs = aws.sqs.receive_message(QueueUrl=aws.ready_url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in msgs]


def alarms(aws) -> list[dict]:
    msgs = aws.sqs.receive_message(QueueUrl=aws.alarm_url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(json.loads(m["Body"])["Message"]) for m in msgs]


def ready_markers(aws) -> list[str]:
    return [o["Key"] for o in aws.s3.list_objects_v2(Bucket=RAW, Prefix=f"dataset={DATASET}/_ready/").get("Contents", [])]


def landing_keys(aws) -> set[str]:
    return {v["Key"] for v in aws.s3.list_object_versions(Bucket=LANDING).get("Versions", [])}


def test_a_successful_run_becomes_a_new_version_that_the_retrain_trigger_accepts(aws):
    files = {"2026/11/part-0.csv": b"a,b\n1,2\n", "2026/11/part-1.csv": b"a,b\n3,4\n"}
    stage_run(aws, 1, files)
    out = promote.handler(sqs_batch(state_change(1)), context())
    assert out == {"batchItemFailures": []}
    version = f"20261130T020001Z-exec-{1:017x}"
    manifest = json.loads(aws.s3.get_object(Bucket=LANDING, Key=f"{DATASET}/{version}/_manifest.json")["Body"].read())
    assert manifest["dataset"] == DATASET and manifest["version"] == version
    assert manifest["files"] == [{"path": p, "sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for p, b in sorted(files.items())]
    assert manifest["source"] == {"datasync_task_execution": exec_arn(1)}

    run_glue(aws)  # the glue promotes the version: raw copies, catalog, ready marker, ready event
    raw = {o["Key"] for o in aws.s3.list_objects_v2(Bucket=RAW, Prefix=f"dataset={DATASET}/version={version}/")["Contents"]}
    assert raw == {f"dataset={DATASET}/version={version}/{p}" for p in files}
    assert len(ready_markers(aws)) == 1 and ready_markers(aws)[0].endswith(f"_{version}.json")
    [ready] = ready_events(aws)
    # The retrain trigger's rule pattern (RetrainPipeline.ready_rule) matches it, and its handler starts this version.
    assert (ready["source"], ready["detail-type"]) == ("mlinfra.ingestion", "Dataset Version Ready")
    request = trigger.run_request(ready)
    assert (request["dataset"], request["version"], request["trigger"]) == (DATASET, version, "dataset-ready")
    assert trigger.latest_version(RAW, DATASET) == version  # the schedule path finds it too
    assert aws.request_errors == []


def test_two_runs_make_two_versions_and_never_mix(aws):
    stage_run(aws, 1, {"a.csv": b"x,y\n1,2\n"})
    promote.process_event(state_change(1))
    stage_run(aws, 2, {"b.csv": b"x,y\n3,4\n"})  # the next night: only what changed (CHANGED transfer mode)
    promote.process_event(state_change(2))
    run_glue(aws)
    v1, v2 = (f"20261130T0200{n:02d}Z-exec-{n:017x}" for n in (1, 2))
    listed = lambda v: {o["Key"].rsplit("/", 1)[1] for o in aws.s3.list_objects_v2(Bucket=LANDING, Prefix=f"{DATASET}/{v}/")["Contents"]}
    assert listed(v1) == {"a.csv", "_manifest.json"} and listed(v2) == {"b.csv", "_manifest.json"}
    assert sorted(m.rsplit("_", 1)[1] for m in ready_markers(aws)) == sorted([f"{v1}.json", f"{v2}.json"])
    assert trigger.latest_version(RAW, DATASET) == v2


def test_the_same_event_twice_makes_one_version(aws):
    stage_run(aws, 3, {"a.csv": b"x,y\n1,2\n"})
    first = promote.process_event(state_change(3))
    before = landing_keys(aws)
    again = promote.handler(sqs_batch(state_change(3), state_change(3)), context())
    assert first["outcome"] == "landed" and again == {"batchItemFailures": []}
    assert promote.process_event(state_change(3))["outcome"] == "duplicate"
    versions = aws.s3.list_object_versions(Bucket=LANDING, Prefix=f"{DATASET}/")["Versions"]
    assert len(versions) == 2 and landing_keys(aws) == before  # one file, one manifest: nothing written twice
    run_glue(aws)
    run_glue(aws)
    assert len(ready_markers(aws)) == 1


def test_a_run_interrupted_after_some_copies_resumes(aws, monkeypatch):
    stage_run(aws, 4, {"a.csv": b"1\n", "b.csv": b"2\n"})
    real = promote.land_file
    calls = []

    def fail_second(*args):
        calls.append(args[-1].path)
        if len(calls) == 2:
            raise RuntimeError("Lambda timed out")
        return real(*args)

    monkeypatch.setattr(promote, "land_file", fail_second)
    out = promote.handler(sqs_batch(state_change(4)), context())
    assert out == {"batchItemFailures": [{"itemIdentifier": "m0"}]}  # SQS redelivers the record
    assert not any(k.endswith("_manifest.json") for k in landing_keys(aws))  # no manifest: the glue waits
    monkeypatch.setattr(promote, "land_file", real)
    assert promote.process_event(state_change(4))["outcome"] == "landed"


def test_files_above_the_single_copy_limit_are_hashed_and_copied_in_parts(aws, monkeypatch):
    monkeypatch.setattr(promote, "SINGLE_COPY_LIMIT", 4)  # the > 5 GiB path, on small files
    files = {"big.csv": b"0123456789,abc\n" * 3, "small.csv": b"1\n"}
    stage_run(aws, 10, files)
    assert promote.process_event(state_change(10))["outcome"] == "landed"
    version = f"20261130T020010Z-exec-{10:017x}"
    manifest = json.loads(aws.s3.get_object(Bucket=LANDING, Key=f"{DATASET}/{version}/_manifest.json")["Body"].read())
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == {p: hashlib.sha256(b).hexdigest() for p, b in files.items()}
    assert aws.s3.get_object(Bucket=LANDING, Key=f"{DATASET}/{version}/big.csv")["Body"].read() == files["big.csv"]
    tagging = aws.s3.get_object_tagging(Bucket=LANDING, Key=f"{DATASET}/{version}/big.csv")["TagSet"]
    assert {"Key": promote.TAG_EXECUTION, "Value": f"exec-{10:017x}"} in tagging
    run_glue(aws)
    assert len(ready_markers(aws)) == 1


def test_an_error_execution_promotes_nothing(aws):
    stage_run(aws, 5, {"a.csv": b"1\n"}, status="ERROR")
    before = landing_keys(aws)
    assert promote.process_event(state_change(5, "ERROR")) == {"outcome": "ignored", "state": "ERROR"}
    assert landing_keys(aws) == before and aws.datasync.requests == []


@pytest.mark.parametrize("case", ["transfer-failed", "verify-failed", "report-error", "status-error", "bad-path"])
def test_a_partial_run_is_rejected_notified_once_and_nothing_is_deleted(aws, case):
    kwargs = {
        "transfer-failed": {"failed": {"secret.csv": (13, "Permission denied")}},
        "verify-failed": {"verify_failed": ("a.csv",)},
        "report-error": {"report": "ERROR"},
        "status-error": {"status": "ERROR"},
        "bad-path": {},
    }[case]
    files = {"a.csv": b"1\n", "b.csv": b"2\n"} if case != "bad-path" else {"a.csv": b"1\n", "x/../b.csv": b"2\n"}
    stage_run(aws, 6, files, **kwargs)
    staged = landing_keys(aws)
    out = promote.process_event(state_change(6))
    version = f"20261130T020006Z-exec-{6:017x}"
    assert out["outcome"] == "rejected" and out["version"] == version
    assert promote.process_event(state_change(6))["duplicate"] is True  # a redelivery notifies nobody twice
    [alarm] = alarms(aws)
    assert alarm["execution"] == exec_arn(6) and alarm["version"] == version and alarm["reasons"]
    if case in ("transfer-failed", "verify-failed"):  # the reason carries Basic mode's FailureCode and FailureReason
        assert alarm["reasons"] == (["/secret.csv: FAILED 13 Permission denied"] if case == "transfer-failed"
                                    else ["/a.csv: FAILED 5 checksum mismatch"])
    record = json.loads(aws.s3.get_object(Bucket=LANDING, Key=f"{REJECTED}{version}.json")["Body"].read())
    assert record["reasons"] == alarm["reasons"]
    assert landing_keys(aws) == staged | {f"{REJECTED}{version}.json"}  # no version written, staged files kept
    assert not aws.s3.list_object_versions(Bucket=LANDING).get("DeleteMarkers")
    run_glue(aws)
    assert ready_markers(aws) == [] and not glue.process_event(
        {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": LANDING},
                                                                          "object": {"key": f"{REJECTED}{version}.json"}}}
    )["outcome"] == "quarantined"


def test_a_pending_report_fails_the_record_for_a_redelivery(aws):
    stage_run(aws, 7, {"a.csv": b"1\n"}, report="PENDING")
    assert promote.handler(sqs_batch(state_change(7)), context()) == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    aws.datasync.executions[exec_arn(7)]["ReportResult"] = {"Status": "SUCCESS"}
    assert promote.process_event(state_change(7))["outcome"] == "landed"


def test_a_run_that_transferred_nothing_makes_no_version(aws):
    stage_run(aws, 8, {})
    assert promote.process_event(state_change(8))["outcome"] == "empty"
    assert not [k for k in landing_keys(aws) if k.startswith(f"{DATASET}/")]


def test_the_glue_ignores_staged_objects(aws):
    stage_run(aws, 9, {"a.csv": b"1\n"})
    run_glue(aws)  # staged objects and reports reach the glue too: nothing is quarantined or catalogued
    assert not [k for k in landing_keys(aws) if k.startswith("_quarantine/")]
    assert aws.ddb.scan(TableName=TABLE)["Items"] == []


@pytest.mark.parametrize(("event", "message"), [
    ({"source": "aws.s3", "detail-type": "Object Created"}, "expected source 'aws.datasync'"),
    ({**state_change(1), "resources": []}, "one task execution ARN"),
    ({**state_change(1), "detail": {}}, "detail.State"),
    ({**state_change(1), "resources": ["arn:aws:datasync:us-east-1:123456789012:task/task-0fffffffffffffff0/execution/exec-00000000000000001"]},
     "this function serves"),
])
def test_malformed_or_foreign_events_are_refused(aws, event, message):
    with pytest.raises(promote.MalformedEventError, match=message):
        promote.process_event(event)


def test_settings_name_the_bad_variable():
    env = {"DATASET": "tabular", "LANDING_BUCKET": "l", "STAGING_PREFIX": "s/", "REJECTED_PREFIX": "r/",
           "REPORT_BUCKET": "a", "REPORT_PREFIX": "p/", "TASK_ARN": TASK_ARN}
    assert promote.Settings.from_env(env).report_wait_seconds == 60
    with pytest.raises(promote.SettingsError, match=r"\['TASK_ARN'\]"):
        promote.Settings.from_env({**env, "TASK_ARN": ""})
    with pytest.raises(promote.SettingsError, match="MAX_HASH_BYTES must be a whole number, got: '1e9'"):
        promote.Settings.from_env({**env, "MAX_HASH_BYTES": "1e9"})
    with pytest.raises(promote.SettingsError, match="DATASET must be"):
        promote.Settings.from_env({**env, "DATASET": "_quarantine"})


def test_version_names_are_per_execution_and_chronological():
    a = promote.version_name(dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.timezone.utc), "exec-0000000000000000a")
    b = promote.version_name(dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))), "exec-0000000000000000b")
    assert a == "20261130T020000Z-exec-0000000000000000a" and b == "20261201T010000Z-exec-0000000000000000b" and a < b
    assert glue.split_key(f"{DATASET}/{a}/x.csv") is not None  # a valid glue version name


def test_the_reconciler_lands_runs_whose_event_was_lost(aws):
    """EventBridge delivers DataSync's events best effort: the scheduled reconciler finds SUCCESS executions that were
    never landed, lands them once, leaves failed and pending ones, and changes nothing on a second run."""
    stage_run(aws, 11, {"a.csv": b"1\n"})  # its event was delivered
    assert promote.process_event(state_change(11))["outcome"] == "landed"
    stage_run(aws, 12, {"b.csv": b"2\n"})  # lost event
    stage_run(aws, 13, {"c.csv": b"3\n"}, status="ERROR")  # failed run: never landed
    stage_run(aws, 14, {"d.csv": b"4\n"}, report="PENDING")  # its report is not written yet
    stage_run(aws, 15, {"e.csv": b"5\n"}, failed={"f.csv": (5, "Input/output error")})  # partial run, lost event: rejected
    out = promote.handler(promote.RECONCILE_INPUT, context())
    # the landed run has a record: skipped without a request
    assert out == {"outcome": "reconciled", "executions": 3, "outcomes": {"landed": 1, "pending": 1, "rejected": 1}}
    assert len(alarms(aws)) == 1
    again = promote.reconcile()
    assert again["outcomes"] == {"pending": 1}  # only the unsettled run is examined again
    run_glue(aws)
    assert sorted(m.rsplit("-", 1)[1] for m in ready_markers(aws)) == [f"{11:017x}.json", f"{12:017x}.json"]


# --- review fixes (issue 12 item 12 follow-up) --------------------------------------------------------------------

OLD_MEMBERS = {k: set(v) for k, v in json.loads(
    (pathlib.Path(__file__).parent / "data" / "botocore_1_34_0_members.json").read_text()).items() if not k.startswith("_")}


def _record_requests(client, calls: list) -> None:
    client.meta.events.register("before-parameter-build.*.*",
                                lambda params, model, **_: calls.append((model.service_model.service_name, model.name, set(params))))


def test_every_request_is_valid_on_the_oldest_supported_botocore(aws, monkeypatch):
    """The function ships only handler.py: it runs on the Lambda runtime's boto3, which may be as old as botocore
    1.34.0. The handler sees that model (its feature detection answers from botocore 1.34.0's members) and every
    request it sends (s3, s3transfer's managed copy, sns, datasync) uses only members of 1.34.0's models."""
    calls: list = []
    _record_requests(aws.s3, calls)
    _record_requests(promote.clients.sns, calls)
    monkeypatch.setattr(promote, "_models_member",
                        lambda client, op, member: member in OLD_MEMBERS[f"{client.meta.service_model.service_name}.{op}"],
                        raising=False)
    real_describe, real_list = aws.datasync.describe_task_execution, aws.datasync.list_task_executions
    monkeypatch.setattr(aws.datasync, "describe_task_execution",
                        lambda **p: calls.append(("datasync", "DescribeTaskExecution", set(p))) or real_describe(**p))
    monkeypatch.setattr(aws.datasync, "list_task_executions",
                        lambda **p: calls.append(("datasync", "ListTaskExecutions", set(p))) or real_list(**p))
    monkeypatch.setattr(promote, "SINGLE_COPY_LIMIT", 20)  # the > 5 GiB path too (managed copy), on small files
    stage_run(aws, 1, {"a.csv": b"x,y\n1,2\n", "big.csv": b"0123456789,abcdefgh\n" * 2})
    assert promote.process_event(state_change(1))["outcome"] == "landed"
    assert promote.process_event(state_change(1))["outcome"] == "duplicate"
    stage_run(aws, 2, {"b.csv": b"1\n"}, failed={"c.csv": (13, "Permission denied")})
    stage_run(aws, 3, {})
    assert promote.reconcile()["outcomes"] == {"rejected": 1, "empty": 1}
    assert {(svc, op) for svc, op, _ in calls} >= {("s3", "CopyObject"), ("s3", "PutObject"), ("s3", "HeadObject"),
                                                    ("sns", "Publish"), ("datasync", "ListTaskExecutions")}
    bad = [(svc, op, sorted(params - OLD_MEMBERS[f"{svc}.{op}"])) for svc, op, params in calls
           if params - OLD_MEMBERS[f"{svc}.{op}"]]
    assert bad == []
    assert aws.request_errors == []


def test_copy_object_if_none_match_is_absent_from_botocore_1_34():
    """The vendored model list is the one that refuses the original defect (CopyObject IfNoneMatch)."""
    assert "IfNoneMatch" not in OLD_MEMBERS["s3.CopyObject"] and "IfNoneMatch" not in OLD_MEMBERS["s3.PutObject"]
    assert {"CopySource", "ChecksumAlgorithm", "Tagging", "TaggingDirective", "VersionId"} - OLD_MEMBERS["s3.CopyObject"] == {"VersionId"}


def test_an_enhanced_mode_report_lands_its_objects(aws):
    """Enhanced mode: SourceMetadata with Type "Object", paths without a leading "/" (not an "empty" run)."""
    files = {"2026/part-0.csv": b"a,b\n1,2\n", "part-1.csv": b"a,b\n3,4\n"}
    stage_run(aws, 20, files, mode="enhanced")
    out = promote.process_event(state_change(20))
    assert out["outcome"] == "landed" and out["files"] == 2
    version = f"20261130T020020Z-exec-{20:017x}"
    manifest = json.loads(aws.s3.get_object(Bucket=LANDING, Key=f"{DATASET}/{version}/_manifest.json")["Body"].read())
    assert [f["path"] for f in manifest["files"]] == sorted(files)


def test_an_enhanced_mode_failure_is_rejected_with_its_error(aws):
    stage_run(aws, 21, {"a.csv": b"1\n"}, failed={"b.csv": ("AccessDenied", "no s3:GetObject")}, mode="enhanced")
    out = promote.process_event(state_change(21))
    assert out["outcome"] == "rejected" and out["reasons"] == ["b.csv: FAILED AccessDenied no s3:GetObject"]


def test_a_file_above_max_hash_bytes_rejects_the_run_permanently(aws, monkeypatch):
    """Above CopyObject's 5 GiB and MAX_HASH_BYTES: rejected once, notified, nothing copied or deleted (no endless
    RetryableError into the dead-letter queue)."""
    monkeypatch.setattr(promote, "SINGLE_COPY_LIMIT", 4)
    monkeypatch.setenv("MAX_HASH_BYTES", "8")
    stage_run(aws, 22, {"big.csv": b"0123456789,abc\n", "small.csv": b"1\n"})
    staged = landing_keys(aws)
    out = promote.handler(sqs_batch(state_change(22)), context())
    assert out == {"batchItemFailures": []}  # settled, not redelivered
    version = f"20261130T020022Z-exec-{22:017x}"
    record = json.loads(aws.s3.get_object(Bucket=LANDING, Key=f"{REJECTED}{version}.json")["Body"].read())
    assert len(record["reasons"]) == 1 and record["reasons"][0].startswith("big.csv: 15 bytes is above") and "MAX_HASH_BYTES (8)" in record["reasons"][0]
    [alarm] = alarms(aws)
    assert alarm["reasons"] == record["reasons"]
    assert landing_keys(aws) == staged | {f"{REJECTED}{version}.json"}


def test_a_large_file_already_copied_is_not_hashed_again(aws, monkeypatch):
    """The SHA-256 of a file above 5 GiB is stored in the target's metadata at copy time and read back on a retry:
    no second GetObject of the target or the staged object."""
    monkeypatch.setattr(promote, "SINGLE_COPY_LIMIT", 4)
    stage_run(aws, 23, {"big.csv": b"0123456789,abc\n" * 3})
    settings = promote.Settings.from_env()
    execution = promote.parse_event(state_change(23))
    version = f"20261130T020023Z-exec-{23:017x}"
    [f] = promote.read_run(settings, execution, version).files
    first = promote.land_file(settings, execution, version, f)
    head = aws.s3.head_object(Bucket=LANDING, Key=f"{DATASET}/{version}/big.csv")
    assert head["Metadata"] == {promote.SHA256_METADATA: first} and head["ContentType"] == "text/csv"
    gets: list = []
    aws.s3.meta.events.register("before-parameter-build.s3.GetObject", lambda params, **_: gets.append(params["Key"]))
    assert promote.land_file(settings, execution, version, f) == first == hashlib.sha256(b"0123456789,abc\n" * 3).hexdigest()
    assert gets == []


def test_an_empty_run_is_recorded_and_not_examined_again(aws):
    stage_run(aws, 24, {})
    assert promote.reconcile()["outcomes"] == {"empty": 1}
    version = f"20261130T020024Z-exec-{24:017x}"
    assert aws.s3.head_object(Bucket=LANDING, Key=f"_datasync/{DATASET}/partner/empty/{version}.json")
    before = len(aws.datasync.requests)
    assert promote.reconcile() == {"outcome": "reconciled", "executions": 0, "outcomes": {}}
    assert len(aws.datasync.requests) == before  # no DescribeTaskExecution for a settled run


def test_the_reconciler_pages_through_all_executions_bounds_its_work_and_survives_a_bad_one(aws, monkeypatch):
    """ListTaskExecutions documents no order: every page is read, at most ``max_executions`` unsettled runs are
    processed per sweep (the rest on the next sweep), and one execution that fails does not stop the sweep."""
    for n in range(30, 37):
        stage_run(aws, n, {f"f{n}.csv": b"1\n"})
    real = aws.datasync.describe_task_execution

    def flaky(**params):
        if params["TaskExecutionArn"] == exec_arn(31):
            raise RuntimeError("throttled")
        return real(**params)

    aws.datasync.describe_task_execution = flaky
    first = promote.reconcile(max_executions=4)
    assert first["executions"] == 4 and first["outcomes"] == {"landed": 3, "error": 1} and first["deferred"] == 3
    second = promote.reconcile(max_executions=4)
    assert second["outcomes"] == {"landed": 3, "error": 1} and "deferred" not in second
    aws.datasync.describe_task_execution = real
    assert promote.reconcile(max_executions=4)["outcomes"] == {"landed": 1}
    assert promote.reconcile(max_executions=4)["executions"] == 0
