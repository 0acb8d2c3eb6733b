"""The BatchTransform construct (see the package docstring for the layout, the run and idempotency)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

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
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from mlinfra.constructs.batch_transform.props import READY_MARKER_DIR, BatchStrategy, ProcessingStep, SplitType
from mlinfra.constructs.batch_transform.validation import (
    QUOTA_RETRY,
    QUOTA_RETRY_SECONDS,
    max_polls,
    validate_history,
    validate_props,
)
from mlinfra.constructs.common import acknowledge, acknowledge_retention, alarm_principal, is_token, limit_grants_to_aws_services, log_retention, logs_principal, path_in_errors
from mlinfra.constructs.wildcards import KMS_WILDCARD_ACTIONS, S3_GRANT_WILDCARD_ACTIONS, acknowledge_wildcards, ending
from mlinfra.domain.hosting_instances import accepts_volume_kms_key

#: SageMaker throttling and other unmodeled errors arrive as the SDK's generic exception (tests/unit/test_aws_models.py).
_TRANSIENT = ["SageMaker.AmazonSageMakerException"]
#: A quota (for example concurrent transform jobs, when two markers arrive at once) is waited out, bounded.
_QUOTA = ["SageMaker.ResourceLimitExceededException"]


class BatchTransform(Construct):
    """Batch inference of each ready batch (or on a schedule) with the newest approved model (module docstring).

    :param model_package_group_name: the model package group (e.g. ``RetrainPipeline.model_package_group_name``);
        each run scores with its newest ``Approved`` version and fails (``NoApprovedModel``) when there is none.
    :param model_role: the role the run's model runs as (CreateModel's ``ExecutionRoleArn``, passed with
        ``iam:PassRole`` to SageMaker only). It is granted read on the input, write on the output and the workflow
        key here; it must also read and decrypt the package's artifact and pull its image, as the endpoint role a
        ``RetrainPipeline`` deploys to does (rule sagemaker.model-role-reads-artifact-and-image).
    :param input_bucket: bucket of the data to score (e.g. the lake's curated zone); it must send events to
        EventBridge for ``trigger_on_ready_marker``.
    :param input_prefix: batches are ``<input_prefix><batch>/``, markers ``<input_prefix>_ready/<batch>``.
        :default: "batch-inference/input/"
    :param output_bucket: bucket of the results (e.g. the lake's artifacts zone).
    :param output_prefix: results go under ``<output_prefix><batch>/model-version=<v>/<job>/``. :default: "batch-inference/output/"
    :param instance_type: :default: ml.m5.xlarge
    :param instance_count: :default: 1
    :param content_type: MIME type of the input. :default: "text/csv"
    :param accept: MIME type of the output. :default: "text/csv"
    :param split_type: :default: SplitType.LINE
    :param batch_strategy: :default: BatchStrategy.MULTI_RECORD
    :param max_payload_mb: 0-100 (0: no limit, streaming). :default: 6
    :param max_concurrent_transforms: per instance; x max_payload_mb <= 100. :default: 4
    :param processing: optional preprocessing. :default: None
    :param schedule: EventBridge schedule of a run over ``<input_prefix><scheduled_batch>/``. :default: None
    :param scheduled_batch: the batch a scheduled or input-less manual run scores. :default: "current"
    :param trigger_on_ready_marker: start one run per completion marker ``<input_prefix>_ready/<batch>``.
        :default: False
    :param enable_network_isolation: run the model without network access. :default: True
    :param vpc_config: the model's ``VpcConfig`` (``SecurityGroupIds``, ``Subnets``), e.g. an ``Endpoint``'s
        ``vpc_config`` to run where the endpoint's model runs (its role then needs the ENI permissions an
        ``Endpoint`` grants its role). :default: None (no VPC)
    :param job_prefix: prefix of job and model names (1-20 letters, digits, ``-``). :default: "bt-" + 8 characters
        of the construct's address (unique per construct)
    :param poll_interval: :default: 1 minute
    :param timeout: how long the transform job may run: after ``timeout / poll_interval`` polls the run stops the
        job (``StopTransformJob``), notifies and fails. The polls must fit 25,000 history events. The state machine's
        own timeout is a backstop above it (this plus preprocessing, quota retries and an hour). :default: 6 hours
    :param notification_topic: told of failures (grant its key to ``state_machine.role`` if it is encrypted).
        :default: a new KMS-encrypted topic
    :param encryption_key: volume, log group and topic key (and the output's, without ``output_encryption_key``).
        :default: a new rotated key
    :param output_encryption_key: the key of the results (``TransformOutput.KmsKeyId``): give the output bucket's key
        (e.g. the lake key) so that whoever reads the output zone can decrypt them; the model role is granted
        encrypt on it. :default: ``encryption_key`` (then only its grantees decrypt the results)
    :param log_retention_days: :default: 90
    """

    @path_in_errors
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        model_package_group_name: str,
        model_role: iam.IRole,
        input_bucket: s3.IBucket,
        output_bucket: s3.IBucket,
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
        scheduled_batch: str = "current",
        trigger_on_ready_marker: bool = False,
        enable_network_isolation: bool = True,
        vpc_config: Mapping[str, Any] | None = None,
        job_prefix: str | None = None,
        poll_interval: cdk.Duration | None = None,
        timeout: cdk.Duration | None = None,
        notification_topic: sns.ITopic | None = None,
        encryption_key: kms.IKey | None = None,
        output_encryption_key: kms.IKey | None = None,
        log_retention_days: int = 90,
    ) -> None:
        super().__init__(scope, id)
        poll_interval = poll_interval or cdk.Duration.minutes(1)
        timeout = timeout or cdk.Duration.hours(6)
        job_prefix = job_prefix or f"bt-{self.node.addr[:8]}"
        validate_props(model_package_group_name, input_prefix, output_prefix, instance_type, instance_count, split_type,
                  batch_strategy, max_payload_mb, max_concurrent_transforms, processing, schedule, trigger_on_ready_marker,
                  poll_interval, scheduled_batch, job_prefix, vpc_config)
        validate_history(timeout, poll_interval, processing.max_runtime if processing else None)
        stack = cdk.Stack.of(self)
        self.model_package_group_name = model_package_group_name
        self.model_role = model_role
        self.input_prefix = input_prefix
        self.output_prefix = output_prefix
        self.job_prefix = job_prefix

        self.encryption_key = encryption_key or kms.Key(
            self, "Key", enable_key_rotation=True, removal_policy=cdk.RemovalPolicy.RETAIN,
            description=f"Batch transform {self.node.path}: output, volumes, logs, notifications",
        )
        limit_grants_to_aws_services(self.encryption_key)
        self.output_encryption_key = output_encryption_key or self.encryption_key
        if isinstance(self.encryption_key, kms.Key):
            self.encryption_key.grant_encrypt_decrypt(logs_principal())
        self.notification_topic = notification_topic or sns.Topic(
            self, "Notifications", master_key=self.encryption_key, enforce_ssl=True,
            display_name="Batch transform failures",
        )
        if notification_topic is None and isinstance(self.encryption_key, kms.Key):
            self.encryption_key.grant_encrypt_decrypt(alarm_principal())

        # ---- the model's role: the transform job runs as it ---------------------------------------------
        input_bucket.grant_read(model_role, f"{input_prefix}*")
        output_bucket.grant_put(model_role, f"{output_prefix}*")
        self.encryption_key.grant_encrypt_decrypt(model_role)
        if output_encryption_key is not None:
            output_encryption_key.grant_encrypt(model_role)
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

        def arn(resource: str, name: str) -> str:
            return stack.format_arn(service="sagemaker", resource=resource, resource_name=name)

        transform_arn = arn("transform-job", f"{job_prefix}-*")
        processing_arn = arn("processing-job", f"{job_prefix}-*")
        model_arn = arn("model", f"{job_prefix}-*")
        package_arn = arn("model-package", f"{model_package_group_name}/*")
        retry = dict(errors=_TRANSIENT, interval=cdk.Duration.seconds(30), max_attempts=4, backoff_rate=2.0)

        # ---- failure path -------------------------------------------------------------------------------
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

        def fail_with(name: str, error: str, cause: str) -> sfn.Pass:
            return sfn.Pass(self, name, parameters={"Error": error, "Cause.$": cause}, result_path="$.error").next(notify)

        def sagemaker(name: str, action: str, parameters: dict[str, Any], resources: list[str], *,
                      result_path: str | None = None, result_selector: dict[str, Any] | None = None,
                      iam_action: str | None = None, statements: Sequence[iam.PolicyStatement] = (),
                      retried: bool = True) -> tasks.CallAwsService:
            task = tasks.CallAwsService(
                self, name, service="sagemaker", action=action, parameters=parameters, iam_resources=resources,
                iam_action=iam_action, additional_iam_statements=list(statements),
                result_path=result_path or sfn.JsonPath.DISCARD, result_selector=result_selector)
            if retried:
                task.add_retry(**retry)
            return task

        def waits_out_quotas(task: tasks.CallAwsService) -> tasks.CallAwsService:
            """A create refused for a quota (ResourceLimitExceeded in botocore's model) is retried, bounded."""
            task.add_retry(errors=_QUOTA, **QUOTA_RETRY)
            return task

        # ---- 2. plan: deterministic names and URIs ------------------------------------------------------------
        plan = sfn.Pass(self, "Plan", parameters={
            "batch.$": "$.run.batch",
            "job_name.$": f"States.Format('{job_prefix}-{{}}', States.Hash(States.Format('{{}}#{{}}', $.run.batch, "
                          "$.run.run_key), 'SHA-1'))",
            "input_uri.$": f"States.Format('s3://{input_bucket.bucket_name}/{input_prefix}{{}}/', $.run.batch)",
            # This execution, as the tag its jobs carry: a job found under the run's name is either this run's own
            # (a retried create whose first attempt succeeded: keep watching it) or another execution's (a duplicate).
            "owner.$": "States.Hash($$.Execution.Id, 'SHA-1')",
            "polls": {"n": 0},
        }, result_path="$.job")
        # ---- 1. which batch, which run --------------------------------------------------------------------
        marker_root = f"{input_prefix}{READY_MARKER_DIR}"
        batch_index = input_prefix.count("/") + 1 if not is_token(input_prefix) else 0
        split = f"States.StringSplit($.marker.key, '/')"
        bad_marker = fail_with(
            "BadMarker", "BadMarker",
            f"States.Format('marker {{}} is not {marker_root}<batch> (one path segment of letters, digits, ., _, - "
            f"or =): nothing was scored', $.marker.key)")
        count_parts = sfn.Pass(self, "CountMarkerParts", parameters={"n.$": f"States.ArrayLength({split})"},
                               result_path="$.marker_parts")
        parse_marker = sfn.Pass(self, "ParseMarker", parameters={
            "batch.$": f"States.ArrayGetItem({split}, {batch_index})",
            "run_key.$": "States.Format('{}#{}', $.marker.key, $.marker_id.id)",
            "expected_key.$": f"States.Format('{marker_root}{{}}', States.ArrayGetItem({split}, {batch_index}))",
        }, result_path="$.run")
        # S3 keys in events may be URL-encoded: a batch holding '%' or '+' is refused rather than mis-addressed.
        marker_ok = (
            sfn.Choice(self, "MarkerIsABatch?")
            .when(sfn.Condition.and_(
                sfn.Condition.string_equals_json_path("$.run.expected_key", "$.marker.key"),
                sfn.Condition.not_(sfn.Condition.string_matches("$.run.batch", "*%*")),
                sfn.Condition.not_(sfn.Condition.string_matches("$.run.batch", "*+*")),
                sfn.Condition.not_(sfn.Condition.string_equals("$.run.batch", READY_MARKER_DIR.rstrip("/")))), plan)
            .otherwise(bad_marker)
        )
        depth_ok = (
            sfn.Choice(self, "MarkerDepth?")
            .when(sfn.Condition.number_equals("$.marker_parts.n", batch_index + 1), parse_marker)
            .otherwise(bad_marker)
        )
        # The run key of a marker: its S3 version id (the curated zone is versioned: every write of the marker has
        # its own), else (an unversioned or suspended bucket: no id, or "null") the event's sequencer, which differs
        # per write of a key and is the same in a duplicated delivery (S3 user guide, "EventBridge event message
        # structure"). The ETag is not used: identical marker bytes give the same ETag under SSE-S3.
        key_on_version = sfn.Pass(self, "RunKeyIsVersionId", parameters={"id.$": "$.marker.version_id"},
                                  result_path="$.marker_id")
        key_on_sequencer = sfn.Pass(self, "RunKeyIsSequencer", parameters={"id.$": "$.marker.sequencer"},
                                    result_path="$.marker_id")
        key_on_version.next(count_parts)
        key_on_sequencer.next(count_parts)
        marker_id = (
            sfn.Choice(self, "MarkerVersioned?")
            .when(sfn.Condition.and_(sfn.Condition.is_present("$.marker.version_id"),
                                     sfn.Condition.is_string("$.marker.version_id"),
                                     sfn.Condition.not_(sfn.Condition.string_equals("$.marker.version_id", "")),
                                     sfn.Condition.not_(sfn.Condition.string_equals("$.marker.version_id", "null"))),
                  key_on_version)
            .when(sfn.Condition.and_(sfn.Condition.is_present("$.marker.sequencer"),
                                     sfn.Condition.is_string("$.marker.sequencer")), key_on_sequencer)
            .otherwise(bad_marker)
        )
        defaults = sfn.Pass(self, "Defaults", parameters={"batch": scheduled_batch, "run_key.$": "$$.Execution.Name"},
                            result_path="$.defaults")
        merge = sfn.Pass(self, "MergeInput", parameters={"run.$": "States.JsonMerge($.defaults, $$.Execution.Input, false)"})
        # A manual {"batch": ...} obeys the marker's rule: one path segment, not _ready, nothing URL-encoded.
        bad_batch = fail_with(
            "BadBatch", "BadBatch",
            "States.Format('batch {} is not one path segment of letters, digits, ., _, - or = (not _ready): nothing "
            "was scored', States.JsonToString($.run.batch))")
        batch_ok = (
            sfn.Choice(self, "BatchIsASegment?")
            .when(sfn.Condition.and_(
                sfn.Condition.is_string("$.run.batch"),
                sfn.Condition.not_(sfn.Condition.string_equals("$.run.batch", "")),
                sfn.Condition.not_(sfn.Condition.string_matches("$.run.batch", "*/*")),
                sfn.Condition.not_(sfn.Condition.string_matches("$.run.batch", "*%*")),
                sfn.Condition.not_(sfn.Condition.string_matches("$.run.batch", "*+*")),
                sfn.Condition.not_(sfn.Condition.string_matches("$.run.batch", "* *")),
                sfn.Condition.not_(sfn.Condition.string_equals("$.run.batch", READY_MARKER_DIR.rstrip("/")))), plan)
            .otherwise(bad_batch)
        )


        # ---- 3. a job of this name exists: this run's own (watch it) or another execution's (a duplicate event) --
        already = sfn.Succeed(self, "AlreadyStarted",
                              comment="Another execution created the job of this name (a duplicate event); it watches it")
        owner_key = "mlinfra:execution"

        def owner_check(kind: str, arn_path: str, resource: str, own: sfn.IChainable) -> sfn.IChainable:
            """ListTags of the found job -> this execution's tag? -> ``own`` (keep polling), else AlreadyStarted."""
            tags_of = sagemaker(
                f"List{kind}JobTags", "listTags", {"ResourceArn.$": arn_path}, [resource],
                result_path="$.found_tags", result_selector={"owners.$": f"$.Tags[?(@.Key=='{owner_key}')].Value"})
            tags_of.add_catch(notify, result_path="$.error")
            owned = sfn.Pass(self, f"{kind}JobOwner", parameters={
                "own.$": "States.ArrayContains($.found_tags.owners, $.job.owner)"}, result_path="$.found_owner")
            return tags_of.next(owned).next(
                sfn.Choice(self, f"Own{kind}Job?")
                .when(sfn.Condition.boolean_equals("$.found_owner.own", True), own)
                .otherwise(already))

        find_job = sagemaker("FindExistingJob", "describeTransformJob", {"TransformJobName.$": "$.job.job_name"},
                             [transform_arn], result_path="$.existing",
                             result_selector={"status.$": "$.TransformJobStatus", "arn.$": "$.TransformJobArn"},
                             retried=False)

        # ---- 4. the newest approved model --------------------------------------------------------------------
        # SageMaker may answer a filtered list with an EMPTY page and a NextToken (boto/boto3#2521; AWS's SageMaker
        # Python SDK pages on while the list is empty): page on until a version or the end of the list
        # (rule sagemaker.list-model-packages-empty-page).
        registry_query = {"ModelPackageGroupName": model_package_group_name, "ModelApprovalStatus": "Approved",
                          "SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": 100}
        # The whole page is kept (a ResultSelector path to an absent NextToken is a runtime error); the chosen
        # version replaces it at once (UseNewestApproved, ForgetRegistryPage).
        list_models = sagemaker(
            "FindApprovedModel", "listModelPackages", registry_query,
            ["*"], iam_action="sagemaker:ListModelPackages",  # no resource-level permissions (sagemaker.list-model-packages-resource)
            result_path="$.registry")
        list_models.add_catch(notify, result_path="$.error")
        next_page = sagemaker(
            "FindApprovedModelNextPage", "listModelPackages", {**registry_query, "NextToken.$": "$.registry.NextToken"},
            ["*"], iam_action="sagemaker:ListModelPackages", result_path="$.registry")
        next_page.add_catch(notify, result_path="$.error")
        find_job.add_catch(list_models, result_path="$.lookup")
        no_model = fail_with(
            "NoApprovedModel", "NoApprovedModel",
            f"States.Format('model package group {model_package_group_name} has no Approved model package: batch {{}} "
            "was not scored', $.job.batch)")
        use_model = sfn.Pass(self, "UseNewestApproved", parameters={
            "package_arn.$": "States.ArrayGetItem($.registry.ModelPackageSummaryList[*].ModelPackageArn, 0)",
            "version.$": "States.ArrayGetItem($.registry.ModelPackageSummaryList[*].ModelPackageVersion, 0)",
        }, result_path="$.model")
        forget_page = sfn.Pass(self, "ForgetRegistryPage", parameters={"pages_read": True}, result_path="$.registry")
        found = (sfn.Choice(self, "ApprovedModelFound?")
                 .when(sfn.Condition.is_present("$.registry.ModelPackageSummaryList[0]"), use_model)
                 .when(sfn.Condition.is_present("$.registry.NextToken"), next_page)
                 .otherwise(no_model))
        next_page.next(found)
        model_request: dict[str, Any] = {
            "ModelName.$": "$.job.job_name",
            "ExecutionRoleArn": model_role.role_arn,
            # SageMaker builds the containers from the package version (rule sagemaker.model-from-package-version).
            "PrimaryContainer": {"ModelPackageName.$": "$.model.package_arn"},
            "EnableNetworkIsolation": enable_network_isolation,
        }
        if vpc_config:
            model_request["VpcConfig"] = dict(vpc_config)
        create_model = waits_out_quotas(sagemaker(
            "CreateModel", "createModel", model_request, [model_arn],
            statements=[
                iam.PolicyStatement(actions=["iam:PassRole"], resources=[model_role.role_arn],
                                    conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}),
                # CreateModel reads the package version named in ModelPackageName.
                iam.PolicyStatement(actions=["sagemaker:DescribeModelPackage"], resources=[package_arn]),
            ]))
        model_exists = sagemaker("FindExistingModel", "describeModel", {"ModelName.$": "$.job.job_name"}, [model_arn],
                                 result_path="$.existing_model", result_selector={"arn.$": "$.ModelArn"})
        model_exists.add_catch(notify, result_path="$.model_lookup_error")
        create_model.add_catch(model_exists, result_path="$.error")

        # ---- 5. optional preprocessing -------------------------------------------------------------------------
        transform_input_uri = "$.job.input_uri"
        if processing is not None:
            proc_role = processing.role or self._processing_role(input_bucket, input_prefix, output_bucket, processing)
            self.processing_role = proc_role
            processed_uri = f"s3://{output_bucket.bucket_name}/{processing.output_prefix}"
            create_proc = waits_out_quotas(sagemaker(
                "CreateProcessingJob", "createProcessingJob",
                {
                    "ProcessingJobName.$": "$.job.job_name",
                    "RoleArn": proc_role.role_arn,
                    "AppSpecification": {"ImageUri": processing.image_uri, "ContainerEntrypoint": list(processing.entrypoint)},
                    "ProcessingResources": {"ClusterConfig": {
                        "InstanceType": processing.instance_type, "InstanceCount": processing.instance_count,
                        "VolumeSizeInGB": 30,
                        # Not on instance-storage types (rule sagemaker.no-volume-kms-with-instance-storage).
                        **({"VolumeKmsKeyId": self.encryption_key.key_arn}
                           if accepts_volume_kms_key(processing.instance_type, "processing.instance_type") else {})}},
                    "ProcessingInputs": [{"InputName": "input", "S3Input": {
                        "S3Uri.$": "$.job.input_uri", "LocalPath": "/opt/ml/processing/input",
                        "S3DataType": "S3Prefix", "S3InputMode": "File"}}],
                    "ProcessingOutputConfig": {"KmsKeyId": self.encryption_key.key_arn, "Outputs": [{
                        "OutputName": "processed", "S3Output": {
                            "S3Uri.$": f"States.Format('{processed_uri}{{}}/', $.job.job_name)",
                            "LocalPath": "/opt/ml/processing/output", "S3UploadMode": "EndOfJob"}}]},
                    "StoppingCondition": {"MaxRuntimeInSeconds": int(processing.max_runtime.to_seconds())},
                    "NetworkConfig": {"EnableNetworkIsolation": True},
                    "Tags": [{"Key": owner_key, "Value.$": "$.job.owner"}],
                },
                [processing_arn],
                statements=[iam.PolicyStatement(
                    actions=["iam:PassRole"], resources=[proc_role.role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}),
                    iam.PolicyStatement(actions=["sagemaker:AddTags"], resources=[processing_arn])]))
            proc_exists = sagemaker("FindExistingProcessingJob", "describeProcessingJob",
                                    {"ProcessingJobName.$": "$.job.job_name"}, [processing_arn],
                                    result_path="$.existing_processing",
                                    result_selector={"status.$": "$.ProcessingJobStatus", "arn.$": "$.ProcessingJobArn"})
            proc_exists.add_catch(notify, result_path="$.processing_lookup_error")
            create_proc.add_catch(proc_exists, result_path="$.error")
            wait_proc = sfn.Wait(self, "WaitProcessing", time=sfn.WaitTime.duration(poll_interval))
            proc_exists.next(owner_check("Processing", "$.existing_processing.arn", processing_arn, wait_proc))
            describe_proc = sagemaker(
                "DescribeProcessingJob", "describeProcessingJob", {"ProcessingJobName.$": "$.job.job_name"},
                [processing_arn], result_selector={"status.$": "$.ProcessingJobStatus"}, result_path="$.processing")
            describe_proc.add_catch(notify, result_path="$.error")
            use_processed = sfn.Pass(self, "UseProcessedData", parameters={
                "uri.$": f"States.Format('{processed_uri}{{}}/', $.job.job_name)"}, result_path="$.processed")
            transform_input_uri = "$.processed.uri"

        # ---- 6. the transform job ---------------------------------------------------------------------------
        create = waits_out_quotas(sagemaker(
            "CreateTransformJob", "createTransformJob",
            {
                "TransformJobName.$": "$.job.job_name",
                "ModelName.$": "$.job.job_name",
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
                        f"States.Format('s3://{output_bucket.bucket_name}/{output_prefix}{{}}/model-version={{}}/{{}}/', "
                        "$.job.batch, $.model.version, $.job.job_name)"
                    ),
                    "Accept": accept,
                    "AssembleWith": "Line" if split_type is SplitType.LINE else "None",
                    "KmsKeyId": self.output_encryption_key.key_arn,
                },
                "TransformResources": {
                    "InstanceType": instance_type, "InstanceCount": instance_count,
                    **({"VolumeKmsKeyId": self.encryption_key.key_arn} if accepts_volume_kms_key(instance_type) else {}),
                },
                "Tags": [{"Key": "mlinfra:model-package", "Value.$": "$.model.package_arn"},
                         {"Key": owner_key, "Value.$": "$.job.owner"}],
            },
            [transform_arn],
            statements=[iam.PolicyStatement(actions=["sagemaker:AddTags"], resources=[transform_arn])],
        ))
        job_exists = sagemaker("FindStartedJob", "describeTransformJob", {"TransformJobName.$": "$.job.job_name"},
                               [transform_arn], result_path="$.existing",
                               result_selector={"status.$": "$.TransformJobStatus", "arn.$": "$.TransformJobArn"})
        job_exists.add_catch(notify, result_path="$.job_lookup_error")
        # A taken name fails the create (rule sagemaker.transform-job-name-unique; ResourceInUse in botocore's model):
        # when the job exists after a failed create, its owner tag says whether this run made it (a retried create
        # whose first attempt succeeded, or an error after the create: keep polling) or another execution did.
        create.add_catch(job_exists, errors=["SageMaker.ResourceInUseException"], result_path="$.duplicate")
        create.add_catch(job_exists, result_path="$.error")
        wait = sfn.Wait(self, "WaitTransform", time=sfn.WaitTime.duration(poll_interval))
        # The poll budget: a job still running after ``timeout`` is stopped and notified, never left running
        # behind a timed-out execution (an execution timeout runs no Catch).
        budget = max_polls(timeout, poll_interval)
        count_poll = sfn.Pass(self, "CountTransformPoll", parameters={"n.$": "States.MathAdd($.job.polls.n, 1)"},
                              result_path="$.job.polls")
        stop = sagemaker("StopTransformJob", "stopTransformJob", {"TransformJobName.$": "$.job.job_name"}, [transform_arn])
        stop.add_catch(notify, result_path="$.stop_error")
        every = "" if is_token(poll_interval.to_seconds()) else f" of {int(poll_interval.to_seconds())} s"
        stop.next(fail_with(
            "TransformTimedOut", "TransformTimedOut",
            f"States.Format('transform job {{}} was still running after {budget} polls{every} (timeout): stopped, batch "
            "{} not scored', $.job.job_name, $.job.batch)"))
        count_poll.next(sfn.Choice(self, "TransformPollBudget?")
                        .when(sfn.Condition.number_greater_than("$.job.polls.n", budget), stop)
                        .otherwise(wait))
        transform_owner = owner_check("Transform", "$.existing.arn", transform_arn, count_poll)
        job_exists.next(transform_owner)
        describe = sagemaker(
            "DescribeTransformJob", "describeTransformJob", {"TransformJobName.$": "$.job.job_name"}, [transform_arn],
            result_selector={"status.$": "$.TransformJobStatus", "output.$": "$.TransformOutput.S3OutputPath"},
            result_path="$.transform")
        describe.add_catch(notify, result_path="$.error")
        done = sfn.Succeed(self, "Succeeded")
        delete_model = sagemaker("DeleteRunModel", "deleteModel", {"ModelName.$": "$.job.job_name"}, [model_arn])
        delete_model.add_catch(done, result_path="$.cleanup_error")  # a leftover model never fails a scored batch
        def job_done(kind: str, path: str, completed: sfn.IChainable, poll_again: sfn.IChainable) -> sfn.Choice:
            """Completed -> ``completed``; Failed or Stopped -> ``<kind>JobFailed`` -> notify; else poll again."""
            failed = sfn.Pass(self, f"{kind}JobFailed", parameters={"status.$": path}, result_path="$.error").next(notify)
            return (sfn.Choice(self, f"{kind}Done?")
                    .when(sfn.Condition.string_equals(path, "Completed"), completed)
                    .when(sfn.Condition.or_(sfn.Condition.string_equals(path, "Failed"),
                                            sfn.Condition.string_equals(path, "Stopped")), failed)
                    .otherwise(poll_again))

        create.next(count_poll)
        wait.next(describe).next(job_done("Transform", "$.transform.status", delete_model.next(done), count_poll))
        transform_chain = create
        if processing is not None:
            proc_choice = job_done("Processing", "$.processing.status", use_processed.next(transform_chain), wait_proc)
            after_model: sfn.IChainable = create_proc
            create_proc.next(wait_proc).next(describe_proc).next(proc_choice)
        else:
            after_model = transform_chain
        create_model.next(after_model)
        model_exists.next(after_model)
        use_model.next(forget_page).next(create_model)
        list_models.next(found)
        plan.next(find_job)
        find_job.next(transform_owner)
        count_parts.next(depth_ok)
        parse_marker.next(marker_ok)
        defaults.next(merge).next(batch_ok)
        body = (sfn.Choice(self, "MarkerEvent?")
                .when(sfn.Condition.is_present("$.marker.key"), marker_id)
                .otherwise(defaults))

        self.log_group = logs.LogGroup(
            self, "Logs", log_group_name=f"/aws/vendedlogs/states/{cdk.Names.unique_id(self)}",
            retention=log_retention(log_retention_days, "log_retention_days"),
            encryption_key=self.encryption_key, removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        acknowledge_retention(self.log_group, log_retention(log_retention_days, "log_retention_days"))
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(body),
            # A backstop above the poll budget (which stops the job and notifies first): the transform's timeout,
            # preprocessing's max runtime, the quota retries of the three creates and an hour.
            timeout=cdk.Duration.seconds(
                timeout.to_seconds() + (processing.max_runtime.to_seconds() if processing else 0)
                + 3 * QUOTA_RETRY_SECONDS + 3600)
            if not is_token(timeout.to_seconds()) else timeout,
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
            "log delivery, X-Ray and sagemaker:ListModelPackages take no resource; SageMaker job and model ARNs are "
            "limited to this construct's name prefix (names are derived per run), packages to the model's group",
            resources=("*", ending(f":transform-job/{job_prefix}-*"), ending(f":processing-job/{job_prefix}-*"),
                       ending(f":model/{job_prefix}-*"), package_arn))

        # ---- triggers -----------------------------------------------------------------------------------
        self.rules: list[events.Rule] = []
        # Events EventBridge could not deliver (the state machine throttled, a missing permission) land here
        # instead of being dropped; an alarm tells the notification topic.
        self.dead_letter_queue = sqs.Queue(self, "TriggerDeadLetters", encryption=sqs.QueueEncryption.SQS_MANAGED,
                                           enforce_ssl=True, retention_period=cdk.Duration.days(14))
        for rule_id in ("AwsSolutions-SQS3", "cfn-guard::sqs_dlq_check"):
            acknowledge(self.dead_letter_queue, rule_id, "This queue is the dead-letter queue of the batch transform "
                        "triggers' EventBridge targets; it has no dead-letter queue of its own.")
        acknowledge(self.dead_letter_queue, "checkov::CKV_AWS_27", "Encrypted at rest with SSE-SQS "
                    "(SqsManagedSseEnabled); checkov 3.3 recognizes only a KMS key (KmsMasterKeyId)")
        target_options = dict(dead_letter_queue=self.dead_letter_queue, retry_attempts=8,
                              max_event_age=cdk.Duration.hours(24))
        if schedule is not None:
            rule = events.Rule(self, "Schedule", schedule=schedule, description="Scheduled batch transform")
            # The event id names the run: a duplicated delivery of one scheduled event starts no second job.
            rule.add_target(targets.SfnStateMachine(self.state_machine, input=events.RuleTargetInput.from_object(
                {"run_key": events.EventField.event_id}), **target_options))
            self.rules.append(rule)
        if trigger_on_ready_marker:
            rule = events.Rule(
                self, "ReadyMarker", description="Batch transform of a batch whose completion marker was written",
                event_pattern=events.EventPattern(
                    source=["aws.s3"], detail_type=["Object Created"],
                    detail={"bucket": {"name": [input_bucket.bucket_name]},
                            "object": {"key": [{"prefix": marker_root}]}},
                ),
            )
            rule.add_target(targets.SfnStateMachine(self.state_machine, input=events.RuleTargetInput.from_object({
                # The run key (version id, else sequencer); the ETag is no run key (docs/serving.md).
                "marker": {"key": events.EventField.from_path("$.detail.object.key"),
                           "version_id": events.EventField.from_path("$.detail.object.version-id"),
                           "sequencer": events.EventField.from_path("$.detail.object.sequencer")},
            }), **target_options))
            self.rules.append(rule)

        # ---- alarms (failed, timed out, aborted, throttled) -------------------------------------------------
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        action = cw_actions.SnsAction(self.notification_topic)
        for name, metric in (("ExecutionsFailed", self.state_machine.metric_failed()),
                             ("ExecutionsTimedOut", self.state_machine.metric_timed_out()),
                             ("ExecutionsAborted", self.state_machine.metric_aborted()),
                             ("ExecutionThrottled", self.state_machine.metric_throttled()),
                             ("TriggerDeadLetters", self.dead_letter_queue.metric_approximate_number_of_messages_visible())):
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
