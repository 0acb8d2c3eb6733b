"""RetrainPipeline / PipelineStack: template assertions on the synthesized definition and resources,
negative tests for every validation, and the cdk-nag check of the stack."""

from __future__ import annotations

import dataclasses
import json
import re

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Template

from mlinfra.constructs.data_lake import DataLake
from mlinfra.constructs.endpoint_target import EndpointTarget
from mlinfra.constructs.retrain_pipeline import MetricDirection, ProcessingProps, RetrainPipeline, TrainingProps
from mlinfra.retrain_definition import task_states
from tests.helpers import new_stack, only, props

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1"
SERVE_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1"


def definition_of(template: dict) -> dict:
    """The state machine's definition from the template, each CloudFormation reference rendered as <ref>."""
    (sm,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    body = sm["Properties"]["DefinitionString"]
    if isinstance(body, dict):
        sep, parts = body["Fn::Join"]
        body = sep.join(p if isinstance(p, str) else "<ref>" for p in parts)
    return json.loads(body)


@pytest.fixture(scope="module")
def platform_templates(local_config, prod_config):
    from mlinfra.app import create_app

    out = {}
    # prod is only checked for its pipeline settings: leave the other capabilities out (faster synth)
    others = {f: dataclasses.replace(getattr(prod_config, f), enabled=False)
              for f in ("ingestion", "training", "serving") if hasattr(getattr(prod_config, f, None), "enabled")}
    prod_only = dataclasses.replace(prod_config, **others)
    for name, cfg in (("local", local_config), ("prod", prod_only)):
        _, platform = create_app(config=cfg, nag=False)
        out[name] = Template.from_stack(platform.extra["pipeline"])
    return out


@pytest.fixture(scope="module")
def local(platform_templates) -> Template:
    return platform_templates["local"]


@pytest.fixture(scope="module")
def local_definition(local) -> dict:
    return definition_of(local.to_json())


@pytest.fixture(scope="module")
def deploying():
    """A construct-level pipeline with a deploy target, preprocessing and evaluation jobs."""
    stack = new_stack()
    lake = DataLake(stack, "Lake")
    role = iam.Role(stack, "ModelRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    target = EndpointTarget(
        endpoint_name="prod-endpoint", endpoint_arn="arn:aws:sagemaker:us-east-1:123456789012:endpoint/prod-endpoint",
        variant_name="AllTraffic", instance_type="ml.g5.xlarge", initial_instance_count=2, model_execution_role=role,
        deployment_config={"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "CANARY", "WaitIntervalInSeconds": 300,
                                                                                      "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10}}},
                           "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "latency"}]}},
    )
    pipeline = RetrainPipeline(stack, "P", lake=lake, training=TrainingProps(image_uri=IMAGE), metric_name="rmse",
                               direction=MetricDirection.LOWER, threshold=1.5, datasets=["sales"], deploy_target=target,
                               preprocessing=ProcessingProps(image_uri=IMAGE), evaluation=ProcessingProps(image_uri=IMAGE),
                               manual_approval=True, inference_image_uri=SERVE_IMAGE)
    template = Template.from_stack(stack)
    return pipeline, template, definition_of(template.to_json())


# --- the definition ------------------------------------------------------------------------------------

def test_every_task_has_retry_and_catch(local_definition, deploying):
    for definition in (local_definition, deploying[2]):
        tasks = task_states(definition)
        assert len(tasks) >= 12
        for name, state in tasks.items():
            assert state.get("Retry") and all(r["BackoffRate"] >= 2 for r in state["Retry"]), f"{name} has no Retry with backoff"
            assert state.get("Catch"), f"{name} has no Catch"


def test_catches_lead_to_the_failure_notification(local_definition):
    states = local_definition["States"]
    assert states["RecordFailure"]["Next"] == "NotifyFailure"
    assert states["NotifyFailure"]["Resource"] == "arn:aws:states:::sns:publish"
    assert states["ExecutionFailed"]["Type"] == "Fail"
    targets = {c["Next"] for s in task_states(local_definition).values() for c in s["Catch"]}
    assert "RecordFailure" in targets


def test_gate_compares_the_configured_metric(local_definition, local_config):
    cfg = local_config.pipeline
    payload = local_definition["States"]["CompareMetrics"]["Parameters"]["Payload"]
    assert payload["metric_name"] == cfg.metric_name and payload["direction"] == cfg.direction
    assert payload["threshold"] == cfg.threshold and payload["min_improvement"] == cfg.min_improvement
    assert payload["candidate.$"] == "$.evaluation.metric_value"
    assert local_definition["States"]["ReadEvaluationReport"]["Parameters"]["Payload"]["metric_name"] == cfg.metric_name
    assert local_definition["States"]["GateDecision"]["Choices"][0] == {"Variable": "$.gate.passed", "BooleanEquals": False, "Next": "RecordRejected"}


def test_gate_direction_lower(deploying):
    payload = deploying[2]["States"]["CompareMetrics"]["Parameters"]["Payload"]
    assert payload["metric_name"] == "rmse" and payload["direction"] == "lower" and payload["threshold"] == 1.5


def test_training_uses_spot_checkpoints_and_max_wait(local_definition):
    state = local_definition["States"]["StartTrainingJob"]
    assert state["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:createTrainingJob"  # no .sync: runs in moto too
    request = state["Parameters"]
    assert request["EnableManagedSpotTraining"] is True
    assert request["CheckpointConfig"] == {"S3Uri.$": "$.plan.uris.checkpoints", "LocalPath": "/opt/ml/checkpoints"}
    stop = request["StoppingCondition"]
    assert stop["MaxRuntimeInSeconds"] == 24 * 3600 and stop["MaxWaitTimeInSeconds"] == 48 * 3600
    assert request["HyperParameters.$"] == "$.plan.hyperparameters"
    assert request["ResourceConfig"]["VolumeKmsKeyId"] == "<ref>"
    # A retry keeps the checkpoint URI (it comes from the plan) and only bumps the attempt in the job name.
    retry = local_definition["States"]["RetryTraining"]
    assert retry["Next"] == "StartTrainingJob" and "attempt.$" in retry["Parameters"]


def test_no_sync_integrations_and_bounded_polling(local_definition):
    for name, state in task_states(local_definition).items():
        assert not state["Resource"].endswith(".sync"), name
    waits = {n: s for n, s in local_definition["States"].items() if s["Type"] == "Wait"}
    assert waits and all(w["Seconds"] == 1 for n, w in waits.items() if n != "WaitForLock")  # local config polls every second
    assert waits["WaitForLock"]["Seconds"] >= 5  # a held lock is re-tried at most ~200 times over one training wait
    assert local_definition["States"]["TrainingPollLimit"]["Choices"][0]["Next"] == "TrainingPollTimedOut"
    assert local_definition["TimeoutSeconds"] > 2 * 48 * 3600


def test_lock_is_taken_and_released_on_every_exit(local_definition):
    states = local_definition["States"]
    lock = states["AcquireLock"]
    assert lock["Resource"] == "arn:aws:states:::dynamodb:putItem"
    assert "attribute_not_exists(pk)" in lock["Parameters"]["ConditionExpression"]
    # issue 12 item 7: a version that meets a lock waits its turn (never a silent success)
    assert lock["Catch"][0] == {"ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"], "ResultPath": "$.lock_wait.error", "Next": "CountLockWait"}
    releases = {n for n, s in states.items() if s.get("Resource") == "arn:aws:states:::dynamodb:deleteItem"}
    assert releases == {"ReleaseLockSuccess", "ReleaseLockRejected", "ReleaseLockAfterFailure"}
    ends = {n for n, s in states.items() if s["Type"] in ("Succeed", "Fail")}
    assert ends == {"Succeeded", "ModelRejected", "ExecutionFailed"}


def test_deploy_updates_only_an_in_service_endpoint_and_never_creates_one(deploying):
    pipeline, template, definition = deploying
    states = definition["States"]
    update = states["UpdateEndpoint"]
    assert update["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:updateEndpoint"
    assert update["Parameters"]["EndpointName"] == "prod-endpoint"
    assert update["Parameters"]["RetainAllVariantProperties"] is True  # the rollout keeps the current capacity
    assert update["Parameters"]["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "CANARY"
    assert update["Parameters"]["DeploymentConfig"]["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": "latency"}]}
    assert update["Next"] == "ResetEndpointPolls" and states["ResetEndpointPolls"]["Next"] == "DescribeEndpoint"
    # issue 12 item 8: UpdateEndpoint only from InService; a busy endpoint is waited for; only "not found" is not found
    assert "CreateEndpoint" not in states
    assert states["FindEndpoint"]["Next"] == "EndpointReady"
    ready = states["EndpointReady"]
    assert ready["Choices"][0] == {"Variable": "$.deploy.existing.EndpointStatus", "StringEquals": "InService", "Next": "CreateEndpointConfig"}
    # issue 12 item 4: the new config is the CURRENT one with the model swapped, read once the endpoint is InService
    config = states["CreateEndpointConfig"]
    assert config["Resource"] == "arn:aws:states:::lambda:invoke" and config["Next"] == "UpdateEndpoint"
    assert config["Parameters"]["Payload"] == {"endpoint_name": "prod-endpoint", "variant_name": "AllTraffic",
                                               "model_name.$": "$.plan.names.model", "endpoint_config_name.$": "$.plan.names.endpoint_config"}
    assert ready["Default"] == "CountEndpointWait"
    assert states["WaitForEndpointInService"]["Next"] == "FindEndpoint"
    assert states["FindEndpoint"]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.deploy.lookup", "Next": "EndpointLookupFailed"}]
    lookup = states["EndpointLookupFailed"]
    assert lookup["Choices"][0]["StringMatches"] == "*Could not find endpoint*" and lookup["Choices"][0]["Next"] == "EndpointNotFound"
    assert lookup["Default"] == "EndpointLookupError" and states["EndpointLookupError"]["Next"] == "RecordFailure"
    assert "CreateInitialEndpointConfig" not in states  # the emulator's create path only
    done = states["EndpointStatus"]["Choices"]
    assert done[0]["Next"] == "ApproveModelPackage" and done[1]["Next"] == "DeploymentRolledBack"  # no pointer here
    assert states["RequestApproval"]["Resource"] == "arn:aws:states:::sns:publish.waitForTaskToken"
    assert states["RequestApproval"]["TimeoutSeconds"] == 3 * 86400
    assert {c["Next"] for c in states["RequestApproval"]["Catch"]} == {"RejectModelPackage", "RecordFailure"}
    assert states["StartPreprocessingJob"]["Parameters"]["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri.$"] == "$.plan.uris.preprocessed"
    assert states["StartEvaluationJob"]["Parameters"]["ProcessingInputs"][0]["S3Input"]["S3Uri.$"] == "$.training.result.model_data"


# --- IAM -------------------------------------------------------------------------------------------------

def _statements(template: Template, role_prefix: str) -> list[dict]:
    out = []
    for logical, res in template.find_resources("AWS::IAM::Policy").items():
        if any(isinstance(r, dict) and str(r.get("Ref", "")).startswith(role_prefix) for r in res["Properties"]["Roles"]):
            out += res["Properties"]["PolicyDocument"]["Statement"]
    return out


def test_pass_role_is_scoped_to_the_job_and_model_roles(local, deploying):
    # local: the job role + the serving stack's endpoint role (the platform wires its deploy_target)
    for template, expected in ((local, ["RetrainPipelineJobRole", "ImportValue:RealtimeEndpointExecutionRole"]),
                               (deploying[1], ["PJobRole", "ModelRole"])):
        statements = [s for s in _statements(template, "RetrainPipelineStateMachineRole") + _statements(template, "PStateMachineRole")
                      if s["Action"] == "iam:PassRole"]
        assert len(statements) == 1
        (st,) = statements
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        names = [r["Fn::GetAtt"][0] if "Fn::GetAtt" in r else "ImportValue:" + r["Fn::ImportValue"].split("GetAtt")[-1] for r in resources]
        assert len(names) == len(expected) and all(n.startswith(e) for n, e in zip(names, expected)), names
        assert st["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    all_actions = json.dumps(local.to_json())
    assert '"Action": "*"' not in all_actions and '"iam:*"' not in all_actions and '"sagemaker:*"' not in all_actions


def test_update_endpoint_permission_is_on_the_target_endpoint(deploying):
    statements = _statements(deploying[1], "PStateMachineRole")
    st = next(s for s in statements if "sagemaker:UpdateEndpoint" in s["Action"])
    assert "arn:aws:sagemaker:us-east-1:123456789012:endpoint/prod-endpoint" in st["Resource"]


# --- logging, tracing, alarms, table, triggers --------------------------------------------------------------

def test_logging_and_tracing(platform_templates):
    for env, level in (("local", "ALL"), ("prod", "ERROR")):
        sm = only(platform_templates[env], "AWS::StepFunctions::StateMachine")["Properties"]
        assert sm["TracingConfiguration"] == {"Enabled": True}
        assert sm["LoggingConfiguration"]["Level"] == level and sm["LoggingConfiguration"]["IncludeExecutionData"] is True
        (group,) = props(platform_templates[env], "AWS::Logs::LogGroup")[:1] or [None]
        names = [p.get("LogGroupName") for p in props(platform_templates[env], "AWS::Logs::LogGroup")]
        assert any(isinstance(n, str) and n.startswith("/aws/vendedlogs/states/") for n in names)


def test_alarms_on_failed_timed_out_throttled_aborted(local):
    metrics = {p["MetricName"] for p in props(local, "AWS::CloudWatch::Alarm") if p.get("Namespace") == "AWS/States"}
    assert metrics == {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionThrottled", "ExecutionsAborted"}
    for p in props(local, "AWS::CloudWatch::Alarm"):
        assert p["AlarmActions"], "every alarm notifies the topic"


def test_lineage_table_pitr_and_retain(platform_templates):
    res = next(iter(platform_templates["prod"].find_resources("AWS::DynamoDB::Table").values()))
    assert res["DeletionPolicy"] == "Retain"
    assert res["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert res["Properties"]["SSESpecification"]["SSEEnabled"] is True


def test_triggers_and_registry(local):
    rules = props(local, "AWS::Events::Rule")
    ready = next(r for r in rules if "EventPattern" in r)
    assert ready["EventPattern"] == {"source": ["mlinfra.ingestion"], "detail-type": ["Dataset Version Ready"], "detail": {"dataset": ["images"]}}
    assert any(r.get("ScheduleExpression") == "rate(7 days)" for r in rules)
    group = only(local, "AWS::SageMaker::ModelPackageGroup")["Properties"]
    assert group["ModelPackageGroupName"] == "mlinfra-local-models"
    outputs = local.to_json()["Outputs"]
    assert {"StateMachineArn", "LineageTableName", "ModelPackageGroupName", "ApprovalFunctionName"} <= set(outputs)


# --- validation ----------------------------------------------------------------------------------------------

def _pipeline(**overrides):
    stack = new_stack()
    kwargs = dict(lake=DataLake(stack, "Lake"), training=TrainingProps(image_uri=IMAGE), metric_name="accuracy", datasets=["images"])
    kwargs.update(overrides)
    return RetrainPipeline(stack, "P", **kwargs)


@pytest.mark.parametrize("training, message", [
    (TrainingProps(image_uri=IMAGE, instance_type="p4d.24xlarge"), r"training.instance_type must be a SageMaker instance type starting with 'ml.', got: 'p4d.24xlarge'"),
    (TrainingProps(image_uri=IMAGE, instance_count=0), r"training.instance_count must be >= 1, got: 0"),
    (TrainingProps(image_uri=IMAGE, volume_size_gb=0), r"training.volume_size_gb must be between 1 and 16384, got: 0"),
    (TrainingProps(image_uri=IMAGE, max_runtime=cdk.Duration.days(29)), r"training.max_runtime must be between 1 second and 28 days"),
    (TrainingProps(image_uri=IMAGE, max_runtime=cdk.Duration.hours(10), max_wait=cdk.Duration.hours(5)), r"training.max_wait must be >= max_runtime \(36000 s\)"),
    (TrainingProps(image_uri=IMAGE, use_spot=False, max_wait=cdk.Duration.hours(5)), r"training.max_wait applies to managed spot training only"),
    (TrainingProps(image_uri=IMAGE, input_mode="Stream"), r"training.input_mode must be one of 'File', 'FastFile', 'Pipe' \(InputMode\), got: 'Stream'"),
    (TrainingProps(image_uri=IMAGE, max_attempts=9), r"training.max_attempts must be between 1 and 5, got: 9"),
    (TrainingProps(image_uri=IMAGE, hyperparameters={"epochs": 3}), r"training.hyperparameters values must be strings"),
])
def test_training_validation(training, message):
    with pytest.raises(ValueError, match=message):
        _pipeline(training=training)


@pytest.mark.parametrize("overrides, message", [
    ({"metric_name": "acc uracy"}, r"metric_name must be 1-64 letters, digits or _.:-, got: 'acc uracy'"),
    ({"datasets": []}, r"datasets must name at least one dataset"),
    ({"datasets": ["Images"]}, r"datasets must be 1-63 lowercase letters, digits, '_' or '-', got: \['Images'\]"),
    ({"min_improvement": -0.1}, r"min_improvement must be >= 0, got: -0.1"),
    ({"job_prefix": "x" * 21}, r"job_prefix must be 1-20 letters"),
    ({"poll_interval": cdk.Duration.hours(2)}, r"poll_interval must be between 1 second and 1 hour, got: 7200 s"),
    ({"approval_timeout": cdk.Duration.days(400)}, r"approval_timeout must be between 1 second and 365 days"),
    ({"preprocessing": ProcessingProps(image_uri=IMAGE, instance_type="m5.xlarge")}, r"preprocessing.instance_type must be a SageMaker instance type"),
    ({"evaluation": ProcessingProps(image_uri=IMAGE, max_runtime=cdk.Duration.days(6))}, r"evaluation.max_runtime must be between 1 second and 5 days"),
])
def test_construct_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        _pipeline(**overrides)


@pytest.mark.parametrize("field, value, message", [
    ("datasets", [], "pipeline.datasets: must name at least one dataset, got: []"),
    ("schedule", "every week", "pipeline.schedule: must be rate(N minutes|hours|days) or cron(6 fields), got: 'every week'"),
    ("training_instance_type", "g5.xlarge", "pipeline.training_instance_type: must start with 'ml.', got: 'g5.xlarge'"),
    ("max_wait_hours", 1, "pipeline.max_wait_hours: must be >= max_runtime_hours (24) and <= 672, got: 1"),
    ("poll_interval_seconds", 0, "pipeline.poll_interval_seconds: must be between 1 and 3600, got: 0"),
    ("log_retention_days", 10, "pipeline.log_retention_days: must be one of"),
    ("min_improvement", -1.0, "pipeline.min_improvement: must be >= 0, got: -1.0"),
])
def test_config_validation(local_config, field, value, message):
    section = dataclasses.replace(local_config.pipeline, **{field: value})
    assert any(e.startswith(message) for e in section.validate()), section.validate()


def test_config_loads_from_yaml(local_config, prod_config):
    assert local_config.pipeline.poll_interval_seconds == 1 and local_config.pipeline.datasets == ["images"]
    assert prod_config.pipeline.manual_approval is True


@pytest.mark.policy
def test_pipeline_stack_is_nag_clean(local_config):
    from mlinfra.app import create_app

    app, platform = create_app(config=local_config, nag=True)
    assert "pipeline" in platform.extra
    app.synth()  # raises on any unacknowledged cdk-nag finding


# --- docs ----------------------------------------------------------------------------------------------------

def test_docs_diagram_is_generated_from_the_definition(deploying):
    from mlinfra.asl_diagram import DOC, generated_block, reference_definition, transitions

    assert generated_block() in DOC.read_text(), "docs/pipeline.md is stale: run python -m mlinfra.asl_diagram"
    synthesized = {(a, b) for a, b, _ in transitions(deploying[2])}
    reference = {(a, b) for a, b, _ in transitions(reference_definition())}
    assert synthesized == reference


def test_lineage_writers_can_use_the_table_key(local):
    for role in ("RetrainPipelineLineageFunctionRole", "RetrainPipelineStateMachineRole"):
        actions = set()
        for st in _statements(local, role):
            actions |= set(st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
        assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= actions, role
    # Deletes: the state machine (its own lock) and the lineage function on lock items only (execution-level ends).
    (delete,) = [s for s in _statements(local, "RetrainPipelineLineageFunctionRole") if s["Action"] == "dynamodb:DeleteItem"]
    assert delete["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["lock#*"]}}


def test_platform_wires_the_serving_endpoint_as_deploy_target(local_definition):
    update = local_definition["States"]["UpdateEndpoint"]["Parameters"]
    assert update["EndpointName"] == "<ref>"  # the serving stack's endpoint
    assert "BlueGreenUpdatePolicy" in update["DeploymentConfig"]
    assert "AutoRollbackConfiguration" in update["DeploymentConfig"]
