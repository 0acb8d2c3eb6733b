"""DriftMonitor: template (schedule, one run at a time, job request, IAM, alarms, dashboard), the workflow
executed by moto's Step Functions interpreter, validation, and the retrain-on-drift rule."""

from __future__ import annotations

import json
import os

import aws_cdk as cdk
import pytest
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk.assertions import Match, Template

from mlinfra.constructs.drift_monitor import NAMESPACE, BaselineHook, DriftMonitor, retrain_on_drift
from tests.helpers import new_stack, only, props, resolve_intrinsics, run_definition


def _build(**kw):
    stack = new_stack()
    lake = s3.Bucket(stack, "Lake", encryption=s3.BucketEncryption.KMS)
    raw = s3.Bucket(stack, "Raw", encryption=s3.BucketEncryption.KMS)
    retrain = sfn.StateMachine(stack, "Retrain", definition_body=sfn.DefinitionBody.from_chainable(sfn.Pass(stack, "P")))
    table = dynamodb.TableV2(stack, "Lineage", partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
                             sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING))
    board = cloudwatch.Dashboard(stack, "Board")
    kw.setdefault("baseline_hook", BaselineHook(retrain_state_machine=retrain, training_data=raw, lineage_table=table,
                                                label_column="churned"))
    monitor = DriftMonitor(stack, "Drift", endpoint_name="churn", capture_bucket=lake, capture_prefix="data-capture/realtime/",
                           baseline_bucket=lake, dashboard=board,
                           thresholds={"default": {"psi": 0.25}, "features": {"age": {"ks": 0.2}}},
                           poll_interval=cdk.Duration.seconds(1), **kw)
    return stack, monitor, Template.from_stack(stack)


@pytest.fixture(scope="module")
def built():
    return _build()


def _definition(template: Template) -> dict:
    (sm,) = [v for k, v in template.find_resources("AWS::StepFunctions::StateMachine").items() if "Drift" in k]
    return json.loads(_resolve(sm["Properties"]["DefinitionString"]))


_PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::URLSuffix": "amazonaws.com"}


def _resolve(value):
    """Stand-ins: bucket 'lake-bucket', table 'lineage', topic 'drift-topic', the us-east-1 image account."""
    def ref(name):
        if name in _PSEUDO:
            return _PSEUDO[name]
        return "arn:aws:sns:us-east-1:123456789012:drift-topic" if "Notifications" in name else (
            "lineage" if "Lineage" in name else "lake-bucket")

    def get_att(arg):
        if "Lineage" in arg[0]:
            return "arn:aws:dynamodb:us-east-1:123456789012:table/lineage"
        return f"arn:aws:iam::123456789012:role/{arg[0]}" if "Role" in arg[0] else f"arn:aws:kms:us-east-1:123456789012:key/{arg[0]}"

    def other(fn, arg):
        assert fn == "Fn::FindInMap", (fn, arg)
        return "683313688378"

    return resolve_intrinsics(value, ref, get_att, other)


def test_one_schedule_per_endpoint_passes_the_scheduled_time(built):
    _, _, t = built
    sched = only(t, "AWS::Scheduler::Schedule")["Properties"]
    assert sched["ScheduleExpression"] == "rate(1 day)"
    assert json.loads(sched["Target"]["Input"]) == {"mode": "monitor", "window_end": "<aws.scheduler.scheduled-time>"}


def test_one_run_at_a_time_then_processing_job_on_the_stock_image(built):
    _, monitor, t = built
    states = _definition(t)["States"]
    listing = states["ListRunningJobs"]["Parameters"]
    assert listing["NameContains"] == monitor.monitor_job_prefix and listing["StatusEquals"] == "InProgress"
    assert states["AlreadyRunning?"]["Choices"][0] == {"Variable": "$.running.count", "NumericGreaterThan": 0, "Next": "AlreadyRunning"}
    create = states["CreateProcessingJob"]
    assert create["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:createProcessingJob"
    req = create["Parameters"]
    assert req["AppSpecification"]["ImageUri"] == "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
    assert req["AppSpecification"]["ContainerEntrypoint"][:2] == ["/bin/sh", "-c"]
    assert "python3 -m drift.job" in req["AppSpecification"]["ContainerEntrypoint"][2]
    assert req["ProcessingInputs"][0]["S3Input"]["LocalPath"] == "/opt/ml/processing/input/code"
    assert req["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"].startswith("arn:aws:kms:")
    args = states["MonitorJob"]["Parameters"]["args"]
    assert args[:3] == ["monitor", "--endpoint", "churn"]
    assert args[args.index("--capture") + 1] == "s3://lake-bucket/data-capture/realtime/churn/"
    assert args[args.index("--baseline") + 1] == "s3://lake-bucket/baselines/churn/baseline.json"
    assert json.loads(args[args.index("--thresholds") + 1]) == {"default": {"psi": 0.25}, "features": {"age": {"ks": 0.2}}}
    assert states["MonitorJob"]["Parameters"]["env"]["DRIFT_WINDOW_END.$"] == "$.window_end"
    for name in ("CreateProcessingJob", "DescribeProcessingJob", "ListRunningJobs"):
        assert states[name]["Catch"][0]["Next"] == "NotifyFailure"


def test_job_role_is_least_privilege(built):
    _, _, t = built
    statements = [s for p in props(t, "AWS::IAM::Policy") if "JobRole" in json.dumps(p["Roles"]) for s in p["PolicyDocument"]["Statement"]]
    metrics = [s for s in statements if s["Action"] == "cloudwatch:PutMetricData"]
    assert metrics == [{"Action": "cloudwatch:PutMetricData", "Effect": "Allow", "Resource": "*",
                        "Condition": {"StringEquals": {"cloudwatch:namespace": NAMESPACE}}}]
    puts = [s for s in statements if s["Action"] == "events:PutEvents"]
    assert len(puts) == 1 and "event-bus/default" in json.dumps(puts[0]["Resource"])
    reads = json.dumps([s["Resource"] for s in statements if "s3:GetObject*" in s["Action"]])
    assert "data-capture/realtime/churn/*" in reads and "baselines/*" in reads
    assert not any(s["Action"] == "s3:*" or s["Resource"] == "arn:aws:s3:::*" for s in statements)


def test_pass_role_names_the_job_role_only(built):
    _, _, t = built
    statements = [s for p in props(t, "AWS::IAM::Policy") for s in p["PolicyDocument"]["Statement"] if s["Action"] == "iam:PassRole"]
    assert len(statements) == 1 and statements[0]["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert "JobRole" in json.dumps(statements[0]["Resource"])


def test_alarms_notify_and_dashboard_has_drift_widgets(built):
    _, monitor, t = built
    assert set(monitor.alarms) == {"Drift", "NoData", "SchemaChange", "JobFailed", "JobTimedOut", "JobAborted", "NoRecords"}
    t.has_resource_properties("AWS::CloudWatch::Alarm", {"MetricName": "DriftDetected", "Namespace": NAMESPACE,
                                                         "Dimensions": [{"Name": "EndpointName", "Value": "churn"}],
                                                         "AlarmActions": Match.any_value()})
    body = json.dumps(only(t, "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"])
    assert "Drift: drifted features" in body and "DriftedFeatures" in body


def test_timed_out_aborted_and_silent_runs_alarm(built):
    _, monitor, t = built
    for metric in ("ExecutionsTimedOut", "ExecutionsAborted"):
        t.has_resource_properties("AWS::CloudWatch::Alarm", {"MetricName": metric, "Namespace": "AWS/States",
                                                             "AlarmActions": Match.any_value()})
    t.has_resource_properties("AWS::CloudWatch::Alarm", {
        "MetricName": "Records", "Namespace": NAMESPACE, "Statistic": "Sum", "Period": 86400, "EvaluationPeriods": 2,
        "DatapointsToAlarm": 2, "ComparisonOperator": "LessThanThreshold", "Threshold": 1, "TreatMissingData": "breaching",
        "AlarmActions": Match.any_value()})
    t.has_resource_properties("AWS::CloudWatch::Alarm", {"MetricName": "SchemaChanges", "Namespace": NAMESPACE})


def test_capture_key_and_schema_retrain_option():
    from aws_cdk import aws_kms as kms

    stack, monitor, t = _build(capture_kms_key=None, schema_changes_retrain=True, no_records_alarm_days=None)
    args = _definition(t)["States"]["MonitorJob"]["Parameters"]["args"]
    assert args[-1] == "--schema-changes-retrain" and "NoRecords" not in monitor.alarms
    stack2 = new_stack()
    lake = s3.Bucket(stack2, "Lake")
    key = kms.Key(stack2, "CaptureKey")
    DriftMonitor(stack2, "Drift", endpoint_name="churn", capture_bucket=lake, capture_prefix="c/", baseline_bucket=lake,
                 capture_kms_key=key)
    policies = json.dumps(Template.from_stack(stack2).find_resources("AWS::IAM::Policy"))
    assert "kms:Decrypt" in policies and "CaptureKey" in policies
    with pytest.raises(ValueError, match="no_records_alarm_days must be between 1 and 7 or None, got: 9"):
        DriftMonitor(stack2, "Drift2", endpoint_name="churn", capture_bucket=lake, capture_prefix="c/", baseline_bucket=lake,
                     no_records_alarm_days=9)


def test_job_names_one_per_window_and_baseline_jobs_do_not_block_monitoring(built):
    """Same window end -> same job name (a duplicate run fails on it); a running baseline job is not a running monitor job."""
    states = _definition(built[2])["States"]
    assert states["MonitorJob"]["Parameters"]["name.$"].startswith(f"States.Format('{built[1].monitor_job_prefix}{{}}', States.Hash(")
    assert states["BaselineJob"]["Parameters"]["name.$"].startswith(f"States.Format('{built[1].baseline_job_prefix}")
    first, jobs, _ = _execute(_definition(built[2]), {"mode": "monitor", "window_end": "2026-11-30T06:00:00Z"})
    second, jobs2, _ = _execute(_definition(built[2]), {"mode": "monitor", "window_end": "2026-11-30T06:00:00Z"})
    other, _, _ = _execute(_definition(built[2]), {"mode": "monitor", "window_end": "2026-12-01T06:00:00Z"})
    name = json.loads(first["output"])["job"]["name"]
    assert name == json.loads(second["output"])["job"]["name"] != json.loads(other["output"])["job"]["name"]
    assert name.startswith(built[1].monitor_job_prefix) and len(name) <= 63


def test_baseline_hook_rule_and_lineage_update(built):
    _, _, t = built
    t.has_resource_properties("AWS::Events::Rule", {"EventPattern": {
        "source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"],
        "detail": {"status": ["SUCCEEDED"], "stateMachineArn": Match.any_value()}}})
    states = _definition(t)["States"]
    assert states["RecordBaselineInLineage"]["Parameters"]["UpdateExpression"] == "SET baseline_uri = :b"
    assert states["BaselineJob"]["Parameters"]["args"] == ["baseline", "--copy-to", "s3://lake-bucket/baselines/churn/baseline.json",
                                                           "--label-column", "churned"]


def _execute(definition: dict, execution_input: dict, running: bool = False, setup=None):
    import boto3
    from moto import mock_aws
    from moto.sagemaker.models import sagemaker_backends

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        sm = boto3.client("sagemaker", region_name="us-east-1")
        boto3.client("sns", region_name="us-east-1").create_topic(Name="drift-topic")
        if setup:
            setup()
        if running:
            prefix = definition["States"]["ListRunningJobs"]["Parameters"]["NameContains"]
            sm.create_processing_job(
                ProcessingJobName=f"{prefix}-earlier", RoleArn="arn:aws:iam::123456789012:role/r",
                AppSpecification={"ImageUri": "x"}, StoppingCondition={"MaxRuntimeInSeconds": 60},
                ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 1}})
            for job in sagemaker_backends["123456789012"]["us-east-1"].processing_jobs.values():
                job.processing_job_status = "InProgress"
        desc = run_definition(definition, execution_input)
        jobs = [sm.describe_processing_job(ProcessingJobName=j["ProcessingJobName"])
                for j in sm.list_processing_jobs()["ProcessingJobSummaries"]]
        extra = boto3.client("dynamodb", region_name="us-east-1").scan(TableName="lineage")["Items"] if setup else None
        return desc, jobs, extra


def test_monitor_run_in_the_emulator(built):
    desc, jobs, _ = _execute(_definition(built[2]), {"mode": "monitor", "window_end": "2026-11-30T06:00:00Z"})
    assert desc["status"] == "SUCCEEDED", desc
    (job,) = jobs  # moto keeps no Environment: the request's values are read from the execution's state
    state = json.loads(desc["output"])
    assert job["ProcessingJobName"] == state["job"]["name"] and job["ProcessingJobName"].startswith(built[1].job_prefix + "-")
    assert state["job"]["env"] == {"DRIFT_WINDOW_END": "2026-11-30T06:00:00Z", "DRIFT_MODE": "monitor"}
    assert job["AppSpecification"]["ContainerArguments"][0] == "monitor"


def test_a_running_job_skips_the_run(built):
    desc, jobs, _ = _execute(_definition(built[2]), {"mode": "monitor", "window_end": "2026-11-30T06:00:00Z"}, running=True)
    assert desc["status"] == "SUCCEEDED" and len(jobs) == 1  # only the earlier job: no second run


def test_baseline_run_records_lineage_in_the_emulator(built):
    import boto3

    def table():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(TableName="lineage", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}])

    output = json.dumps({"plan": _PLAN, "gate": {"passed": True}, "registration": {"ModelPackageArn": _PACKAGE},
                         "approval": {"decision": "approve"}, "deploy": {"endpoint_name": "churn"}})
    desc, jobs, items = _execute(_definition(built[2]), {"mode": "baseline", "output": output}, setup=table)
    assert desc["status"] == "SUCCEEDED", desc
    (job,) = jobs
    env = json.loads(desc["output"])["job"]["env"]
    assert job["AppSpecification"]["ContainerArguments"][0] == "baseline"
    assert env["DRIFT_DATA"] == "s3://raw/dataset=tabular/version=v3/"
    assert env["DRIFT_OUTPUT"] == "s3://lake-bucket/baselines/churn/runs/r1/baseline.json"
    assert env["DRIFT_MODEL"] == _PACKAGE  # the baseline names the model package it profiles
    (item,) = items
    assert item["sk"]["S"] == "version#v3#run#r1" and item["baseline_uri"]["S"] == env["DRIFT_OUTPUT"]


def test_the_retrain_definition_marks_what_the_baseline_choice_reads():
    """The retrain runs that end SUCCEEDED end in these Succeed states (older definitions also had AlreadyRunning); the baseline Choice tells them apart
    by $.registration, $.gate.passed and $.approval_error, which the real definition writes as assumed here."""
    from mlinfra.asl_diagram import reference_definition

    states = reference_definition()["States"]
    succeed = {n for n, st in states.items() if st["Type"] == "Succeed"}
    assert {"ModelRejected", "Succeeded"} <= succeed <= {"AlreadyRunning", "ModelRejected", "Succeeded"}, succeed
    assert states["RegisterModelPackage"]["ResultPath"] == "$.registration"
    assert states["GateDecision"]["Choices"] == [{"Variable": "$.gate.passed", "BooleanEquals": False, "Next": "RecordRejected"}]
    assert {"ErrorEquals": ["States.Timeout", "ModelRejected"], "ResultPath": "$.approval_error",
            "Next": "RejectModelPackage"} in states["RequestApproval"]["Catch"]
    assert states["ApproveModelPackage"]["Parameters"]["ModelApprovalStatus"] == "Approved"
    assert states["ApproveModelPackage"]["Next"] == "RecordSuccess"


_PLAN = {"dataset": "tabular", "version": "v3", "run_id": "r1", "uris": {"train_input": "s3://raw/dataset=tabular/version=v3/"}}
_PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3"


@pytest.mark.parametrize("outcome, run_output", [
    ("another run held the lock", {"plan": _PLAN, "error": {"Error": "DynamoDB.ConditionalCheckFailedException"}}),
    ("gate failed: registered Rejected", {"plan": _PLAN, "gate": {"passed": False}, "registration": {"ModelPackageArn": _PACKAGE}}),
    ("reviewer refused", {"plan": _PLAN, "gate": {"passed": True}, "registration": {"ModelPackageArn": _PACKAGE},
                          "approval_error": {"Error": "ModelRejected"}}),
])
def test_a_succeeded_run_without_an_approved_model_keeps_the_baseline(built, outcome, run_output):
    desc, jobs, _ = _execute(_definition(built[2]), {"mode": "baseline", "output": json.dumps(run_output)})
    assert desc["status"] == "SUCCEEDED", desc
    assert jobs == [], outcome  # no baseline job: the monitored baseline is not replaced


def test_retrain_on_drift_rule_carries_the_policy():
    stack = new_stack()
    fn = lambda_.Function(stack, "Trigger", runtime=lambda_.Runtime.PYTHON_3_12, handler="h.handler",
                          code=lambda_.Code.from_inline("def handler(e, c): pass"))
    retrain = sfn.StateMachine(stack, "Retrain", definition_body=sfn.DefinitionBody.from_chainable(sfn.Pass(stack, "P")))
    retrain_on_drift(stack, "OnDrift", trigger_function=fn, retrain_state_machine=retrain, dataset="tabular",
                     endpoint_names=["churn"], cooldown=cdk.Duration.hours(12), min_interval=cdk.Duration.hours(3))
    t = Template.from_stack(stack)
    rule = only(t, "AWS::Events::Rule")["Properties"]
    assert rule["EventPattern"] == {"source": ["mlinfra.drift"], "detail-type": ["Model Drift Detected"], "detail": {"endpoint": ["churn"]}}
    template = rule["Targets"][0]["InputTransformer"]["InputTemplate"]
    assert '"cooldown_hours":12' in template and '"min_interval_hours":3' in template and '"trigger":"drift"' in template
    statements = [s for p in props(t, "AWS::IAM::Policy") for s in p["PolicyDocument"]["Statement"]]
    assert any(s["Action"] == "states:ListExecutions" for s in statements)


@pytest.mark.parametrize("kwargs, message", [
    ({"endpoint_name": "bad_name"}, "endpoint_name must be a SageMaker endpoint name (1-63 of a-z A-Z 0-9 and -), got: 'bad_name'"),
    ({"capture_prefix": "/abs"}, "capture_prefix must be one or more path segments"),
    ({"window": cdk.Duration.minutes(90)}, "window must be a whole number of hours between 1 and 744 (31 days), got: 1.5 hours"),
    ({"window": cdk.Duration.days(40)}, "window must be a whole number of hours between 1 and 744 (31 days), got: 960 hours"),
    ({"thresholds": {"default": {"psi": 0}}}, "thresholds: thresholds: psi must be in (0, 10], got: 0"),
    ({"instance_type": "m5.xlarge"}, "instance_type must be an ml.* SageMaker instance type, got: 'm5.xlarge'"),
    ({"volume_size_gb": 0}, "volume_size_gb must be between 1 and 16384, got: 0"),
    ({"max_runtime": cdk.Duration.days(10)}, "max_runtime must be between 1 second and 9 days (MaxRuntimeInSeconds <= 777600), "
                                             "got: 864000 seconds (AWS rule sagemaker.processing-max-runtime: "),
    ({"baseline_key": "baselines/x.txt"}, "baseline_key must be an object key ending in .json, got: 'baselines/x.txt'"),
])
def test_validation_names_the_prop_and_the_construct_path(kwargs, message):
    stack = new_stack()
    lake = s3.Bucket(stack, "Lake")
    args = dict(endpoint_name="churn", capture_bucket=lake, capture_prefix="data-capture/", baseline_bucket=lake)
    args.update(kwargs)
    with pytest.raises(ValueError) as err:
        DriftMonitor(stack, "Drift", **args)
    assert str(err.value).startswith("TestStack/Drift: ") and message in str(err.value)


def test_token_endpoint_name_needs_a_baseline_key_and_is_not_validated():
    stack = new_stack()
    lake = s3.Bucket(stack, "Lake")
    token = cdk.Fn.import_value("EndpointName")
    with pytest.raises(ValueError, match="TestStack/Drift: baseline_key is required when endpoint_name is a token, got: None"):
        DriftMonitor(stack, "Drift", endpoint_name=token, capture_bucket=lake, capture_prefix="c/", baseline_bucket=lake)
    DriftMonitor(stack, "Drift2", endpoint_name=token, capture_bucket=lake, capture_prefix="c/", baseline_bucket=lake,
                 baseline_key="baselines/x.json", schedule=scheduler.ScheduleExpression.expression("cron(0 6 * * ? *)"))
    Template.from_stack(stack).has_resource_properties("AWS::Scheduler::Schedule", {"ScheduleExpression": "cron(0 6 * * ? *)"})


def _botocore_validate(service: str, operation: str, params: dict) -> None:
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model(service)
    report = ParamValidator().validate(params, model.operation_model(operation).input_shape)
    assert not report.has_errors(), report.generate_report()


def test_create_processing_job_request_passes_botocore_model(built):
    _, monitor, t = built
    states = _definition(t)["States"]
    req = dict(states["CreateProcessingJob"]["Parameters"])
    job = states["MonitorJob"]["Parameters"]
    req.pop("ProcessingJobName.$")
    req["ProcessingJobName"] = f"{monitor.monitor_job_prefix}{'0' * 40}"  # prefix + SHA-1 hex: the longest name
    req.pop("Environment.$")
    req["Environment"] = {"DRIFT_WINDOW_END": "2026-11-30T06:00:00Z", "DRIFT_MODE": "monitor"}
    app = dict(req["AppSpecification"])
    app.pop("ContainerArguments.$")
    app["ContainerArguments"] = job["args"]
    req["AppSpecification"] = app
    _botocore_validate("sagemaker", "CreateProcessingJob", req)
    assert len(req["ProcessingJobName"]) <= 63  # the generated name fits SageMaker's 63 characters


def test_metrics_and_event_pass_botocore_models():
    import numpy as np

    from mlinfra.domain.drift import build_baseline, compare
    from mlinfra.domain.drift.capture import CaptureData
    from mlinfra.domain.drift.job import METRICS_PER_CALL, event_detail, metric_data

    cols = {f"f{i}": np.random.default_rng(i).normal(size=2000) for i in range(300)}
    base = build_baseline(cols)
    data = CaptureData(columns=cols, predictions=np.zeros(0), inference_ids=[], counters={"records": 2000},
                       new_columns={}, unparsable={}, content_types={})
    report = compare(base, data)
    report["location"] = {"json": "s3://b/r.json", "html": "s3://b/r.html"}
    metrics = metric_data("ep", report)
    assert len(metrics) > 1000 and METRICS_PER_CALL <= 1000
    for i in range(0, len(metrics), METRICS_PER_CALL):
        _botocore_validate("cloudwatch", "PutMetricData", {"Namespace": NAMESPACE, "MetricData": metrics[i:i + METRICS_PER_CALL]})
    _botocore_validate("events", "PutEvents", {"Entries": [{"Source": "mlinfra.drift", "DetailType": "Model Drift Detected",
                                                            "Detail": json.dumps(event_detail("ep", report))}]})


def test_the_container_entrypoint_unzips_the_code_asset_and_runs_the_job(tmp_path):
    """The entrypoint as the Processing container runs it (paths moved under tmp_path): the asset's zip of
    mlinfra/domain/drift, unpacked, runs as the stand-alone package ``drift`` (no other mlinfra module)."""
    import os
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    from mlinfra.constructs import drift_monitor

    code = tmp_path / "opt/ml/processing/input/code"
    code.mkdir(parents=True)
    with zipfile.ZipFile(code / "0123abcd.zip", "w") as z:
        for f in drift_monitor._CODE_DIR.glob("*.py"):
            z.write(f, f.name)
    script = drift_monitor._ENTRYPOINT[2].replace("/opt/ml/processing/input/code", str(code)).replace("/tmp/mlinfra", str(tmp_path / "run"))
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(["/bin/sh", "-c", script, "drift", "baseline", "--help"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "usage: drift.job baseline" in out.stdout


def test_the_construct_imports_and_synthesizes_without_numpy():
    """numpy is the engine's extra: the CDK side (construct, config, monitoring stack) must not need it."""
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['numpy'] = None\n"
        "from mlinfra import DriftMonitor, BaselineHook, retrain_on_drift\n"
        "from mlinfra.constructs.drift_monitor import NAMESPACE, _CODE_DIR\n"
        "import aws_cdk as cdk\n"
        "from aws_cdk import aws_s3 as s3\n"
        "app = cdk.App(); stack = cdk.Stack(app, 'S', env=cdk.Environment(account='123456789012', region='us-east-1'))\n"
        "b = s3.Bucket(stack, 'B')\n"
        "DriftMonitor(stack, 'D', endpoint_name='churn', capture_bucket=b, capture_prefix='c/', baseline_bucket=b,\n"
        "             thresholds={'default': {'psi': 0.3}})\n"
        "app.synth()\n"
        "assert (_CODE_DIR / 'job.py').is_file(), _CODE_DIR\n"
        "assert 'numpy' not in [m for m in sys.modules if sys.modules[m] is not None and m == 'numpy']\n"
        "print('ok', NAMESPACE)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, "CDK_VALIDATION": "false"})
    assert out.returncode == 0 and "ok mlinfra/Drift" in out.stdout, out.stderr[-3000:]
