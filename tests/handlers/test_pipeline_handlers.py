"""The retrain pipeline's handlers against moto in-process: good events and malformed ones."""

from __future__ import annotations

import base64
import json
import os
from typing import Any
from unittest import mock

import boto3
import pytest
from moto import mock_aws

from tests.workflow.sfn_harness import _Context, load_handler

CTX = _Context("test")
SETTINGS = {"raw_bucket": "raw", "curated_bucket": "curated", "artifacts_bucket": "art", "models_bucket": "models",
            "job_prefix": "mlinfra-dev", "training_image": "img", "datasets": ["images"], "default_hyperparameters": {"lr": "0.1"}}
EXECUTION = {"name": "run-1", "id": "arn:aws:states:us-east-1:123456789012:execution:sm:run-1", "start_time": "2026-11-24T00:00:00Z"}


@pytest.fixture()
def aws():
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in ("raw", "art"):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket="raw", Key="dataset=images/version=v1/a.csv", Body=b"x")
        s3.put_object(Bucket="raw", Key="dataset=images/version=v2/a.csv", Body=b"x")
        for stamp, version in (("20261124T000000Z", "v1"), ("20261125T000000Z", "v2")):  # the glue's ready markers
            s3.put_object(Bucket="raw", Key=f"dataset=images/_ready/{stamp}_{version}.json", Body=b"{}")
        yield s3


# --- validate -------------------------------------------------------------------------------------------

def test_validate_plans_a_run(aws):
    h = load_handler("pipeline_validate")
    out = h.handler({"input": {"dataset": "images", "version": "v1", "hyperparameters": {"epochs": 3, "amp": True}},
                     "execution": EXECUTION, "settings": SETTINGS}, CTX)["plan"]
    assert out["hyperparameters"]["epochs"] == "3" and out["hyperparameters"]["amp"] == "true" and out["hyperparameters"]["lr"] == "0.1"
    assert out["uris"]["train_input"] == "s3://raw/dataset=images/version=v1/"
    assert out["uris"]["checkpoints"] == "s3://art/checkpoints/images/v1/run-1/"
    assert out["names"]["training_job_base"].startswith("mlinfra-dev-") and len(out["names"]["training_job_base"]) + 2 <= 63
    assert int(out["lock"]["expires_at"]) > int(out["lock"]["now"])
    assert out["image_digest"] == "unresolved"
    again = h.handler({"input": {"dataset": "images", "version": "v1", "hyperparameters": {"epochs": 3, "amp": True}},
                       "execution": EXECUTION, "settings": SETTINGS}, CTX)["plan"]
    assert again["names"] == out["names"]  # deterministic: a retried state plans the same run


def test_validate_resolves_the_image_digest_from_ecr(aws):
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName="train")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"digest": "sha256:" + "1" * 64, "size": 1, "mediaType": "application/vnd.docker.container.image.v1+json"},
                           "layers": []})
    ecr.put_image(repositoryName="train", imageManifest=manifest, imageTag="1")
    h = load_handler("pipeline_validate")
    settings = {**SETTINGS, "training_image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1"}
    plan = h.handler({"input": {"dataset": "images", "version": "v1"}, "execution": EXECUTION, "settings": settings}, CTX)["plan"]
    assert plan["image_digest"].startswith("sha256:")


@pytest.mark.parametrize("data, message", [
    ("not an object", "input: must be a JSON object"),
    ({"version": "v1"}, "dataset: must be 1-63 lowercase letters"),
    ({"dataset": "other", "version": "v1"}, "dataset: this pipeline trains on ['images']"),
    ({"dataset": "images", "version": "v 1"}, "version: must be 1-63 letters"),
    ({"dataset": "images", "version": "v1", "hyperparameters": {"a": {"b": 1}}}, "hyperparameters.a: must be a string, number or boolean"),
    ({"dataset": "images", "version": "v1", "hyperparameters": [1]}, "hyperparameters: must be an object"),
    ({"dataset": "images", "version": "v1", "extra": 1}, "input: unknown field(s) ['extra']"),
    ({"dataset": "images", "version": "v9"}, "dataset: no objects under s3://raw/dataset=images/version=v9/"),
])
def test_validate_rejects_malformed_input(aws, data, message):
    h = load_handler("pipeline_validate")
    with pytest.raises(h.InvalidInputError) as err:
        h.handler({"input": data, "execution": EXECUTION, "settings": SETTINGS}, CTX)
    assert message in str(err.value)


def test_validate_rejects_an_event_without_settings(aws):
    h = load_handler("pipeline_validate")
    with pytest.raises(h.InvalidInputError, match="event must be"):
        h.handler({"input": {}}, CTX)


# --- lineage -------------------------------------------------------------------------------------------------

@pytest.fixture()
def table(aws):
    ddb = boto3.resource("dynamodb")
    t = ddb.create_table(TableName="lineage", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")
    with mock.patch.dict(os.environ, {"LINEAGE_TABLE": "lineage"}):
        yield t


def _plan(aws_ok=True):
    h = load_handler("pipeline_validate")
    return h.handler({"input": {"dataset": "images", "version": "v1", "code_version": "abc"}, "execution": EXECUTION, "settings": SETTINGS}, CTX)["plan"]


def test_lineage_start_is_idempotent_and_outcome_recorded(table):
    h = load_handler("pipeline_lineage")
    plan = _plan()
    key = h.handler({"action": "start", "plan": plan}, CTX)
    assert key == {"pk": "dataset#images", "sk": "version#v1#run#run-1"}
    state = {"plan": plan, "training": {"describe": {"TrainingJobArn": "arn:job"}}, "error": {"Error": "TrainingJobFailed", "Cause": "OOM"}}
    out = h.handler({"action": "outcome", "status": "Failed", "state": state, "execution": EXECUTION}, CTX)
    assert out["message"]["cause"] == "OOM" and out["message"]["training_job_arn"] == "arn:job"
    h.handler({"action": "start", "plan": plan}, CTX)  # a late retry of start does not erase the outcome
    item = table.get_item(Key=key)["Item"]
    assert item["outcome"] == "Failed" and item["code_version"] == "abc" and json.loads(item["hyperparameters"])["lr"] == "0.1"


def test_lineage_outcome_without_a_plan_and_lambda_error_cause(table):
    h = load_handler("pipeline_lineage")
    cause = json.dumps({"errorType": "InvalidInputError", "errorMessage": "dataset: bad"})
    out = h.handler({"action": "outcome", "status": "Failed", "state": {"error": {"Error": "InvalidInputError", "Cause": cause}},
                     "execution": {"name": "run-x", "id": "arn:x"}}, CTX)
    assert out["message"]["cause"] == "InvalidInputError: dataset: bad"
    assert table.get_item(Key={"pk": "run#run-x", "sk": "run"})["Item"]["outcome"] == "Failed"


@pytest.mark.parametrize("event, message", [
    ([], "event must be an object"),
    ({"action": "delete"}, "action must be 'start' or 'outcome'"),
    ({"action": "start"}, "action 'start' needs 'plan'"),
    ({"action": "start", "plan": {"dataset": "x"}}, "plan.version is required"),
    ({"action": "outcome", "status": "Done", "state": {}}, "status must be one of"),
    ({"action": "outcome", "status": "Failed", "state": "x"}, "needs 'state'"),
])
def test_lineage_rejects_malformed_events(table, event, message):
    h = load_handler("pipeline_lineage")
    with pytest.raises(h.MalformedEventError, match=message.replace("(", r"\(").replace(")", r"\)").replace("'", "'")):
        h.handler(event, CTX)


# --- evaluation report ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("report, value", [
    ({"metrics": {"accuracy": 0.9, "loss": 0.2}}, 0.9),
    ({"multiclass_classification_metrics": {"accuracy": {"value": 0.8, "standard_deviation": 0.01}}}, 0.8),
    ({"accuracy": 0.7}, 0.7),
])
def test_evaluation_reads_report_shapes(aws, report, value):
    aws.put_object(Bucket="art", Key="evaluation/r.json", Body=json.dumps(report))
    out = load_handler("pipeline_evaluation").handler({"report_uri": "s3://art/evaluation/r.json", "metric_name": "accuracy"}, CTX)
    assert out["metric_value"] == value


@pytest.mark.parametrize("body, event, message", [
    (None, {"report_uri": "s3://art/evaluation/missing.json", "metric_name": "accuracy"}, "no evaluation report at"),
    (b"{not json", {"report_uri": "s3://art/evaluation/r.json", "metric_name": "accuracy"}, "is not valid JSON"),
    (b'{"metrics": {"accuracy": "high"}}', {"report_uri": "s3://art/evaluation/r.json", "metric_name": "accuracy"}, "is not a number"),
    (b"[1, 2]", {"report_uri": "s3://art/evaluation/r.json", "metric_name": "accuracy"}, "must be a JSON object"),
    (None, {"report_uri": "art/r.json", "metric_name": "accuracy"}, "report_uri must be s3://bucket/key"),
    (None, {"report_uri": "s3://art/r.json"}, "metric_name must be a non-empty string"),
])
def test_evaluation_rejects_bad_reports(aws, body, event, message):
    if body is not None:
        aws.put_object(Bucket="art", Key="evaluation/r.json", Body=body)
    h = load_handler("pipeline_evaluation")
    with pytest.raises(h.EvaluationReportError, match=message):
        h.handler(event, CTX)


# --- gate ---------------------------------------------------------------------------------------------------------

def _register(sm, group, status, metric):
    return sm.create_model_package(
        ModelPackageGroupName=group, ModelApprovalStatus=status, CustomerMetadataProperties={"metric:rmse": str(metric)},
        InferenceSpecification={"Containers": [{"Image": "img"}], "SupportedContentTypes": ["a"], "SupportedResponseMIMETypes": ["a"]},
    )["ModelPackageArn"]


def test_gate_threshold_only_without_production_model(aws):
    boto3.client("sagemaker").create_model_package_group(ModelPackageGroupName="g")
    h = load_handler("pipeline_gate")
    out = h.handler({"metric_name": "rmse", "direction": "lower", "threshold": 2.0, "candidate": 1.5, "model_package_group": "g",
                     "lineage": {"dataset": "images", "hyperparameters": {"x": "1" * 300}}}, CTX)
    assert out["passed"] is True and out["approval_status"] == "PendingManualApproval" and out["baseline"] is None
    assert out["customer_metadata"]["metric:rmse"] == "1.5"
    assert out["customer_metadata"]["hyperparameters"].startswith("sha256:")  # too long for the registry: a digest


def test_gate_compares_with_the_newest_approved_package(aws):
    sm = boto3.client("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName="g")
    _register(sm, "g", "Rejected", 0.5)
    prod = _register(sm, "g", "Approved", 1.2)
    h = load_handler("pipeline_gate")
    event = {"metric_name": "rmse", "direction": "lower", "threshold": 2.0, "min_improvement": 0.1, "model_package_group": "g"}
    worse = h.handler({**event, "candidate": 1.15}, CTX)
    assert worse["passed"] is False and worse["approval_status"] == "Rejected"
    assert worse["baseline"] == 1.2 and worse["baseline_model_package_arn"] == prod
    better = h.handler({**event, "candidate": 1.0}, CTX)
    assert better["passed"] is True


def test_gate_decide_directions():
    h = load_handler("pipeline_gate")
    assert h.decide(0.9, 0.8, "higher", 0.85, 0.05)[0] is True
    assert h.decide(0.84, None, "higher", 0.85, 0.0)[0] is False
    assert h.decide(0.82, 0.8, "higher", None, 0.05)[0] is False
    assert h.decide(0.2, 0.3, "lower", 0.25, 0.05)[0] is True


@pytest.mark.parametrize("event, message", [
    ({"direction": "higher", "candidate": 1, "model_package_group": "g"}, "metric_name must be a non-empty string"),
    ({"metric_name": "a", "direction": "up", "candidate": 1, "model_package_group": "g"}, "direction must be one of"),
    ({"metric_name": "a", "direction": "higher", "candidate": "1", "model_package_group": "g"}, "candidate must be a finite number"),
    ({"metric_name": "a", "direction": "higher", "candidate": 1, "threshold": float("nan"), "model_package_group": "g"}, "threshold must be a finite number"),
    ({"metric_name": "a", "direction": "higher", "candidate": 1, "min_improvement": -1, "model_package_group": "g"}, "min_improvement must be >= 0"),
    ({"metric_name": "a", "direction": "higher", "candidate": 1}, "model_package_group must be a non-empty string"),
])
def test_gate_rejects_malformed_events(aws, event, message):
    h = load_handler("pipeline_gate")
    with pytest.raises(h.GateConfigurationError, match=message):
        h.handler(event, CTX)


# --- approval ---------------------------------------------------------------------------------------------------

REVIEWER_ARN = "arn:aws:sts::123456789012:assumed-role/Reviewer/alice"


def url_event(body: Any, caller: str | None = REVIEWER_ARN, **extra: Any) -> dict:
    """A Lambda function URL request (payload format 2.0); ``caller`` is the SigV4 signer (AuthType AWS_IAM)."""
    event: dict = {"version": "2.0", "rawPath": "/", "body": body if isinstance(body, str) else json.dumps(body),
                   "isBase64Encoded": False, "requestContext": {"http": {"method": "POST"}}, **extra}
    if caller is not None:
        event["requestContext"]["authorizer"] = {"iam": {"userArn": caller, "accountId": "123456789012",
                                                         "callerId": "AROAEXAMPLE:alice", "userId": "AROAEXAMPLE:alice"}}
    return event


def _answer(out: dict) -> tuple[int, dict]:
    return out["statusCode"], json.loads(out["body"])


@pytest.mark.parametrize("body, message", [
    ({"decision": "approve"}, "token: the task token"),
    ({"token": "t", "decision": "maybe"}, "decision: must be one of"),
    ("{bad", "body must be JSON"),
    ('"x"', "body must be a JSON object"),
    ({"token": "t", "decision": "approve", "reason": {"a": 1}}, "reason: must be text"),
])
def test_approval_rejects_malformed_requests(body, message):
    h = load_handler("pipeline_approval")
    h._clients["sfn"] = client = _sfn_client()
    status, answer = _answer(h.handler(url_event(body), CTX))
    assert status == 400 and message in answer["reason"]
    assert not client.method_calls


def test_approval_records_the_iam_caller_not_a_name_from_the_body():
    """Issue 13 item 7: the reviewer is the function URL's authenticated caller; a reviewer field is refused."""
    h = load_handler("pipeline_approval")
    h._clients["sfn"] = client = _sfn_client()
    status, answer = _answer(h.handler(url_event({"token": "t", "decision": "approve", "reason": "ok"}), CTX))
    assert status == 200 and answer == {"status": "sent", "decision": "approve", "reviewer": REVIEWER_ARN}
    assert json.loads(client.send_task_success.call_args.kwargs["output"]) == {
        "decision": "Approved", "reviewer": REVIEWER_ARN, "reason": "ok"}
    client.reset_mock()
    status, answer = _answer(h.handler(url_event({"token": "t", "decision": "approve", "reviewer": "the-cto"}), CTX))
    assert status == 400 and "reviewer: not accepted" in answer["reason"]
    assert not client.method_calls


@pytest.mark.parametrize("event", [
    {"token": "t", "decision": "approve", "reviewer": "alice"},           # a direct Invoke (the old way)
    url_event({"token": "t", "decision": "approve"}, caller=None),       # a URL without IAM auth (AuthType NONE)
    url_event({"token": "t", "decision": "approve"}, caller="alice"),    # not an ARN
    "x",
])
def test_approval_without_an_iam_caller_is_refused(event):
    h = load_handler("pipeline_approval")
    h._clients["sfn"] = client = _sfn_client()
    status, answer = _answer(h.handler(event, CTX))
    assert status == 403 and "requestContext.authorizer.iam.userArn" in answer["reason"]
    assert not client.method_calls


def test_approval_sends_the_decision_and_tolerates_a_closed_token():
    h = load_handler("pipeline_approval")
    h._clients["sfn"] = client = _sfn_client()
    body = base64.b64encode(json.dumps({"token": "t", "decision": "reject", "reason": "drift"}).encode()).decode()
    status, answer = _answer(h.handler(url_event(body, isBase64Encoded=True), CTX))
    assert status == 200 and answer["decision"] == "reject"
    client.send_task_failure.assert_called_once_with(taskToken="t", error="ModelRejected", cause=f"rejected by {REVIEWER_ARN}: drift")
    client.send_task_success.side_effect = client.exceptions.TaskTimedOut("expired")
    status, answer = _answer(h.handler(url_event({"token": "t", "decision": "approve"}), CTX))
    assert status == 409 and answer["status"] == "closed"


# --- trigger -------------------------------------------------------------------------------------------------------

def test_trigger_names_executions_deterministically_and_picks_the_newest_version(aws):
    h = load_handler("pipeline_trigger")
    a = h.run_request({"detail-type": "Dataset Version Ready", "detail": {"dataset": "images", "dataset_version": "v1"}})
    b = h.run_request({"detail-type": "Dataset Version Ready", "detail": {"dataset": "images", "version": "v1"}})
    assert a["name"] == b["name"] and len(a["name"]) <= 80 and set(a["name"]) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
    with mock.patch.dict(os.environ, {"RAW_BUCKET": "raw"}):
        s = h.run_request({"trigger": "schedule", "dataset": "images", "time": "2026-11-24T10:00:00Z"})
    assert s["version"] == "v2" and s["trigger"] == "schedule" and s["name"] != a["name"]


@pytest.mark.parametrize("event, message", [
    ({"detail-type": "Dataset Version Ready", "detail": {"dataset": "images"}}, "detail must name 'dataset' and 'version'"),
    ({"trigger": "schedule"}, "a schedule input must name 'dataset'"),
    ({"trigger": "schedule", "dataset": "nothing"}, "schedule: no version of dataset 'nothing'"),
    ({"source": "aws.s3"}, "expected detail-type 'Dataset Version Ready'"),
    (None, "event must be an object"),
])
def test_trigger_rejects_malformed_events(aws, event, message):
    h = load_handler("pipeline_trigger")
    with mock.patch.dict(os.environ, {"RAW_BUCKET": "raw"}), pytest.raises(h.MalformedTriggerError, match=message):
        h.handler(event, CTX)


# --- trigger: drift events (issue 15) -------------------------------------------------------------------------------

def _drift_event(**kw):
    return {"trigger": "drift", "dataset": "images", "endpoint": "ep", "report_uri": "s3://art/drift-reports/ep/r.json",
            "event_id": "ev-1", "cooldown_hours": 24, "min_interval_hours": 6, **kw}


def test_drift_event_retrains_on_the_newest_version_outside_cooldown_and_interval(aws):
    from datetime import datetime, timedelta, timezone
    h = load_handler("pipeline_trigger")
    now = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)
    with mock.patch.dict(os.environ, {"RAW_BUCKET": "raw"}):
        req = h.drift_request(_drift_event(), now, [])
        assert (req["version"], req["trigger"], req["report_uri"]) == ("v2", "drift", "s3://art/drift-reports/ep/r.json")
        assert h.DRIFT_RUN_NAME.search(req["name"]), req["name"]
        recent = [{"name": "images-v1-abc", "startDate": now - timedelta(hours=2)}]
        assert h.drift_request(_drift_event(), now, recent)["skip"].startswith("min-interval")
        drift_run = [{"name": req["name"], "startDate": now - timedelta(hours=10)}]
        assert h.drift_request(_drift_event(), now, drift_run)["skip"].startswith("cooldown")
        assert "name" in h.drift_request(_drift_event(cooldown_hours=8), now, drift_run)
        assert "name" in h.drift_request(_drift_event(), now, [{"name": req["name"], "startDate": now - timedelta(hours=30)}])
        # a dataset whose name contains "-drift" is not mistaken for a drift-triggered run
        other = [{"name": "my-drift-data-v1-0a1b2c3d", "startDate": now - timedelta(hours=10)}]
        assert "name" in h.drift_request(_drift_event(), now, other)


@pytest.mark.parametrize("event, message", [
    (_drift_event(dataset=None), "a drift event must name 'dataset'"),
    (_drift_event(report_uri="http://x"), "a drift event must carry 'report_uri' \\(s3://...\\), got: 'http://x'"),
    (_drift_event(cooldown_hours=-1), "cooldown_hours and min_interval_hours must be >= 0"),
    (_drift_event(dataset="nothing"), "drift: no version of dataset 'nothing' in the raw zone"),
])
def test_trigger_rejects_malformed_drift_events(aws, event, message):
    from datetime import datetime, timezone
    h = load_handler("pipeline_trigger")
    with mock.patch.dict(os.environ, {"RAW_BUCKET": "raw"}), pytest.raises(h.MalformedTriggerError, match=message):
        h.drift_request(event, datetime(2026, 11, 30, tzinfo=timezone.utc), [])


def test_drift_run_starts_only_after_its_cause_is_recorded(aws):
    """The lineage #cause item is written before StartExecution: when it cannot be written, no run starts."""
    h = load_handler("pipeline_trigger")
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    arn = sfn.create_state_machine(name="retrain", roleArn="arn:aws:iam::123456789012:role/sfn",
                                   definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}))["stateMachineArn"]
    with mock.patch.dict(os.environ, {"RAW_BUCKET": "raw", "STATE_MACHINE_ARN": arn}):
        with pytest.raises(Exception, match="ResourceNotFound|not found"):  # the lineage table does not exist
            h.handler(_drift_event(lineage_table="missing-table"), CTX)
        assert sfn.list_executions(stateMachineArn=arn)["executions"] == []
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName="lineage", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}])
        out = h.handler(_drift_event(lineage_table="lineage"), CTX)
        assert out["started"] and len(sfn.list_executions(stateMachineArn=arn)["executions"]) == 1
        (item,) = boto3.client("dynamodb", region_name="us-east-1").scan(TableName="lineage")["Items"]
        assert item["run_id"]["S"] == out["name"] and item["sk"]["S"].endswith("#cause")


# --- issue 19 items 7-9: versions, the gate's numbers and metadata, malformed inputs -----------------------------


import botocore.session  # noqa: E402
import regex  # noqa: E402

_SM = botocore.session.get_session().get_service_model("sagemaker")
_SFN = botocore.session.get_session().get_service_model("stepfunctions")


def test_the_schedule_trains_the_newest_ready_version_by_recorded_time_not_by_name(aws):
    """Item 7: v10 became ready after v9 (string order says v9); v11 is half-ingested (no marker)."""
    for version in ("v9", "v10", "v11"):
        aws.put_object(Bucket="raw", Key=f"dataset=images/version={version}/a.csv", Body=b"x")
    aws.put_object(Bucket="raw", Key="dataset=images/_ready/20261126T000000Z_v9.json", Body=b"{}")
    aws.put_object(Bucket="raw", Key="dataset=images/_ready/20261127T000000Z_v10.json", Body=b"{}")
    h = load_handler("pipeline_trigger")
    with mock.patch.dict(os.environ, {"RAW_BUCKET": "raw"}):
        assert h.run_request({"trigger": "schedule", "dataset": "images", "time": "t"})["version"] == "v10"


def test_the_glue_marker_key_is_what_the_trigger_and_validate_read(aws):
    from mlinfra.lambdas.landing_glue.handler import ready_marker_key

    key = ready_marker_key("images", "v12", "2026-11-28T10:11:12+00:00")
    assert key == "dataset=images/_ready/20261128T101112Z_v12.json"
    aws.put_object(Bucket="raw", Key=key, Body=b"{}")
    aws.put_object(Bucket="raw", Key="dataset=images/version=v12/a.csv", Body=b"x")
    with mock.patch.dict(os.environ, {"RAW_BUCKET": "raw"}):
        assert load_handler("pipeline_trigger").latest_version("raw", "images") == "v12"
    assert load_handler("pipeline_validate").declared_ready("raw", "images", "v12")


def test_validate_refuses_a_half_ingested_version_of_a_manual_run(aws):
    """Item 7: objects exist under the version but the glue never declared it ready."""
    aws.put_object(Bucket="raw", Key="dataset=images/version=v11/a.csv", Body=b"x")
    h = load_handler("pipeline_validate")
    with pytest.raises(h.InvalidInputError, match="version: images/v11 was not declared ready"):
        h.handler({"input": {"dataset": "images", "version": "v11"}, "execution": EXECUTION, "settings": SETTINGS}, CTX)
    plan = h.handler({"input": {"dataset": "images", "version": "v11"}, "execution": EXECUTION,
                      "settings": {**SETTINGS, "require_ready": False}}, CTX)["plan"]
    assert plan["version"] == "v11"


@pytest.mark.parametrize("stored", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_gate_ignores_a_non_finite_production_metric(aws, stored):
    """Item 8: NaN/inf in the registry is not a baseline; the older finite one is."""
    sm = boto3.client("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName="g")
    older = _register(sm, "g", "Approved", 1.2)
    _register(sm, "g", "Approved", stored)
    out = load_handler("pipeline_gate").handler({"metric_name": "rmse", "direction": "lower", "candidate": 1.0,
                                                 "model_package_group": "g"}, CTX)
    assert out["baseline"] == 1.2 and out["baseline_model_package_arn"] == older and out["passed"] is True


def _metadata_valid(meta: dict) -> list[str]:
    shape = _SM.operation_model("CreateModelPackage").input_shape.members["CustomerMetadataProperties"]
    problems = [] if len(meta) <= shape.metadata["max"] else [f"{len(meta)} entries"]
    for sub, items in ((shape.key, meta.keys()), (shape.value, meta.values())):
        pattern = regex.compile(sub.metadata["pattern"])
        for text in items:
            if not (sub.metadata["min"] <= len(text) <= sub.metadata["max"]) or not pattern.fullmatch(text):
                problems.append(text)
    return problems


@pytest.mark.parametrize("metric_name,lineage", [
    ("f1 (macro)", {"dataset": "images", "hyperparameters": {"lr": 0.1}}),
    ("m" * 300, {"dataset": "ïmages €", "code_version": "x" * 1000}),
    ("acc", {"training_job_arn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/a", "run_id": "r#1;drop"}),
    ("acc", {"hyperparameters": {f"k{i}": "v" * 50 for i in range(20)}, "dataset_version": "v1\n\t"}),
])
def test_gate_metadata_follows_the_botocore_model(aws, metric_name, lineage):
    """Item 8: CustomerMetadataProperties keys 1-128, values 1-256, the model's character set, <= 50 entries."""
    boto3.client("sagemaker").create_model_package_group(ModelPackageGroupName="g")
    out = load_handler("pipeline_gate").handler({"metric_name": metric_name, "direction": "higher", "candidate": 0.5,
                                                 "model_package_group": "g", "lineage": lineage}, CTX)
    assert out["customer_metadata"] and _metadata_valid(out["customer_metadata"]) == []


def test_more_than_100_hyperparameters_are_refused_before_training(aws):
    """Item 8: CreateTrainingJob's HyperParameters map holds at most 100 entries (botocore model)."""
    limit = _SM.operation_model("CreateTrainingJob").input_shape.members["HyperParameters"].metadata["max"]
    h = load_handler("pipeline_validate")
    assert h.MAX_HYPERPARAMETERS == limit == 100
    hps = {f"h{i}": i for i in range(limit - 2)}  # + the default lr + the report URI = 100: accepted
    assert len(h.handler({"input": {"dataset": "images", "version": "v1", "hyperparameters": hps},
                          "execution": EXECUTION, "settings": SETTINGS}, CTX)["plan"]["hyperparameters"]) == limit
    with pytest.raises(h.InvalidInputError, match="hyperparameters: CreateTrainingJob accepts at most 100, got: 101"):
        h.handler({"input": {"dataset": "images", "version": "v1", "hyperparameters": {**hps, "one_more": 1}},
                   "execution": EXECUTION, "settings": SETTINGS}, CTX)


@pytest.mark.parametrize("event, message", [
    ({"detail-type": "Dataset Version Ready", "detail": "images/v1"}, "detail must be an object"),
    ({"detail-type": "Dataset Version Ready", "detail": ["images"]}, "detail must be an object"),
    ({"detail-type": "Dataset Version Ready", "detail": {"dataset": "images", "version": 3}}, "detail must name 'dataset' and 'version'"),
])
def test_trigger_malformed_details_name_the_field(aws, event, message):
    """Item 9."""
    h = load_handler("pipeline_trigger")
    with pytest.raises(h.MalformedTriggerError, match=message):
        h.handler(event, CTX)


def test_trigger_schedule_without_raw_bucket_names_the_variable(aws):
    h = load_handler("pipeline_trigger")
    with mock.patch.dict(os.environ, {"RAW_BUCKET": ""}), pytest.raises(RuntimeError, match="RAW_BUCKET"):
        h.run_request({"trigger": "schedule", "dataset": "images"})


@pytest.mark.parametrize("event, message", [
    ({"input": {}, "execution": {"id": "x"}, "settings": SETTINGS}, "execution.name"),
    ({"input": {}, "execution": EXECUTION, "settings": {**SETTINGS, "raw_bucket": None}}, "settings.raw_bucket"),
    ({"input": {}, "execution": EXECUTION, "settings": {k: v for k, v in SETTINGS.items() if k != "job_prefix"}}, "settings.job_prefix"),
    ({"input": {}, "execution": EXECUTION, "settings": {**SETTINGS, "default_hyperparameters": [1]}}, "settings.default_hyperparameters"),
    ({"input": {"dataset": "images", "version": "v1", "hyperparameters": {"lr": float("nan")}}, "execution": EXECUTION,
      "settings": SETTINGS}, "hyperparameters.lr: must be a finite number"),
    ("x", "event: must be"),
])
def test_validate_malformed_events_name_the_field(aws, event, message):
    """Item 9: no KeyError/AttributeError; the message names the field."""
    h = load_handler("pipeline_validate")
    with pytest.raises(h.InvalidInputError, match=message.replace("(", r"\(").replace("[", r"\[")):
        h.handler(event, CTX)


@pytest.mark.parametrize("event, message", [
    ({"metric_name": "a", "direction": "higher", "candidate": 1, "model_package_group": "g", "lineage": "x"}, "lineage must be an object"),
    ({"metric_name": "a", "direction": "higher", "candidate": float("inf"), "model_package_group": "g"}, "candidate must be a finite number"),
    ({"metric_name": "a", "direction": "higher", "candidate": 1, "model_package_group": "g", "manual_approval": "yes"}, "manual_approval"),
])
def test_gate_malformed_events_name_the_field(aws, event, message):
    h = load_handler("pipeline_gate")
    with pytest.raises(h.GateConfigurationError, match=message):
        h.handler(event, CTX)


@pytest.mark.parametrize("body", [None, b"[" * 100_000 + b"]" * 100_000, b'{"value": ' * 900 + b"1" + b"}" * 900])
def test_evaluation_missing_or_hostile_reports_name_the_report(aws, body):
    """Item 9: a report not found (no bucket) or nested 100k deep: an EvaluationReportError, not a crash."""
    uri = "s3://nobucket/r.json" if body is None else "s3://art/evaluation/deep.json"
    if body is not None:
        aws.put_object(Bucket="art", Key="evaluation/deep.json", Body=body)
    h = load_handler("pipeline_evaluation")
    with pytest.raises(h.EvaluationReportError, match="r.json|deep.json"):
        h.handler({"report_uri": uri, "metric_name": "accuracy"}, CTX)


def _sfn_client():
    client = mock.MagicMock()
    for name in ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken"):
        setattr(client.exceptions, name, type(name, (Exception,), {}))
    return client


def test_approval_accepts_tokens_up_to_the_botocore_limit_and_bounds_the_output():
    """Item 9: SendTaskSuccess taskToken is 1-2048 characters (a 1,500-character token is valid); output <= 256 KiB."""
    h = load_handler("pipeline_approval")
    shape = _SFN.operation_model("SendTaskSuccess").input_shape.members
    assert h.TOKEN_MAX == shape["taskToken"].metadata["max"] and h.OUTPUT_MAX == shape["output"].metadata["max"]
    assert h.CAUSE_MAX == _SFN.operation_model("SendTaskFailure").input_shape.members["cause"].metadata["max"]
    client = _sfn_client()
    h._clients["sfn"] = client
    out = h.handler(url_event({"token": "t" * 1500, "decision": "approve", "reason": "r" * 10_000}), CTX)
    assert out["statusCode"] == 200
    sent = client.send_task_success.call_args.kwargs
    assert len(sent["taskToken"]) == 1500 and len(sent["output"]) <= 1024
    for body, message in (({"token": "t" * 2049, "decision": "approve"}, "1-2048 characters"),
                          ({"token": "t", "decision": "approve", "reason": "r" * 300_000}, "body: at most")):
        status, answer = _answer(h.handler(url_event(body), CTX))
        assert status == 400 and message in answer["reason"]
