"""Issue 12 (real-account correctness II): the retrain pipeline's requests and grants, and the serving rollout's
ownership. Each test names the item it guards and fails on the code before the fix."""

from __future__ import annotations

import json
import re

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Annotations, Match, Template

from mlinfra.constructs.data_lake import DataLake
from mlinfra.constructs.endpoint import (
    DeploymentGuardrails,
    Endpoint,
    ModelContainer,
    ModelPointer,
    ProductionVariant,
    TrafficShifting,
)
from mlinfra.constructs.endpoint_target import EndpointTarget
from mlinfra.constructs.retrain_pipeline import JobWait, ProcessingProps, RetrainPipeline, TrainingProps
from mlinfra.retrain_definition import worst_case_history_events
from tests.helpers import new_stack

TRAIN = "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1"
SERVE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1"


def _pipeline(stack, *, target=None, **kw) -> RetrainPipeline:
    lake = kw.pop("lake", None) or DataLake(stack, "Lake")
    props = dict(lake=lake, training=TrainingProps(image_uri=TRAIN), metric_name="accuracy", datasets=["images"])
    props.update(kw)
    return RetrainPipeline(stack, "P", deploy_target=target, **props)


def _target(stack, **kw) -> EndpointTarget:
    role = iam.Role(stack, "ModelRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    return EndpointTarget(endpoint_name="prod", endpoint_arn="arn:aws:sagemaker:us-east-1:123456789012:endpoint/prod",
                          variant_name="AllTraffic", instance_type="ml.m5.large", initial_instance_count=1,
                          model_execution_role=role, **kw)


def _statements(template: Template, logical_prefix: str) -> list[dict]:
    out = []
    for res in template.find_resources("AWS::IAM::Policy").values():
        if any(isinstance(r, dict) and str(r.get("Ref", "")).startswith(logical_prefix) for r in res["Properties"]["Roles"]):
            out += res["Properties"]["PolicyDocument"]["Statement"]
    return out


def _actions(st: dict) -> list[str]:
    return st["Action"] if isinstance(st["Action"], list) else [st["Action"]]


# --- item 1: no volume KMS key on instance-storage types ----------------------------------------------------

@pytest.mark.parametrize(("instance_type", "volume_key"), [("ml.g5.xlarge", False), ("ml.p4d.24xlarge", False),
                                                           ("ml.m5d.xlarge", False), ("ml.m5.xlarge", True)])
def test_training_and_processing_volume_key_follows_the_instance_table(instance_type, volume_key):
    training = TrainingProps(image_uri=TRAIN, instance_type=instance_type).static_request(role_arn="r", kms_key_id="k")
    assert ("VolumeKmsKeyId" in training["ResourceConfig"]) is volume_key
    assert training["OutputDataConfig"]["KmsKeyId"] == "k"  # output keys are fine on every type
    processing = ProcessingProps(image_uri=TRAIN, instance_type=instance_type).static_request(role_arn="r", kms_key_id="k")
    assert ("VolumeKmsKeyId" in processing["ProcessingResources"]["ClusterConfig"]) is volume_key
    assert processing["OutputKmsKeyId"] == "k"


def test_default_training_type_sends_no_volume_key_in_the_definition():
    stack = new_stack()
    p = _pipeline(stack)
    request = p.definition["States"]["StartTrainingJob"]["Parameters"]
    assert request["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"
    assert "VolumeKmsKeyId" not in request["ResourceConfig"]


def test_batch_transform_processing_on_instance_storage_has_no_volume_key():
    from mlinfra.constructs.batch_transform import BatchTransform, ProcessingStep

    stack = new_stack()
    bucket = s3.Bucket(stack, "B")
    role = iam.Role(stack, "R", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    BatchTransform(stack, "T", model_package_group_name="m", model_role=role, input_bucket=bucket, input_prefix="in/",
                   output_bucket=bucket, output_prefix="out/", instance_type="ml.g5.xlarge", trigger_on_ready_marker=True,
                   processing=ProcessingStep(image_uri=TRAIN, entrypoint=["python3", "pre.py"], instance_type="ml.g5.xlarge"))
    text = json.dumps(Template.from_stack(stack).find_resources("AWS::StepFunctions::StateMachine"))
    assert "VolumeKmsKeyId" not in text


# --- item 2: the rollout can start the new model ------------------------------------------------------------

def test_deploying_needs_an_inference_image():
    stack = new_stack()
    with pytest.raises(ValueError, match=r"^TestStack/P: inference_image_uri is required with deploy_target .*sagemaker.inference-image-serves"):
        _pipeline(stack, target=_target(stack))


@pytest.mark.parametrize("image", [TRAIN, "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311"])
def test_a_training_image_is_not_an_inference_image(image):
    stack = new_stack()
    with pytest.raises(ValueError, match=r"inference_image_uri must be a serving image, not a training image"):
        _pipeline(stack, target=_target(stack), inference_image_uri=image)


def test_model_role_can_decrypt_the_artifact_and_pull_the_image_and_evaluation_reads_its_report():
    stack = new_stack()
    p = _pipeline(stack, target=_target(stack), inference_image_uri=SERVE, evaluation=ProcessingProps(image_uri=TRAIN))
    t = Template.from_stack(stack)
    key = stack.resolve(p.key.key_arn)
    model = _statements(t, "ModelRole")
    assert any("kms:Decrypt" in _actions(s) and s["Resource"] == key for s in model), model
    pulls = [s for s in model if "ecr:BatchGetImage" in _actions(s)]
    assert pulls and "repository/serve" in json.dumps(pulls)
    evaluation = _statements(t, "PEvaluationFunctionRole")
    assert any("kms:Decrypt" in _actions(s) and s["Resource"] == key for s in evaluation), evaluation


# --- item 3: one owner of the served model -----------------------------------------------------------------

@pytest.fixture(scope="module")
def owned():
    app = cdk.App()
    env = cdk.Environment(account="123456789012", region="us-east-1")
    state = cdk.Stack(app, "State", env=env)
    lake = DataLake(state, "Lake")
    models = lake.bucket("models")
    pointer = ModelPointer(state, "Pointer", parameter_prefix="/mlinfra/test/served", image_uri=SERVE,
                           model_bucket=models, model_data_key="initial/model.tar.gz")
    serving = cdk.Stack(app, "Serving", env=env)
    endpoint = Endpoint(serving, "Ep", model=ModelContainer.from_pointer(pointer),
                        variants=[ProductionVariant(instance_type="ml.m5.large", initial_instance_count=2)])
    pipeline_stack = cdk.Stack(app, "Pipeline", env=env)
    p = _pipeline(pipeline_stack, lake=lake, target=endpoint.deploy_target, inference_image_uri=SERVE)
    return dict(pointer=pointer, endpoint=endpoint, pipeline=p, serving=Template.from_stack(serving),
                state=Template.from_stack(state))


def test_the_stack_resolves_the_model_from_the_pointer_at_every_deploy(owned):
    t = owned["serving"].to_json()
    (model,) = [r for r in t["Resources"].values() if r["Type"] == "AWS::SageMaker::Model"]
    container = model["Properties"]["PrimaryContainer"]
    params = t["Parameters"]
    for prop, name in (("Image", "/mlinfra/test/served/image"), ("ModelDataUrl", "/mlinfra/test/served/model-data-url")):
        ref = container[prop]["Ref"]
        assert params[ref] == {"Type": "AWS::SSM::Parameter::Value<String>", "Default": name}


def test_the_pipeline_records_the_rolled_out_model_in_the_pointer(owned):
    states = owned["pipeline"].definition["States"]
    assert states["EndpointStatus"]["Choices"][0]["Next"] == "RecordServedModel"
    image, data = states["RecordServedModel"], states["RecordServedModelData"]
    assert image["Resource"] == data["Resource"] == "arn:aws:states:::aws-sdk:ssm:putParameter"
    assert image["Parameters"] == {"Name": "/mlinfra/test/served/image", "Overwrite": True, "Value": SERVE}
    assert data["Parameters"] == {"Name": "/mlinfra/test/served/model-data-url", "Overwrite": True,
                                  "Value.$": "$.training.result.model_data"}
    assert data["Next"] == "ApproveModelPackage"
    puts = [s for s in _statements(Template.from_stack(cdk.Stack.of(owned["pipeline"])), "PStateMachineRole")
            if "ssm:PutParameter" in _actions(s)]
    assert len(puts) == 1 and len(puts[0]["Resource"]) == 2


def test_stack_updates_of_the_endpoint_are_guarded_and_keep_capacity(owned):
    (ep,) = owned["serving"].find_resources("AWS::SageMaker::Endpoint").values()
    props = ep["Properties"]
    assert props["RetainAllVariantProperties"] is True
    assert props["ExcludeRetainedVariantProperties"] == [{"VariantPropertyType": "DataCaptureConfig"}]
    policy = props["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"]["Type"] == "CANARY"
    assert [a["AlarmName"] for a in props["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]]


def test_a_deploy_resolves_the_model_the_pipeline_rolled_out(owned):
    """In the emulator: the pointer stack exists; the pipeline's rollout writes the pointer (PutParameter, as its
    RecordServedModel states do); a deploy of the UNCHANGED serving template then serves the rolled-out model,
    because the model's properties are SSM-typed stack parameters resolved at deploy time. (moto skips resources
    whose template text did not change on update_stack, so this creates the stack after the rollout; CloudFormation
    re-resolves these parameters on every update: docs/serving.md names the real-account check.)"""
    import boto3
    from moto import mock_aws

    state, serving = owned["state"].to_json(), owned["serving"].to_json()
    keep = {k: v for k, v in serving["Resources"].items()
            if v["Type"] in ("AWS::SageMaker::Model", "AWS::SageMaker::EndpointConfig", "AWS::SageMaker::Endpoint")}
    for res in keep.values():
        res.pop("DependsOn", None)
    text = json.dumps({"Parameters": {k: v for k, v in serving["Parameters"].items() if k != "BootstrapVersion"},
                       "Resources": keep})
    for k in serving["Resources"]:  # stand-ins for the role and other resources the emulator need not create
        text = text.replace(json.dumps({"Fn::GetAtt": [k, "Arn"]}), json.dumps("arn:aws:iam::123456789012:role/model"))
        text = text.replace(json.dumps({"Ref": k}), json.dumps(k.lower()))
    bucket = next(k for k, v in state["Resources"].items() if k.startswith("LakeModelsBucket") and v["Type"] == "AWS::S3::Bucket")
    state_text = json.dumps({"Resources": {k: v for k, v in state["Resources"].items() if v["Type"] == "AWS::SSM::Parameter"}})
    state_text = state_text.replace(json.dumps({"Ref": bucket}), json.dumps("models-bucket"))
    with mock_aws():
        cfn, ssm, sm = (boto3.client(s, "us-east-1") for s in ("cloudformation", "ssm", "sagemaker"))
        cfn.create_stack(StackName="State", TemplateBody=state_text)
        assert ssm.get_parameter(Name="/mlinfra/test/served/model-data-url")["Parameter"]["Value"] == \
            "s3://models-bucket/initial/model.tar.gz"
        rolled_out = "s3://models-bucket/images/run-7/model.tar.gz"
        ssm.put_parameter(Name="/mlinfra/test/served/model-data-url", Value=rolled_out, Overwrite=True)
        cfn.create_stack(StackName="Serving", TemplateBody=text)
        (model,) = sm.list_models()["Models"]
        assert sm.describe_model(ModelName=model["ModelName"])["PrimaryContainer"]["ModelDataUrl"] == rolled_out


def test_model_pointer_prefix_must_be_a_literal_ssm_path():
    stack = new_stack()
    with pytest.raises(ValueError, match=r"^TestStack/P: parameter_prefix must be a literal SSM path"):
        ModelPointer(stack, "P", parameter_prefix="mlinfra/no-slash", image_uri=SERVE, model_bucket=s3.Bucket(stack, "B"),
                     model_data_key="m.tar.gz")


def test_pointer_excludes_image_and_data():
    stack = new_stack()
    pointer = ModelPointer(stack, "Ptr", parameter_prefix="/a/b", image_uri=SERVE, model_bucket=s3.Bucket(stack, "B"),
                           model_data_key="m.tar.gz")
    with pytest.raises(ValueError, match="pointer: a model pointer names the image and the artifact"):
        Endpoint(stack, "E", model=ModelContainer(pointer=pointer, image_uri=SERVE))


# --- item 6: no history-limit death ---------------------------------------------------------------------

def test_aws_variant_waits_with_sync_integrations_and_their_iam():
    stack = new_stack()
    p = _pipeline(stack, preprocessing=ProcessingProps(image_uri=TRAIN), evaluation=ProcessingProps(image_uri=TRAIN))
    states = p.definition["States"]
    assert states["StartTrainingJob"]["Resource"] == "arn:aws:states:::sagemaker:createTrainingJob.sync"
    assert states["StartPreprocessingJob"]["Resource"] == "arn:aws:states:::sagemaker:createProcessingJob.sync"
    assert states["StartEvaluationJob"]["Resource"] == "arn:aws:states:::sagemaker:createProcessingJob.sync"
    assert [n for n in states if n.startswith("Wait")] == ["WaitForLock"]  # no job poll loop in AWS
    statements = _statements(Template.from_stack(stack), "PStateMachineRole")
    rules = [s for s in statements if "events:PutRule" in _actions(s)]
    assert rules and {"events:PutTargets", "events:PutRule", "events:DescribeRule"} <= set(_actions(rules[0]))
    assert "StepFunctionsGetEventsForSageMakerTrainingJobsRule" in json.dumps(rules[0]["Resource"])
    jobs = [a for s in statements for a in _actions(s)]
    assert "sagemaker:StopTrainingJob" in jobs and "sagemaker:StopProcessingJob" in jobs


def test_worst_case_history_of_every_path_stays_under_the_limit():
    stack = new_stack()
    p = _pipeline(stack, target=_target(stack), inference_image_uri=SERVE, preprocessing=ProcessingProps(image_uri=TRAIN),
                  evaluation=ProcessingProps(image_uri=TRAIN), manual_approval=True,
                  training=TrainingProps(image_uri=TRAIN, max_runtime=cdk.Duration.days(5), max_attempts=5))
    assert p.worst_case_history_events < 25_000
    assert p.worst_case_history_events == worst_case_history_events(p.definition, p.settings)


def test_the_poll_loop_would_exceed_the_limit_and_is_only_the_emulators():
    stack = new_stack()
    p = _pipeline(stack, job_wait=JobWait.POLL)  # default training: 24 h runtime, 48 h spot wait, 2 attempts
    assert p.worst_case_history_events > 25_000  # what the AWS variant used to be
    Annotations.from_stack(stack).has_warning("/TestStack/P", Match.string_like_regexp("history events, over the 25000 limit"))
    assert p.definition["States"]["StartTrainingJob"]["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:createTrainingJob"


def test_a_sync_definition_over_the_limit_is_refused():
    stack = new_stack()
    with pytest.raises(ValueError, match=r"^TestStack/P: the longest execution may write \d+ history events"):
        _pipeline(stack, target=_target(stack), inference_image_uri=SERVE, poll_interval=cdk.Duration.seconds(1),
                  endpoint_timeout=cdk.Duration.hours(8))


# --- item 9: auto-rollback permissions and timing ---------------------------------------------------------

def test_state_machine_can_describe_the_rollback_alarms_and_waits_for_the_guardrails(owned):
    p, endpoint = owned["pipeline"], owned["endpoint"]
    statements = _statements(Template.from_stack(cdk.Stack.of(p)), "PStateMachineRole")
    (describe,) = [s for s in statements if "cloudwatch:DescribeAlarms" in _actions(s)]
    assert len(describe["Resource"]) == 2  # the 5XX and latency alarms
    guard = int(DeploymentGuardrails().maximum_execution_timeout.to_seconds())
    assert endpoint.deploy_target.deployment_timeout_seconds == guard
    polls = p.settings.endpoint_poll
    assert polls.interval_seconds * polls.max_polls >= guard + 1800


# --- item 7: no lock leak, no dropped version ------------------------------------------------------------

def test_execution_level_ends_release_the_lock_through_an_event_rule():
    stack = new_stack()
    p = _pipeline(stack)
    t = Template.from_stack(stack)
    (rule,) = [r for k, r in t.find_resources("AWS::Events::Rule").items() if k.startswith("PExecutionEndRule")]
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.states"] and pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert pattern["detail"]["status"] == ["FAILED", "TIMED_OUT", "ABORTED"]
    assert stack.resolve(p.state_machine_arn) == pattern["detail"]["stateMachineArn"][0]
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == stack.resolve(p.lineage_fn.function.function_arn)


def test_lock_wait_is_counted_in_the_history_budget():
    stack = new_stack()
    p = _pipeline(stack)
    from mlinfra.retrain_definition import visit_bounds

    visits = visit_bounds(p.definition, p.settings)
    assert visits["WaitForLock"] == p.settings.lock_poll.max_polls + 1
    # the lock wait covers one full training wait of the holder
    assert p.settings.lock_poll.interval_seconds * p.settings.lock_poll.max_polls >= 48 * 3600  # default spot wait
    assert p.settings.lock_poll.max_polls <= 200


@pytest.mark.parametrize(("guardrails", "message"), [
    (DeploymentGuardrails(traffic_shifting=TrafficShifting.LINEAR, linear_step_percent=10, wait_interval=cdk.Duration.minutes(10),
                          maximum_execution_timeout=cdk.Duration.hours(1)),
     r"deployment_guardrails: 10 bake wait\(s\) of 600 s \+ termination_wait 300 s must fit maximum_execution_timeout, got: 6300 s > 3600 s"),
    (DeploymentGuardrails(wait_interval=cdk.Duration.minutes(2)),
     r"deployment_guardrails.wait_interval must be at least the rollback alarms' window \(datapoints_to_alarm 3 x period 60 s = 180 s\)"),
])
def test_rollout_timing_must_fit_the_guardrails_and_the_alarms(guardrails, message):
    stack = new_stack()
    with pytest.raises(ValueError, match=message + ".*sagemaker.rollout-fits-guardrails"):
        Endpoint(stack, "E", model=ModelContainer(image_uri=SERVE), deployment_guardrails=guardrails)


def test_without_rollback_alarms_a_short_bake_is_accepted():
    stack = new_stack()
    Endpoint(stack, "E", model=ModelContainer(image_uri=SERVE),
             deployment_guardrails=DeploymentGuardrails(wait_interval=cdk.Duration.minutes(1), rollback_on_alarms=False))


def test_a_failed_or_rolled_back_model_is_rejected_in_the_registry(owned):
    states = owned["pipeline"].definition["States"]
    for failed in ("EndpointOutOfService", "DeploymentFailed", "DeploymentRolledBack"):
        assert states[failed]["Next"] == "RejectUndeployedPackage"
    reject = states["RejectUndeployedPackage"]
    assert reject["Parameters"]["ModelApprovalStatus"] == "Rejected" and reject["Next"] == "RecordFailure"


# --- issue 17: an existing endpoint, from its attributes ---------------------------------------------------

def test_an_existing_endpoint_gives_metrics_and_the_invoke_grant():
    stack = new_stack()
    ep = Endpoint.from_endpoint_attributes(stack, "Ext", endpoint_name="Churn-Prod", variant_names=["Blue", "Green"])
    assert stack.resolve(ep.endpoint_arn)["Fn::Join"][1][-1].endswith(":endpoint/churn-prod")  # ARNs carry the name in lower case
    assert ep.metric_invocations().dimensions == {"EndpointName": "Churn-Prod", "VariantName": "Blue"}
    role = iam.Role(stack, "Caller", assumed_by=iam.AccountRootPrincipal())
    ep.grant_invoke(role)
    statements = [s for p in Template.from_stack(stack).find_resources("AWS::IAM::Policy").values()
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    assert statements[0]["Action"][0] == "sagemaker:InvokeEndpoint"
    by_arn = Endpoint.from_endpoint_attributes(stack, "ByArn",
                                               endpoint_arn="arn:aws:sagemaker:us-east-1:123456789012:endpoint/churn-prod")
    assert by_arn.endpoint_name == "churn-prod"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "endpoint_name or endpoint_arn is required, got: neither"),
    ({"endpoint_arn": "arn:aws:s3:::b"}, "endpoint_arn must be arn:aws:sagemaker"),
    ({"endpoint_name": "a_b"}, "endpoint_name must be 1-63 letters, digits or hyphens, got: 'a_b'"),
    ({"endpoint_name": "e", "variant_names": []}, "variant_names must name 1 or more variants"),
])
def test_an_existing_endpoint_validates_its_attributes(kwargs, message):
    stack = new_stack()
    with pytest.raises(ValueError, match=r"^TestStack/Ext: " + re.escape(message)):
        Endpoint.from_endpoint_attributes(stack, "Ext", **kwargs)


def test_deploy_target_refuses_modes_the_rollout_cannot_reproduce():
    from mlinfra.constructs.endpoint import ModelData

    stack = new_stack()
    pointer = ModelPointer(stack, "Ptr", parameter_prefix="/a/b", image_uri=SERVE, model_bucket=s3.Bucket(stack, "B"),
                           model_data_key="m.tar.gz")
    serial = Endpoint(stack, "Serial", alarms=None, auto_scaling=None,
                      containers=[ModelContainer.from_pointer(pointer), ModelContainer(image_uri=SERVE)])
    many = Endpoint(stack, "Many", multi_model=True, alarms=None, auto_scaling=None,
                    model=ModelContainer(image_uri=SERVE, model_data=ModelData.from_bucket(s3.Bucket(stack, "M"), "many/")))
    for endpoint, what in ((serial, "a serial inference pipeline"), (many, "a multi-model container")):
        with pytest.raises(ValueError, match=f"deploy_target: a retrain pipeline rolls out one single-container model; "
                                             f"this endpoint serves {what}"):
            endpoint.deploy_target


# --- item 10: thresholds on multi-GPU instances -------------------------------------------------------------

@pytest.mark.parametrize(("instance_type", "gpus"), [("ml.g5.xlarge", 1), ("ml.g5.12xlarge", 4), ("ml.p4d.24xlarge", 8)])
def test_gpu_defaults_scale_with_the_gpu_count(instance_type, gpus):
    from mlinfra.constructs.endpoint import AutoScaling, ScalingMetric

    stack = new_stack()
    Endpoint(stack, "E", model=ModelContainer(image_uri=SERVE), variants=[ProductionVariant(instance_type=instance_type)],
             auto_scaling=AutoScaling(metric=ScalingMetric.GPU_UTILIZATION))
    t = Template.from_stack(stack)
    (alarm,) = [a for k, a in t.find_resources("AWS::CloudWatch::Alarm").items() if k.startswith("EGpuMemoryUtilization")]
    assert alarm["Properties"]["Threshold"] == 90 * gpus  # GPUMemoryUtilization is summed over GPUs
    (policy,) = t.find_resources("AWS::ApplicationAutoScaling::ScalingPolicy").values()
    assert policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 70 * gpus


def test_an_explicit_gpu_target_is_taken_as_given():
    from mlinfra.constructs.endpoint import AutoScaling, ScalingMetric

    stack = new_stack()
    Endpoint(stack, "E", model=ModelContainer(image_uri=SERVE), variants=[ProductionVariant(instance_type="ml.g5.12xlarge")],
             auto_scaling=AutoScaling(metric=ScalingMetric.GPU_UTILIZATION, target_value=200))
    (policy,) = Template.from_stack(stack).find_resources("AWS::ApplicationAutoScaling::ScalingPolicy").values()
    assert policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 200

