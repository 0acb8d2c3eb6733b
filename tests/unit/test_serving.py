"""ServingStack in the reference app, its config section, and the serving smoke plug-in (against moto)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from aws_cdk.assertions import Template

from mlinfra.app import create_app
from mlinfra.config import ConfigError, ScheduledScalingConfig, ServingConfig, load_config
from mlinfra.constructs.endpoint_target import EndpointTarget


@pytest.fixture(scope="module")
def prod(prod_config):
    _, platform = create_app(config=prod_config, nag=False)
    stack = platform.extra["serving"]
    return stack, Template.from_stack(stack).to_json()


def _res(t, type_, prefix=""):
    return {k: v for k, v in t["Resources"].items() if v["Type"] == type_ and k.startswith(prefix)}


def test_serving_stack_in_reference_app(prod, prod_config):
    stack, _ = prod
    assert stack.stack_name == "mlinfra-prod-serving"
    assert stack.termination_protection is True
    target = stack.realtime_endpoint.deploy_target
    assert isinstance(target, EndpointTarget)
    assert target.instance_type == prod_config.serving.instance_type == "ml.c6i.xlarge"
    assert target.initial_instance_count == 2
    assert target.deployment_config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == "LINEAR"
    assert len(target.deployment_config["AutoRollbackConfiguration"]["Alarms"]) == 2


def test_realtime_scaling_from_config(prod):
    _, t = prod
    (target,) = _res(t, "AWS::ApplicationAutoScaling::ScalableTarget", "RealtimeEndpoint").values()
    p = target["Properties"]
    assert (p["MinCapacity"], p["MaxCapacity"]) == (2, 8)
    assert [a["ScheduledActionName"] for a in p["ScheduledActions"]] == ["night-floor", "day-floor"]
    assert p["ScheduledActions"][0] == {"ScheduledActionName": "night-floor", "Schedule": "cron(0 22 * * ? *)",
                                        "ScalableTargetAction": {"MinCapacity": 1}}
    (policy,) = _res(t, "AWS::ApplicationAutoScaling::ScalingPolicy", "RealtimeEndpoint").values()
    cfg = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert cfg["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"
    assert cfg["TargetValue"] == 100


def test_async_endpoint_scales_to_zero_and_writes_to_the_lake(prod):
    _, t = prod
    (target,) = _res(t, "AWS::ApplicationAutoScaling::ScalableTarget", "AsyncEndpoint").values()
    assert target["Properties"]["MinCapacity"] == 0
    (cfg,) = _res(t, "AWS::SageMaker::EndpointConfig", "AsyncEndpoint").values()
    out = json.dumps(cfg["Properties"]["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"])
    assert "ArtifactsBucket" in out and "async-inference/output/" in out


def test_data_capture_to_lake_vpc_and_isolation(prod):
    _, t = prod
    (cfg,) = _res(t, "AWS::SageMaker::EndpointConfig", "RealtimeEndpoint").values()
    dc = cfg["Properties"]["DataCaptureConfig"]
    assert dc["InitialSamplingPercentage"] == 20
    assert "ArtifactsBucket" in json.dumps(dc["DestinationS3Uri"]) and "data-capture/realtime/" in json.dumps(dc["DestinationS3Uri"])
    assert "KmsKeyId" in cfg["Properties"]  # c6i: EBS volume, encrypted with the endpoint key
    for model in _res(t, "AWS::SageMaker::Model").values():
        assert model["Properties"]["EnableNetworkIsolation"] is True
        assert len(model["Properties"]["VpcConfig"]["Subnets"]) == 3  # private subnets across prod's 3 AZs
        url = json.dumps(model["Properties"]["PrimaryContainer"]["ModelDataUrl"]).lower()
        # the real-time model resolves the pointer's SSM parameter; the async one names the lake's models zone
        assert "models" in url or "modeldataurl" in url


def test_alarms_from_config_in_metric_units(prod):
    _, t = prod
    alarms = {k: v["Properties"] for k, v in _res(t, "AWS::CloudWatch::Alarm", "RealtimeEndpoint").items()}
    latency = [a for a in alarms.values() if a.get("MetricName") == "ModelLatency"]
    assert latency[0]["Threshold"] == 500_000  # 500 ms in microseconds
    assert any(a.get("MetricName") == "Invocations" and a["ComparisonOperator"] == "LessThanThreshold" for a in alarms.values())
    # one encrypted alarm topic shared by both endpoints (the batch workflow has its own failure topic)
    assert len(_res(t, "AWS::SNS::Topic", "RealtimeEndpoint")) == 1 and not _res(t, "AWS::SNS::Topic", "AsyncEndpoint")
    assert len(_res(t, "AWS::CloudWatch::Dashboard")) == 2


def test_batch_transform_from_config(prod):
    stack, t = prod
    assert stack.batch_transform is not None
    rules = [v["Properties"] for v in _res(t, "AWS::Events::Rule", "BatchTransform").values()]
    assert any(r.get("ScheduleExpression") == "cron(0 3 * * ? *)" for r in rules)
    (marker,) = [r for r in rules if "EventPattern" in r]
    assert "CuratedBucket" in json.dumps(marker["EventPattern"])
    assert marker["EventPattern"]["detail"]["object"]["key"] == [{"prefix": "batch-inference/input/_ready/"}]
    (sm,) = _res(t, "AWS::StepFunctions::StateMachine", "BatchTransform").values()
    definition = json.dumps(sm["Properties"]["DefinitionString"])
    assert "batch-inference/output/{}/model-version={}/{}/" in definition and ".sync" not in definition
    # The pipeline's registry (issue 12 item 11), not the endpoint's initial model.
    cfg = stack.config
    assert stack.batch_transform.model_package_group_name == f"{cfg.prefix}-{cfg.env_name}-models"
    assert stack.batch_transform.model_role is stack.realtime_endpoint.role


def test_outputs(prod):
    _, t = prod
    assert {"RealtimeEndpointName", "RealtimeEndpointArn", "RealtimeVariantName", "AsyncEndpointName",
            "AlarmTopicArn", "ModelExecutionRoleArn", "BatchTransformStateMachineArn"} <= set(t["Outputs"])


def test_local_config_uses_types_the_emulator_accepts(local_config):
    # moto's EndpointConfig accepts older types only (m5, c5, g4dn, p3, inf1...)
    assert local_config.serving.instance_type == "ml.m5.large"
    assert local_config.serving.async_instance_type == "ml.c5.large"


def test_batch_transform_without_the_pipeline_warns_that_runs_need_an_approved_model(local_config):
    from aws_cdk.assertions import Annotations, Match

    cfg = dataclasses.replace(local_config, pipeline=dataclasses.replace(local_config.pipeline, enabled=False))
    assert cfg.serving.batch_transform_schedule
    _, platform = create_app(config=cfg, nag=False)
    stack = platform.extra["serving"]
    Annotations.from_stack(stack).has_warning(
        f"/{stack.stack_name}", Match.string_like_regexp(f"model package group {cfg.prefix}-{cfg.env_name}-models, which "
                                                         "the retrain pipeline \\(disabled here\\) creates"))
    with_pipeline = create_app(config=local_config, nag=False)[1].extra["serving"]
    assert not Annotations.from_stack(with_pipeline).find_warning("*", Match.string_like_regexp("NoApprovedModel"))


def test_serving_can_be_disabled(local_config):
    cfg = dataclasses.replace(local_config, serving=dataclasses.replace(local_config.serving, enabled=False))
    _, platform = create_app(config=cfg, nag=False)
    assert "serving" not in platform.extra


@pytest.mark.parametrize(
    "serving, expected",
    [
        ({"instance_type": "m5.large"}, "serving.instance_type must be a SageMaker instance type"),
        ({"async_instance_type": "ml.zz9.large"}, "serving.async_instance_type has an unknown SageMaker hosting instance family"),
        ({"min_capacity": 0}, "serving.min_capacity: must be >= 1 for a real-time endpoint"),
        ({"min_capacity": 3, "max_capacity": 2}, "serving.max_capacity: must be >= min_capacity (3), got: 2"),
        ({"target_value": 0}, "serving.target_value: must be > 0, got: 0"),
        ({"latency_p99_ms": -1}, "serving.latency_p99_ms: must be > 0"),
        ({"scaling_metric": "gpu"}, "serving.scaling_metric: gpu needs a GPU instance_type"),
        ({"data_capture_percent": 120}, "serving.data_capture_percent: must be between 0 and 100"),
        ({"canary_percent": 0}, "serving.canary_percent: must be between 1 and 50"),
        ({"bake_minutes": 90}, "serving.bake_minutes: must be between 0 and 60"),
        ({"scheduled": [{"name": "x", "schedule": "every day", "min_capacity": 1}]}, "serving.scheduled[0].schedule"),
        ({"scheduled": [{"name": "x", "schedule": "rate(1 day)"}]}, "serving.scheduled[0]: set min_capacity"),
        ({"traffic_shifting": "big-bang"}, "serving.traffic_shifting: expected one of"),
        ({"batch_transform_schedule": "daily"}, "serving.batch_transform_schedule: must be cron(...) or rate(...)"),
        ({"batch_transform_instance_type": "ml.nope.large"}, "serving.batch_transform_instance_type has an unknown"),
    ],
)
def test_config_validation(serving, expected):
    with pytest.raises(ConfigError) as exc:
        load_config({"defaults": {"serving": serving}, "environments": {"dev": {}}}, "dev")
    assert any(expected in e for e in exc.value.errors), exc.value.errors


def test_config_defaults_are_valid():
    assert ServingConfig().validate() == []
    assert ScheduledScalingConfig(name="n", schedule="cron(0 1 * * ? *)", min_capacity=1).name == "n"


@pytest.mark.policy
def test_serving_stack_is_nag_clean(prod_config, tmp_path):
    app, platform = create_app(config=prod_config, nag=True, outdir=str(tmp_path))
    assert "serving" in platform.extra
    app.synth()  # raises on any unacknowledged cdk-nag finding


# ------------------------------------------------------------------------------------------------ smoke


class _Ctx:
    def __init__(self, config, outputs):
        self.config = config
        self._outputs = outputs
        self.endpoint_url = None

    def client(self, name):
        import boto3

        return boto3.client(name, region_name="us-east-1")

    def has_stack(self, suffix):
        return suffix == "serving"

    def outputs(self, suffix):
        return self._outputs


def _endpoint(sm, name, instance_type, capture_percent=None, async_out=None):
    sm.create_model(ModelName=name, ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
                    PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"})
    cfg = {"EndpointConfigName": name, "ProductionVariants": [
        {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": instance_type, "InitialInstanceCount": 1}]}
    if capture_percent:
        cfg["DataCaptureConfig"] = {"EnableCapture": True, "InitialSamplingPercentage": capture_percent,
                                    "DestinationS3Uri": "s3://lake/data-capture/realtime/",
                                    "CaptureOptions": [{"CaptureMode": "Input"}]}
    if async_out:
        cfg["AsyncInferenceConfig"] = {"OutputConfig": {"S3OutputPath": async_out}}
    sm.create_endpoint_config(**cfg)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)


@pytest.fixture(scope="module")
def local_template(local_config):
    app, _ = create_app(config=local_config, nag=False)
    return app.synth().get_stack_by_name(local_config.stack_name("serving")).template


def test_smoke_registers_the_templates_scaling_through_the_api(local_config, local_template, monkeypatch):
    from moto import mock_aws

    from mlinfra.local_aws.smoke import serving as smoke

    logical = {k for k, v in local_template["Resources"].items() if v["Type"] == "AWS::SageMaker::Endpoint"}
    names = {lid: ("rt-endpoint" if lid.startswith("Realtime") else "async-endpoint") for lid in logical}
    monkeypatch.setattr(smoke, "_synthesized_template", lambda ctx: local_template)
    monkeypatch.setattr(smoke, "_live_endpoint_names", lambda ctx: names)
    (machine,) = [v for v in local_template["Resources"].values() if v["Type"] == "AWS::StepFunctions::StateMachine"]
    definition = "".join(p if isinstance(p, str) else "x" for p in machine["Properties"]["DefinitionString"]["Fn::Join"][1])
    with mock_aws():
        cfn = _Ctx(local_config, {}).client("cloudformation")
        cfn.create_stack(StackName=local_config.stack_name("serving"), TemplateBody=json.dumps({"Resources": {
            "BatchTransformStateMachine": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
                "DefinitionString": definition, "RoleArn": "arn:aws:iam::123456789012:role/sfn"}}}}))
        (res,) = cfn.describe_stack_resources(StackName=local_config.stack_name("serving"))["StackResources"]
        arn = res["PhysicalResourceId"]
        ctx = _Ctx(local_config, {"RealtimeEndpointName": "rt-endpoint", "RealtimeVariantName": "AllTraffic",
                                  "AsyncEndpointName": "async-endpoint", "BatchTransformStateMachineArn": arn})
        sm = ctx.client("sagemaker")
        _endpoint(sm, "rt-endpoint", "ml.m5.large", capture_percent=100)
        _endpoint(sm, "async-endpoint", "ml.c5.large", async_out="s3://lake/async-inference/output/")
        lines = smoke.run(ctx)
        aas = ctx.client("application-autoscaling")
        targets = {t["ResourceId"]: t for t in aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]}
        policies = aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert set(targets) == {"endpoint/rt-endpoint/variant/AllTraffic", "endpoint/async-endpoint/variant/AllTraffic"}
    assert targets["endpoint/async-endpoint/variant/AllTraffic"]["MinCapacity"] == 0
    assert targets["endpoint/rt-endpoint/variant/AllTraffic"]["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    kinds = sorted(p["PolicyType"] for p in policies)
    assert kinds == ["StepScaling", "TargetTrackingScaling", "TargetTrackingScaling"]
    assert any("InService" in line for line in lines)
    assert any("SageMakerVariantInvocationsPerInstance" in line for line in lines)
    assert any("poll loop without .sync" in line for line in lines)


def test_smoke_fails_when_endpoint_not_in_service_or_variant_missing(local_config, local_template, monkeypatch):
    from moto import mock_aws

    from mlinfra.local_aws.smoke import serving as smoke

    with mock_aws():
        ctx = _Ctx(local_config, {"RealtimeEndpointName": "missing"})
        with pytest.raises(Exception, match="Could not find endpoint"):
            smoke.run(ctx)
        sm = ctx.client("sagemaker")
        _endpoint(sm, "rt", "ml.m5.large")
        # a template whose target names a variant the endpoint does not have
        bad = json.loads(json.dumps(local_template).replace("/variant/AllTraffic", "/variant/Nope"))
        logical = {k for k, v in bad["Resources"].items() if v["Type"] == "AWS::SageMaker::Endpoint"}
        with pytest.raises(AssertionError, match="has variants \\['AllTraffic'\\], not Nope"):
            smoke.register_scaling(ctx.client("application-autoscaling"), bad, {lid: "rt" for lid in logical}, sm)
        # data capture configured but absent on the endpoint
        ctx2 = _Ctx(local_config, {"RealtimeEndpointName": "rt"})
        with pytest.raises(AssertionError, match="data capture is"):
            smoke.run(ctx2)


def test_deploy_target_crosses_stacks(prod_config):
    """The pipeline lives in another stack: every token of the target must resolve there (exports/imports)."""
    import aws_cdk as cdk
    from aws_cdk import aws_iam as iam

    app, platform = create_app(config=prod_config, nag=False)
    target = platform.extra["serving"].realtime_endpoint.deploy_target
    consumer = cdk.Stack(app, "Consumer", env=platform.extra["serving"].environment and cdk.Environment(
        account=prod_config.account, region=prod_config.region))
    role = iam.Role(consumer, "Pipeline", assumed_by=iam.ServicePrincipal("states.amazonaws.com"))
    role.add_to_policy(iam.PolicyStatement(actions=["sagemaker:UpdateEndpoint"], resources=[target.endpoint_arn]))
    target.model_execution_role.grant_pass_role(role)
    cdk.CfnOutput(consumer, "DeploymentConfig", value=consumer.to_json_string(target.deployment_config))
    cdk.CfnOutput(consumer, "EndpointName", value=target.endpoint_name)
    t = Template.from_stack(consumer).to_json()
    text = json.dumps(t)
    assert "Fn::ImportValue" in text and "mlinfra-prod-serving" in text
    assert "LINEAR" in json.dumps(t["Outputs"]["DeploymentConfig"])


@pytest.mark.policy
def test_constructs_nag_clean_in_one_stack():
    """Endpoint and BatchTransform next to the lake and network in ONE stack (same-stack references)."""
    import aws_cdk as cdk
    from aws_cdk import aws_events as events

    from mlinfra.app import FEATURE_FLAGS, register_nag
    from mlinfra.constructs.batch_transform import BatchTransform
    from mlinfra.constructs.data_lake import DataLake
    from mlinfra.constructs.endpoint import AsyncInference, DataCapture, Endpoint, EndpointMode, ModelContainer, ModelData
    from mlinfra.constructs.network import Network

    app = cdk.App(context=FEATURE_FLAGS)
    register_nag(app)
    stack = cdk.Stack(app, "One", env=cdk.Environment(account="123456789012", region="us-east-1"))
    lake = DataLake(stack, "Lake")
    net = Network(stack, "Net")
    model = ModelContainer(image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1",
                           model_data=ModelData.from_bucket(lake.bucket("models"), "m/1/model.tar.gz"))
    rt = Endpoint(stack, "Rt", model=model, vpc=net.vpc, vpc_subnets=net.private_subnet_selection,
                  data_capture=DataCapture(bucket=lake.bucket("artifacts")))
    Endpoint(stack, "Async", mode=EndpointMode.ASYNC, model=model, vpc=net.vpc,
             async_inference=AsyncInference(output_bucket=lake.bucket("artifacts")))
    BatchTransform(stack, "Bt", model_package_group_name="models", model_role=rt.role, vpc_config=rt.vpc_config,
                   input_bucket=lake.bucket("curated"), output_bucket=lake.bucket("artifacts"),
                   schedule=events.Schedule.rate(cdk.Duration.days(1)), trigger_on_ready_marker=True)
    app.synth()  # raises on any unacknowledged finding
