"""DataSyncTask(dataset=...): each successful run lands as a new dataset version (issue 12 item 12).

Template: the task writes into its staging prefix with a SUCCESSES_AND_ERRORS report, the completion rule matches
the SUCCESS event of this task only (checked with moto's implementation of EventBridge pattern matching on the
event DataSync sends), its target has a dead-letter queue, the handler's permissions are scoped. Negative tests for each
rule of the destination, in the construct and in the config."""

from __future__ import annotations

import json

import pytest
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Annotations, Match, Template
from moto.events.models import EventPattern

from mlinfra.config import DataSyncConfig, DataSyncTaskConfig, DatasetRuleConfig, IngestionConfig
from mlinfra.constructs import datasync as ds
from mlinfra.constructs import datasync_promote
from mlinfra.constructs.data_lake import DataLake, ImportedDataLake
from tests.helpers import new_stack, props

TASK_ARN = "arn:aws:datasync:us-east-1:123456789012:task/task-0123456789abcdef0"


def partner(stack):
    bucket = stack.node.try_find_child("Partner") or s3.Bucket.from_bucket_name(stack, "Partner", "partner-bucket")
    return ds.S3Source(bucket, "exports/")


@pytest.fixture(scope="module")
def built():
    stack = new_stack()
    lake = DataLake(stack, "Lake")
    task = ds.DataSyncTask(stack, "Nightly", source=partner(stack), lake=lake, dataset="images", alarm_topic=sns.Topic(stack, "Alarms"),
                           schedule="cron(0 2 * * ? *)")
    return stack, task, Template.from_stack(stack)


def one(template: Template, type_: str, prefix: str) -> dict:
    found = [v["Properties"] for k, v in template.find_resources(type_).items() if k.startswith(prefix)]
    assert len(found) == 1, (type_, prefix, len(found))
    return found[0]


def test_the_task_writes_into_its_staging_prefix_with_a_full_report(built):
    _, task, t = built
    assert task.staging_prefix == "_datasync/images/Nightly/staging/"
    assert one(t, "AWS::DataSync::LocationS3", "NightlyDestination")["Subdirectory"] == "/_datasync/images/Nightly/staging/"
    report = one(t, "AWS::DataSync::Task", "NightlyTask")["TaskReportConfig"]
    assert (report["OutputType"], report["ReportLevel"], report["ObjectVersionIds"]) == ("STANDARD", "SUCCESSES_AND_ERRORS", "INCLUDE")
    assert report["Destination"]["S3"]["Subdirectory"] == "datasync-reports/Nightly/"
    dest_policy = json.dumps(one(t, "AWS::IAM::Policy", "NightlyDestinationRole"))
    assert "/_datasync/images/Nightly/staging/*" in dest_policy and "s3:DeleteObject" not in dest_policy


def test_the_completion_rule_takes_only_this_tasks_success_events_to_a_queue_with_a_dead_letter_queue(built):
    _, _, t = built
    rule = one(t, "AWS::Events::Rule", "NightlyPromotionSuccessRule")
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.datasync"] and pattern["detail-type"] == ["DataSync Task Execution State Change"]
    assert pattern["detail"] == {"State": ["SUCCESS"]}
    (target,) = rule["Targets"]
    assert target["Arn"]["Fn::GetAtt"][0].startswith("NightlyPromotionQueue")
    assert target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0].startswith("NightlyPromotionDeadLetterQueue")
    queue = one(t, "AWS::SQS::Queue", "NightlyPromotionQueue")
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5 and "KmsMasterKeyId" in queue
    mapping = one(t, "AWS::Lambda::EventSourceMapping", "NightlyPromotionHandler")
    assert mapping["BatchSize"] == 1 and mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]

    # EventBridge's matching rules (as moto implements them) on the event DataSync sends, with the task's ARN resolved.
    resolved = json.loads(json.dumps(pattern).replace(json.dumps(pattern["resources"][0]["prefix"]), json.dumps(f"{TASK_ARN}/execution/")))

    def event(state: str, task_arn: str = TASK_ARN) -> str:
        return json.dumps({"id": "1", "detail-type": "DataSync Task Execution State Change", "source": "aws.datasync",
                           "account": "123456789012", "time": "2026-11-30T02:10:00Z", "region": "us-east-1",
                           "resources": [f"{task_arn}/execution/exec-0123456789abcdef0"], "detail": {"State": state}})

    matches = lambda e: EventPattern.load(json.dumps(resolved)).matches_event(json.loads(e))
    assert matches(event("SUCCESS"))
    assert not matches(event("ERROR")) and not matches(event("TRANSFERRING"))
    assert not matches(event("SUCCESS", TASK_ARN.replace("abcdef0", "abcdef1")))  # another task


def test_the_handler_is_configured_and_scoped(built):
    _, _, t = built
    fn = next(p for p in props(t, "AWS::Lambda::Function") if "DATASET" in p.get("Environment", {}).get("Variables", {}))
    env = fn["Environment"]["Variables"]
    assert env["DATASET"] == "images" and env["STAGING_PREFIX"] == "_datasync/images/Nightly/staging/"
    assert env["REJECTED_PREFIX"] == "_datasync/images/Nightly/rejected/" and env["REPORT_PREFIX"] == "datasync-reports/Nightly/"
    assert env["TASK_ARN"] == {"Ref": Match.string_like_regexp("NightlyTask")} or "NightlyTask" in json.dumps(env["TASK_ARN"])
    assert fn["Handler"] == "handler.handler" and fn["Timeout"] == 900
    policy = json.dumps(one(t, "AWS::IAM::Policy", "NightlyPromotionHandlerRoleDefaultPolicy"))
    assert "datasync:DescribeTaskExecution" in policy and "/execution/*" in policy
    assert "/_datasync/images/Nightly/staging/*" in policy and "/images/*" in policy and "datasync-reports/Nightly/*" in policy
    assert "sns:Publish" in policy and "s3:Delete" not in policy
    statements = one(t, "AWS::IAM::Policy", "NightlyPromotionHandlerRoleDefaultPolicy")["PolicyDocument"]["Statement"]
    for st in statements:  # only X-Ray's actions and the reconciler's ListTaskExecutions may use Resource '*'
        if st["Resource"] == "*":
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            assert all(a.startswith("xray:") or a == "datasync:ListTaskExecutions" for a in actions), st


def test_a_fixed_prefix_in_landing_warns(built):
    stack = new_stack()
    lake = DataLake(stack, "Lake")
    ds.DataSyncTask(stack, "Fixed", source=partner(stack), lake=lake, prefix="images/v1/")
    Annotations.from_stack(stack).has_warning("/TestStack/Fixed", Match.string_like_regexp("pass dataset= for a new version per run"))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"prefix": "images/v1/", "dataset": "images"}, r"pass exactly one of prefix \(a fixed destination\) and dataset .*got: prefix='images/v1/', dataset='images'"),
    ({}, "pass exactly one of prefix .* got: prefix=None, dataset=None"),
    ({"dataset": "_quarantine"}, r"dataset: names must be 1-128 letters, digits or \._- \(not starting with _\), got: '_quarantine'"),
    ({"dataset": "images", "zone": "raw"}, "zone: dataset= lands each run in the landing zone for the glue to promote, got: 'raw'"),
    ({"dataset": "images", "report_level": ds.ReportLevel.ERRORS_ONLY}, "report_level: dataset= needs SUCCESSES_AND_ERRORS .*got: ERRORS_ONLY"),
])
def test_destination_rules(kwargs, message):
    stack = new_stack()
    lake = DataLake(stack, "Lake")
    with pytest.raises(ValueError, match="^TestStack/T: " + message):  # the construct's path first
        ds.DataSyncTask(stack, "T", source=partner(stack), lake=lake, **kwargs)


def test_a_dataset_task_needs_a_report_bucket():
    stack = new_stack()
    lake = ImportedDataLake(stack, "Lake", bucket_names={"landing": "l-bucket", "raw": "r-bucket"})
    with pytest.raises(ValueError, match="report_bucket: dataset= reads each run's files from the task report"):
        ds.DataSyncTask(stack, "T", source=partner(stack), lake=lake, dataset="images")
    ds.DataSyncTask(stack, "U", source=partner(stack), lake=lake, dataset="images",
                    report_bucket=s3.Bucket.from_bucket_name(stack, "Reports", "reports-bucket"))


def _task(**kw) -> DataSyncTaskConfig:
    return DataSyncTaskConfig("t", "s3", source_bucket="b", **kw)


@pytest.mark.parametrize(("task", "registered", "message"), [
    (_task(), {"images"}, "set exactly one of dataset (a new version per run) and prefix"),
    (_task(prefix="a/", dataset="images"), {"images"}, "set exactly one of dataset"),
    (_task(dataset="images", zone="raw"), {"images"}, "ingestion.datasync.tasks.t.zone: a dataset task lands its runs in 'landing'"),
    (_task(dataset="tabular"), {"images"}, "ingestion.datasync.tasks.t.dataset: the glue quarantines datasets missing from ingestion.datasets"),
    (_task(dataset="_x"), {"images"}, "ingestion.datasync.tasks.t.dataset: names must be"),
])
def test_config_destination_rules(task, registered, message):
    cfg = IngestionConfig(datasets={d: DatasetRuleConfig() for d in registered}, datasync=DataSyncConfig(tasks=[task]))
    assert any(message in e for e in cfg.validate()), cfg.validate()
    assert IngestionConfig(datasets={"images": DatasetRuleConfig()},
                           datasync=DataSyncConfig(tasks=[_task(dataset="images")])).validate() == []


# --- the service's own model (botocore) for the rules this path relies on ----------------------------------------


def test_start_task_execution_cannot_override_the_destination():
    """Rule datasync.fixed-destination: why each run lands through a staging prefix and a copy."""
    from mlinfra.domain.api_model import operation_input

    members = set(operation_input("datasync", "StartTaskExecution").members)
    assert "TaskArn" in members and not {m for m in members if m.startswith("Destination")}
    assert "Subdirectory" in operation_input("datasync", "CreateLocationS3").members


def test_the_states_reports_and_checksums_used_exist_in_the_service_models():
    from mlinfra.domain.api_model import operation_input, service_model
    from mlinfra.lambdas.datasync_promote import handler as promote

    statuses = service_model("datasync").shape_for("TaskExecutionStatus").enum
    assert {"SUCCESS", "ERROR"} <= set(statuses)  # rule datasync.execution-state-event
    report = service_model("datasync").operation_model("DescribeTaskExecution").output_shape.members["ReportResult"]
    assert set(report.members["Status"].enum) == {"PENDING", "SUCCESS", "ERROR"}  # rule datasync.report-result-pending
    config = operation_input("datasync", "CreateTask").members["TaskReportConfig"].members
    assert "SUCCESSES_AND_ERRORS" in config["ReportLevel"].enum and "INCLUDE" in config["ObjectVersionIds"].enum
    copy = service_model("s3").operation_model("CopyObject")
    assert "SHA256" in copy.input_shape.members["ChecksumAlgorithm"].enum and "IfNoneMatch" in copy.input_shape.members
    assert "ChecksumSHA256" in copy.output_shape.members["CopyObjectResult"].members  # rule s3.copy-computes-sha256
    assert promote.EVENT_SOURCE == datasync_promote.EXECUTION_EVENT["source"]
    assert promote.EVENT_DETAIL_TYPE == datasync_promote.EXECUTION_EVENT["detail-type"]
    from mlinfra.lambdas.landing_glue import handler as glue

    assert promote.DATASYNC_PREFIX == datasync_promote.DATASYNC_PREFIX == glue.DATASYNC_PREFIX  # one layout, three homes


def test_the_synthesized_task_is_a_valid_create_task_request(built):
    """The task's properties (which are CreateTask's) against botocore's CreateTask input shape, tokens resolved to
    well-formed ARNs."""
    from mlinfra.domain.api_model import request_errors

    _, _, t = built
    task = one(t, "AWS::DataSync::Task", "NightlyTask")
    stand_ins = {
        "SourceLocationArn": "arn:aws:datasync:us-east-1:123456789012:location/loc-0123456789abcdef0",
        "DestinationLocationArn": "arn:aws:datasync:us-east-1:123456789012:location/loc-0123456789abcdef1",
        "CloudWatchLogGroupArn": "arn:aws:logs:us-east-1:123456789012:log-group:datasync",
        "BucketAccessRoleArn": "arn:aws:iam::123456789012:role/report",
        "S3BucketArn": "arn:aws:s3:::artifacts-bucket",
    }

    def resolve(value, key=None):
        if isinstance(value, dict) and any(k in value for k in ("Ref", "Fn::GetAtt", "Fn::Join")):
            return stand_ins[key]
        if isinstance(value, dict):
            return {k: resolve(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, key) for v in value]
        return value

    assert request_errors("datasync", "CreateTask", resolve(task)) == []


def test_a_schedule_runs_the_reconciler_for_lost_events(built):
    _, _, t = built
    rule = one(t, "AWS::Events::Rule", "NightlyPromotionReconcileSchedule")
    assert rule["ScheduleExpression"] == "rate(6 hours)"
    (target,) = rule["Targets"]
    assert json.loads(target["Input"]) == {"mlinfra": "reconcile"} and "Arn" in target["DeadLetterConfig"]
    statements = one(t, "AWS::IAM::Policy", "NightlyPromotionHandlerRoleDefaultPolicy")["PolicyDocument"]["Statement"]
    (listing,) = [s for s in statements if s.get("Sid") == "ListExecutionsForTheReconciler"]
    assert listing["Action"] == "datasync:ListTaskExecutions" and listing["Resource"] == "*"


def test_error_events_of_a_dataset_task_have_a_dead_letter_queue(built):
    _, _, t = built
    (target,) = one(t, "AWS::Events::Rule", "NightlyErrorRule")["Targets"]
    assert target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0].startswith("NightlyPromotionDeadLetterQueue")


# --- review fixes ---------------------------------------------------------------------------------------------------


def _create_task_errors(task_props: dict) -> list[str]:
    """The task's TaskMode, Options and TaskReportConfig against botocore's CreateTask input shape (tokens replaced)."""
    from mlinfra.domain.api_model import request_errors

    report = json.loads(json.dumps(task_props["TaskReportConfig"]))
    report["Destination"]["S3"] = {"Subdirectory": report["Destination"]["S3"]["Subdirectory"],
                                   "S3BucketArn": "arn:aws:s3:::artifacts", "BucketAccessRoleArn": "arn:aws:iam::123456789012:role/r"}
    return request_errors("datasync", "CreateTask", {
        "SourceLocationArn": "arn:aws:datasync:us-east-1:123456789012:location/loc-0123456789abcdef0",
        "DestinationLocationArn": "arn:aws:datasync:us-east-1:123456789012:location/loc-0123456789abcdef1",
        "TaskMode": task_props["TaskMode"], "Options": task_props["Options"], "TaskReportConfig": report})


def test_the_dataset_task_overwrites_changed_files_and_reports_skips_and_deletes_as_errors_only(built):
    """A changed source object must reach the next version: with a fixed staging prefix, OverwriteMode NEVER would skip
    it forever. Skipped/Deleted reports are ERRORS_ONLY (not every unchanged file on every run); Basic task mode is
    pinned. All of it as botocore's CreateTask accepts it."""
    _, _, t = built
    task = one(t, "AWS::DataSync::Task", "NightlyTask")
    assert task["Options"]["OverwriteMode"] == "ALWAYS" and task["TaskMode"] == "BASIC"
    assert task["TaskReportConfig"]["Overrides"] == {"Skipped": {"ReportLevel": "ERRORS_ONLY"}, "Deleted": {"ReportLevel": "ERRORS_ONLY"}}
    assert _create_task_errors(task) == []


def test_overwrite_mode_stays_never_for_a_fixed_prefix_and_the_user_choice_wins():
    stack = new_stack()
    lake = DataLake(stack, "Lake")
    ds.DataSyncTask(stack, "Fixed", source=partner(stack), lake=lake, prefix="partner/", zone="raw")
    ds.DataSyncTask(stack, "Chosen", source=partner(stack), lake=lake, dataset="images", overwrite_mode=ds.OverwriteMode.NEVER)
    t = Template.from_stack(stack)
    fixed, chosen = one(t, "AWS::DataSync::Task", "FixedTask"), one(t, "AWS::DataSync::Task", "ChosenTask")
    assert fixed["Options"]["OverwriteMode"] == "NEVER" and "Overrides" not in fixed.get("TaskReportConfig", {})
    assert chosen["Options"]["OverwriteMode"] == "NEVER"


def test_the_handler_may_write_its_landed_and_empty_records(built):
    _, _, t = built
    env = one(t, "AWS::Lambda::Function", "NightlyPromotionHandler")["Environment"]["Variables"]
    assert (env["LANDED_PREFIX"], env["EMPTY_PREFIX"]) == ("_datasync/images/Nightly/landed/", "_datasync/images/Nightly/empty/")
    policy = json.dumps(one(t, "AWS::IAM::Policy", "NightlyPromotionHandler"))
    assert "/_datasync/images/Nightly/landed/*" in policy and "/_datasync/images/Nightly/empty/*" in policy
