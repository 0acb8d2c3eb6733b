"""Endpoint construct: model, endpoint config, scaling (target tracking, scheduled, async scale-to-zero),
data capture, KMS, VPC, alarms in the metric's units, dashboard, rollout config, grants, validation."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Template

from mlinfra.constructs.endpoint import (
    AsyncInference,
    AutoScaling,
    DataCapture,
    DeploymentGuardrails,
    Endpoint,
    EndpointAlarms,
    EndpointMode,
    ModelContainer,
    ModelData,
    ProductionVariant,
    ScalingMetric,
    ScheduledScaling,
    ServerlessSettings,
    TrafficShifting,
)
from mlinfra.constructs.endpoint_target import EndpointTarget
from tests.helpers import new_stack

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1.0"
PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3"


def _by_logical_prefix(template: Template, type_: str, prefix: str) -> dict:
    found = {k: v for k, v in template.find_resources(type_).items() if k.startswith(prefix)}
    assert found, f"no {type_} under {prefix}"
    return found


@pytest.fixture(scope="module")
def built():
    stack = new_stack()
    bucket = s3.Bucket(stack, "Models", encryption=s3.BucketEncryption.KMS)
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=1)
    rt = Endpoint(
        stack, "Rt",
        model=ModelContainer(image_uri=IMAGE, model_data=ModelData.from_bucket(bucket, "churn/3/model.tar.gz")),
        variants=[ProductionVariant(name="Blue", instance_type="ml.g5.xlarge", initial_instance_count=2, initial_weight=0.9),
                  ProductionVariant(name="Green", instance_type="ml.g5.xlarge", initial_weight=0.1,
                                    model=ModelContainer(model_package_arn=PACKAGE))],
        data_capture=DataCapture(bucket=bucket, prefix="capture/churn/", sampling_percentage=25, capture_response=False),
        auto_scaling=AutoScaling(
            min_capacity=2, max_capacity=6, metric=ScalingMetric.GPU_UTILIZATION, target_value=60,
            scale_in_cooldown=cdk.Duration.minutes(10), scale_out_cooldown=cdk.Duration.seconds(30),
            protect_from_scale_in=True,
            scheduled=[ScheduledScaling("night", appscaling.Schedule.expression("cron(0 22 * * ? *)"), min_capacity=1,
                                        max_capacity=2, time_zone="Europe/Paris")],
        ),
        deployment_guardrails=DeploymentGuardrails(traffic_shifting=TrafficShifting.LINEAR, linear_step_percent=25),
        alarms=EndpointAlarms(latency_p99_ms=250, error_5xx_rate_percent=2, invocations_zero=True),
        vpc=vpc,
    )
    asy = Endpoint(
        stack, "Async", mode=EndpointMode.ASYNC,
        model=ModelContainer(image_uri=IMAGE, model_data=ModelData.from_bucket(bucket, "churn/3/model.tar.gz")),
        variants=[ProductionVariant(instance_type="ml.m5.xlarge")],
        async_inference=AsyncInference(output_bucket=bucket, max_concurrent_invocations_per_instance=4),
        vpc=vpc,
    )
    rti = Endpoint(stack, "Invocations", model=ModelContainer(image_uri=IMAGE), dashboard=False, alarms=None)
    sl = Endpoint(stack, "Sl", mode=EndpointMode.SERVERLESS, model=ModelContainer(image_uri=IMAGE),
                  serverless=ServerlessSettings(memory_size_mb=4096, max_concurrency=20, provisioned_concurrency=2))
    mme = Endpoint(stack, "Mme", multi_model=True, auto_scaling=None, alarms=None, dashboard=False,
                   model=ModelContainer(image_uri=IMAGE, model_data=ModelData.from_bucket(bucket, "many/")))
    pipe = Endpoint(stack, "Pipe", auto_scaling=None, alarms=None, dashboard=False,
                    containers=[ModelContainer(image_uri=IMAGE, hostname="pre"), ModelContainer(image_uri=IMAGE, hostname="model")],
                    shadow_variant=ProductionVariant(name="Shadow", instance_type="ml.c5.large",
                                                     model=ModelContainer(image_uri=IMAGE)))
    user = iam.Role(stack, "Caller", assumed_by=iam.AccountRootPrincipal())
    rt.grant_invoke(user)
    return dict(stack=stack, rt=rt, asy=asy, rti=rti, sl=sl, mme=mme, pipe=pipe, t=Template.from_stack(stack))


def test_scalable_target_namespace_dimension_and_resource_id(built):
    t = built["t"]
    targets = _by_logical_prefix(t, "AWS::ApplicationAutoScaling::ScalableTarget", "RtBlue")
    (target,) = targets.values()
    p = target["Properties"]
    assert p["ServiceNamespace"] == "sagemaker"
    assert p["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert (p["MinCapacity"], p["MaxCapacity"]) == (2, 6)
    # endpoint/<name>/variant/<variant>, the name taken from the endpoint resource (never a literal).
    endpoint_id = next(iter(_by_logical_prefix(t, "AWS::SageMaker::Endpoint", "RtEndpoint")))
    assert p["ResourceId"] == {"Fn::Join": ["", ["endpoint/", {"Fn::GetAtt": [endpoint_id, "EndpointName"]}, "/variant/Blue"]]}
    assert "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint" in json.dumps(p["RoleARN"])
    # each instance-backed variant scales on its own
    assert _by_logical_prefix(t, "AWS::ApplicationAutoScaling::ScalableTarget", "RtGreen")


def test_scheduled_action(built):
    (target,) = _by_logical_prefix(built["t"], "AWS::ApplicationAutoScaling::ScalableTarget", "RtBlue").values()
    assert target["Properties"]["ScheduledActions"] == [{
        "ScheduledActionName": "night", "Schedule": "cron(0 22 * * ? *)", "Timezone": "Europe/Paris",
        "ScalableTargetAction": {"MinCapacity": 1, "MaxCapacity": 2},
    }]


def test_gpu_target_tracking_custom_metric_cooldowns_scale_in_protection(built):
    policies = _by_logical_prefix(built["t"], "AWS::ApplicationAutoScaling::ScalingPolicy", "RtBlue")
    (policy,) = policies.values()
    cfg = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert policy["Properties"]["PolicyType"] == "TargetTrackingScaling"
    assert cfg["TargetValue"] == 60
    assert (cfg["ScaleInCooldown"], cfg["ScaleOutCooldown"], cfg["DisableScaleIn"]) == (600, 30, True)
    metric = cfg["CustomizedMetricSpecification"]
    assert (metric["Namespace"], metric["MetricName"], metric["Statistic"]) == ("/aws/sagemaker/Endpoints", "GPUUtilization", "Average")
    assert {"Name": "VariantName", "Value": "Blue"} in metric["Dimensions"]


def test_default_target_tracking_is_invocations_per_instance(built):
    (policy,) = _by_logical_prefix(built["t"], "AWS::ApplicationAutoScaling::ScalingPolicy", "InvocationsAllTraffic").values()
    cfg = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert cfg["PredefinedMetricSpecification"] == {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}
    assert cfg["TargetValue"] == 100 and cfg["DisableScaleIn"] is False
    (target,) = _by_logical_prefix(built["t"], "AWS::ApplicationAutoScaling::ScalableTarget", "Invocations").values()
    assert target["Properties"]["MinCapacity"] == 1


def test_async_scales_to_zero_on_backlog_with_step_policy_from_zero(built):
    t = built["t"]
    (target,) = _by_logical_prefix(t, "AWS::ApplicationAutoScaling::ScalableTarget", "Async").values()
    assert target["Properties"]["MinCapacity"] == 0
    policies = _by_logical_prefix(t, "AWS::ApplicationAutoScaling::ScalingPolicy", "Async")
    tracking = [p["Properties"] for p in policies.values() if p["Properties"]["PolicyType"] == "TargetTrackingScaling"]
    step = [p["Properties"] for p in policies.values() if p["Properties"]["PolicyType"] == "StepScaling"]
    metric = tracking[0]["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]
    assert (metric["Namespace"], metric["MetricName"]) == ("AWS/SageMaker", "ApproximateBacklogSizePerInstance")
    assert [d["Name"] for d in metric["Dimensions"]] == ["EndpointName"]
    assert step and step[0]["StepScalingPolicyConfiguration"]["StepAdjustments"] == [
        {"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]
    alarms = [a["Properties"] for a in _by_logical_prefix(t, "AWS::CloudWatch::Alarm", "Async").values()
              if a["Properties"].get("MetricName") == "HasBacklogWithoutCapacity"]
    assert alarms and alarms[0]["Threshold"] == 1


def test_async_config_output_failure_paths_kms_concurrency(built):
    (cfg,) = _by_logical_prefix(built["t"], "AWS::SageMaker::EndpointConfig", "Async").values()
    a = cfg["Properties"]["AsyncInferenceConfig"]
    assert "async-inference/output/" in json.dumps(a["OutputConfig"]["S3OutputPath"])
    assert "async-inference/failure/" in json.dumps(a["OutputConfig"]["S3FailurePath"])
    assert "KmsKeyId" in a["OutputConfig"]
    assert a["ClientConfig"] == {"MaxConcurrentInvocationsPerInstance": 4}


def test_model_image_data_network_isolation_vpc(built):
    t = built["t"]
    models = _by_logical_prefix(t, "AWS::SageMaker::Model", "RtModel")
    (m,) = [v["Properties"] for k, v in models.items() if not k.startswith("RtGreen")]
    assert m["EnableNetworkIsolation"] is True
    assert m["PrimaryContainer"]["Image"] == IMAGE
    assert "churn/3/model.tar.gz" in json.dumps(m["PrimaryContainer"]["ModelDataUrl"])
    assert len(m["VpcConfig"]["Subnets"]) == 2
    private = {k for k in t.find_resources("AWS::EC2::Subnet") if "Private" in k}
    assert {s["Ref"] for s in m["VpcConfig"]["Subnets"]} <= private
    # the group only allows HTTPS out
    (sg,) = _by_logical_prefix(t, "AWS::EC2::SecurityGroup", "RtSecurityGroup").values()
    (egress,) = sg["Properties"]["SecurityGroupEgress"]
    assert (egress["FromPort"], egress["ToPort"], egress["IpProtocol"]) == (443, 443, "tcp")


def test_variant_model_from_registry_package(built):
    (green,) = _by_logical_prefix(built["t"], "AWS::SageMaker::Model", "RtGreenModel").values()
    assert green["Properties"]["PrimaryContainer"] == {"ModelPackageName": PACKAGE}


def test_variants_weights_and_no_volume_key_on_instance_storage_types(built):
    (cfg,) = _by_logical_prefix(built["t"], "AWS::SageMaker::EndpointConfig", "RtEndpointConfig").values()
    p = cfg["Properties"]
    assert [(v["VariantName"], v["InstanceType"], v["InitialVariantWeight"]) for v in p["ProductionVariants"]] == [
        ("Blue", "ml.g5.xlarge", 0.9), ("Green", "ml.g5.xlarge", 0.1)]
    # g5 has local NVMe (hardware encrypted): CreateEndpointConfig rejects KmsKeyId with it.
    assert "KmsKeyId" not in p
    assert built["rt"].volume_key_applied is False


def test_volume_kms_key_on_ebs_types(built):
    (cfg,) = _by_logical_prefix(built["t"], "AWS::SageMaker::EndpointConfig", "InvocationsEndpointConfig").values()
    key_id = next(iter(_by_logical_prefix(built["t"], "AWS::KMS::Key", "InvocationsKey")))
    assert cfg["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    built["t"].has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_data_capture(built):
    (cfg,) = _by_logical_prefix(built["t"], "AWS::SageMaker::EndpointConfig", "RtEndpointConfig").values()
    dc = cfg["Properties"]["DataCaptureConfig"]
    assert dc["EnableCapture"] is True
    assert dc["InitialSamplingPercentage"] == 25
    assert dc["CaptureOptions"] == [{"CaptureMode": "Input"}]
    assert "capture/churn/" in json.dumps(dc["DestinationS3Uri"])
    assert "KmsKeyId" in dc


def test_latency_alarm_threshold_in_microseconds(built):
    t = built["t"]
    latency = [a["Properties"] for k, a in _by_logical_prefix(t, "AWS::CloudWatch::Alarm", "RtLatencyP99").items()]
    assert latency[0]["MetricName"] == "ModelLatency"
    assert latency[0]["ExtendedStatistic"] == "p99"
    assert latency[0]["Threshold"] == 250_000  # 250 ms


def test_error_rate_alarms_are_percent_of_invocations(built):
    (a,) = _by_logical_prefix(built["t"], "AWS::CloudWatch::Alarm", "RtErrors5xx").values()
    p = a["Properties"]
    assert p["Threshold"] == 2
    expr = [m for m in p["Metrics"] if "Expression" in m][0]["Expression"]
    assert "100 *" in expr
    names = {m["MetricStat"]["Metric"]["MetricName"] for m in p["Metrics"] if "MetricStat" in m}
    assert names == {"Invocation5XXErrors", "Invocations"}
    assert _by_logical_prefix(built["t"], "AWS::CloudWatch::Alarm", "RtErrors4xx")


def test_utilization_and_zero_invocation_alarms_to_encrypted_topic(built):
    t = built["t"]
    alarms = {k: a["Properties"] for k, a in _by_logical_prefix(t, "AWS::CloudWatch::Alarm", "Rt").items()}
    by_metric = {p.get("MetricName"): p for p in alarms.values() if "MetricName" in p}
    assert by_metric["DiskUtilization"]["Threshold"] == 80
    assert by_metric["MemoryUtilization"]["Threshold"] == 85
    assert by_metric["GPUMemoryUtilization"]["Threshold"] == 90  # g5: a GPU type
    zero = by_metric["Invocations"]
    assert (zero["ComparisonOperator"], zero["Threshold"], zero["TreatMissingData"]) == ("LessThanThreshold", 1, "breaching")
    topic_id = next(iter(_by_logical_prefix(t, "AWS::SNS::Topic", "RtAlarmTopic")))
    for p in alarms.values():
        assert {"Ref": topic_id} in p["AlarmActions"]
    (topic,) = _by_logical_prefix(t, "AWS::SNS::Topic", "RtAlarmTopic").values()
    assert "KmsMasterKeyId" in topic["Properties"]


def test_no_gpu_alarm_on_cpu_types(built):
    metrics = {a["Properties"].get("MetricName") for a in _by_logical_prefix(built["t"], "AWS::CloudWatch::Alarm", "Async").values()}
    assert "GPUMemoryUtilization" not in metrics and "DiskUtilization" in metrics


def test_dashboard_widgets(built):
    (board,) = _by_logical_prefix(built["t"], "AWS::CloudWatch::Dashboard", "Rt").values()
    body = json.dumps(board["Properties"]["DashboardBody"])
    for title in ("Invocations", "Invocations per instance", "Latency (microseconds)", "Errors", "Instance count",
                  "Utilization (%)", "Alarms"):
        assert f'\\"title\\":\\"{title}\\"' in body, title
    for metric in ("InvocationsPerInstance", "ModelLatency", "OverheadLatency", "Invocation5XXErrors", "GPUUtilization",
                   "CPUUtilization", "MemoryUtilization", "DiskUtilization"):
        assert metric in body, metric


def test_serverless_config_no_instance_type_no_scaling(built):
    t = built["t"]
    (cfg,) = _by_logical_prefix(t, "AWS::SageMaker::EndpointConfig", "Sl").values()
    (v,) = cfg["Properties"]["ProductionVariants"]
    assert "InstanceType" not in v and "InitialInstanceCount" not in v
    assert v["ServerlessConfig"] == {"MemorySizeInMB": 4096, "MaxConcurrency": 20, "ProvisionedConcurrency": 2}
    assert not {k for k in t.find_resources("AWS::ApplicationAutoScaling::ScalableTarget") if k.startswith("Sl")}
    with pytest.raises(ValueError, match="serverless endpoints have no instance type"):
        built["sl"].deploy_target


def test_multi_model_and_serial_pipeline_and_shadow(built):
    t = built["t"]
    (mme,) = _by_logical_prefix(t, "AWS::SageMaker::Model", "MmeModel").values()
    assert mme["Properties"]["PrimaryContainer"]["Mode"] == "MultiModel"
    assert json.dumps(mme["Properties"]["PrimaryContainer"]["ModelDataUrl"]).endswith('/many/"]]}')
    pipe = _by_logical_prefix(t, "AWS::SageMaker::Model", "PipeModel")
    serial = [m["Properties"] for m in pipe.values() if "Containers" in m["Properties"]]
    assert serial[0]["InferenceExecutionConfig"] == {"Mode": "Serial"}
    assert [c["ContainerHostname"] for c in serial[0]["Containers"]] == ["pre", "model"]
    (cfg,) = _by_logical_prefix(t, "AWS::SageMaker::EndpointConfig", "Pipe").values()
    assert cfg["Properties"]["ShadowProductionVariants"][0]["VariantName"] == "Shadow"


def test_deploy_target_refuses_a_model_declared_in_the_stack(built):
    # issue 12 item 3: one owner per model. A stack-declared model would be rolled back by the next deploy.
    with pytest.raises(ValueError, match=r"^TestStack/Rt: deploy_target needs the primary variant's model from a ModelPointer"):
        built["rt"].deploy_target


def test_deployment_config_names_the_rollback_alarms_literally(built):
    rt, stack = built["rt"], built["stack"]
    dc = stack.resolve(rt.deployment_config)
    routing = dc["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing == {"Type": "LINEAR", "WaitIntervalInSeconds": 300, "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25}}
    assert dc["BlueGreenUpdatePolicy"]["TerminationWaitInSeconds"] == 300
    names = [a["AlarmName"] for a in dc["AutoRollbackConfiguration"]["Alarms"]]
    # Literal names (the endpoint resource's own DeploymentConfig names them; a Ref would be a cycle).
    alarms = {a["Properties"]["AlarmName"] for k, a in built["t"].find_resources("AWS::CloudWatch::Alarm").items()
              if k.startswith(("RtErrors5xx", "RtLatencyP99"))}
    assert set(names) == alarms and all(isinstance(n, str) for n in names)


def test_canary_deployment_config():
    stack = new_stack()
    ep = Endpoint(stack, "E", model=ModelContainer(image_uri=IMAGE), alarms=None)
    dc = ep.deployment_config
    assert dc["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["CanarySize"] == {"Type": "CAPACITY_PERCENT", "Value": 10}
    assert "AutoRollbackConfiguration" not in dc  # no alarms, nothing to roll back on
    assert Endpoint(stack, "F", model=ModelContainer(image_uri=IMAGE), deployment_guardrails=None).deployment_config is None


def test_execution_role_scoped(built):
    t = built["t"]
    role_id = next(k for k in t.find_resources("AWS::IAM::Role") if k.startswith("RtExecutionRole"))
    policies = [p["Properties"] for p in t.find_resources("AWS::IAM::Policy").values()
                if {"Ref": role_id} in p["Properties"]["Roles"]]
    statements = [s for p in policies for s in p["PolicyDocument"]["Statement"]]
    text = json.dumps(statements)
    assert "iam:PassRole" not in text
    s3_resources = [json.dumps(s["Resource"]) for s in statements if any(str(a).startswith("s3:") for a in _list(s["Action"]))]
    assert s3_resources and all("churn/3/model.tar.gz" in r or "capture/churn/" in r for r in s3_resources), s3_resources
    ecr = [s for s in statements if "ecr:BatchGetImage" in _list(s["Action"])]
    assert any("repository/serve" in json.dumps(s["Resource"]) for s in ecr)
    logs = [s for s in statements if s.get("Sid") == "EndpointLogs"]
    assert "/aws/sagemaker/Endpoints/*" in json.dumps(logs[0]["Resource"])


def test_grant_invoke_on_this_endpoint_only(built):
    t = built["t"]
    role_id = next(k for k in t.find_resources("AWS::IAM::Role") if k.startswith("Caller"))
    (policy,) = [p["Properties"] for p in t.find_resources("AWS::IAM::Policy").values() if {"Ref": role_id} in p["Properties"]["Roles"]]
    (st,) = policy["PolicyDocument"]["Statement"]
    assert "sagemaker:InvokeEndpoint" in st["Action"]
    endpoint_id = next(iter(_by_logical_prefix(t, "AWS::SageMaker::Endpoint", "RtEndpoint")))
    assert st["Resource"] == {"Ref": endpoint_id}


def test_metric_helpers(built):
    rt = built["rt"]
    m = rt.metric_model_latency()
    assert (m.metric_name, m.namespace, m.statistic) == ("ModelLatency", "AWS/SageMaker", "p99")
    assert rt.metric_gpu_utilization().namespace == "/aws/sagemaker/Endpoints"
    assert rt.metric_invocations(variant="Green").dimensions["VariantName"] == "Green"
    assert built["asy"].metric_backlog_per_instance().metric_name == "ApproximateBacklogSizePerInstance"


def _list(x):
    return x if isinstance(x, list) else [x]


# ------------------------------------------------------------------------------------------------ validation


def _make(**kw):
    stack = new_stack()
    kw.setdefault("model", ModelContainer(image_uri=IMAGE))
    return Endpoint(stack, "E", **kw)


def _bucket():
    return s3.Bucket(new_stack(), "B")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(auto_scaling=AutoScaling(min_capacity=3, max_capacity=2)), r"max_capacity must be >= min_capacity \(3\)"),
        (dict(auto_scaling=AutoScaling(min_capacity=0)), r"min_capacity must be >= 1 \(0 only for async"),
        (dict(auto_scaling=AutoScaling(target_value=0)), r"target_value must be > 0, got: 0"),
        (dict(auto_scaling=AutoScaling(target_value=-5)), r"target_value must be > 0, got: -5"),
        (dict(mode=EndpointMode.SERVERLESS, variants=[ProductionVariant(instance_type="ml.m5.large")]),
         r"serverless endpoints take no instance type.*ml\.m5\.large"),
        (dict(mode=EndpointMode.ASYNC), r"async endpoints need an S3 output path"),
        (dict(mode=EndpointMode.SERVERLESS, auto_scaling=AutoScaling()), r"serverless endpoints scale themselves"),
        (dict(mode=EndpointMode.ASYNC, async_inference=AsyncInference()), r"async endpoints need an S3 output path"),
        (dict(variants=[ProductionVariant(instance_type="ml.x9.large")]), r"unknown SageMaker hosting instance family 'x9'"),
        (dict(variants=[ProductionVariant(instance_type="m5.large")]), r"starting with 'ml\.'"),
        (dict(variants=[ProductionVariant(instance_type="m1.large")]), r"starting with 'ml\.'"),
        (dict(auto_scaling=AutoScaling(metric=ScalingMetric.BACKLOG_PER_INSTANCE)), r"BACKLOG_PER_INSTANCE applies to async"),
        (dict(auto_scaling=AutoScaling(metric=ScalingMetric.GPU_UTILIZATION)), r"GPU_UTILIZATION needs GPU instance types"),
        (dict(variants=[ProductionVariant(initial_instance_count=0)]), r"initial_instance_count must be >= 1"),
        (dict(variants=[ProductionVariant(name="a"), ProductionVariant(name="a")]), r"names must be unique"),
        (dict(variants=[ProductionVariant(name="bad_name")]), r"variant name must be"),
        (dict(variants=[ProductionVariant(instance_type="ml.g5.xlarge", volume_size_gb=100)]), r"instance storage"),
        (dict(deployment_guardrails=DeploymentGuardrails(canary_percent=60)), r"canary_percent must be between 1 and 50"),
        (dict(deployment_guardrails=DeploymentGuardrails(traffic_shifting=TrafficShifting.LINEAR, linear_step_percent=5)),
         r"linear_step_percent must be between 10 and 50"),
        (dict(deployment_guardrails=DeploymentGuardrails(maximum_execution_timeout=cdk.Duration.minutes(5))),
         r"maximum_execution_timeout must be between 600 and 28800"),
        (dict(alarms=EndpointAlarms(latency_p99_ms=0)), r"latency_p99_ms must be > 0"),
        (dict(alarms=EndpointAlarms(error_5xx_rate_percent=150)), r"error_5xx_rate_percent must be in \(0, 100\]"),
        (dict(alarms=EndpointAlarms(datapoints_to_alarm=9)), r"datapoints_to_alarm must be between 1 and evaluation_periods"),
        (dict(multi_model=True), r"model_data must be an S3 prefix ending with '/'"),
        (dict(mode=EndpointMode.SERVERLESS, multi_model=True), r"only real-time endpoints host multi-model"),
        (dict(model=None), r"model: required"),
        (dict(model=ModelContainer()), r"image_uri: required unless model_package_arn"),
        (dict(model=ModelContainer(image_uri=IMAGE, model_package_arn=PACKAGE)), r"do not pass image_uri or model_data too"),
        (dict(model=ModelContainer(model_package_arn="churn/3")), r"model_package_arn must be a SageMaker model package ARN"),
        (dict(containers=[ModelContainer(image_uri=IMAGE)], model=None), r"2-15 containers, got: 1"),
        (dict(containers=[ModelContainer(image_uri=IMAGE)] * 16, model=None), r"2-15 containers, got: 16"),
        (dict(containers=[ModelContainer(image_uri=IMAGE)] * 2), r"not both"),
        (dict(mode=EndpointMode.SERVERLESS, serverless=ServerlessSettings(memory_size_mb=1500)), r"memory_size_mb must be one of"),
        (dict(mode=EndpointMode.SERVERLESS, serverless=ServerlessSettings(max_concurrency=500)), r"max_concurrency must be between 1 and 200"),
        (dict(mode=EndpointMode.SERVERLESS, serverless=ServerlessSettings(max_concurrency=2, provisioned_concurrency=3)),
         r"provisioned_concurrency must be between 1 and max_concurrency"),
        (dict(mode=EndpointMode.SERVERLESS, network_isolation=True), r"do not support network isolation"),
        (dict(serverless=ServerlessSettings()), r"serverless: settings apply to serverless mode only"),
        (dict(shadow_variant=ProductionVariant(name="S"), mode=EndpointMode.ASYNC), r"only real-time endpoints have shadow"),
        (dict(endpoint_name="bad name!"), r"endpoint_name must be"),
        (dict(auto_scaling=AutoScaling(scheduled=[ScheduledScaling("n", appscaling.Schedule.expression("rate(1 day)"))])),
         r"set min_capacity, max_capacity or both"),
        (dict(auto_scaling=AutoScaling(scheduled=[ScheduledScaling("n", appscaling.Schedule.expression("rate(1 day)"),
                                                                   min_capacity=5, max_capacity=2)])), r"must be <= max_capacity"),
    ],
)
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _make(**kwargs)


def test_validation_with_buckets_and_vpc():
    stack = new_stack()
    bucket = s3.Bucket(stack, "B")
    vpc = ec2.Vpc(stack, "V", max_azs=1, nat_gateways=0)
    img = ModelContainer(image_uri=IMAGE)
    with pytest.raises(ValueError, match=r"async endpoints scale on BACKLOG_PER_INSTANCE, got: INVOCATIONS_PER_INSTANCE"):
        Endpoint(stack, "A1", mode=EndpointMode.ASYNC, model=img, async_inference=AsyncInference(output_bucket=bucket),
                 auto_scaling=AutoScaling(metric=ScalingMetric.INVOCATIONS_PER_INSTANCE))
    with pytest.raises(ValueError, match=r"async_inference.output_prefix must be"):
        Endpoint(stack, "A2", mode=EndpointMode.ASYNC, model=img, async_inference=AsyncInference(output_bucket=bucket, output_prefix="/x"))
    with pytest.raises(ValueError, match=r"async_inference: settings apply to async mode only"):
        Endpoint(stack, "A3", model=img, async_inference=AsyncInference(output_bucket=bucket))
    with pytest.raises(ValueError, match=r"sampling_percentage must be between 0 and 100"):
        Endpoint(stack, "D1", model=img, data_capture=DataCapture(bucket=bucket, sampling_percentage=101))
    with pytest.raises(ValueError, match=r"capture the request, the response or both"):
        Endpoint(stack, "D2", model=img, data_capture=DataCapture(bucket=bucket, capture_request=False, capture_response=False))
    with pytest.raises(ValueError, match=r"serverless endpoints do not support data capture"):
        Endpoint(stack, "D3", mode=EndpointMode.SERVERLESS, model=img, data_capture=DataCapture(bucket=bucket))
    with pytest.raises(ValueError, match=r"serverless endpoints do not support VPC"):
        Endpoint(stack, "V1", mode=EndpointMode.SERVERLESS, model=img, vpc=vpc)
    with pytest.raises(ValueError, match=r"vpc_subnets/security_groups need vpc"):
        Endpoint(stack, "V2", model=img, vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED))
    with pytest.raises(ValueError, match=r"key must be a non-empty object key"):
        ModelData.from_bucket(bucket, "/abs")
    with pytest.raises(ValueError, match=r"model data uri must be s3://"):
        ModelData.from_uri("https://example.com/model.tar.gz")
    # async min 0 is allowed; min -1 is not
    with pytest.raises(ValueError, match=r"min_capacity must be >= 0"):
        Endpoint(stack, "A4", mode=EndpointMode.ASYNC, model=img, async_inference=AsyncInference(output_bucket=bucket),
                 auto_scaling=AutoScaling(min_capacity=-1))


def test_tokens_are_not_validated_as_literals():
    stack = new_stack()
    param = cdk.CfnParameter(stack, "Pkg").value_as_string
    Endpoint(stack, "E", model=ModelContainer(model_package_arn=param), endpoint_name=cdk.CfnParameter(stack, "N").value_as_string)
