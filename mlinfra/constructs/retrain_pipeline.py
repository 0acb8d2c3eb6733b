"""RetrainPipeline: from a new dataset version to a safely deployed model, on Step Functions.

Triggers: the ingestion capability's ``Dataset Version Ready`` event (EventBridge, source
``mlinfra.ingestion``, filtered on the pipeline's datasets), an optional schedule, and a manual
``StartExecution`` whose input follows :data:`INPUT_SCHEMA`. Both automatic triggers go through a small trigger
function that names the execution after dataset and version, so a duplicate event cannot start a second run;
a per-dataset lock (a conditional DynamoDB put, released on every exit path, expiring after the execution
timeout) keeps two runs from training on one dataset at once.

The run: validate and plan -> lock -> lineage -> optional SageMaker Processing preprocessing -> SageMaker
training (managed spot, checkpoints, max runtime and max wait; a failed attempt is retried from the same
checkpoint URI) -> optional evaluation job -> evaluation report -> gate (threshold AND the production model's
metric from the Model Package Group) -> register the model package (metrics + lineage) -> optional manual
approval (task token, SNS, timeout rejects) -> deploy (new model + endpoint config, blue/green update of the
endpoint, or create it; wait for InService; a rollback is a failure) -> approve the package, record,
notify, unlock. The definition itself is :func:`mlinfra.retrain_definition.build_definition`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from typing import Any, Mapping, Sequence

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
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from mlinfra.constructs.common import acknowledge_retention, alarm_principal, data_removal_policy, encrypted_table, is_token, limit_grants_to_aws_services, log_retention, logs_principal, path_in_errors, require_literal
from mlinfra.constructs.data_lake import IDataLake, dataset_prefix
from mlinfra.constructs.endpoint_target import EndpointTarget
from mlinfra.constructs.lambda_function import HandlerFunction
from mlinfra.constructs.training_job import InputMode
from mlinfra.domain.choices import choice
from mlinfra.domain.hosting_instances import accepts_volume_kms_key
from mlinfra.domain.rules import cite
from mlinfra.constructs.wildcards import KMS_WILDCARD_ACTIONS, S3_GRANT_WILDCARD_ACTIONS, acknowledge_wildcards, ending
from mlinfra.domain.lake import retrainable_dataset_error
from mlinfra.retrain_definition import DefinitionSettings, PollSettings, build_definition, worst_case_history_events

__all__ = ["RetrainPipeline", "TrainingProps", "InputMode", "HyperPodTraining", "ProcessingProps", "MetricDirection", "JobWait", "INPUT_SCHEMA", "READY_EVENT"]

#: The ingestion capability's event that a dataset version is ready in the raw zone.
READY_EVENT = {"source": "mlinfra.ingestion", "detail-type": "Dataset Version Ready"}

#: JSON schema of a manual StartExecution input (the trigger function sends the same shape).
INPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["dataset", "version"],
    "additionalProperties": False,
    "properties": {
        "dataset": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"},
        "version": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"},
        "hyperparameters": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
        "code_version": {"type": "string"},
        "trigger": {"type": "string"},
        "event_id": {"type": "string"},
        "note": {"type": "string"},
    },
}

ECR_PULL_ACTIONS = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")
_TRAINING_IMAGE_RE = re.compile(r"-training[:@/]|/[\w.-]*training[\w.-]*:")
_JOB_PREFIX_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]{0,19}$")
_MAX_SAGEMAKER_RUNTIME_S = 28 * 24 * 3600
_ECR_RE = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/([^:@]+)")


class JobWait(enum.Enum):
    """How the state machine waits for SageMaker jobs."""

    #: The optimized ``.sync`` integrations (AWS): no polling, a few history events per job.
    SYNC = "sync"
    #: create -> describe -> Wait loops (the local emulator: moto's interpreter cannot run ``.sync``). About 13
    #: history events per poll: long jobs exceed a Standard execution's 25,000 events.
    POLL = "poll"


#: A Standard execution's history limit (Step Functions quotas); that end runs no Catch.
HISTORY_EVENT_LIMIT = 25_000


class MetricDirection(enum.Enum):
    """Which way the gate's metric is better."""

    HIGHER = "higher"
    LOWER = "lower"


@dataclasses.dataclass(frozen=True)
class HyperPodTraining:
    """Train on a SageMaker HyperPod cluster (its Slurm job bridge) instead of a SageMaker training job.

    :param cluster: the :class:`~mlinfra.constructs.hyperpod.HyperPodCluster` (with its job queue).
    :param partition: the Slurm partition (a compute group with nodes). :param nodes: nodes of the job.
    :param image: the training container image. :param command: the container command; it reads
        ``CHECKPOINT_URI`` (resume) and writes ``model.tar.gz`` under ``OUTPUT_URI``.
    :param time_limit: Slurm time limit. :default: 24 hours
    :param queue_wait: how long the job may wait for nodes. :default: 24 hours
    """

    cluster: Any
    partition: str
    nodes: int
    image: str
    command: Sequence[str]
    time_limit: cdk.Duration = dataclasses.field(default_factory=lambda: cdk.Duration.hours(24))
    queue_wait: cdk.Duration = dataclasses.field(default_factory=lambda: cdk.Duration.hours(24))


@dataclasses.dataclass(frozen=True)
class TrainingProps:
    """The pipeline's SageMaker training job (the full CreateTrainingJob request is built from it).

    :param image_uri: training image (pin a digest, ``...@sha256:...``, for exact lineage).
    :param instance_type: ``ml.*`` type. :default: ml.g5.xlarge
    :param instance_count: :default: 1
    :param volume_size_gb: ML storage volume per instance. :default: 100
    :param max_runtime: ``MaxRuntimeInSeconds`` (at most 28 days). :default: 24 hours
    :param use_spot: managed spot training (with checkpoints). :default: True
    :param max_wait: ``MaxWaitTimeInSeconds`` (spot only; >= max_runtime). :default: 2 x max_runtime
    :param hyperparameters: defaults, strings (an execution's input may override). For distributed training
        pass the SDK's keys here (``sagemaker_distributed_dataparallel_enabled``, ``sagemaker_mpi_enabled``...):
        CreateTrainingJob has no ``distribution`` field. :default: none
    :param input_mode: how the job reads its channels (``InputMode`` or its value, ``"FastFile"``). :default: InputMode.FILE
    :param max_attempts: attempts of one run (each resumes from the run's checkpoints). :default: 2
    :param enable_network_isolation: :default: False
    """

    image_uri: str
    instance_type: str = "ml.g5.xlarge"
    instance_count: int = 1
    volume_size_gb: int = 100
    max_runtime: cdk.Duration = dataclasses.field(default_factory=lambda: cdk.Duration.hours(24))
    use_spot: bool = True
    max_wait: cdk.Duration | None = None
    hyperparameters: Mapping[str, str] = dataclasses.field(default_factory=dict)
    input_mode: InputMode | str = InputMode.FILE
    max_attempts: int = 2
    enable_network_isolation: bool = False

    @property
    def max_wait_seconds(self) -> int | None:
        if not self.use_spot:
            return None
        return int((self.max_wait or cdk.Duration.seconds(2 * self.max_runtime.to_seconds())).to_seconds())

    def validate(self) -> None:
        _require_literals("training", self, ("instance_count", "volume_size_gb", "max_runtime", "max_wait", "max_attempts"))
        _check_instance("training.instance_type", self.instance_type)
        if self.instance_count < 1:
            raise ValueError(f"training.instance_count must be >= 1, got: {self.instance_count}")
        if not 1 <= self.volume_size_gb <= 16384:
            raise ValueError(f"training.volume_size_gb must be between 1 and 16384, got: {self.volume_size_gb}")
        runtime = self.max_runtime.to_seconds()
        if not 1 <= runtime <= _MAX_SAGEMAKER_RUNTIME_S:
            raise ValueError(f"training.max_runtime must be between 1 second and 28 days, got: {runtime} s")
        if self.max_wait is not None and not self.use_spot:
            raise ValueError("training.max_wait applies to managed spot training only: set use_spot=True or drop max_wait")
        wait = self.max_wait_seconds
        if wait is not None and not runtime <= wait <= _MAX_SAGEMAKER_RUNTIME_S:
            raise ValueError(f"training.max_wait must be >= max_runtime ({runtime} s) and at most 28 days, got: {wait} s")
        choice(InputMode, self.input_mode, "training.input_mode")
        if not 1 <= self.max_attempts <= 5:
            raise ValueError(f"training.max_attempts must be between 1 and 5, got: {self.max_attempts}")
        bad = {k: v for k, v in self.hyperparameters.items() if not isinstance(v, str)}
        if bad:
            raise ValueError(f"training.hyperparameters values must be strings (SageMaker's type), got: {bad}")

    def static_request(self, *, role_arn: str, kms_key_id: str | None) -> dict[str, Any]:
        """The run-independent part of CreateTrainingJob (the definition adds names, data, checkpoints)."""
        stopping: dict[str, Any] = {"MaxRuntimeInSeconds": int(self.max_runtime.to_seconds())}
        if self.use_spot:
            stopping["MaxWaitTimeInSeconds"] = self.max_wait_seconds
        resources: dict[str, Any] = {"InstanceType": self.instance_type, "InstanceCount": self.instance_count,
                                     "VolumeSizeInGB": self.volume_size_gb}
        output: dict[str, Any] = {}
        if kms_key_id:
            if _volume_key_allowed(self.instance_type, "training.instance_type"):
                resources["VolumeKmsKeyId"] = kms_key_id
            output["KmsKeyId"] = kms_key_id
        return {
            "AlgorithmSpecification": {"TrainingImage": self.image_uri, "TrainingInputMode": choice(InputMode, self.input_mode, "training.input_mode").value},
            "RoleArn": role_arn,
            "ResourceConfig": resources,
            "StoppingCondition": stopping,
            "EnableManagedSpotTraining": self.use_spot,
            "EnableNetworkIsolation": self.enable_network_isolation,
            "EnableInterContainerTrafficEncryption": self.instance_count > 1,
            "OutputDataConfig": output,
        }


@dataclasses.dataclass(frozen=True)
class ProcessingProps:
    """A SageMaker Processing job of the pipeline (preprocessing or evaluation).

    Inputs are mounted under ``/opt/ml/processing/input/<name>`` and ``/opt/ml/processing/output`` is uploaded;
    an evaluation job writes ``evaluation.json`` there.

    :param image_uri: processing image.
    :param instance_type: :default: ml.m5.xlarge
    :param instance_count: :default: 1
    :param volume_size_gb: :default: 30
    :param max_runtime: :default: 2 hours
    :param entrypoint: container entrypoint. :default: the image's
    :param arguments: container arguments. :default: none
    :param environment: environment variables. :default: none
    """

    image_uri: str
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    volume_size_gb: int = 30
    max_runtime: cdk.Duration = dataclasses.field(default_factory=lambda: cdk.Duration.hours(2))
    entrypoint: Sequence[str] | None = None
    arguments: Sequence[str] | None = None
    environment: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def validate(self, prop: str) -> None:
        _require_literals(prop, self, ("instance_count", "volume_size_gb", "max_runtime"))
        _check_instance(f"{prop}.instance_type", self.instance_type)
        if self.instance_count < 1:
            raise ValueError(f"{prop}.instance_count must be >= 1, got: {self.instance_count}")
        if not 1 <= self.volume_size_gb <= 16384:
            raise ValueError(f"{prop}.volume_size_gb must be between 1 and 16384, got: {self.volume_size_gb}")
        if not 1 <= self.max_runtime.to_seconds() <= 5 * 24 * 3600:
            raise ValueError(f"{prop}.max_runtime must be between 1 second and 5 days, got: {self.max_runtime.to_seconds()} s")

    def static_request(self, *, role_arn: str, kms_key_id: str | None) -> dict[str, Any]:
        cluster: dict[str, Any] = {"InstanceCount": self.instance_count, "InstanceType": self.instance_type,
                                   "VolumeSizeInGB": self.volume_size_gb}
        app: dict[str, Any] = {"ImageUri": self.image_uri}
        if self.entrypoint:
            app["ContainerEntrypoint"] = list(self.entrypoint)
        if self.arguments:
            app["ContainerArguments"] = list(self.arguments)
        request: dict[str, Any] = {
            "ProcessingResources": {"ClusterConfig": cluster},
            "AppSpecification": app,
            "RoleArn": role_arn,
            "StoppingCondition": {"MaxRuntimeInSeconds": int(self.max_runtime.to_seconds())},
        }
        if kms_key_id:
            if _volume_key_allowed(self.instance_type, "processing.instance_type"):
                cluster["VolumeKmsKeyId"] = kms_key_id
            request["OutputKmsKeyId"] = kms_key_id
        if self.environment:
            request["Environment"] = dict(self.environment)
        return request


#: Why the pipeline's numbers must be literals: the state machine definition is JSON text built at synth time
#: (numbers are not CloudFormation references there), and the poll counts, the lock's expiry and the execution
#: timeout are computed from the durations.
_DEFINITION_LITERAL = "the state machine definition and its timeouts are computed at synth time"


def _require_literals(prefix: str, props: Any, names: Sequence[str]) -> None:
    for name in names:
        require_literal(f"{prefix}.{name}", getattr(props, name), _DEFINITION_LITERAL)


def _volume_key_allowed(instance_type: str, prop: str) -> bool:
    """SageMaker rejects ``VolumeKmsKeyId`` on instance types with local NVMe storage (hardware-encrypted):
    rule ``sagemaker.no-volume-kms-with-instance-storage``. A token type gets no volume key (it cannot be checked)."""
    return not is_token(instance_type) and accepts_volume_kms_key(instance_type, prop)


def _check_instance(prop: str, value: str) -> None:
    if not is_token(value) and not str(value).startswith("ml."):
        raise ValueError(f"{prop} must be a SageMaker instance type starting with 'ml.', got: {value!r}")


class RetrainPipeline(Construct):
    """The retrain pipeline of one model (see the module docstring).

    :param lake: the data lake (any ``IDataLake``, created or imported): raw zone input, curated zone preprocessing output, models zone output,
        artifacts zone checkpoints and evaluation reports.
    :param training: the training job (:class:`TrainingProps`).
    :param metric_name: the gate's metric in the evaluation report.
    :param datasets: datasets this pipeline trains on (the ready-event filter and the schedule's datasets).
    :param direction: which way the metric is better. :default: MetricDirection.HIGHER
    :param threshold: the metric must reach this value. :default: None (no absolute threshold)
    :param min_improvement: required improvement over the production model. :default: 0.0
    :param schedule: also retrain every dataset on this schedule (newest version). :default: None
    :param preprocessing: a Processing job from raw to curated before training. :default: None
    :param evaluation: a Processing job writing the evaluation report. :default: None (the training job writes
        it to the URI in the ``mlinfra_evaluation_report_uri`` hyperparameter)
    :param inference_image_uri: the serving image of the model package (an inference image: training images do
        not serve). Required with ``deploy_target``. :default: the training image (register only)
    :param manual_approval: wait for a reviewer (task token) before deploying. :default: False
    :param approval_timeout: an unanswered approval rejects after this. :default: 3 days
    :param deploy_target: the endpoint to roll the model out to (from the serving capability). :default: None
        (register and approve only)
    :param model_package_group_name: :default: generated from the construct path
    :param notification_topic: SNS topic for failures and outcomes (never a task token). :default: a new encrypted topic
    :param approval_topic: SNS topic of the approval requests (they carry the task token, so subscribe reviewers
        only). Only with ``manual_approval``. :default: a new encrypted topic when ``manual_approval``
    :param lineage_table: an existing lineage table (``pk``/``sk`` strings). :default: a new table (PITR, RETAIN)
    :param encryption_key: key of the table, topic, logs and jobs. :default: a new rotated key
    :param poll_interval: interval of the describe loops. :default: 1 minute
    :param endpoint_timeout: longest wait for the endpoint to be InService. :default: the target's guardrail
        maximum execution time + 30 minutes (2 hours without guardrails)
    :param job_wait: how SageMaker jobs are awaited. :default: JobWait.SYNC (the emulator uses POLL)
    :param lock_wait: how long a run waits for another run's lock on its dataset before it fails as
        ``DatasetLocked`` (and notifies). :default: one training wait (max wait, or max runtime) + 1 hour
    :param execution_timeout: the whole run (also the lock's expiry). :default: max wait + 2 days
    :param log_level: execution log level. :default: sfn.LogLevel.ALL
    :param log_retention_days: :default: 90
    :param job_prefix: prefix of SageMaker job and model names (1-20 characters). :default: "retrain"
    :param code_version: default code version recorded in the lineage. :default: "unknown"
    :param state_machine_name: :default: generated
    :param destroy_data_on_delete: delete the lineage table with the stack (two keys, see DataLake). :default: False
    """

    @path_in_errors
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        lake: IDataLake,
        training: TrainingProps,
        metric_name: str,
        datasets: Sequence[str],
        direction: MetricDirection = MetricDirection.HIGHER,
        threshold: float | None = None,
        min_improvement: float = 0.0,
        schedule: events.Schedule | None = None,
        preprocessing: ProcessingProps | None = None,
        evaluation: ProcessingProps | None = None,
        inference_image_uri: str | None = None,
        manual_approval: bool = False,
        approval_timeout: cdk.Duration | None = None,
        deploy_target: EndpointTarget | None = None,
        model_package_group_name: str | None = None,
        notification_topic: sns.ITopic | None = None,
        approval_topic: sns.ITopic | None = None,
        lineage_table: dynamodb.ITable | None = None,
        encryption_key: kms.IKey | None = None,
        poll_interval: cdk.Duration | None = None,
        endpoint_timeout: cdk.Duration | None = None,
        execution_timeout: cdk.Duration | None = None,
        log_level: sfn.LogLevel = sfn.LogLevel.ALL,
        log_retention_days: int = 90,
        job_prefix: str = "retrain",
        code_version: str = "unknown",
        state_machine_name: str | None = None,
        destroy_data_on_delete: bool = False,
        job_wait: JobWait = JobWait.SYNC,
        lock_wait: cdk.Duration | None = None,
        hyperpod: HyperPodTraining | None = None,
    ) -> None:
        super().__init__(scope, id)
        approval_timeout = approval_timeout or cdk.Duration.days(3)
        poll_interval = poll_interval or cdk.Duration.minutes(1)
        if approval_topic is not None and not manual_approval:
            raise ValueError(f"{self.node.path}: approval_topic is used only with manual_approval=True, got: manual_approval=False")
        for prop, value in (("approval_timeout", approval_timeout), ("poll_interval", poll_interval),
                            ("endpoint_timeout", endpoint_timeout), ("execution_timeout", execution_timeout),
                            ("lock_wait", lock_wait), ("threshold", threshold), ("min_improvement", min_improvement)):
            require_literal(prop, value, _DEFINITION_LITERAL)
        if endpoint_timeout is None:
            guard = deploy_target.deployment_timeout_seconds if deploy_target is not None else None
            require_literal("deploy_target.deployment_timeout_seconds (the endpoint's maximum_execution_timeout; or "
                            "pass endpoint_timeout)", guard, _DEFINITION_LITERAL)
            endpoint_timeout = cdk.Duration.seconds(guard + 1800) if guard else cdk.Duration.hours(2)
        _validate_inference_image(self, deploy_target, inference_image_uri, training.image_uri)
        _validate(training, preprocessing, evaluation, metric_name, datasets, threshold, min_improvement, job_prefix,
                  approval_timeout, poll_interval, endpoint_timeout)
        training_wait_s = training.max_wait_seconds or int(training.max_runtime.to_seconds())
        # A run may first wait for another run's lock (up to one training wait), then train up to max_attempts times.
        lock_wait_s = int(lock_wait.to_seconds()) if lock_wait is not None else training_wait_s + 3600
        if lock_wait is not None and not 1 <= lock_wait_s <= _MAX_SAGEMAKER_RUNTIME_S:
            raise ValueError(f"{self.node.path}: lock_wait must be between 1 second and 28 days, got: {lock_wait_s} s")
        execution_timeout = execution_timeout or cdk.Duration.seconds(lock_wait_s + training.max_attempts * training_wait_s + 2 * 86400)
        self.lake = lake
        self.datasets = list(datasets)
        self.metric_name = metric_name
        stack = cdk.Stack.of(self)

        self.key = encryption_key or kms.Key(self, "Key", enable_key_rotation=True, description=f"{self.node.path}: pipeline data")
        limit_grants_to_aws_services(self.key)
        for principal in (logs_principal(), alarm_principal(), iam.ServicePrincipal("states.amazonaws.com").with_conditions(
                # Step Functions developer guide, "Data at rest encryption": the key's encryption context.
                {"ArnLike": {"kms:EncryptionContext:aws:states:stateMachineArn":
                             f"arn:{cdk.Aws.PARTITION}:states:{cdk.Aws.REGION}:{cdk.Aws.ACCOUNT_ID}:stateMachine:*"}})):
            self.key.grant_encrypt_decrypt(principal)
        # EventBridge writes undeliverable events to the (encrypted) trigger DLQ; its KMS requests carry no source keys
        # (rule iam.eventbridge-kms-no-source-keys), the queue policy CDK adds pins the rule (aws:SourceArn).
        self.key.grant_encrypt_decrypt(iam.ServicePrincipal("events.amazonaws.com"))

        # --- lineage (and lock) table ------------------------------------------------------------------
        if lineage_table is None:
            removal = data_removal_policy(self, destroy_data_on_delete, "The retrain pipeline's lineage table")
            table = encrypted_table(
                self, "LineageTable", partition_key="pk", key=self.key, removal_policy=removal,
                # Lineage is the audit trail of every model: deletion protection unless both data keys allow deletion.
                deletion_protection=removal == cdk.RemovalPolicy.RETAIN,
            )
            self.lineage_table: dynamodb.ITable = table
        else:
            self.lineage_table = lineage_table

        # --- notifications -------------------------------------------------------------------------------
        self.topic = notification_topic or sns.Topic(self, "Notifications", master_key=self.key, enforce_ssl=True,
                                                     display_name="mlinfra retrain pipeline")
        # Approval requests carry the task token (whoever holds it and may call the approval URL decides): a topic
        # of their own, subscribed by reviewers only, never the failure/outcome topic.
        self.approval_topic: sns.ITopic | None = None
        if manual_approval:
            self.approval_topic = approval_topic or sns.Topic(
                self, "ApprovalRequests", master_key=self.key, enforce_ssl=True,
                display_name="mlinfra retrain pipeline approvals")

        # --- model registry --------------------------------------------------------------------------
        group_name = model_package_group_name or cdk.Names.unique_resource_name(self, max_length=63, separator="-")
        self.model_package_group = sagemaker.CfnModelPackageGroup(
            self, "ModelPackageGroup", model_package_group_name=group_name,
            model_package_group_description=f"Models of {self.node.path} (mlinfra retrain pipeline)",
        )
        self.model_package_group.apply_removal_policy(cdk.RemovalPolicy.RETAIN)
        self.model_package_group_name = group_name

        # --- the SageMaker jobs' role (training and processing) ---------------------------------------
        self.job_role = iam.Role(self, "JobRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                                 description=f"{self.node.path}: SageMaker training and processing jobs")
        for dataset in self.datasets:
            lake.grant_read("raw", self.job_role, f"dataset={dataset}/")
            lake.grant_read_write("curated", self.job_role, f"dataset={dataset}/")
            lake.grant_read_write("models", self.job_role, f"{dataset}/")
        lake.grant_read_write("artifacts", self.job_role, "checkpoints/")
        lake.grant_read_write("artifacts", self.job_role, "evaluation/")
        self.key.grant_encrypt_decrypt(self.job_role)
        self.job_role.add_to_policy(iam.PolicyStatement(
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[stack.format_arn(service="logs", resource="log-group", resource_name="/aws/sagemaker/*",
                                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)],
        ))
        self.job_role.add_to_policy(iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
        ))
        images = [training.image_uri, inference_image_uri or training.image_uri] + [
            p.image_uri for p in (preprocessing, evaluation) if p is not None]
        self._grant_image_pull(self.job_role, images)

        # --- the deployed model's role -------------------------------------------------------------------
        self.deploy_target = deploy_target
        if deploy_target is not None:
            lake.grant_read("models", deploy_target.model_execution_role)
            self._grant_model_role(deploy_target.model_execution_role, inference_image_uri or training.image_uri)
            acknowledge_wildcards(
                deploy_target.model_execution_role,
                "The endpoint's model role reads the model artifacts the pipeline registers in the lake's models "
                "zone (any dataset's prefix), with aws-cdk-lib's read action groups.",
                actions=S3_GRANT_WILDCARD_ACTIONS, resources=[lake.bucket("models").arn_for_objects("*")])

        # --- handlers --------------------------------------------------------------------------------
        common = {"encryption_key": self.key}
        self.validate_fn = HandlerFunction(self, "ValidateFunction", handler="pipeline_validate",
                                           description="Retrain pipeline: validate input and plan the run", **common)
        for dataset in self.datasets:
            lake.bucket("raw").grant_read(self.validate_fn.role, f"{dataset_prefix(dataset, '*')}")  # ListBucket + a probe
        self._grant_image_describe(self.validate_fn.role, training.image_uri)
        self.lineage_fn = HandlerFunction(self, "LineageFunction", handler="pipeline_lineage",
                                          description="Retrain pipeline: record lineage and outcomes",
                                          environment={"LINEAGE_TABLE": self.lineage_table.table_name}, **common)
        # Write without delete (nothing in the lineage is ever deleted), plus the table key when it has one.
        self.lineage_table.grant(self.lineage_fn.role, "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem")
        if self.lineage_table.encryption_key is not None:
            self.lineage_table.encryption_key.grant_encrypt_decrypt(self.lineage_fn.role)
        self.evaluation_fn = HandlerFunction(self, "EvaluationFunction", handler="pipeline_evaluation",
                                             description="Retrain pipeline: read the evaluation report", **common)
        lake.grant_read("artifacts", self.evaluation_fn.role, "evaluation/")
        # The evaluation job writes its report with the pipeline key (OutputKmsKeyId).
        self.key.grant_decrypt(self.evaluation_fn.role)
        self.gate_fn = HandlerFunction(self, "GateFunction", handler="pipeline_gate",
                                       description="Retrain pipeline: compare the candidate with threshold and production", **common)
        self.gate_fn.role.add_to_policy(iam.PolicyStatement(
            actions=["sagemaker:ListModelPackages"], resources=["*"]))  # List* accepts no resource
        self.gate_fn.role.add_to_policy(iam.PolicyStatement(
            actions=["sagemaker:DescribeModelPackage"],
            resources=[stack.format_arn(service="sagemaker", resource="model-package", resource_name=f"{group_name}/*")]))

        self.endpoint_config_fn: HandlerFunction | None = None
        if deploy_target is not None:
            self.endpoint_config_fn = HandlerFunction(
                self, "EndpointConfigFunction", handler="pipeline_endpoint_config",
                description="Retrain pipeline: the rollout's endpoint config, the current one with the new model", **common)
            self._grant_endpoint_config(stack, deploy_target, job_prefix)

        # --- the state machine -------------------------------------------------------------------------
        sm_name = state_machine_name or cdk.Names.unique_resource_name(self, max_length=80, separator="-")
        self.state_machine_name = sm_name
        self.state_machine_arn = stack.format_arn(service="states", resource="stateMachine", resource_name=sm_name,
                                                  arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)
        self.approval_fn = HandlerFunction(self, "ApprovalFunction", handler="pipeline_approval",
                                           description="Retrain pipeline: approve or reject a model (task token)", **common)
        # SendTaskSuccess/Failure take a task token, not a resource: IAM scopes them by the state machine ARN.
        self.approval_fn.role.add_to_policy(iam.PolicyStatement(
            actions=["states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"], resources=[self.state_machine_arn]))
        # Reviewers call the function URL, SigV4-signed: Lambda authenticates the caller (AuthType AWS_IAM) and passes
        # its ARN to the handler, which records it as the reviewer (rule lambda.function-url-iam-caller). Only with
        # manual approval (nothing to decide otherwise; the local emulator's CloudFormation has no AWS::Lambda::Url).
        self.approval_url: lambda_.FunctionUrl | None = None
        if manual_approval:
            self.approval_url = self.approval_fn.function.add_function_url(auth_type=lambda_.FunctionUrlAuthType.AWS_IAM)

        subs = _Substitutions()
        job_role_arn = subs.add("JobRoleArn", self.job_role.role_arn)
        key_arn = subs.add("KeyArn", self.key.key_arn)
        settings = DefinitionSettings(
            pipeline_name=sm_name,
            validate_function=subs.add("ValidateFunctionArn", self.validate_fn.function.function_arn),
            lineage_function=subs.add("LineageFunctionArn", self.lineage_fn.function.function_arn),
            evaluation_function=subs.add("EvaluationFunctionArn", self.evaluation_fn.function.function_arn),
            gate_function=subs.add("GateFunctionArn", self.gate_fn.function.function_arn),
            table_name=subs.add("LineageTableName", self.lineage_table.table_name),
            topic_arn=subs.add("TopicArn", self.topic.topic_arn),
            model_package_group=group_name,
            validate_settings={
                "raw_bucket": subs.add("RawBucket", lake.bucket("raw").bucket_name),
                "curated_bucket": subs.add("CuratedBucket", lake.bucket("curated").bucket_name),
                "artifacts_bucket": subs.add("ArtifactsBucket", lake.bucket("artifacts").bucket_name),
                "models_bucket": subs.add("ModelsBucket", lake.bucket("models").bucket_name),
                "datasets": self.datasets,
                "job_prefix": job_prefix,
                "training_image": subs.add("TrainingImage", training.image_uri),
                "default_hyperparameters": dict(training.hyperparameters),
                "preprocessing": preprocessing is not None,
                "code_version": code_version,
                "lock_ttl_seconds": int(execution_timeout.to_seconds()),
            },
            training_request=training.static_request(role_arn=job_role_arn, kms_key_id=key_arn),
            training_poll=_poll(poll_interval, training_wait_s + 3600),
            job_wait=job_wait.value,
            create_missing_endpoint=job_wait is JobWait.POLL,
            # At most ~200 lock retries, whatever the wait: each costs about 13 history events (and more when retried).
            lock_poll=_poll(cdk.Duration.seconds(max(min(5 * int(poll_interval.to_seconds()), 900), -(-lock_wait_s // 200))), lock_wait_s),
            training_timeout_seconds=training_wait_s + 3600,
            processing_timeout_seconds=int(max((p.max_runtime.to_seconds() for p in (preprocessing, evaluation) if p), default=3600)) + 3600,
            max_training_attempts=training.max_attempts,
            metric_name=metric_name,
            direction=direction.value,
            threshold=threshold,
            min_improvement=min_improvement,
            inference_image=subs.add("InferenceImage", inference_image_uri or training.image_uri),
            preprocessing_request=preprocessing.static_request(role_arn=job_role_arn, kms_key_id=key_arn) if preprocessing else None,
            evaluation_request=evaluation.static_request(role_arn=job_role_arn, kms_key_id=key_arn) if evaluation else None,
            processing_poll=_poll(poll_interval, int(max((p.max_runtime.to_seconds() for p in (preprocessing, evaluation) if p), default=3600)) + 3600),
            manual_approval=manual_approval,
            approval_timeout_seconds=int(approval_timeout.to_seconds()),
            approval_function_name=subs.add("ApprovalFunctionName", self.approval_fn.function.function_name),
            approval_topic_arn=subs.add("ApprovalTopicArn", self.approval_topic.topic_arn) if self.approval_topic else "",
            approval_url=subs.add("ApprovalUrl", self.approval_url.url) if self.approval_url else "",
            endpoint_config_function=subs.add("EndpointConfigFunctionArn", self.endpoint_config_fn.function.function_arn)
            if self.endpoint_config_fn else "",
            deploy=self._deploy_settings(deploy_target, subs),
            endpoint_poll=_poll(poll_interval, int(endpoint_timeout.to_seconds())),
            timeout_seconds=int(execution_timeout.to_seconds()),
            hyperpod_training=self._hyperpod_settings(hyperpod, subs),
        )
        self.definition = build_definition(settings)
        self.settings = settings
        self.worst_case_history_events = worst_case_history_events(self.definition, settings)
        if self.worst_case_history_events >= HISTORY_EVENT_LIMIT:
            message = (f"{self.node.path}: the longest execution may write {self.worst_case_history_events} history "
                       f"events, over the {HISTORY_EVENT_LIMIT} limit of a Standard execution (which ends it with no "
                       f"Catch) {cite('stepfunctions.history-event-limit')}")
            if job_wait is JobWait.SYNC:
                raise ValueError(message + ": shorten the training wait or raise poll_interval")
            cdk.Annotations.of(self).add_warning_v2("mlinfra:retrain-history-limit", message + " (emulator polling)")
        self.references = subs.values

        self.log_group = logs.LogGroup(
            self, "ExecutionLogs", log_group_name=f"/aws/vendedlogs/states/{sm_name}",
            retention=log_retention(log_retention_days, "log_retention_days"), encryption_key=self.key,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        acknowledge_retention(self.log_group, log_retention(log_retention_days, "log_retention_days"))
        self.role = iam.Role(self, "StateMachineRole", assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
                             description=f"{self.node.path}: retrain state machine")
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            state_machine_name=sm_name,
            definition_body=sfn.DefinitionBody.from_string(json.dumps(self.definition, indent=1)),
            role=self.role,
            state_machine_type=sfn.StateMachineType.STANDARD,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=log_level, include_execution_data=True),
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self._grant_state_machine(stack, group_name, job_prefix, deploy_target, manual_approval, job_wait)
        if hyperpod is not None:
            # The state machine hands the job to the cluster's bridge; the job writes checkpoints and the model.
            hyperpod.cluster.grant_submit_jobs(self.role)
            lake.grant_write("artifacts", hyperpod.cluster.role, "checkpoints/")
            for dataset in self.datasets:
                lake.grant_write("models", hyperpod.cluster.role, f"{dataset}/")

        # --- triggers ------------------------------------------------------------------------------------
        self.trigger_fn = HandlerFunction(self, "TriggerFunction", handler="pipeline_trigger",
                                          description="Retrain pipeline: start one execution per dataset version",
                                          environment={"STATE_MACHINE_ARN": self.state_machine_arn,
                                                       "RAW_BUCKET": lake.bucket("raw").bucket_name}, **common)
        self.trigger_fn.role.add_to_policy(iam.PolicyStatement(actions=["states:StartExecution"], resources=[self.state_machine_arn]))
        self.trigger_fn.role.add_to_policy(iam.PolicyStatement(
            actions=["states:DescribeExecution"],
            resources=[stack.format_arn(service="states", resource="execution", resource_name=f"{sm_name}:*",
                                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)]))
        for dataset in self.datasets:
            lake.bucket("raw").grant_read(self.trigger_fn.role, f"dataset={dataset}/*")
        _acknowledge_wildcards(self, job_prefix, group_name, sm_name, self.datasets)
        self.ready_rule = events.Rule(
            self, "DatasetReadyRule",
            description="Retrain when ingestion reports a new version of one of the pipeline's datasets",
            event_pattern=events.EventPattern(source=[READY_EVENT["source"]], detail_type=[READY_EVENT["detail-type"]],
                                              detail={"dataset": self.datasets}),
            # Undeliverable events land in the trigger's dead-letter queue (alarmed), never silently dropped.
            targets=[targets.LambdaFunction(self.trigger_fn.function, retry_attempts=4, max_event_age=cdk.Duration.hours(2),
                                            dead_letter_queue=self.trigger_fn.dead_letter_queue)],
        )
        self.schedule_rules: list[events.Rule] = []
        if schedule is not None:
            for i, dataset in enumerate(self.datasets):
                self.schedule_rules.append(events.Rule(
                    self, f"Schedule{i}", schedule=schedule, description=f"Scheduled retrain of dataset {dataset}",
                    targets=[targets.LambdaFunction(self.trigger_fn.function, retry_attempts=4, event=events.RuleTargetInput.from_object(
                        {"trigger": "schedule", "dataset": dataset, "time": events.EventField.time}))],
                ))

        # An execution that ends at execution level (timeout, abort, history limit) runs none of its exit states:
        # the lineage function releases its dataset lock from the Step Functions status-change event.
        self.execution_end_rule = events.Rule(
            self, "ExecutionEndRule",
            description="Release the dataset lock of a retrain execution that failed, timed out or was aborted",
            event_pattern=events.EventPattern(source=["aws.states"], detail_type=["Step Functions Execution Status Change"],
                                              detail={"status": ["FAILED", "TIMED_OUT", "ABORTED"],
                                                      "stateMachineArn": [self.state_machine_arn]}),
            targets=[targets.LambdaFunction(self.lineage_fn.function, retry_attempts=8, max_event_age=cdk.Duration.hours(6))],
        )
        # Delete lock items only (the partition key "lock#<dataset>"): lineage records are never deleted.
        self.lineage_fn.role.add_to_principal_policy(iam.PolicyStatement(
            actions=["dynamodb:DeleteItem"], resources=[self.lineage_table.table_arn],
            conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["lock#*"]}}))
        # --- alarms --------------------------------------------------------------------------------------
        action = cw_actions.SnsAction(self.topic)
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for name, metric in (("Failed", self.state_machine.metric_failed), ("TimedOut", self.state_machine.metric_timed_out),
                             ("Throttled", self.state_machine.metric_throttled), ("Aborted", self.state_machine.metric_aborted)):
            alarm = metric(period=cdk.Duration.minutes(5), statistic="Sum").create_alarm(
                self, f"Executions{name}Alarm", threshold=1, evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=f"{self.node.path}: retrain executions {name.lower()}",
            )
            alarm.add_alarm_action(action)
            self.alarms[name] = alarm
        for fn in (self.validate_fn, self.lineage_fn, self.evaluation_fn, self.gate_fn, self.approval_fn, self.trigger_fn):
            fn.add_error_alarm(action)

    # ------------------------------------------------------------------------------------------------
    def grant_start_execution(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` start runs by hand (input: :data:`INPUT_SCHEMA`)."""
        return self.state_machine.grant_start_execution(grantee)

    def grant_approve(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` decide approvals through the approval function URL (its IAM identity is the reviewer):
        ``lambda:InvokeFunctionUrl`` with ``lambda:FunctionUrlAuthType = AWS_IAM`` and ``lambda:InvokeFunction``
        with ``lambda:InvokedViaFunctionUrl = true`` (rule lambda.function-url-dual-permission). No plain invoke: a
        direct invocation carries no caller identity (the handler refuses it)."""
        if self.approval_url is None:
            raise ValueError(f"{self.node.path}: grant_approve needs manual_approval=True (there is no approval URL), got: False")
        return self.approval_url.grant_invoke_url(grantee)

    def grant_read_approval_url(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` look the URL up (``mlinfra approve --function``: GetFunctionUrlConfig)."""
        return iam.Grant.add_to_principal(grantee=grantee, actions=["lambda:GetFunctionUrlConfig"],
                                          resource_arns=[self.approval_fn.function.function_arn])

    @staticmethod
    def _ecr_repositories(images: Sequence[str]) -> list[str]:
        """Repository ARNs of the literal ECR image URIs (tokens and other registries are skipped)."""
        arns = []
        for image in images:
            match = None if is_token(image) else _ECR_RE.match(image)
            if match:
                account, region, repo = match.groups()
                arn = f"arn:{cdk.Aws.PARTITION}:ecr:{region}:{account}:repository/{repo}"
                if arn not in arns:
                    arns.append(arn)
        return arns

    def _grant_image_pull(self, role: iam.IRole, images: Sequence[str]) -> None:
        repos = self._ecr_repositories(images)
        if repos:
            role.add_to_principal_policy(iam.PolicyStatement(actions=list(ECR_PULL_ACTIONS), resources=repos))
            role.add_to_principal_policy(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))

    def _grant_image_describe(self, role: iam.IRole, image: str) -> None:
        repos = self._ecr_repositories([image])
        if repos:
            role.add_to_principal_policy(iam.PolicyStatement(actions=["ecr:DescribeImages"], resources=repos))

    def _deploy_settings(self, target: EndpointTarget | None, subs: "_Substitutions") -> dict[str, Any] | None:
        if target is None:
            return None
        deploy: dict[str, Any] = {
            "endpoint_name": subs.add("EndpointName", target.endpoint_name),
            "variant_name": subs.add("VariantName", target.variant_name),
            "instance_type": subs.add("VariantInstanceType", target.instance_type),
            "initial_instance_count": target.initial_instance_count,
            "model_role_arn": subs.add("ModelRoleArn", target.model_execution_role.role_arn),
            "enable_network_isolation": target.enable_network_isolation,
        }
        if target.model_parameters:
            deploy["model_parameters"] = list(target.model_parameters)
        if target.deployment_config:
            deploy["deployment_config"] = _resolve_tokens(dict(target.deployment_config), subs, "DeploymentConfig")
        if target.kms_key is not None:
            deploy["kms_key_id"] = subs.add("EndpointKeyArn", target.kms_key.key_arn)
        if target.vpc_config:
            deploy["vpc_config"] = _resolve_tokens(dict(target.vpc_config), subs, "ModelVpc")
        return deploy

    def _grant_endpoint_config(self, stack: cdk.Stack, target: EndpointTarget, prefix: str) -> None:
        """The endpoint-config function reads the endpoint and its current config (any config: the stack names its
        own) and creates the pipeline's configs; a volume key is used through a grant, as SageMaker does."""
        role = self.endpoint_config_fn.role
        role.add_to_principal_policy(iam.PolicyStatement(actions=["sagemaker:DescribeEndpoint"], resources=[target.endpoint_arn]))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["sagemaker:DescribeEndpointConfig"],
            resources=[stack.format_arn(service="sagemaker", resource="endpoint-config", resource_name="*")]))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["sagemaker:CreateEndpointConfig", "sagemaker:AddTags"],
            resources=[stack.format_arn(service="sagemaker", resource="endpoint-config", resource_name=f"{prefix}-*")]))
        if target.kms_key is not None:
            target.kms_key.grant(role, "kms:CreateGrant", "kms:DescribeKey")

    def _grant_model_role(self, role: iam.IRole, image: str) -> None:
        """What the endpoint's model role needs to start the pipeline's model: decrypt the artifact (written with
        the pipeline key) and pull the inference image. A Policy in THIS stack (the role's stack deploys first)."""
        statements = [iam.PolicyStatement(sid="DecryptPipelineArtifacts", actions=["kms:Decrypt"], resources=[self.key.key_arn])]
        repos = self._ecr_repositories([image]) or [cdk.Stack.of(self).format_arn(service="ecr", resource="repository", resource_name="*")]
        statements += [
            iam.PolicyStatement(sid="PullInferenceImage", actions=list(ECR_PULL_ACTIONS), resources=repos),
            iam.PolicyStatement(sid="EcrAuth", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
        ]
        self.model_role_policy = iam.Policy(self, "DeployedModelAccess", roles=[role], statements=statements)
        acknowledge_wildcards(self.model_role_policy, "ecr:GetAuthorizationToken takes no resource; a token image "
                              "URI is pulled from the account's repositories", resources=["*", ending(":repository/*")])

    def _hyperpod_settings(self, hyperpod: HyperPodTraining | None, subs: Any) -> dict[str, Any] | None:
        if hyperpod is None:
            return None
        if getattr(hyperpod.cluster, "job_queue", None) is None:
            raise ValueError(f"{self.node.path}: hyperpod.cluster needs its job queue (job_queue=True), got: none")
        return {
            "queue_url": subs.add("HyperPodJobQueueUrl", hyperpod.cluster.job_queue.queue_url),
            "cluster_arn": subs.add("HyperPodClusterArn", hyperpod.cluster.cluster_arn),
            "partition": hyperpod.partition,
            "nodes": hyperpod.nodes,
            "image": subs.add("HyperPodImage", hyperpod.image),
            "command": list(hyperpod.command),
            "time_limit_minutes": int(hyperpod.time_limit.to_minutes()),
            "queue_wait_minutes": int(hyperpod.queue_wait.to_minutes()),
        }

    def _grant_state_machine(self, stack: cdk.Stack, group: str, prefix: str, target: EndpointTarget | None, manual: bool,
                             job_wait: "JobWait") -> None:
        role = self.role
        for fn in (self.validate_fn, self.lineage_fn, self.evaluation_fn, self.gate_fn, self.endpoint_config_fn):
            if fn is not None:
                role.add_to_policy(iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[fn.function.function_arn]))
        self.lineage_table.grant(role, "dynamodb:PutItem", "dynamodb:DeleteItem")  # the lock item only
        if self.lineage_table.encryption_key is not None:
            self.lineage_table.encryption_key.grant_encrypt_decrypt(role)
        self.topic.grant_publish(role)
        if self.approval_topic is not None:
            self.approval_topic.grant_publish(role)

        def arn(resource: str, name: str) -> str:
            return stack.format_arn(service="sagemaker", resource=resource, resource_name=name)

        jobs = [arn("training-job", f"{prefix}-*"), arn("processing-job", f"{prefix}-*")]
        job_actions = ["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:CreateProcessingJob",
                       "sagemaker:DescribeProcessingJob", "sagemaker:AddTags"]
        if job_wait is JobWait.SYNC:
            # The .sync integrations stop the job when the execution stops, and wait through a managed rule.
            job_actions += ["sagemaker:StopTrainingJob", "sagemaker:StopProcessingJob"]
            role.add_to_policy(iam.PolicyStatement(
                sid="SyncIntegrationRules", actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[stack.format_arn(service="events", resource="rule", resource_name=f"StepFunctionsGetEventsForSageMaker{kind}JobsRule")
                           for kind in ("Training", "Processing")]))
        role.add_to_policy(iam.PolicyStatement(actions=job_actions, resources=jobs))
        role.add_to_policy(iam.PolicyStatement(
            actions=["sagemaker:CreateModelPackage", "sagemaker:UpdateModelPackage", "sagemaker:AddTags"],
            resources=[arn("model-package-group", group), arn("model-package", f"{group}/*")]))
        passed = [self.job_role.role_arn]
        if target is not None:
            endpoint = target.endpoint_arn
            # The rollout's endpoint config is created by the endpoint-config function (the emulator's create path
            # makes a first one itself).
            role.add_to_policy(iam.PolicyStatement(
                actions=["sagemaker:CreateModel", "sagemaker:AddTags"] + (
                    ["sagemaker:CreateEndpointConfig"] if job_wait is JobWait.POLL else []),
                resources=[arn("model", f"{prefix}-*"), arn("endpoint-config", f"{prefix}-*")]))
            # CreateEndpoint only in the emulator variant (moto has no UpdateEndpoint); in AWS the stack owns the endpoint.
            endpoint_actions = ["sagemaker:DescribeEndpoint", "sagemaker:UpdateEndpoint"] + (
                ["sagemaker:CreateEndpoint"] if job_wait is JobWait.POLL else [])
            role.add_to_policy(iam.PolicyStatement(actions=endpoint_actions, resources=[endpoint, arn("endpoint-config", f"{prefix}-*")]))
            if target.rollback_alarm_arns:
                # UpdateEndpoint with AutoRollbackConfiguration reads the alarms as the caller.
                role.add_to_policy(iam.PolicyStatement(actions=["cloudwatch:DescribeAlarms"], resources=list(target.rollback_alarm_arns)))
            if target.model_parameter_arns:
                role.add_to_policy(iam.PolicyStatement(actions=["ssm:PutParameter"], resources=list(target.model_parameter_arns)))
            passed.append(target.model_execution_role.role_arn)
            if target.kms_key is not None:
                target.kms_key.grant(role, "kms:CreateGrant", "kms:DescribeKey")
        # PassRole: exactly the SageMaker job role (training, processing) and the model's role, only to SageMaker.
        role.add_to_policy(iam.PolicyStatement(
            actions=["iam:PassRole"], resources=passed,
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}))
        # The jobs' volumes and outputs are encrypted with the pipeline key: SageMaker uses it as the caller.
        self.key.grant(role, "kms:CreateGrant", "kms:DescribeKey", "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*")


class _Substitutions:
    """Collects the tokens the definition references, by name (for the docs and tests).

    Tokens stay in the definition text: CDK renders a string with tokens as ``Fn::Join`` parts, which
    CloudFormation AND the local emulator resolve (moto ignores ``DefinitionSubstitutions``).
    """

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def add(self, name: str, value: str) -> str:
        if is_token(value):
            self.values[name] = value
        return value


def _resolve_tokens(value: Any, subs: _Substitutions, name: str) -> Any:
    if isinstance(value, Mapping):
        return {k: _resolve_tokens(v, subs, f"{name}{re.sub(r'[^A-Za-z0-9]', '', str(k))}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_resolve_tokens(v, subs, f"{name}{i}") for i, v in enumerate(value)]
    if isinstance(value, str):
        return subs.add(name, value)
    if value is not None and is_token(value):
        raise ValueError(f"{name}: numeric tokens are not supported in the deployment config, got: {value}")
    return value


def _acknowledge_wildcards(scope: Construct, prefix: str, group: str, sm_name: str, datasets: Sequence[str]) -> None:
    """Acknowledge the wildcards this construct's policies are expected to hold, each with why it is needed."""
    sagemaker_arn, own = "arn:<AWS::Partition>:sagemaker:", [*datasets, "checkpoints", "evaluation"]
    for reason, actions, resources in [
        ("aws-cdk-lib's bucket grants (grant_read/grant_put) use these action groups; the resources are prefix-scoped.",
         [f"s3:{a}*" for a in ("GetBucket", "GetObject", "List", "Abort", "DeleteObject", "PutObject")], []),
        ("Standard data-key actions of the grants on the pipeline and lake keys (no other key is reachable).",
         KMS_WILDCARD_ACTIONS, []),
        ("Objects under the pipeline's own dataset, checkpoints/ and evaluation/ prefixes of the lake zones.",
         [], [ending(f"/{p}/*") for p in [*(f"dataset={d}" for d in datasets), *own]]),
        ("Listing the versions of the pipeline's own datasets in the raw zone.",
         [], [ending(f"/dataset={d}/version=*/") for d in datasets]),
        ("The endpoint-config function reads the endpoint's current config, whose name the serving stack generates.",
         [], ["arn:<AWS::Partition>:sagemaker:" + ending(":endpoint-config/*")]),
        ("SageMaker jobs, models and endpoint configs are created per run under the pipeline's name prefix.",
         [], [sagemaker_arn + ending(f":{kind}/{prefix}-*")
              for kind in ("training-job", "processing-job", "model", "endpoint-config")]),
        ("Model package versions of the pipeline's own Model Package Group (the version is the last segment).",
         [], [sagemaker_arn + ending(f":model-package/{group}/*")]),
        ("SageMaker jobs write their logs under /aws/sagemaker/<job type>/ with per-job streams.",
         [], ["arn:<AWS::Partition>:logs:" + ending(":log-group:/aws/sagemaker/*")]),
        ("The trigger checks whether this state machine's execution of a dataset version already exists.",
         [], ["arn:<AWS::Partition>:states:" + ending(f":execution:{sm_name}:*")]),
        ("Actions without resource-level permissions: X-Ray PutTraceSegments/PutTelemetryRecords, CloudWatch Logs "
         "log delivery (Step Functions logging), ecr:GetAuthorizationToken, cloudwatch:PutMetricData (limited by a "
         "namespace condition) and sagemaker:ListModelPackages.", [], ["*"]),
    ]:
        acknowledge_wildcards(scope, reason, actions=actions, resources=resources)


def _validate_inference_image(scope: Construct, target: EndpointTarget | None, inference_image: str | None, training_image: str) -> None:
    """Hosting needs an inference image (rule sagemaker.inference-image-serves): the training image does not
    implement the serving contract (``/ping``, ``/invocations`` on port 8080)."""
    if target is None:
        return
    if inference_image is None:
        raise ValueError(f"{scope.node.path}: inference_image_uri is required with deploy_target (the training image "
                         f"{training_image!r} does not serve), got: None {cite('sagemaker.inference-image-serves')}")
    if not is_token(inference_image) and (inference_image == training_image or _TRAINING_IMAGE_RE.search(inference_image)):
        raise ValueError(f"{scope.node.path}: inference_image_uri must be a serving image, not a training image, got: "
                         f"{inference_image!r} {cite('sagemaker.inference-image-serves')}")


def _poll(interval: cdk.Duration, total_seconds: int) -> PollSettings:
    seconds = int(interval.to_seconds())
    return PollSettings(interval_seconds=seconds, max_polls=max(1, -(-int(total_seconds) // seconds)))


def _validate(training, preprocessing, evaluation, metric_name, datasets, threshold, min_improvement, job_prefix,
              approval_timeout, poll_interval, endpoint_timeout) -> None:
    training.validate()
    if preprocessing is not None:
        preprocessing.validate("preprocessing")
    if evaluation is not None:
        evaluation.validate("evaluation")
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", metric_name or ""):
        raise ValueError(f"metric_name must be 1-64 letters, digits or _.:-, got: {metric_name!r}")
    if not datasets:
        raise ValueError("datasets must name at least one dataset the pipeline trains on, got: []")
    bad = [d for d in datasets if retrainable_dataset_error(d) is not None]
    if bad:
        raise ValueError(f"datasets must be 1-63 lowercase letters, digits, '_' or '-', got: {bad}")
    if min_improvement < 0:
        raise ValueError(f"min_improvement must be >= 0, got: {min_improvement}")
    if not _JOB_PREFIX_RE.fullmatch(job_prefix):
        raise ValueError(f"job_prefix must be 1-20 letters, digits or hyphens starting with a letter or digit, got: {job_prefix!r}")
    if not 1 <= approval_timeout.to_seconds() <= 365 * 86400:
        raise ValueError(f"approval_timeout must be between 1 second and 365 days, got: {approval_timeout.to_seconds()} s")
    if not 1 <= poll_interval.to_seconds() <= 3600:
        raise ValueError(f"poll_interval must be between 1 second and 1 hour, got: {poll_interval.to_seconds()} s")
    if endpoint_timeout.to_seconds() < poll_interval.to_seconds():
        raise ValueError(f"endpoint_timeout must be at least poll_interval, got: {endpoint_timeout.to_seconds()} s")
    if threshold is not None and not isinstance(threshold, (int, float)):
        raise ValueError(f"threshold must be a number or None, got: {threshold!r}")
