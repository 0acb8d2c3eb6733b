"""BatchTransform: scheduled (or new-data triggered) SageMaker batch inference, results written to the lake.

EventBridge (a schedule and/or the lake's native "Object Created" events) starts a Step Functions workflow:

    Defaults -> Merge(input) -> [CreateProcessingJob -> Wait -> DescribeProcessingJob -> Choice]
             -> CreateTransformJob -> Wait -> DescribeTransformJob -> Choice(Completed | Failed | poll again)
             -> Succeeded            (any error or failed job -> NotifyFailure (SNS) -> Fail)

The SageMaker calls are ``aws-sdk`` request-response tasks polled in a Wait/Describe/Choice loop, not
``.sync`` integrations: the loop behaves the same in AWS and in the local emulator (moto's interpreter cannot
run ``.sync``). Results land under ``s3://<output bucket>/<output prefix><model name>/<model version>/<job>/``.
The execution input may override ``model_name``, ``model_version`` and ``input_uri`` (a new-data event sets
``input_uri`` to the new object).

Limits (SageMaker): ``MaxPayloadInMB`` 0-100 and ``MaxConcurrentTransforms x MaxPayloadInMB <= 100``.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Sequence

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from mlinfra.constructs.common import acknowledge_retention, alarm_principal, check_between, is_token, limit_grants_to_aws_services, log_retention, logs_principal, path_in_errors
from mlinfra.constructs.data_lake import validate_prefix
from mlinfra.constructs.wildcards import KMS_WILDCARD_ACTIONS, S3_GRANT_WILDCARD_ACTIONS, acknowledge_wildcards, ending
from mlinfra.domain.hosting_instances import accepts_volume_kms_key, family_of

__all__ = ["BatchTransform", "SplitType", "BatchStrategy", "ProcessingStep", "MAX_PAYLOAD_MB"]

MAX_PAYLOAD_MB = 100


class SplitType(enum.Enum):
    NONE = "None"
    LINE = "Line"
    RECORD_IO = "RecordIO"
    TF_RECORD = "TFRecord"


class BatchStrategy(enum.Enum):
    MULTI_RECORD = "MultiRecord"
    SINGLE_RECORD = "SingleRecord"


@dataclasses.dataclass(frozen=True)
class ProcessingStep:
    """Optional preprocessing before the transform (a SageMaker Processing job).

    :param image_uri: processing image. :param entrypoint: container entrypoint (e.g. ``["python3", "/opt/ml/code/pre.py"]``).
    :param instance_type: ``ml.*``. :default: ml.m5.xlarge
    :param instance_count: :default: 1
    :param output_prefix: where processed data lands in the output bucket (the transform reads it).
        :default: "batch-inference/processed/"
    :param role: the processing job's role (passed with iam:PassRole). :default: a new role
    :param max_runtime: :default: 1 hour
    """

    image_uri: str
    entrypoint: Sequence[str]
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    output_prefix: str = "batch-inference/processed/"
    role: iam.IRole | None = None
    max_runtime: cdk.Duration = dataclasses.field(default_factory=lambda: cdk.Duration.hours(1))


class BatchTransform(Construct):
    """Batch inference on a schedule or on new data, polled by Step Functions, results to the lake.

    :param model_name: the SageMaker model to run (e.g. ``endpoint.model.attr_model_name``); the execution
        input may override it.
    :param model_version: the version written into the output prefix. :default: "latest"
    :param model_role: the model's execution role, granted read on the input and write on the output (batch
        transform runs as it). :default: None (grant it yourself)
    :param input_bucket: bucket of the data to score (e.g. the lake's curated zone).
    :param input_prefix: prefix of the data to score. :default: "batch-inference/input/"
    :param output_bucket: bucket of the results (e.g. the lake's artifacts zone).
    :param output_prefix: results go under ``<output_prefix><model>/<version>/<job>/``. :default: "batch-inference/output/"
    :param instance_type: :default: ml.m5.xlarge
    :param instance_count: :default: 1
    :param content_type: MIME type of the input. :default: "text/csv"
    :param accept: MIME type of the output. :default: "text/csv"
    :param split_type: :default: SplitType.LINE
    :param batch_strategy: :default: BatchStrategy.MULTI_RECORD
    :param max_payload_mb: 0-100 (0: no limit, streaming). :default: 6
    :param max_concurrent_transforms: per instance; x max_payload_mb <= 100. :default: 4
    :param processing: optional preprocessing. :default: None
    :param schedule: EventBridge schedule. :default: None
    :param trigger_on_new_data: start a run for every object created under ``input_prefix``. :default: False
    :param poll_interval: :default: 1 minute
    :param timeout: whole workflow. :default: 6 hours
    :param notification_topic: told of failures (grant its key to ``state_machine.role`` if it is encrypted).
        :default: a new KMS-encrypted topic
    :param encryption_key: output, volume, log group and topic key. :default: a new rotated key
    :param log_retention_days: :default: 90
    """

    @path_in_errors
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        model_name: str,
        input_bucket: s3.IBucket,
        output_bucket: s3.IBucket,
        model_version: str = "latest",
        model_role: iam.IRole | None = None,
        input_prefix: str = "batch-inference/input/",
        output_prefix: str = "batch-inference/output/",
        instance_type: str = "ml.m5.xlarge",
        instance_count: int = 1,
        content_type: str = "text/csv",
        accept: str = "text/csv",
        split_type: SplitType = SplitType.LINE,
        batch_strategy: BatchStrategy = BatchStrategy.MULTI_RECORD,
        max_payload_mb: int = 6,
        max_concurrent_transforms: int = 4,
        processing: ProcessingStep | None = None,
        schedule: events.Schedule | None = None,
        trigger_on_new_data: bool = False,
        poll_interval: cdk.Duration | None = None,
        timeout: cdk.Duration | None = None,
        notification_topic: sns.ITopic | None = None,
        encryption_key: kms.IKey | None = None,
        log_retention_days: int = 90,
    ) -> None:
        super().__init__(scope, id)
        poll_interval = poll_interval or cdk.Duration.minutes(1)
        timeout = timeout or cdk.Duration.hours(6)
        _validate(model_name, input_prefix, output_prefix, instance_type, instance_count, split_type, batch_strategy,
                  max_payload_mb, max_concurrent_transforms, processing, schedule, trigger_on_new_data, poll_interval,
                  model_version)
        stack = cdk.Stack.of(self)

        self.encryption_key = encryption_key or kms.Key(
            self, "Key", enable_key_rotation=True, removal_policy=cdk.RemovalPolicy.RETAIN,
            description=f"Batch transform {self.node.path}: output, volumes, logs, notifications",
        )
        limit_grants_to_aws_services(self.encryption_key)
        if isinstance(self.encryption_key, kms.Key):
            self.encryption_key.grant_encrypt_decrypt(logs_principal())
        self.notification_topic = notification_topic or sns.Topic(
            self, "Notifications", master_key=self.encryption_key, enforce_ssl=True,
            display_name="Batch transform failures",
        )
        if notification_topic is None and isinstance(self.encryption_key, kms.Key):
            self.encryption_key.grant_encrypt_decrypt(alarm_principal())

        self.output_prefix = output_prefix
        if model_role is not None:
            input_bucket.grant_read(model_role, f"{input_prefix}*")
            output_bucket.grant_put(model_role, f"{output_prefix}*")
            self.encryption_key.grant_encrypt_decrypt(model_role)
            if processing is not None:
                output_bucket.grant_read(model_role, f"{processing.output_prefix}*")
            acknowledge_wildcards(
                model_role,
                "Batch transform runs as the model's role: it reads the input prefix (and the processed prefix) and "
                "writes the output prefix only, with aws-cdk-lib's grant action groups and the workflow key.",
                actions=(*S3_GRANT_WILDCARD_ACTIONS, *KMS_WILDCARD_ACTIONS),
                resources=[input_bucket.arn_for_objects(f"{input_prefix}*"),
                           output_bucket.arn_for_objects(f"{output_prefix}*"),
                           *([output_bucket.arn_for_objects(f"{processing.output_prefix}*")] if processing else [])])

        job_prefix = "bt"
        transform_arn = stack.format_arn(service="sagemaker", resource="transform-job", resource_name="*")
        processing_arn = stack.format_arn(service="sagemaker", resource="processing-job", resource_name="*")

        # ---- states -------------------------------------------------------------------------------------
        defaults = sfn.Pass(self, "Defaults", parameters={
            "model_name": model_name,
            "model_version": model_version,
            "input_uri": f"s3://{input_bucket.bucket_name}/{input_prefix}",
        }, result_path="$.defaults")
        merge = sfn.Pass(self, "MergeInput", parameters={
            "job.$": "States.JsonMerge($.defaults, $$.Execution.Input, false)",
            "job_name.$": f"States.Format('{job_prefix}-{{}}', States.UUID())",
        })

        failure = sfn.Fail(self, "Failed", cause="Batch transform failed", error="BatchTransformFailed")
        notify = tasks.SnsPublish(
            self, "NotifyFailure", topic=self.notification_topic,
            subject="mlinfra batch transform failed",
            message=sfn.TaskInput.from_object({
                "execution": sfn.JsonPath.execution_id, "state_machine": sfn.JsonPath.state_machine_id,
                "error": sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$")),
            }),
            result_path=sfn.JsonPath.DISCARD,
        ).next(failure)

        # Error names checked against botocore's SageMaker model (tests/unit/test_aws_models.py): throttling and
        # other unmodeled errors arrive as the SDK's generic SageMaker.AmazonSageMakerException.
        retry = dict(errors=["SageMaker.AmazonSageMakerException", "SageMaker.ResourceLimitExceededException"],
                     interval=cdk.Duration.seconds(30), max_attempts=4, backoff_rate=2.0)

        transform_input_uri = "$.job.input_uri"
        chain_start: sfn.IChainable
        if processing is not None:
            proc_role = processing.role or self._processing_role(input_bucket, input_prefix, output_bucket, processing)
            self.processing_role = proc_role
            processed_uri = f"s3://{output_bucket.bucket_name}/{processing.output_prefix}"
            create_proc = tasks.CallAwsService(
                self, "CreateProcessingJob", service="sagemaker", action="createProcessingJob",
                iam_resources=[processing_arn],
                parameters={
                    "ProcessingJobName.$": "$.job_name",
                    "RoleArn": proc_role.role_arn,
                    "AppSpecification": {"ImageUri": processing.image_uri, "ContainerEntrypoint": list(processing.entrypoint)},
                    "ProcessingResources": {"ClusterConfig": {
                        "InstanceType": processing.instance_type, "InstanceCount": processing.instance_count,
                        "VolumeSizeInGB": 30,
                        # Not on instance-storage types (rule sagemaker.no-volume-kms-with-instance-storage).
                        **({"VolumeKmsKeyId": self.encryption_key.key_arn}
                           if accepts_volume_kms_key(processing.instance_type, "processing.instance_type") else {})}},
                    "ProcessingInputs": [{"InputName": "input", "S3Input": {
                        "S3Uri.$": transform_input_uri, "LocalPath": "/opt/ml/processing/input",
                        "S3DataType": "S3Prefix", "S3InputMode": "File"}}],
                    "ProcessingOutputConfig": {"KmsKeyId": self.encryption_key.key_arn, "Outputs": [{
                        "OutputName": "processed", "S3Output": {
                            "S3Uri.$": f"States.Format('{processed_uri}{{}}/', $.job_name)",
                            "LocalPath": "/opt/ml/processing/output", "S3UploadMode": "EndOfJob"}}]},
                    "StoppingCondition": {"MaxRuntimeInSeconds": int(processing.max_runtime.to_seconds())},
                    "NetworkConfig": {"EnableNetworkIsolation": True},
                },
                additional_iam_statements=[iam.PolicyStatement(
                    actions=["iam:PassRole"], resources=[proc_role.role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}})],
                result_path=sfn.JsonPath.DISCARD,
            )
            create_proc.add_retry(**retry)
            create_proc.add_catch(notify, result_path="$.error")
            wait_proc = sfn.Wait(self, "WaitProcessing", time=sfn.WaitTime.duration(poll_interval))
            describe_proc = tasks.CallAwsService(
                self, "DescribeProcessingJob", service="sagemaker", action="describeProcessingJob",
                iam_resources=[processing_arn], parameters={"ProcessingJobName.$": "$.job_name"},
                result_selector={"status.$": "$.ProcessingJobStatus"}, result_path="$.processing",
            )
            describe_proc.add_retry(**retry)
            describe_proc.add_catch(notify, result_path="$.error")
            use_processed = sfn.Pass(self, "UseProcessedData", parameters={
                "uri.$": f"States.Format('{processed_uri}{{}}/', $.job_name)"}, result_path="$.processed")
            chain_start = create_proc
            transform_input_uri = "$.processed.uri"
        create = tasks.CallAwsService(
            self, "CreateTransformJob", service="sagemaker", action="createTransformJob",
            iam_resources=[transform_arn],
            parameters={
                "TransformJobName.$": "$.job_name",
                "ModelName.$": "$.job.model_name",
                "BatchStrategy": batch_strategy.value,
                "MaxPayloadInMB": max_payload_mb,
                "MaxConcurrentTransforms": max_concurrent_transforms,
                "TransformInput": {
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri.$": transform_input_uri}},
                    "ContentType": content_type,
                    "SplitType": split_type.value,
                },
                "TransformOutput": {
                    "S3OutputPath.$": (
                        f"States.Format('s3://{output_bucket.bucket_name}/{output_prefix}{{}}/{{}}/{{}}/', "
                        "$.job.model_name, $.job.model_version, $.job_name)"
                    ),
                    "Accept": accept,
                    "AssembleWith": "Line" if split_type is SplitType.LINE else "None",
                    "KmsKeyId": self.encryption_key.key_arn,
                },
                "TransformResources": {
                    "InstanceType": instance_type, "InstanceCount": instance_count,
                    **({"VolumeKmsKeyId": self.encryption_key.key_arn} if accepts_volume_kms_key(instance_type) else {}),
                },
                "Tags": [{"Key": "mlinfra:model-version", "Value.$": "$.job.model_version"}],
            },
            additional_iam_statements=[iam.PolicyStatement(actions=["sagemaker:AddTags"], resources=[transform_arn])],
            result_path=sfn.JsonPath.DISCARD,
        )
        create.add_retry(**retry)
        create.add_catch(notify, result_path="$.error")
        wait = sfn.Wait(self, "WaitTransform", time=sfn.WaitTime.duration(poll_interval))
        describe = tasks.CallAwsService(
            self, "DescribeTransformJob", service="sagemaker", action="describeTransformJob",
            iam_resources=[transform_arn], parameters={"TransformJobName.$": "$.job_name"},
            result_selector={"status.$": "$.TransformJobStatus", "output.$": "$.TransformOutput.S3OutputPath"},
            result_path="$.transform",
        )
        describe.add_retry(**retry)
        describe.add_catch(notify, result_path="$.error")
        done = sfn.Succeed(self, "Succeeded")
        job_failed = sfn.Pass(self, "TransformJobFailed", parameters={"status.$": "$.transform.status"},
                              result_path="$.error").next(notify)
        transform_choice = (
            sfn.Choice(self, "TransformDone?")
            .when(sfn.Condition.string_equals("$.transform.status", "Completed"), done)
            .when(sfn.Condition.or_(sfn.Condition.string_equals("$.transform.status", "Failed"),
                                    sfn.Condition.string_equals("$.transform.status", "Stopped")), job_failed)
            .otherwise(wait)
        )
        transform_chain = create.next(wait).next(describe).next(transform_choice)
        if processing is not None:
            proc_failed = sfn.Pass(self, "ProcessingJobFailed", parameters={"status.$": "$.processing.status"},
                                   result_path="$.error").next(notify)
            proc_choice = (
                sfn.Choice(self, "ProcessingDone?")
                .when(sfn.Condition.string_equals("$.processing.status", "Completed"), use_processed.next(transform_chain))
                .when(sfn.Condition.or_(sfn.Condition.string_equals("$.processing.status", "Failed"),
                                        sfn.Condition.string_equals("$.processing.status", "Stopped")), proc_failed)
                .otherwise(wait_proc)
            )
            body = defaults.next(merge).next(chain_start).next(wait_proc).next(describe_proc).next(proc_choice)
        else:
            body = defaults.next(merge).next(transform_chain)

        self.log_group = logs.LogGroup(
            self, "Logs", log_group_name=f"/aws/vendedlogs/states/{cdk.Names.unique_id(self)}",
            retention=log_retention(log_retention_days, "log_retention_days"),
            encryption_key=self.encryption_key, removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        acknowledge_retention(self.log_group, log_retention(log_retention_days, "log_retention_days"))
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(body),
            timeout=timeout,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
        )
        if notification_topic is None:
            # Publishing to a KMS-encrypted topic needs the key too.
            self.encryption_key.grant_encrypt_decrypt(self.state_machine.role)
        acknowledge_wildcards(
            self.state_machine.role,
            "Step Functions' own log delivery and X-Ray actions (logs:*LogDelivery*, xray:*) are the service's "
            "documented wildcard grants; KMS grant_* defaults on the workflow key only",
            actions=KMS_WILDCARD_ACTIONS)
        acknowledge_wildcards(
            self.state_machine.role,
            "log delivery and X-Ray take no resource; SageMaker job ARNs are limited to transform-job/* and "
            "processing-job/* of this account and region (names are generated per run)",
            resources=("*", ending(":transform-job/*"), ending(":processing-job/*")))

        # ---- triggers -----------------------------------------------------------------------------------
        self.rules: list[events.Rule] = []
        if schedule is not None:
            rule = events.Rule(self, "Schedule", schedule=schedule, description="Scheduled batch transform")
            rule.add_target(targets.SfnStateMachine(self.state_machine, input=events.RuleTargetInput.from_object({})))
            self.rules.append(rule)
        if trigger_on_new_data:
            rule = events.Rule(
                self, "NewData", description="Batch transform of new objects in the input prefix",
                event_pattern=events.EventPattern(
                    source=["aws.s3"], detail_type=["Object Created"],
                    detail={"bucket": {"name": [input_bucket.bucket_name]},
                            "object": {"key": [{"prefix": input_prefix}]}},
                ),
            )
            rule.add_target(targets.SfnStateMachine(self.state_machine, input=events.RuleTargetInput.from_object({
                "input_uri": f"s3://{input_bucket.bucket_name}/{events.EventField.from_path('$.detail.object.key')}",
            })))
            self.rules.append(rule)

        # ---- alarms (failed, timed out, aborted, throttled) -------------------------------------------------
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        action = cw_actions.SnsAction(self.notification_topic)
        for name, metric in (("ExecutionsFailed", self.state_machine.metric_failed()),
                             ("ExecutionsTimedOut", self.state_machine.metric_timed_out()),
                             ("ExecutionsAborted", self.state_machine.metric_aborted()),
                             ("ExecutionThrottled", self.state_machine.metric_throttled())):
            alarm = cloudwatch.Alarm(
                self, f"{name}Alarm", metric=metric.with_(period=cdk.Duration.minutes(5), statistic="Sum"),
                threshold=1, evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=f"Batch transform {name}",
            )
            alarm.add_alarm_action(action)
            self.alarms[name] = alarm

    def _processing_role(self, input_bucket: s3.IBucket, input_prefix: str, output_bucket: s3.IBucket,
                         processing: ProcessingStep) -> iam.Role:
        role = iam.Role(self, "ProcessingRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                        description="Batch transform preprocessing job")
        input_bucket.grant_read(role, f"{input_prefix}*")
        output_bucket.grant_put(role, f"{processing.output_prefix}*")
        self.encryption_key.grant_encrypt_decrypt(role)
        stack = cdk.Stack.of(self)
        role.add_to_policy(iam.PolicyStatement(
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[stack.format_arn(service="logs", resource="log-group", resource_name="/aws/sagemaker/ProcessingJobs*",
                                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)]))
        role.add_to_policy(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        role.add_to_policy(iam.PolicyStatement(
            actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            resources=[stack.format_arn(service="ecr", resource="repository", resource_name="*")]))
        acknowledge_wildcards(
            role, "grant_* defaults scoped to the input and processed prefixes and the workflow key",
            actions=(*S3_GRANT_WILDCARD_ACTIONS, *KMS_WILDCARD_ACTIONS))
        acknowledge_wildcards(
            role,
            "ecr:GetAuthorizationToken takes no resource; image pulls from this account's repositories; logs "
            "limited to /aws/sagemaker/ProcessingJobs; S3 limited to the input and processed prefixes",
            resources=("*", ending(":repository/*"), ending(":log-group:/aws/sagemaker/ProcessingJobs*"),
                       input_bucket.arn_for_objects(f"{input_prefix}*"),
                       output_bucket.arn_for_objects(f"{processing.output_prefix}*")))
        return role

    def metric_executions_failed(self, **kw) -> cloudwatch.Metric:
        return self.state_machine.metric_failed(**kw)


def _validate(model_name, input_prefix, output_prefix, instance_type, instance_count, split_type, batch_strategy,
              max_payload_mb, max_concurrent_transforms, processing, schedule, trigger_on_new_data, poll_interval,
              model_version) -> None:
    if not model_name:
        raise ValueError(f"model_name: required, got: {model_name!r}")
    validate_prefix(input_prefix, "input_prefix")
    validate_prefix(output_prefix, "output_prefix")
    family_of(instance_type, "instance_type")
    if not is_token(instance_count) and instance_count < 1:
        raise ValueError(f"instance_count must be >= 1, got: {instance_count}")
    if not isinstance(split_type, SplitType):
        raise ValueError(f"split_type must be a SplitType ({[s.name for s in SplitType]}), got: {split_type!r}")
    if not isinstance(batch_strategy, BatchStrategy):
        raise ValueError(f"batch_strategy must be a BatchStrategy ({[s.name for s in BatchStrategy]}), got: {batch_strategy!r}")
    if not is_token(max_payload_mb) and not 0 <= max_payload_mb <= MAX_PAYLOAD_MB:
        raise ValueError(f"max_payload_mb must be between 0 and {MAX_PAYLOAD_MB} MB, got: {max_payload_mb}")
    if not is_token(max_concurrent_transforms) and max_concurrent_transforms < 1:
        raise ValueError(f"max_concurrent_transforms must be >= 1, got: {max_concurrent_transforms}")
    if not is_token(max_payload_mb) and not is_token(max_concurrent_transforms) and \
            max_concurrent_transforms * max_payload_mb > MAX_PAYLOAD_MB:
        raise ValueError(
            f"max_concurrent_transforms x max_payload_mb must be <= {MAX_PAYLOAD_MB} MB, got: "
            f"{max_concurrent_transforms} x {max_payload_mb} = {max_concurrent_transforms * max_payload_mb}"
        )
    if schedule is None and not trigger_on_new_data:
        raise ValueError("schedule/trigger_on_new_data: give a schedule, trigger_on_new_data=True or both, got: neither")
    check_between("poll_interval", poll_interval, 1, 3600, "seconds")
    if not is_token(model_version) and not all(c.isalnum() or c in "-_." for c in model_version):
        raise ValueError(f"model_version must be letters, digits, '-', '_' or '.', got: {model_version!r}")
    if processing is not None:
        family_of(processing.instance_type, "processing.instance_type")
        validate_prefix(processing.output_prefix, "processing.output_prefix")
        if not is_token(processing.instance_count) and processing.instance_count < 1:
            raise ValueError(f"processing.instance_count must be >= 1, got: {processing.instance_count}")
        if not processing.entrypoint:
            raise ValueError("processing.entrypoint: required, got: []")
