"""DriftMonitor: scheduled drift detection of one endpoint's captured traffic, on a job the platform owns.

SageMaker Model Monitor is closed to new customers (docs page "Amazon SageMaker Model Monitor availability
change"), so the drift engine is mlinfra's own (:mod:`mlinfra.domain.drift`), run as a SageMaker Processing job
on the stock scikit-learn image (numpy, pandas, scipy and boto3 inside; nothing to build or patch). Processing
rather than AWS Batch or Fargate: it needs no compute environment, cluster or VPC, bills per second, takes any
``ml.*`` size as the capture window grows, and its job API is the one the retrain pipeline already polls.

    EventBridge Scheduler (per endpoint) -> Step Functions:
      ListProcessingJobs(InProgress, this endpoint's prefix) -> already running? -> Succeed (one run at a time)
      -> CreateProcessingJob (drift.job monitor) -> Wait -> Describe -> Completed | Failed -> SNS -> Fail
    The job: reads every capture file of the window (paginated), writes report.json + report.html to the
    lake, puts metrics in ``mlinfra/Drift`` and, on drift, a "Model Drift Detected" event.

The same workflow makes baselines (``{"mode": "baseline", ...}``): a :class:`BaselineHook` starts it when a
retrain execution succeeds, profiles that run's training data, writes the baseline the monitor
reads and records its location in the lineage table. The job code is this package's ``domain/drift`` folder,
uploaded as an asset (so it ships in the wheel and in every synth).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from mlinfra.constructs.common import (acknowledge_retention, alarm_principal, is_token, limit_grants_to_aws_services,
                                       log_retention, logs_principal, path_in_errors, require_literal)
from mlinfra.constructs.data_lake import validate_prefix
from mlinfra.constructs.wildcards import KMS_WILDCARD_ACTIONS, S3_GRANT_WILDCARD_ACTIONS, acknowledge_wildcards, ending
from mlinfra.domain.drift.contract import EVENT_DETAIL_TYPE, EVENT_SOURCE, NAMESPACE, thresholds_by_feature
from mlinfra.domain.hosting_instances import family_of
from mlinfra.domain.rules import cite

__all__ = ["BaselineHook", "DriftMonitor", "NAMESPACE", "EVENT_SOURCE", "EVENT_DETAIL_TYPE", "SKLEARN_IMAGE_ACCOUNTS", "retrain_on_drift"]

#: Accounts of the SageMaker scikit-learn image ``sagemaker-scikit-learn:1.4-2-cpu-py3`` per region, from the
#: SageMaker Python SDK's ``src/sagemaker/image_uri_config/sklearn.json`` (version 1.4-2).
SKLEARN_IMAGE_ACCOUNTS: dict[str, str] = {
    "af-south-1": "510948584623", "ap-east-1": "651117190479", "ap-northeast-1": "354813040037",
    "ap-northeast-2": "366743142698", "ap-northeast-3": "867004704886", "ap-south-1": "720646828776",
    "ap-south-2": "628508329040", "ap-southeast-1": "121021644041", "ap-southeast-2": "783357654285",
    "ap-southeast-3": "951798379941", "ap-southeast-4": "106583098589", "ca-central-1": "341280168497",
    "ca-west-1": "190319476487", "eu-central-1": "492215442770", "eu-central-2": "680994064768",
    "eu-north-1": "662702820516", "eu-south-1": "978288397137", "eu-south-2": "104374241257",
    "eu-west-1": "141502667606", "eu-west-2": "764974769150", "eu-west-3": "659782779980",
    "il-central-1": "898809789911", "me-central-1": "272398656194", "me-south-1": "801668240914",
    "sa-east-1": "737474898029", "us-east-1": "683313688378", "us-east-2": "257758044811",
    "us-west-1": "746614075791", "us-west-2": "246618743249",
}
SKLEARN_IMAGE_TAG = "sagemaker-scikit-learn:1.4-2-cpu-py3"
#: The job's code: the engine's folder, located without importing its numpy modules.
_CODE_DIR = Path(__file__).resolve().parent.parent / "domain" / "drift"
_CODE_PATH = "/opt/ml/processing/input/code"
#: Unzip the code asset (whatever name the download gives it) and run the job; "$@" are the ContainerArguments.
_UNZIP = ("import glob, zipfile; z = [p for p in glob.glob('" + _CODE_PATH + "/**', recursive=True) if zipfile.is_zipfile(p)]; "
          "zipfile.ZipFile(z[0]).extractall('/tmp/mlinfra/drift')")
_ENTRYPOINT = ["/bin/sh", "-c", f'python3 -c "{_UNZIP}" && PYTHONPATH=/tmp/mlinfra exec python3 -m drift.job "$@"', "drift"]
#: ProcessingStoppingCondition.MaxRuntimeInSeconds upper bound (rule sagemaker.processing-max-runtime).
MAX_PROCESSING_RUNTIME_SECONDS = 777_600


@dataclasses.dataclass(frozen=True)
class BaselineHook:
    """Make the monitored baseline after each retrain run that approved (and deployed) a model.

    :param retrain_state_machine: the retrain pipeline; its SUCCEEDED executions whose output shows an approved
        model package (gate passed, no refused approval) start a baseline run that profiles
        ``plan.uris.train_input`` of the execution's output; runs that succeed without a new model (another run
        held the lock, the gate or the reviewer rejected it) leave the baseline alone.
    :param training_data: the bucket those runs train from (the job reads it).
    :param lineage_table: the pipeline's lineage table; the run's item gets ``baseline_uri``. :default: None
    :param label_column: the training data's label column, left out of the features (captured requests carry no
        label). :default: None (every column is a feature)
    """

    retrain_state_machine: sfn.IStateMachine
    training_data: s3.IBucket
    lineage_table: dynamodb.ITable | None = None
    label_column: str | None = None


def _path_error(scope: Construct, message: str) -> ValueError:
    return ValueError(f"{scope.node.path}: {message}")


class DriftMonitor(Construct):
    """Scheduled drift detection of one endpoint's captured traffic, with alarms, a dashboard and a drift event.

    :param endpoint_name: the endpoint whose captures are read (its name is a metric dimension and a folder in
        the capture layout ``<capture_prefix><endpoint>/<variant>/YYYY/MM/DD/HH/``).
    :param capture_bucket: the bucket the endpoint's data capture writes to.
    :param capture_prefix: the data-capture prefix (``DataCapture``'s ``prefix``), ending with ``/``.
    :param baseline_bucket: bucket of the baseline the traffic is compared with.
    :param baseline_key: key of that baseline (JSON written by ``drift.job baseline``). :default: "baselines/<endpoint>/baseline.json"
        when the endpoint name is a literal, else required.
    :param report_bucket: bucket the reports go to. :default: the capture bucket
    :param report_prefix: reports land under ``<report_prefix><endpoint>/YYYY/MM/DD/HHMM/``. :default: "drift-reports/"
    :param schedule: when to run (EventBridge Scheduler). :default: every day (``rate(1 day)``)
    :param window: how much traffic each run reads, ending at the scheduled time. :default: 24 hours
    :param thresholds: ``{"default": {...}, "features": {name: {...}}}`` (keys of
        :class:`mlinfra.domain.drift.Thresholds`). :default: None (the engine's defaults)
    :param ground_truth_prefix: prefix (in ``capture_bucket``) of ground-truth JSON Lines in ``YYYY/MM/DD/HH/``
        folders, joined on inference id for quality metrics. :default: None
    :param image_uri: the Processing image. :default: the stock scikit-learn image of the stack's region
    :param instance_type: :default: ml.m5.xlarge
    :param volume_size_gb: :default: 30
    :param max_runtime: :default: 2 hours
    :param event_bus: where "Model Drift Detected" goes. :default: the account's default bus
    :param notification_topic: failures and alarms. :default: a new KMS-encrypted topic
    :param encryption_key: volumes, logs and the topic. :default: a new rotated key
    :param dashboard: a dashboard (the endpoint's, next to latency and errors) to add the drift widgets to.
        :default: None
    :param baseline_hook: make the baseline after each successful retrain run. :default: None (write the
        baseline yourself with ``drift.job baseline``)
    :param poll_interval: how often the workflow describes the running job. :default: 1 minute
    :param log_retention_days: :default: 90
    :param capture_kms_key: the key data capture encrypts with (``DataCaptureConfig.KmsKeyId``) when it is not
        the capture bucket's own key; the job gets kms:Decrypt on it. :default: None
    :param schema_changes_retrain: a schema change alone (new columns in >= 1% of records, missing or retyped
        columns) sends the drift event and so retrains. :default: False (reported and alarmed only)
    :param no_records_alarm_days: alarm when no ``Records`` metric (or only 0) arrived for this many days: the
        job did not run or the endpoint captured nothing. ``None`` for no such alarm (e.g. a weekly schedule).
        :default: 2
    """

    @path_in_errors
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        endpoint_name: str,
        capture_bucket: s3.IBucket,
        capture_prefix: str,
        baseline_bucket: s3.IBucket,
        baseline_key: str | None = None,
        report_bucket: s3.IBucket | None = None,
        report_prefix: str = "drift-reports/",
        schedule: scheduler.ScheduleExpression | None = None,
        window: cdk.Duration | None = None,
        thresholds: Mapping[str, Any] | None = None,
        ground_truth_prefix: str | None = None,
        image_uri: str | None = None,
        instance_type: str = "ml.m5.xlarge",
        volume_size_gb: int = 30,
        max_runtime: cdk.Duration | None = None,
        event_bus: events.IEventBus | None = None,
        notification_topic: sns.ITopic | None = None,
        encryption_key: kms.IKey | None = None,
        dashboard: cloudwatch.Dashboard | None = None,
        baseline_hook: BaselineHook | None = None,
        poll_interval: cdk.Duration | None = None,
        log_retention_days: int = 90,
        capture_kms_key: kms.IKey | None = None,
        schema_changes_retrain: bool = False,
        no_records_alarm_days: int | None = 2,
    ) -> None:
        super().__init__(scope, id)
        window = window or cdk.Duration.hours(24)
        max_runtime = max_runtime or cdk.Duration.hours(2)
        require_literal("window", window, "the job's --window-hours argument is written at synth time")
        require_literal("max_runtime", max_runtime, "the workflow's timeout adds 30 minutes to it at synth time")
        schedule = schedule or scheduler.ScheduleExpression.rate(cdk.Duration.days(1))
        if baseline_key is None:
            if is_token(endpoint_name):
                raise _path_error(self, "baseline_key is required when endpoint_name is a token, got: None")
            baseline_key = f"baselines/{endpoint_name}/baseline.json"
        errors = _validate(endpoint_name, capture_prefix, report_prefix, ground_truth_prefix, window, thresholds,
                           instance_type, volume_size_gb, max_runtime, baseline_key)
        if no_records_alarm_days is not None and not is_token(no_records_alarm_days) and not 1 <= no_records_alarm_days <= 7:
            errors.append(f"no_records_alarm_days must be between 1 and 7 or None, got: {no_records_alarm_days!r}")
        if errors:
            raise _path_error(self, "; ".join(errors))
        stack = cdk.Stack.of(self)
        report_bucket = report_bucket or capture_bucket
        self.endpoint_name = endpoint_name
        self.namespace = NAMESPACE
        self.baseline_uri = f"s3://{baseline_bucket.bucket_name}/{baseline_key}"
        self.report_uri = f"s3://{report_bucket.bucket_name}/{report_prefix}"
        self.capture_uri = f"s3://{capture_bucket.bucket_name}/{capture_prefix}{endpoint_name}/"
        # One prefix per monitor (IAM is scoped to it), one below it per kind of job: ListProcessingJobs
        # (NameContains=monitor prefix) finds this endpoint's running monitor job, never a baseline job.
        self.job_prefix = "drift-" + hashlib.sha256(self.node.path.encode()).hexdigest()[:10]
        self.monitor_job_prefix = f"{self.job_prefix}-m-"
        self.baseline_job_prefix = f"{self.job_prefix}-b-"
        self._baseline_bucket = baseline_bucket
        self._report_bucket, self._report_prefix = report_bucket, report_prefix

        self.encryption_key = encryption_key or kms.Key(
            self, "Key", enable_key_rotation=True, removal_policy=cdk.RemovalPolicy.RETAIN,
            description=f"Drift monitor {self.node.path}: job volumes, logs, notifications")
        if isinstance(self.encryption_key, kms.Key):
            self.encryption_key.grant_encrypt_decrypt(logs_principal())
        limit_grants_to_aws_services(self.encryption_key)
        self.notification_topic = notification_topic or sns.Topic(
            self, "Notifications", master_key=self.encryption_key, enforce_ssl=True,
            display_name=f"Drift monitor {endpoint_name if not is_token(endpoint_name) else ''}".strip())
        if notification_topic is None and isinstance(self.encryption_key, kms.Key):
            self.encryption_key.grant_encrypt_decrypt(alarm_principal())
        self.event_bus = event_bus or events.EventBus.from_event_bus_name(self, "DefaultBus", "default")

        # ---- the job's code and role ------------------------------------------------------------------------
        self.code = s3_assets.Asset(self, "Code", path=str(_CODE_DIR), exclude=["__pycache__", "*.pyc"])
        self._image_account = ""
        self.image_uri = image_uri or self._default_image()
        self.role = iam.Role(self, "JobRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                             description="Drift monitor Processing job: read captures and baseline, write reports")
        self.code.grant_read(self.role)
        capture_bucket.grant_read(self.role, f"{capture_prefix}{endpoint_name}/*")
        baseline_bucket.grant_read_write(self.role, "baselines/*" if baseline_key.startswith("baselines/") else baseline_key)
        report_bucket.grant_put(self.role, f"{report_prefix}*")
        if ground_truth_prefix:
            capture_bucket.grant_read(self.role, f"{ground_truth_prefix}*")
        if capture_kms_key is not None:
            capture_kms_key.grant_decrypt(self.role)
        self.encryption_key.grant_encrypt_decrypt(self.role)
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": NAMESPACE}}))
        self.event_bus.grant_put_events_to(self.role)
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[stack.format_arn(service="logs", resource="log-group", resource_name="/aws/sagemaker/ProcessingJobs*",
                                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)]))
        self.role.add_to_policy(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        # The stock image lives in an AWS account per region; a custom image may be anywhere.
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            resources=[f"arn:{cdk.Aws.PARTITION}:ecr:{cdk.Aws.REGION}:{self._image_account}:repository/sagemaker-scikit-learn"
                       if image_uri is None else "*"]))

        args = ["monitor", "--endpoint", endpoint_name, "--capture", self.capture_uri, "--baseline", self.baseline_uri,
                "--report", self.report_uri, "--window-hours", str(int(window.to_hours())), "--namespace", NAMESPACE,
                "--event-bus", self.event_bus.event_bus_name]
        if thresholds:
            args += ["--thresholds", json.dumps(thresholds, sort_keys=True, separators=(",", ":"))]
        if ground_truth_prefix:
            args += ["--ground-truth", f"s3://{capture_bucket.bucket_name}/{ground_truth_prefix}"]
        if schema_changes_retrain:
            args += ["--schema-changes-retrain"]
        lineage = baseline_hook.lineage_table if baseline_hook else None
        baseline_args = ["baseline", "--copy-to", self.baseline_uri]
        if baseline_hook is not None and baseline_hook.label_column:
            baseline_args += ["--label-column", baseline_hook.label_column]
        self.state_machine = self._workflow(args, baseline_args, instance_type, volume_size_gb, max_runtime,
                                            log_retention_days, lineage, poll_interval or cdk.Duration.minutes(1))
        self.baseline_rule = self._baseline_rule(baseline_hook) if baseline_hook else None

        # ---- schedule: one per endpoint ----------------------------------------------------------------------
        self.schedule = scheduler.Schedule(
            self, "Schedule", schedule=schedule, description="Drift monitor run",
            target=scheduler_targets.StepFunctionsStartExecution(
                self.state_machine,
                input=scheduler.ScheduleTargetInput.from_object({"mode": "monitor", "window_end": scheduler.ContextAttribute.scheduled_time})))

        # ---- alarms and dashboard ------------------------------------------------------------------------------
        action = cw_actions.SnsAction(self.notification_topic)
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        period = cdk.Duration.hours(1)
        for name, metric, desc in (
            ("Drift", self.metric("DriftDetected", statistic="Maximum", period=period),
             "Drift detected (see the report named by the Model Drift Detected event)"),
            ("NoData", self.metric("NotEnoughData", statistic="Maximum", period=period),
             "The drift window held too few records to judge: check data capture"),
            ("SchemaChange", self.metric("SchemaChanges", statistic="Maximum", period=period),
             "The captured payloads' schema differs from the baseline's (see the report's schema section)"),
            ("JobFailed", self.state_machine.metric_failed(period=cdk.Duration.minutes(5), statistic="Sum"),
             "The drift job failed (no baseline, permissions or a crash): see the notification"),
            # a run past the state machine's timeout or stopped by hand sends no notification of its own
            ("JobTimedOut", self.state_machine.metric_timed_out(period=cdk.Duration.minutes(5), statistic="Sum"),
             "The drift workflow timed out (the job ran past max_runtime plus 30 minutes)"),
            ("JobAborted", self.state_machine.metric_aborted(period=cdk.Duration.minutes(5), statistic="Sum"),
             "A drift workflow execution was stopped"),
        ):
            alarm = cloudwatch.Alarm(
                self, f"{name}Alarm", metric=metric, threshold=1, evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING, alarm_description=desc)
            alarm.add_alarm_action(action)
            self.alarms[name] = alarm
        if no_records_alarm_days is not None:
            # Missing data breaches: no datapoint for that many days means no run, or no traffic read.
            alarm = cloudwatch.Alarm(
                self, "NoRecordsAlarm", metric=self.metric("Records", statistic="Sum", period=cdk.Duration.days(1)),
                threshold=1, evaluation_periods=no_records_alarm_days, datapoints_to_alarm=no_records_alarm_days,
                comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
                alarm_description=f"No captured records judged for {cdk.Tokenization.stringify_number(no_records_alarm_days)} "
                                  "days: the drift job did not run "
                                  "or data capture wrote nothing")
            alarm.add_alarm_action(action)
            self.alarms["NoRecords"] = alarm
        if dashboard is not None:
            self.add_to_dashboard(dashboard)

    # ---- handles --------------------------------------------------------------------------------------------

    def metric(self, name: str, *, feature: str | None = None, **kwargs: Any) -> cloudwatch.Metric:
        """A metric of this endpoint's drift (names in docs/monitoring.md); ``feature`` for per-feature ones."""
        dims = {"EndpointName": self.endpoint_name}
        if feature is not None:
            dims["Feature"] = feature
        kwargs.setdefault("period", cdk.Duration.hours(1))
        return cloudwatch.Metric(namespace=NAMESPACE, metric_name=name, dimensions_map=dims, **kwargs)

    def add_to_dashboard(self, dashboard: cloudwatch.Dashboard) -> None:
        """Drift widgets (drifted features, prediction PSI, records and malformed records, alarm state)."""
        w, h = 8, 6
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Drift: drifted features", width=w, height=h,
                                   left=[self.metric("DriftedFeatures", statistic="Maximum")],
                                   right=[self.metric("DriftShare", statistic="Maximum")]),
            cloudwatch.GraphWidget(title="Drift: prediction PSI", width=w, height=h,
                                   left=[self.metric("PredictionPSI", statistic="Maximum")]),
            cloudwatch.GraphWidget(title="Drift: records read / malformed", width=w, height=h,
                                   left=[self.metric("Records", statistic="Sum"), self.metric("MalformedRecords", statistic="Sum")]),
        )
        dashboard.add_widgets(cloudwatch.AlarmStatusWidget(title="Drift alarms", width=24, height=3,
                                                           alarms=list(self.alarms.values())))

    def grant_read_reports(self, grantee: iam.IGrantable) -> iam.Grant:
        """Read this monitor's reports (JSON and HTML)."""
        return self._report_bucket.grant_read(grantee, f"{self._report_prefix}{self.endpoint_name}/*")

    def _baseline_rule(self, hook: BaselineHook) -> events.Rule:
        """SUCCEEDED retrain executions -> this workflow in baseline mode (profile the run's training data into
        ``baselines/.../runs/<run id>/baseline.json``, copy it to the monitored key, record it in lineage)."""
        hook.training_data.grant_read(self.role)
        if hook.lineage_table is not None and hook.lineage_table.encryption_key is not None:
            hook.lineage_table.encryption_key.grant_encrypt_decrypt(self.state_machine.role)
        rule = events.Rule(
            self, "BaselineAfterRetrain", description="Profile the training data of each successful retrain run",
            event_pattern=events.EventPattern(
                source=["aws.states"], detail_type=["Step Functions Execution Status Change"],
                detail={"status": ["SUCCEEDED"], "stateMachineArn": [hook.retrain_state_machine.state_machine_arn]}))
        rule.add_target(targets.SfnStateMachine(self.state_machine, input=events.RuleTargetInput.from_object({
            "mode": "baseline", "output": events.EventField.from_path("$.detail.output")})))
        return rule

    # ---- internals ------------------------------------------------------------------------------------------

    def _default_image(self) -> str:
        mapping = cdk.CfnMapping(self, "SklearnImageAccounts", lazy=True,
                                 mapping={region: {"account": acct} for region, acct in SKLEARN_IMAGE_ACCOUNTS.items()})
        account = mapping.find_in_map(cdk.Aws.REGION, "account")
        self._image_account = account
        return f"{account}.dkr.ecr.{cdk.Aws.REGION}.{cdk.Aws.URL_SUFFIX}/{SKLEARN_IMAGE_TAG}"

    def _workflow(self, monitor_args: list[str], baseline_args: list[str], instance_type: str, volume_size_gb: int, max_runtime: cdk.Duration,
                  log_retention_days: int, lineage_table: dynamodb.ITable | None, poll_interval: cdk.Duration) -> sfn.StateMachine:
        stack = cdk.Stack.of(self)
        processing_arn = stack.format_arn(service="sagemaker", resource="processing-job", resource_name=f"{self.job_prefix}-*")
        failure = sfn.Fail(self, "Failed", cause="Drift job failed", error="DriftJobFailed")
        notify = tasks.SnsPublish(
            self, "NotifyFailure", topic=self.notification_topic, subject="mlinfra drift job failed",
            message=sfn.TaskInput.from_object({"execution": sfn.JsonPath.execution_id, "endpoint": self.endpoint_name,
                                               "error": sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$"))}),
            result_path=sfn.JsonPath.DISCARD).next(failure)
        retry = dict(errors=["SageMaker.ThrottlingException", "SageMaker.ResourceLimitExceeded",
                             "SageMaker.ResourceLimitExceededException", "SageMaker.InternalFailure"],
                     interval=cdk.Duration.seconds(30), max_attempts=4, backoff_rate=2.0)

        running = tasks.CallAwsService(
            # ListProcessingJobs takes no resource-level permission: "*" (rule sagemaker.list-processing-jobs-resource).
            self, "ListRunningJobs", service="sagemaker", action="listProcessingJobs", iam_resources=["*"],
            iam_action="sagemaker:ListProcessingJobs",
            # newest first, a full page: a running job of this monitor is among the most recent ones
            parameters={"NameContains": self.monitor_job_prefix, "StatusEquals": "InProgress", "MaxResults": 100,
                        "SortBy": "CreationTime", "SortOrder": "Descending"},
            result_selector={"count.$": "States.ArrayLength($.ProcessingJobSummaries)"}, result_path="$.running")
        running.add_retry(**retry)
        running.add_catch(notify, result_path="$.error")
        skip = sfn.Succeed(self, "AlreadyRunning", comment="one run at a time per endpoint")
        # One name per window end (a hash: the timestamp's ":" is not allowed in a job name): a second run for
        # the same window (a duplicate schedule delivery) fails on the unique name instead of running twice.
        monitor_job = sfn.Pass(self, "MonitorJob", parameters={
            "name.$": f"States.Format('{self.monitor_job_prefix}{{}}', States.Hash($.window_end, 'SHA-1'))",
            "args": monitor_args,
            "env": {"DRIFT_WINDOW_END.$": "$.window_end", "DRIFT_MODE": "monitor"},
        }, result_path="$.job")
        out = self.baseline_uri
        base_dir = out.rsplit("/", 1)[0]
        baseline_job = sfn.Pass(self, "BaselineJob", parameters={
            "name.$": f"States.Format('{self.baseline_job_prefix}{{}}', States.UUID())",
            "args": baseline_args,
            # one baseline per model package (runs/<run id>/), recorded with the package's ARN
            "env": {"DRIFT_DATA.$": "$.run.plan.uris.train_input",
                    "DRIFT_OUTPUT.$": f"States.Format('{base_dir}/runs/{{}}/baseline.json', $.run.plan.run_id)",
                    "DRIFT_MODEL.$": "$.run.model_package_arn", "DRIFT_MODE": "baseline"},
        }, result_path="$.job")
        parse_run = sfn.Pass(self, "ReadRunOutput", parameters={"plan.$": "States.StringToJson($.output)"},
                             result_path="$.run_raw")
        pick_plan = sfn.Pass(self, "PickPlan", parameters={
            "plan.$": "$.run_raw.plan.plan", "model_package_arn.$": "$.run_raw.plan.registration.ModelPackageArn"},
            result_path="$.run")

        create = tasks.CallAwsService(
            self, "CreateProcessingJob", service="sagemaker", action="createProcessingJob", iam_resources=[processing_arn],
            parameters={
                "ProcessingJobName.$": "$.job.name",
                "RoleArn": self.role.role_arn,
                "AppSpecification": {"ImageUri": self.image_uri, "ContainerEntrypoint": _ENTRYPOINT,
                                     "ContainerArguments.$": "$.job.args"},
                "Environment.$": "$.job.env",
                "ProcessingInputs": [{"InputName": "code", "S3Input": {
                    "S3Uri": self.code.s3_object_url, "LocalPath": _CODE_PATH, "S3DataType": "S3Prefix",
                    "S3InputMode": "File"}}],
                "ProcessingResources": {"ClusterConfig": {
                    "InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": volume_size_gb,
                    **({} if family_of(instance_type).local_storage else {"VolumeKmsKeyId": self.encryption_key.key_arn})}},
                "StoppingCondition": {"MaxRuntimeInSeconds": int(max_runtime.to_seconds())},
                "Tags": [{"Key": "mlinfra:drift-endpoint", "Value": self.endpoint_name}],
            },
            additional_iam_statements=[
                iam.PolicyStatement(actions=["iam:PassRole"], resources=[self.role.role_arn],
                                    conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}),
                iam.PolicyStatement(actions=["sagemaker:AddTags"], resources=[processing_arn])],
            result_path=sfn.JsonPath.DISCARD)
        create.add_retry(**retry)
        create.add_catch(notify, result_path="$.error")
        wait = sfn.Wait(self, "WaitJob", time=sfn.WaitTime.duration(poll_interval))
        describe = tasks.CallAwsService(
            self, "DescribeProcessingJob", service="sagemaker", action="describeProcessingJob", iam_resources=[processing_arn],
            parameters={"ProcessingJobName.$": "$.job.name"},
            result_selector={"status.$": "$.ProcessingJobStatus"}, result_path="$.result")
        describe.add_retry(**retry)
        describe.add_catch(notify, result_path="$.error")
        done = sfn.Succeed(self, "Succeeded")
        after: sfn.IChainable = done
        if lineage_table is not None:
            record = tasks.CallAwsService(
                self, "RecordBaselineInLineage", service="dynamodb", action="updateItem",
                iam_resources=[lineage_table.table_arn], iam_action="dynamodb:UpdateItem",
                parameters={
                    "TableName": lineage_table.table_name,
                    "Key": {"pk": {"S.$": "States.Format('dataset#{}', $.run.plan.dataset)"},
                            "sk": {"S.$": "States.Format('version#{}#run#{}', $.run.plan.version, $.run.plan.run_id)"}},
                    "UpdateExpression": "SET baseline_uri = :b",
                    "ExpressionAttributeValues": {":b": {"S.$": "$.job.env.DRIFT_OUTPUT"}},
                }, result_path=sfn.JsonPath.DISCARD)
            record.add_catch(notify, result_path="$.error")
            after = (sfn.Choice(self, "RecordLineage?")
                     .when(sfn.Condition.string_equals("$.job.env.DRIFT_MODE", "baseline"), record.next(done))
                     .otherwise(done))
        job_failed = sfn.Pass(self, "JobFailed", parameters={"status.$": "$.result.status"}, result_path="$.error").next(notify)
        loop = create.next(wait).next(describe).next(
            sfn.Choice(self, "JobDone?")
            .when(sfn.Condition.string_equals("$.result.status", "Completed"), after)
            .when(sfn.Condition.or_(sfn.Condition.string_equals("$.result.status", "Failed"),
                                    sfn.Condition.string_equals("$.result.status", "Stopped")), job_failed)
            .otherwise(wait))
        monitor_branch = running.next(
            sfn.Choice(self, "AlreadyRunning?")
            .when(sfn.Condition.number_greater_than("$.running.count", 0), skip)
            .otherwise(monitor_job.next(loop)))
        # Only a run that ended with its model approved (and deployed, when the pipeline deploys) replaces the
        # monitored baseline: runs that end in Succeed on the AlreadyRunning or ModelRejected paths (gate failed,
        # manual approval refused or timed out) leave it alone (retrain_definition: GateDecision on $.gate.passed,
        # RequestApproval's Catch into $.approval_error, ApproveModelPackage on the success path only).
        not_deployed = sfn.Succeed(self, "NoModelDeployed", comment="the run approved no model: the baseline stays")
        run = "$.run_raw.plan"
        baseline_branch = parse_run.next(
            sfn.Choice(self, "ModelRegistered?")
            .when(sfn.Condition.or_(sfn.Condition.is_not_present(f"{run}.registration.ModelPackageArn"),
                                    sfn.Condition.is_not_present(f"{run}.gate.passed"),
                                    sfn.Condition.is_present(f"{run}.approval_error")), not_deployed)
            .otherwise(sfn.Choice(self, "ModelApproved?")
                       .when(sfn.Condition.boolean_equals(f"{run}.gate.passed", True),
                             pick_plan.next(baseline_job).next(create))
                       .otherwise(not_deployed)))
        body = (sfn.Choice(self, "Mode?")
                .when(sfn.Condition.string_equals("$.mode", "baseline"), baseline_branch)
                .otherwise(monitor_branch))
        self.log_group = logs.LogGroup(
            self, "Logs", log_group_name=f"/aws/vendedlogs/states/{cdk.Names.unique_id(self)}",
            retention=log_retention(log_retention_days, "log_retention_days"), encryption_key=self.encryption_key,
            removal_policy=cdk.RemovalPolicy.DESTROY)
        acknowledge_retention(self.log_group, log_retention(log_retention_days, "log_retention_days"))
        machine = sfn.StateMachine(
            self, "StateMachine", definition_body=sfn.DefinitionBody.from_chainable(body),
            timeout=max_runtime.plus(cdk.Duration.minutes(30)), tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True))
        if isinstance(self.notification_topic, sns.Topic) and self.notification_topic.master_key is not None:
            self.encryption_key.grant_encrypt_decrypt(machine.role)
        acknowledge_wildcards(
            machine.role,
            "Step Functions' log delivery and X-Ray actions take no resource; KMS grant_* on the monitor's key; "
            "processing jobs are limited to this monitor's name prefix (names are generated per run); "
            "ListProcessingJobs has no resource-level permission; the lineage update is granted on the table",
            actions=KMS_WILDCARD_ACTIONS,
            resources=("*", ending(f":processing-job/{self.job_prefix}-*")))
        acknowledge_wildcards(
            self.role,
            "The drift job reads its capture prefix and baseline and writes its report prefix only, with aws-cdk-lib's "
            "grant action groups; PutMetricData is conditioned on the mlinfra/Drift namespace (it takes no resource); "
            "ecr:GetAuthorizationToken takes no resource; logs are limited to /aws/sagemaker/ProcessingJobs",
            actions=(*S3_GRANT_WILDCARD_ACTIONS, *KMS_WILDCARD_ACTIONS, "s3:DeleteObject*"),
            resources=("*", ending("/*"), ending(":log-group:/aws/sagemaker/ProcessingJobs*")))
        return machine


def retrain_on_drift(scope: Construct, id: str, *, trigger_function: lambda_.IFunction, retrain_state_machine: sfn.IStateMachine,
                     dataset: str, endpoint_names: list[str], cooldown: cdk.Duration | None = None,
                     min_interval: cdk.Duration | None = None, lineage_table: dynamodb.ITable | None = None,
                     event_bus: events.IEventBus | None = None) -> events.Rule:
    """Route "Model Drift Detected" events of ``endpoint_names`` to the retrain pipeline's trigger function.

    Create it in the trigger's stack (``scope``). The rule's input carries the policy: ``dataset`` to retrain on
    (its newest version), ``cooldown_hours`` (no drift run within this long of the last drift run, default 24)
    and ``min_interval_hours`` (no run within this long of any run, default 6). Runs go through the pipeline's
    gate and approval like any other; the trigger records the report in the lineage table (``#cause`` item).
    """
    cooldown = cooldown or cdk.Duration.hours(24)
    min_interval = min_interval or cdk.Duration.hours(6)
    rule = events.Rule(scope, id, event_bus=event_bus, description="Retrain when drift is detected",
                       event_pattern=events.EventPattern(source=[EVENT_SOURCE], detail_type=[EVENT_DETAIL_TYPE],
                                                         detail={"endpoint": endpoint_names}))
    rule.add_target(targets.LambdaFunction(trigger_function, event=events.RuleTargetInput.from_object({
        "trigger": "drift", "dataset": dataset,
        "endpoint": events.EventField.from_path("$.detail.endpoint"),
        "report_uri": events.EventField.from_path("$.detail.report_uri"),
        "event_id": events.EventField.event_id, "time": events.EventField.time,
        "cooldown_hours": cooldown.to_hours(), "min_interval_hours": min_interval.to_hours(),
            "lineage_table": lineage_table.table_name if lineage_table is not None else "",
    }), retry_attempts=2))
    if trigger_function.role is not None:
        retrain_state_machine.grant(trigger_function.role, "states:ListExecutions")
        if lineage_table is not None:
            lineage_table.grant(trigger_function.role, "dynamodb:PutItem")
            if lineage_table.encryption_key is not None:
                # DynamoDB calls KMS with the caller's permissions for a customer managed table key.
                lineage_table.encryption_key.grant_encrypt_decrypt(trigger_function.role)
    return rule


def validate_max_runtime(max_runtime: cdk.Duration) -> list[str]:
    """MaxRuntimeInSeconds of a processing job: 1 to 777600 (9 days)."""
    runtime = max_runtime.to_seconds()
    if is_token(runtime) or 1 <= runtime <= MAX_PROCESSING_RUNTIME_SECONDS:
        return []
    return [f"max_runtime must be between 1 second and 9 days (MaxRuntimeInSeconds <= {MAX_PROCESSING_RUNTIME_SECONDS}), "
            f"got: {runtime} seconds {cite('sagemaker.processing-max-runtime')}"]


def _validate(endpoint_name: str, capture_prefix: str, report_prefix: str, ground_truth_prefix: str | None,
              window: cdk.Duration, thresholds: Mapping[str, Any] | None, instance_type: str, volume_size_gb: int,
              max_runtime: cdk.Duration, baseline_key: str) -> list[str]:
    import re

    errors: list[str] = []
    if not is_token(endpoint_name) and not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", endpoint_name):
        errors.append(f"endpoint_name must be a SageMaker endpoint name (1-63 of a-z A-Z 0-9 and -), got: {endpoint_name!r}")
    for prop, value in (("capture_prefix", capture_prefix), ("report_prefix", report_prefix),
                        ("ground_truth_prefix", ground_truth_prefix)):
        try:
            validate_prefix(value, prop)
        except ValueError as err:
            errors.append(str(err))
    hours = window.to_hours(integral=False)
    if not is_token(hours) and (hours != int(hours) or not 1 <= hours <= 744):
        errors.append(f"window must be a whole number of hours between 1 and 744 (31 days), got: {hours} hours")
    if thresholds is not None:
        try:
            thresholds_by_feature(thresholds)
        except ValueError as err:
            errors.append(f"thresholds: {err}")
    if not instance_type.startswith("ml."):
        errors.append(f"instance_type must be an ml.* SageMaker instance type, got: {instance_type!r}")
    if not is_token(volume_size_gb) and not 1 <= volume_size_gb <= 16384:
        errors.append(f"volume_size_gb must be between 1 and 16384, got: {volume_size_gb}")
    errors += validate_max_runtime(max_runtime)
    if not is_token(baseline_key) and (not baseline_key or baseline_key.startswith("/") or not baseline_key.endswith(".json")):
        errors.append(f"baseline_key must be an object key ending in .json, got: {baseline_key!r}")
    return errors
