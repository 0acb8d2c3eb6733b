"""The drift loop offline: capture files in the lake -> the drift job -> metrics -> the event on the bus ->
the retrain trigger starts an execution (with a cool-down on the next event).

What runs where (moto cannot run a Processing container):
- the drift job's code (``mlinfra.domain.drift.job.main``) runs IN-PROCESS against moto S3, CloudWatch and
  EventBridge, exactly as the Processing job would run it with boto3 clients;
- moto's EventBridge delivers to SQS only, so the test reads the event from an SQS target of a rule with the
  monitor's pattern, then applies the synthesized retrain rule's input transformer (read from the template
  made by ``retrain_on_drift``) and invokes the real trigger handler, as EventBridge would.
"""

from __future__ import annotations

import json
import os
import re
from unittest import mock

import boto3
import numpy as np
import pytest
from moto import mock_aws

from mlinfra.domain.drift import job
from tests import drift_synthetic as syn
from tests.workflow.sfn_harness import _Context, load_handler

ENDPOINT = "realtime-ep"
CAPTURE = f"data-capture/realtime/{ENDPOINT}/AllTraffic/2026/11/30/"


def _input_transformer() -> tuple[dict, str]:
    import aws_cdk as cdk
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk import aws_stepfunctions as sfn
    from aws_cdk.assertions import Template

    from mlinfra.constructs.drift_monitor import retrain_on_drift
    from tests.helpers import new_stack, only

    stack = new_stack()
    fn = lambda_.Function(stack, "Trigger", runtime=lambda_.Runtime.PYTHON_3_12, handler="h.handler",
                          code=lambda_.Code.from_inline("def handler(e, c): pass"))
    retrain = sfn.StateMachine(stack, "Retrain", definition_body=sfn.DefinitionBody.from_chainable(sfn.Pass(stack, "P")))
    retrain_on_drift(stack, "OnDrift", trigger_function=fn, retrain_state_machine=retrain, dataset="tabular",
                     endpoint_names=[ENDPOINT], cooldown=cdk.Duration.hours(24), min_interval=cdk.Duration.hours(6))
    rule = only(Template.from_stack(stack), "AWS::Events::Rule")["Properties"]
    transformer = rule["Targets"][0]["InputTransformer"]
    return rule["EventPattern"], transformer


def _transform(event: dict, transformer: dict) -> dict:
    """EventBridge's input transformer: <name> in the template -> the JSON value at the path."""
    def at(path: str):
        value = event
        for part in path.lstrip("$.").split("."):
            value = value[part]
        return value
    text = transformer["InputTemplate"]
    for name, path in transformer["InputPathsMap"].items():
        text = re.sub(f'"<{name}>"|<{name}>', json.dumps(at(path)), text)
    return json.loads(text)


@pytest.fixture()
def aws():
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        yield {name: boto3.client(name, region_name="us-east-1")
               for name in ("s3", "cloudwatch", "events", "sqs", "stepfunctions", "dynamodb")}


def test_capture_to_drift_report_metrics_event_and_retrain(aws):
    s3, cw, ev, sqs, sfn, ddb = (aws[n] for n in ("s3", "cloudwatch", "events", "sqs", "stepfunctions", "dynamodb"))
    for bucket in ("art", "raw"):
        s3.create_bucket(Bucket=bucket)
    # training data of two dataset versions (the drift run must pick the newest) and the baseline job on v2
    train = syn.frame(20_000, 1)
    s3.put_object(Bucket="raw", Key="dataset=tabular/version=v1/train.csv", Body=b"x")
    s3.put_object(Bucket="raw", Key="dataset=tabular/version=v2/train.csv", Body=syn.training_csv(train).encode())
    for stamp, version in (("20261101T000000Z", "v1"), ("20261102T000000Z", "v2")):  # the glue's ready markers
        s3.put_object(Bucket="raw", Key=f"dataset=tabular/_ready/{stamp}_{version}.json", Body=b"{}")
    job.main(["baseline", "--data", "s3://raw/dataset=tabular/version=v2/", "--output", "s3://art/baselines/runs/r1/baseline.json",
              "--copy-to", "s3://art/baselines/realtime/baseline.json"], clients=aws)

    # three hours of drifted traffic, the middle hour in 1,010 files (more than one listing page), and traffic
    # outside the window that must not be read
    lines = syn.capture_lines(syn.frame(6_000, 2, shift=True, new_category=True))
    s3.put_object(Bucket="art", Key=CAPTURE + "03/a.jsonl", Body="\n".join(lines[:2000]).encode())
    middle = lines[2000:4000]
    for i in range(1010):
        chunk = middle[i * 2: i * 2 + 2] if i < 1000 else ["{broken json"]
        s3.put_object(Bucket="art", Key=CAPTURE + f"04/f{i:04d}.jsonl", Body="\n".join(chunk).encode())
    s3.put_object(Bucket="art", Key=CAPTURE + "05/c.jsonl", Body="\n".join(lines[4000:]).encode())
    s3.put_object(Bucket="art", Key=CAPTURE + "06/outside.jsonl", Body="\n".join(lines[:500]).encode())

    # the bus: moto delivers to SQS, so a rule with the retrain rule's pattern forwards to a queue
    pattern, transformer = _input_transformer()
    queue = sqs.create_queue(QueueName="drift-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    ev.put_rule(Name="drift", EventPattern=json.dumps(pattern))
    ev.put_targets(Rule="drift", Targets=[{"Id": "q", "Arn": queue_arn}])

    report = job.main(["monitor", "--endpoint", ENDPOINT, "--capture", f"s3://art/data-capture/realtime/{ENDPOINT}/",
                       "--baseline", "s3://art/baselines/realtime/baseline.json", "--report", "s3://art/drift-reports/",
                       "--window-end", "2026-11-30T06:00:00Z", "--window-hours", "3"], clients=aws)

    # the report: exactly the injected drift, every record of the window, malformed lines counted
    assert report["summary"]["drifted_features"] == sorted(syn.SHIFTED + ["colour"])
    assert report["counts"]["records"] == 6_000 and report["counts"]["malformed_lines"] == 10
    assert report["window"] == {"end": "2026-11-30T06:00:00Z", "hours": 3, "files": 1012}
    stored = json.loads(s3.get_object(Bucket="art", Key="drift-reports/realtime-ep/2026/11/30/0600/report.json")["Body"].read())
    assert stored["status"] == "drift" and stored["location"] == report["location"]
    html = s3.get_object(Bucket="art", Key="drift-reports/realtime-ep/2026/11/30/0600/report.html")["Body"].read().decode()
    assert html.count("<svg") == 52  # one chart per feature (no holdout predictions were profiled)

    # metrics: overall and per feature, in the documented namespace
    metrics = cw.list_metrics(Namespace="mlinfra/Drift")["Metrics"]
    names = {(m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"]))) for m in metrics}
    assert ("DriftDetected", (("EndpointName", ENDPOINT),)) in names
    assert ("FeatureDrift", (("EndpointName", ENDPOINT), ("Feature", "x03"))) in names
    stats = cw.get_metric_statistics(Namespace="mlinfra/Drift", MetricName="DriftedFeatures",
                                     Dimensions=[{"Name": "EndpointName", "Value": ENDPOINT}],
                                     StartTime="2020-01-01", EndTime="2030-01-01", Period=3600, Statistics=["Maximum"])
    assert stats["Datapoints"][0]["Maximum"] == 4.0

    # the event on the bus
    (msg,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    event = json.loads(msg["Body"])
    assert event["detail-type"] == "Model Drift Detected" and event["source"] == "mlinfra.drift"
    assert event["detail"]["report_uri"] == "s3://art/drift-reports/realtime-ep/2026/11/30/0600/report.json"

    # the trigger starts a retrain execution on the newest dataset version; a second event is cooled down
    arn = sfn.create_state_machine(name="retrain", roleArn="arn:aws:iam::123456789012:role/sfn", definition=json.dumps(
        {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}))["stateMachineArn"]
    ddb.create_table(TableName="lineage", BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}])
    trigger_input = _transform(event, transformer)
    trigger_input["lineage_table"] = "lineage"  # the synthesized rule names the deployed table
    handler = load_handler("pipeline_trigger")
    with mock.patch.dict(os.environ, {"STATE_MACHINE_ARN": arn, "RAW_BUCKET": "raw"}):
        out = handler.handler(trigger_input, _Context("trigger"))
        again = handler.handler({**trigger_input, "event_id": "another-event"}, _Context("trigger"))
    assert out["started"] is True, out
    started = json.loads(sfn.describe_execution(executionArn=out["execution_arn"])["input"])
    assert started == {"dataset": "tabular", "version": "v2", "trigger": "drift", "event_id": event["id"],
                       "note": f"drift report {event['detail']['report_uri']}"}
    assert again["started"] is False and again["reason"].startswith("min-interval")
    (cause,) = ddb.scan(TableName="lineage")["Items"]
    assert cause["drift_report"]["S"] == event["detail"]["report_uri"] and cause["sk"]["S"].endswith("#cause")


def test_no_baseline_fails_with_the_command_that_makes_one(aws):
    aws["s3"].create_bucket(Bucket="art")
    with pytest.raises(SystemExit) as err:
        job.main(["monitor", "--endpoint", ENDPOINT, "--capture", "s3://art/c/", "--baseline", "s3://art/baselines/none.json",
                  "--report", "s3://art/r/", "--window-end", "2026-11-30T06:00:00Z"], clients=aws)
    assert "no baseline at s3://art/baselines/none.json" in str(err.value) and "drift.job baseline --data" in str(err.value)


def test_an_empty_window_is_reported_not_alarmed(aws):
    s3 = aws["s3"]
    s3.create_bucket(Bucket="art")
    cols = syn.frame(2_000, 1)
    from mlinfra.domain.drift import build_baseline
    s3.put_object(Bucket="art", Key="b.json", Body=build_baseline(cols).to_json().encode())
    report = job.main(["monitor", "--endpoint", ENDPOINT, "--capture", "s3://art/c/", "--baseline", "s3://art/b.json",
                       "--report", "s3://art/r/", "--window-end", "2026-11-30T06:00:00Z"], clients=aws)
    assert report["status"] == "empty_window" and report["counts"]["records"] == 0 and not report["drift_detected"]
    metrics = {m["MetricName"] for m in aws["cloudwatch"].list_metrics(Namespace="mlinfra/Drift")["Metrics"]}
    assert {"NotEnoughData", "DriftDetected", "Records"} <= metrics


def test_window_hours_cover_the_window_exactly():
    from datetime import datetime, timezone
    end = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)
    assert job.window_hours(end, 3) == ["2026/11/30/03/", "2026/11/30/04/", "2026/11/30/05/"]
    assert job.window_hours(datetime(2026, 11, 30, 6, 30, tzinfo=timezone.utc), 2) == ["2026/11/30/05/", "2026/11/30/06/"]
    assert np.unique(job.window_hours(end, 48)).size == 48


def test_baseline_leaves_the_label_out_and_reads_json_lines(aws):
    s3 = aws["s3"]
    s3.create_bucket(Bucket="raw")
    s3.put_object(Bucket="raw", Key="d/part-0.csv", Body=b"a,b,y\n" + b"".join(f"{i},{i % 3},{i % 2}\n".encode() for i in range(600)))
    out = job.main(["baseline", "--data", "s3://raw/d/", "--output", "s3://raw/b.json", "--label-column", "y"], clients=aws)
    assert out == {"baseline_uri": "s3://raw/b.json", "features": 2, "rows": 600}
    from mlinfra.domain.drift import Baseline
    base = Baseline.from_json(s3.get_object(Bucket="raw", Key="b.json")["Body"].read())
    assert base.feature_order == ["a", "b"] and [f.kind for f in base.features] == ["numeric", "numeric"]
    s3.put_object(Bucket="raw", Key="j/part-0.jsonl", Body=b"".join(json.dumps({"c": "x" if i % 2 else "y", "n": i}).encode() + b"\n" for i in range(10)))
    job.main(["baseline", "--data", "s3://raw/j/", "--output", "s3://raw/j.json"], clients=aws)
    base = Baseline.from_json(s3.get_object(Bucket="raw", Key="j.json")["Body"].read())
    assert [(f.name, f.kind) for f in base.features] == [("c", "categorical"), ("n", "numeric")]
