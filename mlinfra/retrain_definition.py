"""The retrain pipeline's Amazon States Language definition, built as plain data (no CDK import).

:func:`build_definition` returns the ASL document of :class:`mlinfra.constructs.retrain_pipeline.RetrainPipeline`
from a :class:`DefinitionSettings` whose values are literals or ``${Placeholder}`` strings (the construct
resolves placeholders through ``DefinitionSubstitutions``). The same document runs in AWS and in moto's
Step Functions interpreter: every long wait is a create -> describe -> Choice -> Wait loop with a poll
counter (no ``.sync`` integrations), every Task has a Retry on transient errors and a Catch that sends the
run to the failure path (record the outcome, notify SNS, release the lock, fail).

State data, as it flows::

    $.plan          from ValidateInput: dataset, version, run id, names, URIs, hyperparameters, lock
    $.preprocessing / $.training / $.evaluation_job   the jobs' create and describe responses
    $.evaluation    from ReadEvaluationReport: metric_name, metric_value, metrics, report_uri
    $.gate          from CompareMetrics: passed, approval_status, reasons, baseline, customer_metadata
    $.registration  CreateModelPackage's response (ModelPackageArn)
    $.approval      the reviewer's decision (manual approval only)
    $.deploy        endpoint name, model, endpoint config, describe response
    $.error         {Error, Cause} of whatever failed
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Mapping

LAMBDA_TRANSIENT = ["Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException", "Lambda.TooManyRequestsException"]
#: Error names are ``<Service>.<ErrorName>`` with the ``Exception`` suffix always added (Step Functions docs,
#: "Learning to use AWS service SDK integrations"), and must be an error the service model lists, or the SDK's
#: generic exception of the service, under which Step Functions reports the errors the model does not list
#: (SageMaker throttling arrives as ``SageMaker.AmazonSageMakerException``; a validation error then fails after
#: the few retries). tests/unit/test_aws_models.py checks every name against botocore's service models.
SAGEMAKER_TRANSIENT = ["SageMaker.AmazonSageMakerException"]
DYNAMODB_TRANSIENT = [
    "DynamoDB.ProvisionedThroughputExceededException", "DynamoDB.ThrottlingException",
    "DynamoDB.InternalServerErrorException", "DynamoDB.RequestLimitExceededException", "DynamoDB.AmazonDynamoDBException",
]
SNS_TRANSIENT = ["SNS.ThrottledException", "SNS.InternalErrorException", "SNS.KMSThrottlingException", "SNS.AmazonSNSException"]

#: What a registered model package accepts and answers (its InferenceSpecification): one JSON document per request,
#: or per line of a JSON Lines file in batch transform (SplitType Line). Consumers (ServingStack's batch transform)
#: use these, so a transform never sends a content type the registered model does not declare.
INFERENCE_CONTENT_TYPES = ("application/json",)
INFERENCE_RESPONSE_TYPES = ("application/json",)
FAILURE_PATH_START = "RecordFailure"
END_FAILED = "ExecutionFailed"


@dataclasses.dataclass(frozen=True)
class PollSettings:
    """How a create -> describe -> Wait loop polls: every ``interval_seconds``, at most ``max_polls`` times."""

    interval_seconds: int
    max_polls: int


@dataclasses.dataclass(frozen=True)
class DefinitionSettings:
    """Everything the definition needs, as literals or ``${...}`` placeholders.

    ``training_request`` / ``preprocessing_request`` / ``evaluation_request`` are the static parts of the
    CreateTrainingJob / CreateProcessingJob requests; the run-specific fields (names, URIs, hyperparameters,
    checkpoint URI) are added here from ``$.plan``.
    """

    pipeline_name: str
    validate_function: str
    lineage_function: str
    evaluation_function: str
    gate_function: str
    table_name: str
    topic_arn: str
    model_package_group: str
    validate_settings: Mapping[str, Any]
    training_request: Mapping[str, Any]
    training_poll: PollSettings
    max_training_attempts: int
    metric_name: str
    direction: str
    threshold: float | None
    min_improvement: float
    inference_image: str
    preprocessing_request: Mapping[str, Any] | None = None
    evaluation_request: Mapping[str, Any] | None = None
    processing_poll: PollSettings = PollSettings(60, 24 * 60)
    manual_approval: bool = False
    approval_timeout_seconds: int = 7 * 24 * 3600
    approval_function_name: str = ""
    #: the dedicated topic of approval requests (they carry the task token; never the failure topic)
    approval_topic_arn: str = ""
    #: the approval function URL (AWS_IAM) the decide_with command signs its request to
    approval_url: str = ""
    endpoint_config_function: str = ""
    deploy: Mapping[str, Any] | None = None
    endpoint_poll: PollSettings = PollSettings(60, 180)
    timeout_seconds: int = 10 * 24 * 3600
    #: How job waits are made: "sync" (AWS: the optimized ``.sync`` integrations, no polling) or "poll" (the
    #: emulator: create -> describe -> Wait loops; moto's interpreter cannot run ``.sync``).
    job_wait: str = "sync"
    #: ``.sync`` task timeouts (seconds): the longest a training attempt / a processing job may take.
    training_timeout_seconds: int = 3 * 24 * 3600
    processing_timeout_seconds: int = 24 * 3600
    #: The emulator variant only: a missing endpoint is created (moto has no UpdateEndpoint, so creating is the
    #: only rollout it can run). In AWS the stack owns the endpoint and a missing one fails the run.
    create_missing_endpoint: bool = False
    #: How a run waits for a dataset lock another run holds (then it runs; at the limit it fails and notifies).
    lock_poll: PollSettings = PollSettings(300, 600)
    #: Train on a SageMaker HyperPod cluster instead of a SageMaker training job: the static arguments of
    #: :func:`mlinfra.domain.hyperpod_jobs.training_task_state` (``queue_url``, ``partition``, ``nodes``, ``image``,
    #: ``command``, ``time_limit_minutes``, ``queue_wait_minutes``, ``heartbeat_seconds``) plus ``cluster_arn``.
    #: The job resumes from ``$.plan.uris.checkpoints`` and writes ``model.tar.gz`` under ``$.plan.uris.output``.
    hyperpod_training: Mapping[str, Any] | None = None


def _retry(errors: list[str], interval: int = 2, attempts: int = 5) -> list[dict[str, Any]]:
    return [{"ErrorEquals": list(errors), "IntervalSeconds": interval, "MaxAttempts": attempts, "BackoffRate": 2.0}]


def _catch(next_state: str = FAILURE_PATH_START, result_path: str = "$.error") -> list[dict[str, Any]]:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": result_path, "Next": next_state}]


def _lambda(function: str, payload: Mapping[str, Any], *, result_path: str | None, next_state: str,
            result_selector: Mapping[str, Any] | None = None, output_payload: bool = False, comment: str = "") -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Task",
        "Comment": comment,
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": function, "Payload": dict(payload)},
        "Retry": _retry(LAMBDA_TRANSIENT),
        "Catch": _catch(),
        "Next": next_state,
    }
    if output_payload:
        state["OutputPath"] = "$.Payload"
    else:
        state["ResultSelector"] = dict(result_selector or {"value.$": "$.Payload"})
        state["ResultPath"] = result_path
    if not comment:
        del state["Comment"]
    return state


def _sagemaker(action: str, parameters: Mapping[str, Any], *, result_path: str | None, next_state: str,
               result_selector: Mapping[str, Any] | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": f"arn:aws:states:::aws-sdk:sagemaker:{action}",
        "Parameters": dict(parameters),
        "ResultPath": result_path,
        "Retry": _retry(SAGEMAKER_TRANSIENT, interval=5, attempts=4),
        "Catch": _catch(),
        "Next": next_state,
    }
    if result_selector:
        state["ResultSelector"] = dict(result_selector)
    return state


def _poll_loop(states: dict[str, Any], *, name: str, data_path: str, describe_action: str, describe_params: Mapping[str, Any],
               selector: Mapping[str, Any], status_field: str, done: list[dict[str, Any]], failed_next: str, stopped_next: str,
               poll: PollSettings, failed_statuses: tuple[str, ...] = ("Failed",), stopped_statuses: tuple[str, ...] = ("Stopped",)) -> None:
    """``Describe<name>`` -> ``<name>Status`` (Choice) -> ``Count<name>Poll`` -> ``<name>PollLimit`` -> ``Wait<name>``.

    The describe keeps only ``selector``'s fields (always present in the response). ``done``: Choice rules
    tried first; ``Failed`` -> ``Get<name>Failure`` (describe again for ``FailureReason``, present only then)
    -> ``failed_next``; ``Stopped`` -> ``stopped_next``; any other status waits ``poll.interval_seconds`` and
    describes again, at most ``poll.max_polls`` times (then ``<name>PollTimedOut`` fails the run).
    """
    describe, status, count, limit, wait = f"Describe{name}", f"{name}Status", f"Count{name}Poll", f"{name}PollLimit", f"Wait{name}"
    states[describe] = _sagemaker(describe_action, describe_params, result_path=f"{data_path}.describe", next_state=status,
                                  result_selector=selector)
    states[status] = {
        "Type": "Choice",
        "Choices": [*done,
                    *({"Variable": f"{data_path}.describe.{status_field}", "StringEquals": st, "Next": f"Get{name}Failure"} for st in failed_statuses),
                    *({"Variable": f"{data_path}.describe.{status_field}", "StringEquals": st, "Next": stopped_next} for st in stopped_statuses)],
        "Default": count,
    }
    states[f"Get{name}Failure"] = _sagemaker(describe_action, describe_params, result_path=f"{data_path}.failure", next_state=failed_next,
                                             result_selector={"FailureReason.$": "$.FailureReason"})
    states[count] = {
        "Type": "Pass",
        "Parameters": {"n.$": f"States.MathAdd({data_path}.polls.n, 1)"},
        "ResultPath": f"{data_path}.polls",
        "Next": limit,
    }
    states[limit] = {
        "Type": "Choice",
        "Choices": [{"Variable": f"{data_path}.polls.n", "NumericGreaterThan": poll.max_polls, "Next": f"{name}PollTimedOut"}],
        "Default": wait,
    }
    states[f"{name}PollTimedOut"] = {
        "Type": "Pass",
        "Parameters": {"Error": f"{name}TimedOut", "Cause": f"{name} still not finished after {poll.max_polls} polls every {poll.interval_seconds} s"},
        "ResultPath": "$.error",
        "Next": FAILURE_PATH_START,
    }
    states[wait] = {"Type": "Wait", "Seconds": poll.interval_seconds, "Next": describe}


SYNC_RESOURCES = {"createTrainingJob": "arn:aws:states:::sagemaker:createTrainingJob.sync",
                  "createProcessingJob": "arn:aws:states:::sagemaker:createProcessingJob.sync"}


def _make_sync(states: dict[str, Any], *, start: str, name: str, data_path: str, selector: Mapping[str, Any], timeout_seconds: int) -> None:
    """Turn ``start`` (an ``aws-sdk`` create task followed by the poll loop of :func:`_poll_loop`) into the
    optimized ``.sync`` integration, which waits for the job without polling (two history events per wait
    instead of about 13 per poll). Success -> ``<name>Status`` with the job's describe result; a failed or stopped
    job fails the task (``States.TaskFailed``) -> ``Describe<name>`` (one describe) -> ``<name>Status``, so the
    failure routing is the poll loop's. The loop's counter and Wait states are removed."""
    task = states[start]
    action = task["Resource"].rsplit(":", 1)[1]
    task["Resource"] = SYNC_RESOURCES[action]
    task["ResultSelector"] = dict(selector)
    task["ResultPath"] = f"{data_path}.describe"
    task["TimeoutSeconds"] = int(timeout_seconds)
    task["Next"] = f"{name}Status"
    task["Catch"] = [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": f"{data_path}.sync_error", "Next": f"Describe{name}"},
                     *_catch()]
    states[f"Describe{name}"]["Next"] = f"{name}Status"
    status = states[f"{name}Status"]
    status["Default"] = f"{name}PollTimedOut"
    states[f"{name}PollTimedOut"]["Parameters"] = {"Error": f"{name}NotFinished",
                                                   "Cause": f"{name} ended its .sync wait in a status that is not final"}
    for gone in (f"Count{name}Poll", f"{name}PollLimit", f"Wait{name}"):
        del states[gone]


def _processing_request(static: Mapping[str, Any], name_path: str, inputs: list[tuple[str, str]], output_path: str) -> dict[str, Any]:
    request = copy.deepcopy(dict(static))
    request["ProcessingJobName.$"] = name_path
    request["ProcessingInputs"] = [
        {"InputName": input_name, "S3Input": {"S3Uri.$": uri_path, "LocalPath": f"/opt/ml/processing/input/{input_name}",
                                              "S3DataType": "S3Prefix", "S3InputMode": "File"}}
        for input_name, uri_path in inputs
    ]
    outputs: dict[str, Any] = {"Outputs": [{"OutputName": "output", "S3Output": {
        "S3Uri.$": output_path, "LocalPath": "/opt/ml/processing/output", "S3UploadMode": "EndOfJob"}}]}
    if "OutputKmsKeyId" in request:
        outputs["KmsKeyId"] = request.pop("OutputKmsKeyId")
    request["ProcessingOutputConfig"] = outputs
    return request


PROCESSING_SELECTOR = {"ProcessingJobName.$": "$.ProcessingJobName", "ProcessingJobStatus.$": "$.ProcessingJobStatus"}


def _sync_timeout(s: "DefinitionSettings", seconds: int) -> int:
    return int(seconds) if s.job_wait == "sync" else 0


def _failure(error: str, cause: str) -> dict[str, Any]:
    """A ``Pass`` state that records ``{"Error": error, "Cause": <cause, a States.Format path>}`` in ``$.error``
    and goes down the failure path."""
    return {"Type": "Pass", "Parameters": {"Error": error, "Cause.$": cause}, "ResultPath": "$.error", "Next": FAILURE_PATH_START}


def _job_failed(states: dict[str, Any], name: str, data_path: str) -> None:
    states[f"{name}Failed"] = _failure(f"{name}JobFailed", f"States.Format('{name} job {{}} failed: {{}}', {data_path}.describe.ProcessingJobName, {data_path}.failure.FailureReason)")
    states[f"{name}Stopped"] = _failure(f"{name}JobStopped", f"States.Format('{name} job {{}} was stopped', {data_path}.describe.ProcessingJobName)")


def _processing_stage(states: dict[str, Any], *, name: str, prepare_state: str, data_path: str, request: Mapping[str, Any],
                      job_name_path: str, inputs: list[tuple[str, str]], output_path: str, done_next: str,
                      poll: PollSettings, sync_timeout_seconds: int = 0) -> None:
    """One SageMaker Processing job: ``prepare_state`` (reset the poll count) -> ``Start<name>Job`` -> the poll loop
    of :func:`_poll_loop` (``done_next`` once ``Completed``) -> ``<name>Failed`` / ``<name>Stopped``."""
    states[prepare_state] = {"Type": "Pass", "Result": {"polls": {"n": 0}}, "ResultPath": data_path, "Next": f"Start{name}Job"}
    states[f"Start{name}Job"] = _sagemaker(
        "createProcessingJob", _processing_request(request, job_name_path, inputs, output_path),
        result_path=f"{data_path}.create", next_state=f"Describe{name}",
    )
    _poll_loop(states, name=name, data_path=data_path, describe_action="describeProcessingJob",
               describe_params={"ProcessingJobName.$": job_name_path}, selector=PROCESSING_SELECTOR,
               status_field="ProcessingJobStatus",
               done=[{"Variable": f"{data_path}.describe.ProcessingJobStatus", "StringEquals": "Completed", "Next": done_next}],
               failed_next=f"{name}Failed", stopped_next=f"{name}Stopped", poll=poll)
    _job_failed(states, name, data_path)
    if sync_timeout_seconds:
        _make_sync(states, start=f"Start{name}Job", name=name, data_path=data_path, selector=PROCESSING_SELECTOR,
                   timeout_seconds=sync_timeout_seconds)


def training_request(static: Mapping[str, Any]) -> dict[str, Any]:
    """The CreateTrainingJob request: the static part plus the run's name, data, hyperparameters, checkpoints."""
    request = copy.deepcopy(dict(static))
    request["TrainingJobName.$"] = "States.Format('{}-{}', $.plan.names.training_job_base, $.training.attempt)"
    request["HyperParameters.$"] = "$.plan.hyperparameters"
    request["InputDataConfig"] = [{
        "ChannelName": "train",
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri.$": "$.plan.uris.train_input", "S3DataDistributionType": "FullyReplicated"}},
    }]
    output = dict(request.get("OutputDataConfig", {}))
    output["S3OutputPath.$"] = "$.plan.uris.output"
    request["OutputDataConfig"] = output
    # The SAME checkpoint URI for every attempt of a run: a retried job resumes from the last checkpoint.
    request["CheckpointConfig"] = {"S3Uri.$": "$.plan.uris.checkpoints", "LocalPath": "/opt/ml/checkpoints"}
    request["Tags"] = [{"Key": "mlinfra:pipeline", "Value": "retrain"}, {"Key": "mlinfra:dataset", "Value.$": "$.plan.dataset"},
                       {"Key": "mlinfra:dataset-version", "Value.$": "$.plan.version"}]
    return request


#: The SageMaker training-job states the HyperPod engine replaces.
_SAGEMAKER_TRAINING_STATES = ("StartTrainingJob", "DescribeTraining", "TrainingStatus", "CountTrainingPoll",
                              "TrainingPollLimit", "WaitTraining", "GetTrainingFailure", "GetTrainingResult",
                              "TrainingAttemptFailed", "RetryTraining", "TrainingStopped")


def _hyperpod_training(states: dict[str, Any], settings: Mapping[str, Any], after_training: str) -> None:
    """Train with one Slurm job on a HyperPod cluster (its job bridge ends the task): the same plan, checkpoint URI
    and model location as a SageMaker training job, so evaluation, registration and deployment do not change.
    HyperPod's auto-resume replaces the training-job attempts (a failed node is replaced and the job resumes)."""
    from mlinfra.domain.hyperpod_jobs import SLURM_FAILURE_ERRORS, training_task_state

    static = dict(settings)
    cluster_arn = static.pop("cluster_arn")
    for name in _SAGEMAKER_TRAINING_STATES:
        states.pop(name, None)
    states["PrepareTraining"]["Next"] = "TrainOnHyperPod"
    task = training_task_state(**static, checkpoint_uri_path="$.plan.uris.checkpoints",
                               output_uri_path="$.plan.uris.output", job_name="train",
                               result_path="$.training.hyperpod", next_state="HyperPodTrainingResult")
    task["Comment"] = "One Slurm job on the HyperPod cluster, through its job bridge (the bridge ends this task)."
    task["Catch"] = [{"ErrorEquals": [*SLURM_FAILURE_ERRORS, "States.Timeout", "States.HeartbeatTimeout"],
                      "ResultPath": "$.training.failure", "Next": "TrainingFailed"}, *_catch()]
    states["TrainOnHyperPod"] = task
    states["HyperPodTrainingResult"] = {
        "Type": "Pass",
        "Comment": "Where evaluation, registration and deployment find the model, as after a training job.",
        "Parameters": {
            "attempt": 1,
            "hyperpod.$": "$.training.hyperpod",
            "describe": {"TrainingJobName.$": "$.training.hyperpod.JobName",
                         "TrainingJobArn.$": f"States.Format('{cluster_arn}/slurm-job/{{}}', $.training.hyperpod.JobId)"},
            "result": {"model_data.$": "States.Format('{}model.tar.gz', $.plan.uris.output)"},
        },
        "ResultPath": "$.training",
        "Next": after_training,
    }
    states["TrainingFailed"] = _failure(
        "TrainingJobFailed", "States.Format('HyperPod training job failed with {} (the cause is in the execution "
        "history and the job log on the cache)', $.training.failure.Error)")


def build_definition(s: DefinitionSettings) -> dict[str, Any]:
    states: dict[str, Any] = {}
    first_job = "PreparePreprocessing" if s.preprocessing_request else "PrepareTraining"

    # 1. Validate and plan, take the dataset's lock, record the run's lineage.
    states["ValidateInput"] = _lambda(
        s.validate_function,
        {"input.$": "$", "settings": dict(s.validate_settings),
         "execution": {"name.$": "$$.Execution.Name", "id.$": "$$.Execution.Id", "start_time.$": "$$.Execution.StartTime"}},
        result_path=None, next_state="PrepareLock", output_payload=True,
        comment="Validate the input (dataset, version, hyperparameters) and plan every name and URI of the run.",
    )
    states["PrepareLock"] = {"Type": "Pass", "Result": {"n": 0}, "ResultPath": "$.lock_wait", "Next": "AcquireLock"}
    states["AcquireLock"] = {
        "Type": "Task",
        "Comment": "One run per dataset: a conditional put that succeeds when the lock is free, expired or already ours.",
        "Resource": "arn:aws:states:::dynamodb:putItem",
        "Parameters": {
            "TableName": s.table_name,
            "Item": {"pk": {"S.$": "$.plan.lock.key"}, "sk": {"S": "lock"}, "owner": {"S.$": "$$.Execution.Id"},
                     "expires_at": {"N.$": "$.plan.lock.expires_at"}, "version": {"S.$": "$.plan.version"}},
            "ConditionExpression": "attribute_not_exists(pk) OR expires_at < :now OR #owner = :me",
            "ExpressionAttributeNames": {"#owner": "owner"},
            "ExpressionAttributeValues": {":now": {"N.$": "$.plan.lock.now"}, ":me": {"S.$": "$$.Execution.Id"}},
        },
        "ResultPath": None,
        "Retry": _retry(DYNAMODB_TRANSIENT),
        "Catch": [
            {"ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"], "ResultPath": "$.lock_wait.error", "Next": "CountLockWait"},
            *_catch(),
        ],
        "Next": "RecordRunStart",
    }
    # Another run holds the dataset: this version waits its turn (it is never dropped as a success). At the limit
    # the run fails as DatasetLocked, which notifies (the failure path) so the version can be retried.
    states["CountLockWait"] = {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.lock_wait.n, 1)"}, "ResultPath": "$.lock_wait", "Next": "LockWaitLimit"}
    states["LockWaitLimit"] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.lock_wait.n", "NumericGreaterThan": s.lock_poll.max_polls, "Next": "DatasetLocked"}],
        "Default": "WaitForLock",
    }
    states["WaitForLock"] = {"Type": "Wait", "Seconds": s.lock_poll.interval_seconds, "Next": "AcquireLock"}
    states["DatasetLocked"] = _failure("DatasetLocked", "States.Format('dataset {} is locked by another run: version {} was not trained (retry it when that run ends)', $.plan.dataset, $.plan.version)")
    states["RecordRunStart"] = _lambda(
        s.lineage_function, {"action": "start", "plan.$": "$.plan"}, result_path="$.lineage", next_state=first_job,
        result_selector={"key.$": "$.Payload"},
    )

    # 2. Optional preprocessing (SageMaker Processing): raw zone -> curated zone.
    if s.preprocessing_request:
        _processing_stage(states, name="Preprocessing", prepare_state="PreparePreprocessing", data_path="$.preprocessing",
                          request=s.preprocessing_request, job_name_path="$.plan.names.preprocessing_job",
                          inputs=[("raw", "$.plan.uris.raw_input")], output_path="$.plan.uris.preprocessed",
                          done_next="PrepareTraining", poll=s.processing_poll, sync_timeout_seconds=_sync_timeout(s, s.processing_timeout_seconds))

    # 3. Training: managed spot with checkpoints; a failed attempt is retried from the same checkpoint URI.
    states["PrepareTraining"] = {"Type": "Pass", "Result": {"attempt": 1, "polls": {"n": 0}}, "ResultPath": "$.training", "Next": "StartTrainingJob"}
    states["StartTrainingJob"] = _sagemaker("createTrainingJob", training_request(s.training_request), result_path="$.training.create", next_state="DescribeTraining")
    after_training = "PrepareEvaluationJob" if s.evaluation_request else "ReadEvaluationReport"
    _poll_loop(states, name="Training", data_path="$.training", describe_action="describeTrainingJob",
               describe_params={"TrainingJobName.$": "States.Format('{}-{}', $.plan.names.training_job_base, $.training.attempt)"},
               selector={"TrainingJobName.$": "$.TrainingJobName", "TrainingJobArn.$": "$.TrainingJobArn",
                         "TrainingJobStatus.$": "$.TrainingJobStatus", "SecondaryStatus.$": "$.SecondaryStatus"},
               status_field="TrainingJobStatus",
               done=[{"Variable": "$.training.describe.TrainingJobStatus", "StringEquals": "Completed", "Next": "GetTrainingResult"}],
               failed_next="TrainingAttemptFailed", stopped_next="TrainingAttemptFailed", poll=s.training_poll)
    training_selector = {"TrainingJobName.$": "$.TrainingJobName", "TrainingJobArn.$": "$.TrainingJobArn",
                         "TrainingJobStatus.$": "$.TrainingJobStatus", "SecondaryStatus.$": "$.SecondaryStatus"}
    if s.job_wait == "sync":
        _make_sync(states, start="StartTrainingJob", name="Training", data_path="$.training", selector=training_selector,
                   timeout_seconds=s.training_timeout_seconds)
    states["GetTrainingResult"] = _sagemaker(
        "describeTrainingJob", {"TrainingJobName.$": "$.training.describe.TrainingJobName"}, result_path="$.training.result",
        next_state=after_training, result_selector={"model_data.$": "$.ModelArtifacts.S3ModelArtifacts"})
    states["TrainingAttemptFailed"] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.training.attempt", "NumericLessThan": s.max_training_attempts, "Next": "RetryTraining"},
                    {"Variable": "$.training.failure.FailureReason", "IsPresent": True, "Next": "TrainingFailed"}],
        "Default": "TrainingStopped",
    }
    states["RetryTraining"] = {
        "Type": "Pass",
        "Comment": "A new job name, the same checkpoint URI: the next attempt resumes from the last checkpoint.",
        "Parameters": {"attempt.$": "States.MathAdd($.training.attempt, 1)", "polls": {"n": 0},
                       "previous_job.$": "$.training.describe.TrainingJobName"},
        "ResultPath": "$.training",
        "Next": "StartTrainingJob",
    }
    states["TrainingFailed"] = _failure("TrainingJobFailed", "States.Format('Training job {} failed after {} attempt(s): {}', $.training.describe.TrainingJobName, $.training.attempt, $.training.failure.FailureReason)")
    states["TrainingStopped"] = _failure("TrainingJobStopped", "States.Format('Training job {} ended {} (secondary status {})', $.training.describe.TrainingJobName, $.training.describe.TrainingJobStatus, $.training.describe.SecondaryStatus)")
    if s.hyperpod_training:
        _hyperpod_training(states, s.hyperpod_training, after_training)

    # 4. Evaluation: an optional Processing job writes the report; a Lambda reads it.
    if s.evaluation_request:
        _processing_stage(states, name="Evaluation", prepare_state="PrepareEvaluationJob", data_path="$.evaluation_job",
                          request=s.evaluation_request, job_name_path="$.plan.names.evaluation_job",
                          inputs=[("model", "$.training.result.model_data"), ("data", "$.plan.uris.train_input")],
                          output_path="$.plan.uris.evaluation_output", done_next="ReadEvaluationReport", poll=s.processing_poll,
                          sync_timeout_seconds=_sync_timeout(s, s.processing_timeout_seconds))
    states["ReadEvaluationReport"] = _lambda(
        s.evaluation_function, {"report_uri.$": "$.plan.uris.evaluation_report", "metric_name": s.metric_name},
        result_path="$.evaluation", next_state="CompareMetrics",
        result_selector={"metric_name.$": "$.Payload.metric_name", "metric_value.$": "$.Payload.metric_value",
                         "metrics.$": "$.Payload.metrics", "report_uri.$": "$.Payload.report_uri"},
    )

    # 5. Gate: threshold AND the production model's metric from the registry.
    gate_payload: dict[str, Any] = {
        "metric_name": s.metric_name, "direction": s.direction, "min_improvement": s.min_improvement,
        "candidate.$": "$.evaluation.metric_value", "model_package_group": s.model_package_group,
        "lineage": {"dataset.$": "$.plan.dataset", "dataset_version.$": "$.plan.version", "code_version.$": "$.plan.code_version",
                    "image_digest.$": "$.plan.image_digest", "training_job_arn.$": "$.training.describe.TrainingJobArn",
                    "hyperparameters.$": "$.plan.hyperparameters", "run_id.$": "$.plan.run_id"},
    }
    if s.threshold is not None:
        gate_payload["threshold"] = s.threshold
    states["CompareMetrics"] = _lambda(
        s.gate_function, gate_payload, result_path="$.gate", next_state="RegisterModelPackage",
        result_selector={"passed.$": "$.Payload.passed", "approval_status.$": "$.Payload.approval_status",
                         "reasons.$": "$.Payload.reasons", "candidate.$": "$.Payload.candidate", "baseline.$": "$.Payload.baseline",
                         "customer_metadata.$": "$.Payload.customer_metadata", "approval_description.$": "$.Payload.approval_description"},
    )

    # 6. Register: every evaluated model is registered with its metrics and lineage (Rejected when the gate failed).
    states["RegisterModelPackage"] = _sagemaker(
        "createModelPackage",
        {
            "ModelPackageGroupName": s.model_package_group,
            "ModelPackageDescription.$": "$.gate.approval_description",
            "ModelApprovalStatus.$": "$.gate.approval_status",
            "ClientToken.$": "$.plan.names.client_token",
            "InferenceSpecification": {
                "Containers": [{"Image": s.inference_image, "ModelDataUrl.$": "$.training.result.model_data"}],
                "SupportedContentTypes": list(INFERENCE_CONTENT_TYPES),
                "SupportedResponseMIMETypes": list(INFERENCE_RESPONSE_TYPES),
            },
            "ModelMetrics": {"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri.$": "$.evaluation.report_uri"}}},
            "CustomerMetadataProperties.$": "$.gate.customer_metadata",
            "MetadataProperties": {"CommitId.$": "$.plan.code_version", "GeneratedBy.$": "$.training.describe.TrainingJobArn"},
        },
        result_path="$.registration", next_state="GateDecision",
        result_selector={"ModelPackageArn.$": "$.ModelPackageArn"},
    )
    after_approval = "PrepareDeploy" if s.deploy else "ApproveModelPackage"
    states["GateDecision"] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.gate.passed", "BooleanEquals": False, "Next": "RecordRejected"}],
        "Default": "RequestApproval" if s.manual_approval else after_approval,
    }

    # 7. Optional manual approval: an SNS message carrying the task token, on the approval topic only (never the
    # failure/outcome topic: whoever reads the token and may call the approval URL decides); a timeout rejects.
    if s.manual_approval:
        if not s.approval_topic_arn or s.approval_topic_arn == s.topic_arn:
            raise ValueError(f"approval_topic_arn: manual approval needs a topic of its own (the request carries the task "
                             f"token), got: {s.approval_topic_arn!r}")
        decide_with = (f"mlinfra approve --url {s.approval_url}" if s.approval_url
                       else f"mlinfra approve --function {s.approval_function_name}")
        states["RequestApproval"] = {
            "Type": "Task",
            "Resource": "arn:aws:states:::sns:publish.waitForTaskToken",
            "Parameters": {
                "TopicArn": s.approval_topic_arn,
                "Subject": "Model approval requested",
                "Message": {
                    "type": "approval-request",
                    "pipeline": s.pipeline_name,
                    "execution.$": "$$.Execution.Id",
                    "model_package_arn.$": "$.registration.ModelPackageArn",
                    "dataset.$": "$.plan.dataset",
                    "dataset_version.$": "$.plan.version",
                    "metric.$": "$.evaluation.metric_name",
                    "value.$": "$.evaluation.metric_value",
                    "gate.$": "$.gate.reasons",
                    "token.$": "$$.Task.Token",
                    "decide_with.$": f"States.Format('{decide_with} --decision approve|reject --reason <why> "
                                     "--token {}', $$.Task.Token)",
                },
            },
            "TimeoutSeconds": s.approval_timeout_seconds,
            "ResultPath": "$.approval",
            "Retry": _retry(SNS_TRANSIENT),
            "Catch": [{"ErrorEquals": ["States.Timeout", "ModelRejected"], "ResultPath": "$.approval_error", "Next": "RejectModelPackage"},
                      *_catch()],
            "Next": after_approval,
        }
        states["RejectModelPackage"] = _sagemaker(
            "updateModelPackage",
            {"ModelPackageArn.$": "$.registration.ModelPackageArn", "ModelApprovalStatus": "Rejected",
             "ApprovalDescription.$": "States.Format('manual approval not granted: {}', $.approval_error.Error)",
             "CustomerMetadataProperties.$": "$.gate.customer_metadata"},
            result_path=None, next_state="RecordRejected",
        )

    # 8. Deploy: model + endpoint config, then update the endpoint (blue/green) or create it; wait until InService.
    if s.deploy:
        d = s.deploy
        states["PrepareDeploy"] = {"Type": "Pass", "Result": {"endpoint_name": d["endpoint_name"], "polls": {"n": 0}}, "ResultPath": "$.deploy", "Next": "CreateModel"}
        model = {"ModelName.$": "$.plan.names.model", "ExecutionRoleArn": d["model_role_arn"],
                 "PrimaryContainer": {"Image": s.inference_image, "ModelDataUrl.$": "$.training.result.model_data"},
                 "EnableNetworkIsolation": bool(d.get("enable_network_isolation", True))}
        if d.get("vpc_config"):
            model["VpcConfig"] = dict(d["vpc_config"])
        states["CreateModel"] = _sagemaker("createModel", model, result_path="$.deploy.model", next_state="FindEndpoint")
        # The new config is the endpoint's CURRENT config with only the model swapped (variants, shadow, capture,
        # async, key, current capacity): a function reads it when the endpoint is InService (item 4 of issue 12).
        states["CreateEndpointConfig"] = _lambda(
            s.endpoint_config_function,
            {"endpoint_name": d["endpoint_name"], "variant_name": d["variant_name"], "model_name.$": "$.plan.names.model",
             "endpoint_config_name.$": "$.plan.names.endpoint_config"},
            result_path="$.deploy.endpoint_config", next_state="UpdateEndpoint",
            result_selector={"name.$": "$.Payload.endpoint_config_name", "previous.$": "$.Payload.previous_config_name",
                             "variants.$": "$.Payload.variants"})
        config = {"EndpointConfigName.$": "$.plan.names.endpoint_config",
                  "ProductionVariants": [{"VariantName": d["variant_name"], "ModelName.$": "$.plan.names.model",
                                          "InstanceType": d["instance_type"], "InitialInstanceCount": d["initial_instance_count"]}]}
        if d.get("kms_key_id"):
            config["KmsKeyId"] = d["kms_key_id"]
        if s.create_missing_endpoint:  # the emulator's create path: a first config from the target's variant
            states["CreateInitialEndpointConfig"] = _sagemaker("createEndpointConfig", config, result_path="$.deploy.endpoint_config",
                                                               next_state="CreateEndpoint")
        # The stack owns the endpoint (see docs/serving.md): the pipeline never creates one. It updates only an
        # InService endpoint (UpdateEndpoint fails while the endpoint is Creating/Updating/SystemUpdating).
        states["FindEndpoint"] = _sagemaker(
            "describeEndpoint", {"EndpointName": d["endpoint_name"]}, result_path="$.deploy.existing", next_state="EndpointReady",
            result_selector={"EndpointStatus.$": "$.EndpointStatus", "EndpointConfigName.$": "$.EndpointConfigName"})
        states["FindEndpoint"]["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.deploy.lookup", "Next": "EndpointLookupFailed"}]
        states["EndpointLookupFailed"] = {
            "Type": "Choice",
            "Comment": "Only SageMaker's 'Could not find endpoint' is a missing endpoint; anything else fails as itself.",
            "Choices": [{"Variable": "$.deploy.lookup.Cause", "StringMatches": "*Could not find endpoint*",
                         "Next": "CreateInitialEndpointConfig" if s.create_missing_endpoint else "EndpointNotFound"}],
            "Default": "EndpointLookupError",
        }
        states["EndpointNotFound"] = _failure("EndpointNotFound", f"States.Format('Endpoint {{}} does not exist: the serving stack owns it, deploy that stack first', '{d['endpoint_name']}')")
        states["EndpointLookupError"] = {"Type": "Pass", "Parameters": {"Error.$": "$.deploy.lookup.Error", "Cause.$": "$.deploy.lookup.Cause"},
                                         "ResultPath": "$.error", "Next": FAILURE_PATH_START}
        states["EndpointReady"] = {
            "Type": "Choice",
            "Choices": [{"Variable": "$.deploy.existing.EndpointStatus", "StringEquals": "InService", "Next": "CreateEndpointConfig"},
                        *({"Variable": "$.deploy.existing.EndpointStatus", "StringEquals": st, "Next": "EndpointNotUpdatable"}
                          for st in ("Failed", "OutOfService", "UpdateRollbackFailed", "Deleting"))],
            "Default": "CountEndpointWait",
        }
        states["EndpointNotUpdatable"] = _failure("EndpointNotUpdatable", f"States.Format('Endpoint {{}} is {{}}: not updatable', '{d['endpoint_name']}', $.deploy.existing.EndpointStatus)")
        states["CountEndpointWait"] = {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.deploy.polls.n, 1)"}, "ResultPath": "$.deploy.polls", "Next": "EndpointWaitLimit"}
        states["EndpointWaitLimit"] = {
            "Type": "Choice",
            "Choices": [{"Variable": "$.deploy.polls.n", "NumericGreaterThan": s.endpoint_poll.max_polls, "Next": "EndpointBusyTimedOut"}],
            "Default": "WaitForEndpointInService",
        }
        states["EndpointBusyTimedOut"] = _failure("EndpointBusy", f"States.Format('Endpoint {{}} still {{}} after {s.endpoint_poll.max_polls} polls', '{d['endpoint_name']}', $.deploy.existing.EndpointStatus)")
        states["WaitForEndpointInService"] = {"Type": "Wait", "Seconds": s.endpoint_poll.interval_seconds, "Next": "FindEndpoint"}
        # RetainAllVariantProperties: the rollout keeps the endpoint's current instance count and weights (and data
        # capture) instead of resetting them to the new config's initial values.
        update = {"EndpointName": d["endpoint_name"], "EndpointConfigName.$": "$.plan.names.endpoint_config", "RetainAllVariantProperties": True}
        if d.get("deployment_config"):
            update["DeploymentConfig"] = dict(d["deployment_config"])
        states["UpdateEndpoint"] = _sagemaker("updateEndpoint", update, result_path="$.deploy.update", next_state="ResetEndpointPolls")
        if s.create_missing_endpoint:
            states["CreateEndpoint"] = _sagemaker("createEndpoint", {"EndpointName": d["endpoint_name"], "EndpointConfigName.$": "$.plan.names.endpoint_config"},
                                                  result_path="$.deploy.create", next_state="ResetEndpointPolls")
        states["ResetEndpointPolls"] = {"Type": "Pass", "Result": {"n": 0}, "ResultPath": "$.deploy.polls", "Next": "DescribeEndpoint"}
        _poll_loop(states, name="Endpoint", data_path="$.deploy", describe_action="describeEndpoint",
                   describe_params={"EndpointName": d["endpoint_name"]}, status_field="EndpointStatus",
                   selector={"EndpointName.$": "$.EndpointName", "EndpointStatus.$": "$.EndpointStatus", "EndpointConfigName.$": "$.EndpointConfigName"},
                   done=[{"And": [{"Variable": "$.deploy.describe.EndpointStatus", "StringEquals": "InService"},
                                  {"Variable": "$.deploy.describe.EndpointConfigName", "StringEqualsPath": "$.plan.names.endpoint_config"}],
                          "Next": "RecordServedModel" if d.get("model_parameters") else "ApproveModelPackage"},
                         {"Variable": "$.deploy.describe.EndpointStatus", "StringEquals": "InService", "Next": "DeploymentRolledBack"}],
                   failed_next="DeploymentFailed", stopped_next="EndpointOutOfService", poll=s.endpoint_poll,
                   failed_statuses=("Failed", "UpdateRollbackFailed"), stopped_statuses=("OutOfService",))
        states["EndpointOutOfService"] = _failure("EndpointOutOfService", "States.Format('Endpoint {} is OutOfService', $.deploy.describe.EndpointName)")
        states["DeploymentFailed"] = _failure("EndpointFailed", "States.Format('Endpoint {} failed: {}', $.deploy.describe.EndpointName, $.deploy.failure.FailureReason)")
        states["DeploymentRolledBack"] = _failure("DeploymentRolledBack", "States.Format('Endpoint {} is InService on {} instead of {}: the blue/green update rolled back', $.deploy.describe.EndpointName, $.deploy.describe.EndpointConfigName, $.plan.names.endpoint_config)")
        # A model that failed or rolled back is Rejected in the registry (never left for a later manual approval).
        for failed in ("EndpointOutOfService", "DeploymentFailed", "DeploymentRolledBack"):
            states[failed]["Next"] = "RejectUndeployedPackage"
        states["RejectUndeployedPackage"] = _sagemaker(
            "updateModelPackage",
            {"ModelPackageArn.$": "$.registration.ModelPackageArn", "ModelApprovalStatus": "Rejected",
             "ApprovalDescription.$": "States.Format('not deployed: {}', $.error.Error)",
             "CustomerMetadataProperties.$": "$.gate.customer_metadata"},
            result_path=None, next_state=FAILURE_PATH_START)
        states["RejectUndeployedPackage"]["Catch"] = _catch(FAILURE_PATH_START, "$.reject_error")

        if d.get("model_parameters"):
            # The model pointer (see mlinfra.constructs.endpoint.ownership) records the served model, so the next
            # cdk deploy of the serving stack resolves THIS model instead of rolling back to the initial one.
            image_param, data_param = d["model_parameters"]
            states["RecordServedModel"] = _ssm_put(image_param, {"Value": s.inference_image}, "RecordServedModelData")
            states["RecordServedModelData"] = _ssm_put(data_param, {"Value.$": "$.training.result.model_data"}, "ApproveModelPackage")

    # 9. Approved = in production: approve the package, record, notify, release the lock.
    states["ApproveModelPackage"] = _sagemaker(
        "updateModelPackage",
        {"ModelPackageArn.$": "$.registration.ModelPackageArn", "ModelApprovalStatus": "Approved",
         "ApprovalDescription": "deployed by the retrain pipeline" if s.deploy else "approved by the retrain pipeline",
         # Re-stating the metadata is a no-op in AWS; moto's UpdateModelPackage would otherwise drop it.
         "CustomerMetadataProperties.$": "$.gate.customer_metadata"},
        result_path=None, next_state="RecordSuccess",
    )
    _finish(states, s, "Success", "Succeeded", "Succeeded")
    _finish(states, s, "Rejected", "Rejected", "ModelRejected")

    # Failure path: record (with the SageMaker FailureReason), notify, release the lock, fail.
    states[FAILURE_PATH_START] = _lambda(
        s.lineage_function,
        {"action": "outcome", "status": "Failed", "state.$": "$", "execution": {"name.$": "$$.Execution.Name", "id.$": "$$.Execution.Id"}},
        result_path="$.outcome", next_state="NotifyFailure", result_selector={"message.$": "$.Payload.message"},
    )
    states[FAILURE_PATH_START]["Catch"] = _catch("NotifyFailureFallback", "$.failure_path_error")
    states["NotifyFailure"] = _sns(s, "Retrain run failed", {"message.$": "$.outcome.message"}, "LockTaken")
    states["NotifyFailureFallback"] = _sns(
        s, "Retrain run failed", {"status": "Failed", "execution.$": "$$.Execution.Id", "error.$": "$.error",
                                  "note": "the lineage record of this failure could not be written"}, "LockTaken")
    states["LockTaken"] = {
        "Type": "Choice",
        "Comment": "Runs that failed before planning hold no lock.",
        "Choices": [{"Variable": "$.plan.lock.key", "IsPresent": True, "Next": "ReleaseLockAfterFailure"}],
        "Default": END_FAILED,
    }
    states["ReleaseLockAfterFailure"] = _release(s, END_FAILED, "$.failure_path_error", END_FAILED)
    states[END_FAILED] = {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}

    return {
        "Comment": f"{s.pipeline_name}: retrain, evaluate, gate, register, approve and deploy a model (mlinfra RetrainPipeline)",
        "StartAt": "ValidateInput",
        "TimeoutSeconds": s.timeout_seconds,
        "States": states,
    }


SSM_TRANSIENT = ["SSM.InternalServerErrorException", "SSM.TooManyUpdatesException", "SSM.AWSSimpleSystemsManagementException"]


def _ssm_put(name: str, value: Mapping[str, Any], next_state: str) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::aws-sdk:ssm:putParameter",
        "Parameters": {"Name": name, "Overwrite": True, **dict(value)},
        "ResultPath": None,
        "Retry": _retry(SSM_TRANSIENT),
        "Catch": _catch(),
        "Next": next_state,
    }


def _sns(s: DefinitionSettings, subject: str, message: Mapping[str, Any], next_state: str) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::sns:publish",
        "Parameters": {"TopicArn": s.topic_arn, "Subject": subject, "Message": dict(message)},
        "ResultPath": None,
        "Retry": _retry(SNS_TRANSIENT),
        "Catch": _catch(next_state, "$.failure_path_error") if next_state != FAILURE_PATH_START else _catch(),
        "Next": next_state,
    }


def _release(s: DefinitionSettings, next_state: str, error_path: str, on_error: str) -> dict[str, Any]:
    """Delete the dataset's lock if this execution holds it (a no-op otherwise)."""
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::dynamodb:deleteItem",
        "Parameters": {
            "TableName": s.table_name,
            "Key": {"pk": {"S.$": "States.Format('lock#{}', $.plan.dataset)"}, "sk": {"S": "lock"}},
            "ConditionExpression": "#owner = :me",
            "ExpressionAttributeNames": {"#owner": "owner"},
            "ExpressionAttributeValues": {":me": {"S.$": "$$.Execution.Id"}},
        },
        "ResultPath": None,
        "Retry": _retry(DYNAMODB_TRANSIENT),
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": error_path, "Next": on_error}],
        "Next": next_state,
    }


def _finish(states: dict[str, Any], s: DefinitionSettings, name: str, status: str, end: str) -> None:
    """Record<name> -> Notify<name> -> ReleaseLock<name> -> <end> (Succeed)."""
    states[f"Record{name}"] = _lambda(
        s.lineage_function,
        {"action": "outcome", "status": status, "state.$": "$", "execution": {"name.$": "$$.Execution.Name", "id.$": "$$.Execution.Id"}},
        result_path="$.outcome", next_state=f"Notify{name}", result_selector={"message.$": "$.Payload.message"},
    )
    states[f"Notify{name}"] = _sns(s, f"Retrain run {status.lower()}", {"message.$": "$.outcome.message"}, FAILURE_PATH_START)
    states[f"ReleaseLock{name}"] = _release(s, end, "$.error", FAILURE_PATH_START)
    states[f"Notify{name}"]["Next"] = f"ReleaseLock{name}"
    states[end] = {"Type": "Succeed"}


def task_states(definition: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every Task state of a definition (for assertions and docs)."""
    return {n: st for n, st in definition["States"].items() if st["Type"] == "Task"}


#: History events a state writes when it runs once (Step Functions execution history event types):
#: entered + exited for flow states; entered, scheduled, started, succeeded, exited for a task; ``.sync`` and
#: ``.waitForTaskToken`` add a submitted event. A retry attempt adds scheduled, started and failed.
_EVENTS = {"Pass": 2, "Choice": 2, "Wait": 2, "Succeed": 2, "Fail": 2, "Task": 5}
_RETRY_EVENTS = 3
#: Execution started + execution ended.
_EXECUTION_EVENTS = 2


def visit_bounds(definition: Mapping[str, Any], s: DefinitionSettings) -> dict[str, int]:
    """The most times each state can run in one execution: loops are bounded by their poll counters and by the
    training attempts; every other state runs at most once (the definition has no other cycle)."""
    states = definition["States"]
    visits = {name: 1 for name in states}

    def loop(name: str, polls: PollSettings, times: int = 1) -> None:
        if f"Count{name}Poll" not in visits:  # a .sync wait: one describe at most (after a failure), per run
            for st in (f"Describe{name}", f"{name}Status", f"Get{name}Failure"):
                if st in visits:
                    visits[st] = times
            return
        for st in (f"Describe{name}", f"{name}Status", f"Count{name}Poll", f"{name}PollLimit", f"Wait{name}", f"Get{name}Failure"):
            if st in visits:
                visits[st] = (polls.max_polls + 1) * times

    attempts = s.max_training_attempts
    for st in ("StartTrainingJob", "TrainingAttemptFailed", "RetryTraining", "GetTrainingFailure"):
        visits[st] = attempts
    loop("Training", s.training_poll, attempts)
    loop("Preprocessing", s.processing_poll)
    loop("Evaluation", s.processing_poll)
    loop("Endpoint", s.endpoint_poll)
    for st in ("AcquireLock", "CountLockWait", "LockWaitLimit", "WaitForLock"):
        visits[st] = s.lock_poll.max_polls + 1
    for st in ("FindEndpoint", "EndpointReady", "CountEndpointWait", "EndpointWaitLimit", "WaitForEndpointInService"):
        if st in visits:
            visits[st] = s.endpoint_poll.max_polls + 1
    return visits


def worst_case_history_events(definition: Mapping[str, Any], s: DefinitionSettings) -> int:
    """An upper bound of the history events of ANY execution path: every state at its most visits, every retry
    used up (service rule ``stepfunctions.history-event-limit``: a Standard execution ends at 25,000)."""
    total = _EXECUTION_EVENTS
    visits = visit_bounds(definition, s)
    for name, st in definition["States"].items():
        per_run = _EVENTS.get(st["Type"], 2)
        if st["Type"] == "Task":
            if st["Resource"].endswith((".sync", ".waitForTaskToken")):
                per_run += 1
            per_run += _RETRY_EVENTS * sum(r.get("MaxAttempts", 3) for r in st.get("Retry", []))
        total += per_run * visits[name]
    return total
