"""Tokens in validation: one token case per construct (DESIGN.md, "Examples to follow" 11).

Every numeric or ``Duration`` prop a construct validates is given an unresolved token (a CloudFormation
parameter): where the value goes straight into a resource property, the construct synthesizes and the template
references the parameter; where the construct computes with the value at synth time, it refuses the token with a
message naming the prop (``must be a literal value``), never ``got: -1.888e+289``. Every message starts with the
construct's path.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Template

from tests.helpers import new_stack

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1.0"
TRAIN_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1.0"


class Params:
    """Fresh CloudFormation parameters of one stack, as number and Duration tokens; remembers their names."""

    def __init__(self, stack: cdk.Stack) -> None:
        self.stack = stack
        self.names: list[str] = []

    def num(self, name: str) -> Any:
        self.names.append(name)
        return cdk.CfnParameter(self.stack, name, type="Number").value_as_number

    def seconds(self, name: str) -> cdk.Duration:
        return cdk.Duration.seconds(self.num(name))

    def text(self, name: str) -> str:
        self.names.append(name)
        return cdk.CfnParameter(self.stack, name).value_as_string


def _refs(template: dict[str, Any]) -> set[str]:
    """Every ``Ref`` target of the template, including those inside Fn::Join/Sub strings of definitions."""
    text = json.dumps({k: v for k, v in template.items() if k != "Parameters"})
    found = set()
    for name in [p for p in template.get("Parameters", {})]:
        if f'{{"Ref": "{name}"}}' in text or f"${{{name}}}" in text:
            found.add(name)
    return found


# --- builders: each takes (stack, params) and builds one construct with tokens wherever tokens are legal -------


def _data_lake(stack: cdk.Stack, p: Params) -> None:
    from mlinfra.constructs.data_lake import DataLake, Lifecycle

    DataLake(stack, "Lake", access_log_retention_days=p.num("LogDays"), lifecycle={
        "raw": Lifecycle(infrequent_access_days=p.num("IaDays"), glacier_days=p.num("GlacierDays"),
                         noncurrent_expiration_days=p.num("NoncurrentDays"),
                         abort_incomplete_multipart_days=p.num("MultipartDays")),
        "curated": Lifecycle(intelligent_tiering_days=p.num("TieringDays"), deep_archive_days=p.num("DeepDays")),
    })


def _imported_lake(stack: cdk.Stack, p: Params) -> None:
    from mlinfra.constructs.data_lake import DataLake
    from aws_cdk import aws_iam as iam

    lake = DataLake.from_lake_attributes(stack, "Lake", bucket_names={"raw": p.text("RawBucket")},
                                         key_arn=p.text("KeyArn"))
    lake.grant_read("raw", iam.Role(stack, "Reader", assumed_by=iam.AccountRootPrincipal()), "dataset=x/")


def _handler_function(stack: cdk.Stack, p: Params) -> None:
    from mlinfra.constructs.lambda_function import HandlerFunction

    HandlerFunction(stack, "Fn", handler="pipeline_lineage", description="tokens",
                    timeout=p.seconds("Timeout"), memory_size=p.num("MemoryMiB"))


def _endpoint(stack: cdk.Stack, p: Params) -> None:
    from mlinfra.constructs.endpoint import (AutoScaling, DeploymentGuardrails, Endpoint, EndpointAlarms, ModelContainer,
                                             ModelData, ProductionVariant)

    bucket = s3.Bucket(stack, "Models")
    Endpoint(
        stack, "Endpoint",
        model=ModelContainer(image_uri=IMAGE, model_data=ModelData.from_bucket(bucket, "m/model.tar.gz")),
        variants=[ProductionVariant(instance_type="ml.m5.large", initial_instance_count=p.num("Count"),
                                    volume_size_gb=p.num("Volume"),
                                    model_data_download_timeout=p.seconds("Download"),
                                    startup_health_check_timeout=p.seconds("Startup"))],
        auto_scaling=AutoScaling(min_capacity=p.num("MinCapacity"), max_capacity=p.num("MaxCapacity"),
                                 target_value=p.num("Target"), scale_in_cooldown=p.seconds("ScaleIn"),
                                 scale_out_cooldown=p.seconds("ScaleOut")),
        # The case: a token wait_interval in the guardrails.
        deployment_guardrails=DeploymentGuardrails(canary_percent=p.num("Canary"), wait_interval=p.seconds("Wait"),
                                                   termination_wait=p.seconds("Termination"),
                                                   maximum_execution_timeout=p.seconds("MaxRollout")),
        alarms=EndpointAlarms(error_5xx_rate_percent=p.num("Err5xx"), error_4xx_rate_percent=p.num("Err4xx"),
                              disk_utilization_percent=p.num("Disk"), memory_utilization_percent=p.num("Memory"),
                              evaluation_periods=p.num("Periods"), datapoints_to_alarm=p.num("Datapoints")),
    )


def _drift_monitor(stack: cdk.Stack, p: Params) -> None:
    from mlinfra.constructs.drift_monitor import DriftMonitor

    bucket = s3.Bucket(stack, "Capture")
    DriftMonitor(stack, "Drift", endpoint_name="churn", capture_bucket=bucket, capture_prefix="capture/",
                 baseline_bucket=bucket, volume_size_gb=p.num("VolumeGb"), poll_interval=p.seconds("Poll"),
                 no_records_alarm_days=p.num("NoRecordsDays"))


def _batch_transform(stack: cdk.Stack, p: Params) -> None:
    from mlinfra.constructs.batch_transform import BatchTransform, ProcessingStep

    bucket = s3.Bucket(stack, "Data")
    role = iam.Role(stack, "ModelRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    BatchTransform(stack, "Transform", model_package_group_name=p.text("Group"), model_role=role, input_bucket=bucket,
                   output_bucket=bucket, instance_count=p.num("Instances"), poll_interval=p.seconds("Poll"), timeout=p.seconds("Timeout"),
                   max_payload_mb=p.num("PayloadMb"), max_concurrent_transforms=p.num("Concurrency"),
                   trigger_on_ready_marker=True,
                   processing=ProcessingStep(image_uri=IMAGE, entrypoint=["python3", "pre.py"],
                                             instance_count=p.num("ProcessingInstances"),
                                             max_runtime=p.seconds("ProcessingRuntime")))


def _hyperpod(stack: cdk.Stack, p: Params) -> None:
    from aws_cdk import aws_cloudwatch as cloudwatch
    from mlinfra.constructs.hyperpod import (HyperPodCluster, HyperPodInstanceGroup, HyperPodLifecycle,
                                             HyperPodSoftwareUpdates)
    from mlinfra.domain.hyperpod import SlurmNodeType

    vpc = ec2.Vpc.from_vpc_attributes(stack, "Vpc", vpc_id="vpc-0123456789abcdef0", availability_zones=["us-east-1a"],
                                      private_subnet_ids=["subnet-0123456789abcdef0"])
    alarm = cloudwatch.Alarm.from_alarm_arn(stack, "A", "arn:aws:cloudwatch:us-east-1:123456789012:alarm:x")
    HyperPodCluster(
        stack, "HyperPod", vpc=vpc, subnet=vpc.private_subnets[0], cluster_name="ml-training",
        instance_groups=[HyperPodInstanceGroup("controller", "ml.m5.xlarge", SlurmNodeType.CONTROLLER),
                         HyperPodInstanceGroup("gpu", "ml.g5.xlarge", partition="gpu", instance_count=p.num("Nodes"),
                                               threads_per_core=p.num("Threads"),
                                               ebs_volume_size_gib=p.num("EbsGib"))],
        lifecycle=HyperPodLifecycle.bundled(s3.Bucket(stack, "Scripts")),
        software_updates=HyperPodSoftwareUpdates("cron(0 3 ? * SUN *)", [alarm], max_batch_percent=p.num("Batch"),
                                                 wait=p.seconds("Wait")))


def _team_environment(stack: cdk.Stack, p: Params) -> None:
    from mlinfra.constructs.data_lake import DataLake
    from mlinfra.constructs.team_environment import TeamEnvironment

    TeamEnvironment(stack, "Team", team_name="team-a", cost_centre="cc", lake=DataLake(stack, "Lake"),
                    vpc=ec2.Vpc(stack, "Vpc", max_azs=2), max_vcpus=p.num("Vcpus"),
                    monthly_budget_usd=p.num("Budget"), budget_thresholds_percent=[p.num("Threshold")])


def _firehose(stack: cdk.Stack, p: Params) -> None:
    from mlinfra.constructs.data_lake import DataLake
    from mlinfra.constructs.firehose import RawDeliveryStream

    RawDeliveryStream(stack, "Stream", lake=DataLake(stack, "Lake"), name="events", date_field="t",
                      buffer_interval=p.seconds("Interval"), buffer_size_mib=p.num("SizeMib"))


def _datasync(stack: cdk.Stack, p: Params) -> None:
    from mlinfra.constructs import datasync as ds
    from mlinfra.constructs.data_lake import DataLake

    agent = "arn:aws:datasync:us-east-1:123456789012:agent/agent-0123456789abcdef0"
    ds.DataSyncTask(stack, "Task", source=ds.NfsSource("nfs.corp", "/exports", [agent]), lake=DataLake(stack, "Lake"),
                    prefix="images/", bytes_per_second=p.num("Bandwidth"))


def _sftp(stack: cdk.Stack, p: Params) -> None:
    from aws_cdk import aws_efs as efs
    from mlinfra.constructs import transfer as tf

    vpc = ec2.Vpc(stack, "Vpc", max_azs=1)
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0bWxpbmZyYXRlc3RrZXlmb3J0cmFuc2Zlcmlk partner"
    tf.SftpServer(stack, "Sftp", vpc=vpc, file_system=efs.FileSystem(stack, "Fs", vpc=vpc),
                  users=[tf.SftpUser("partner-a", "partner-a/", [key], posix_uid=p.num("Uid"), posix_gid=p.num("Gid"))])


BUILDERS: dict[str, Callable[[cdk.Stack, Params], None]] = {
    "DataLake": _data_lake,
    "ImportedDataLake": _imported_lake,
    "HandlerFunction": _handler_function,
    "Endpoint": _endpoint,
    "DriftMonitor": _drift_monitor,
    "BatchTransform": _batch_transform,
    "HyperPodCluster": _hyperpod,
    "TeamEnvironment": _team_environment,
    "RawDeliveryStream": _firehose,
    "DataSyncTask": _datasync,
    "SftpServer": _sftp,
}


@pytest.mark.parametrize("construct", sorted(BUILDERS))
def test_token_props_synthesize_and_reach_the_template(construct: str) -> None:
    stack = new_stack()
    params = Params(stack)
    BUILDERS[construct](stack, params)
    template = Template.from_stack(stack).to_json()
    missing = sorted(set(params.names) - _refs(template))
    assert not missing, f"{construct}: token props that never reach the template: {missing}"


# --- props a construct computes with at synth time: a token is refused, naming the prop --------------------------


def _network(stack: cdk.Stack, **kw: Any) -> None:
    from mlinfra.constructs.network import Network

    Network(stack, "Net", **kw)


def _pipeline(stack: cdk.Stack, **kw: Any) -> None:
    from mlinfra.constructs.data_lake import DataLake
    from mlinfra.constructs.retrain_pipeline import RetrainPipeline, TrainingProps

    kw.setdefault("training", TrainingProps(image_uri=TRAIN_IMAGE))
    kw.setdefault("metric_name", "accuracy")
    RetrainPipeline(stack, "Pipeline", lake=DataLake(stack, "Lake"), datasets=["images"], **kw)


def _training(**kw: Any) -> Any:
    from mlinfra.constructs.retrain_pipeline import TrainingProps

    return TrainingProps(image_uri=TRAIN_IMAGE, **kw)


def _processing(**kw: Any) -> Any:
    from mlinfra.constructs.retrain_pipeline import ProcessingProps

    return ProcessingProps(image_uri=TRAIN_IMAGE, **kw)


def _drift(stack: cdk.Stack, **kw: Any) -> None:
    from mlinfra.constructs.drift_monitor import DriftMonitor

    bucket = s3.Bucket(stack, "Capture")
    DriftMonitor(stack, "Drift", endpoint_name="churn", capture_bucket=bucket, capture_prefix="capture/",
                 baseline_bucket=bucket, **kw)


def _transform(stack: cdk.Stack, **kw: Any) -> None:
    from mlinfra.constructs.batch_transform import BatchTransform

    bucket = s3.Bucket(stack, "Data")
    role = iam.Role(stack, "ModelRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    BatchTransform(stack, "Transform", model_package_group_name="churn", model_role=role, input_bucket=bucket,
                   output_bucket=bucket, trigger_on_ready_marker=True, **kw)


def _endpoint_alarms(stack: cdk.Stack, **kw: Any) -> None:
    from mlinfra.constructs.endpoint import Endpoint, EndpointAlarms, ModelContainer

    Endpoint(stack, "Endpoint", model=ModelContainer(image_uri=IMAGE), alarms=EndpointAlarms(**kw))


def _github_oidc(stack: cdk.Stack, **kw: Any) -> None:
    from mlinfra.constructs.github_oidc import GithubOidcDeployRole

    kw.setdefault("repository", "example-org/ml-platform")
    GithubOidcDeployRole(stack, "Gh", **kw)


def _num(stack: cdk.Stack) -> Any:
    return cdk.CfnParameter(stack, "Literal", type="Number").value_as_number


def _dur(stack: cdk.Stack) -> cdk.Duration:
    return cdk.Duration.seconds(_num(stack))


LITERAL_CASES = [
    # (builder, path, prop in the message, kwargs from a stack)
    (_network, "Net", "cidr", lambda s: {"cidr": cdk.CfnParameter(s, "Literal").value_as_string}),
    (_network, "Net", "max_azs", lambda s: {"max_azs": _num(s)}),
    (_network, "Net", "nat_gateways", lambda s: {"nat_gateways": _num(s)}),
    (_network, "Net", "training_az_index", lambda s: {"training_az_index": _num(s)}),
    (_network, "Net", "flow_log_retention_days", lambda s: {"flow_log_retention_days": _num(s)}),
    (_pipeline, "Pipeline", "training.instance_count", lambda s: {"training": _training(instance_count=_num(s))}),
    (_pipeline, "Pipeline", "training.volume_size_gb", lambda s: {"training": _training(volume_size_gb=_num(s))}),
    (_pipeline, "Pipeline", "training.max_runtime", lambda s: {"training": _training(max_runtime=_dur(s))}),
    (_pipeline, "Pipeline", "training.max_wait", lambda s: {"training": _training(max_wait=_dur(s))}),
    (_pipeline, "Pipeline", "training.max_attempts", lambda s: {"training": _training(max_attempts=_num(s))}),
    (_pipeline, "Pipeline", "evaluation.max_runtime", lambda s: {"evaluation": _processing(max_runtime=_dur(s))}),
    (_pipeline, "Pipeline", "preprocessing.instance_count",
     lambda s: {"preprocessing": _processing(instance_count=_num(s))}),
    (_pipeline, "Pipeline", "poll_interval", lambda s: {"poll_interval": _dur(s)}),
    (_pipeline, "Pipeline", "approval_timeout", lambda s: {"approval_timeout": _dur(s)}),
    (_pipeline, "Pipeline", "endpoint_timeout", lambda s: {"endpoint_timeout": _dur(s)}),
    (_pipeline, "Pipeline", "execution_timeout", lambda s: {"execution_timeout": _dur(s)}),
    (_pipeline, "Pipeline", "lock_wait", lambda s: {"lock_wait": _dur(s)}),
    (_pipeline, "Pipeline", "threshold", lambda s: {"threshold": _num(s)}),
    (_pipeline, "Pipeline", "min_improvement", lambda s: {"min_improvement": _num(s)}),
    (_pipeline, "Pipeline", "log_retention_days", lambda s: {"log_retention_days": _num(s)}),
    (_drift, "Drift", "window", lambda s: {"window": _dur(s)}),
    (_drift, "Drift", "max_runtime", lambda s: {"max_runtime": _dur(s)}),
    (_drift, "Drift", "log_retention_days", lambda s: {"log_retention_days": _num(s)}),
    (_transform, "Transform", "log_retention_days", lambda s: {"log_retention_days": _num(s)}),
    (_github_oidc, "Gh", "max_session_duration", lambda s: {"max_session_duration": _dur(s)}),
    (_endpoint_alarms, "Endpoint", "alarms.latency_p99_ms", lambda s: {"latency_p99_ms": _num(s)}),
    (_endpoint_alarms, "Endpoint", "alarms.gpu_memory_utilization_percent",
     lambda s: {"gpu_memory_utilization_percent": _num(s)}),
]


@pytest.mark.parametrize("build, path, prop, kwargs", LITERAL_CASES,
                         ids=[f"{c[1]}-{c[2]}" for c in LITERAL_CASES])
def test_a_token_where_a_literal_is_computed_with_names_the_prop(build, path, prop, kwargs) -> None:
    stack = new_stack()
    with pytest.raises(ValueError) as err:
        build(stack, **kwargs(stack))
    message = str(err.value)
    assert message.startswith(f"TestStack/{path}: {prop} must be a literal value, not an unresolved token ("), message
    assert "${Token[" in message and "e+289" not in message, message


# --- every construct's validation message starts with its path --------------------------------------------------


def _bad_lake(stack: cdk.Stack) -> None:
    from mlinfra.constructs.data_lake import DataLake

    DataLake(stack, "Bad", zones=["gold"])


def _bad_imported_lake(stack: cdk.Stack) -> None:
    from mlinfra.constructs.data_lake import DataLake

    DataLake.from_lake_attributes(stack, "Bad", bucket_names={"gold": "b"})


def _bad_endpoint(stack: cdk.Stack) -> None:
    from mlinfra.constructs.endpoint import Endpoint, ModelContainer

    Endpoint(stack, "Bad", model=ModelContainer(image_uri=IMAGE), endpoint_name="no spaces")


def _bad_imported_endpoint(stack: cdk.Stack) -> None:
    from mlinfra.constructs.endpoint import Endpoint

    Endpoint.from_endpoint_attributes(stack, "Bad", endpoint_name="no spaces")


def _bad_pointer(stack: cdk.Stack) -> None:
    from mlinfra.constructs.endpoint import ModelPointer

    ModelPointer(stack, "Bad", parameter_prefix="no-slash", image_uri=IMAGE, model_bucket=s3.Bucket(stack, "B"),
                 model_data_key="m.tar.gz")


def _bad_team(stack: cdk.Stack) -> None:
    from mlinfra.constructs.data_lake import DataLake
    from mlinfra.constructs.team_environment import TeamEnvironment

    TeamEnvironment(stack, "Bad", team_name="Team_A", cost_centre="cc", lake=DataLake(stack, "Lake"),
                    vpc=ec2.Vpc(stack, "Vpc", max_azs=1))


def _bad_portfolio(stack: cdk.Stack) -> None:
    from mlinfra.constructs.team_environment import TeamPortfolio

    TeamPortfolio(stack, "Bad", teams=[])


def _bad_stream(stack: cdk.Stack) -> None:
    from mlinfra.constructs.data_lake import DataLake
    from mlinfra.constructs.firehose import RawDeliveryStream

    RawDeliveryStream(stack, "Bad", lake=DataLake(stack, "Lake"), name="events", compression="BROTLI")


def _bad_datasync(stack: cdk.Stack) -> None:
    from mlinfra.constructs import datasync as ds
    from mlinfra.constructs.data_lake import DataLake

    agent = "arn:aws:datasync:us-east-1:123456789012:agent/agent-0123456789abcdef0"
    ds.DataSyncTask(stack, "Bad", source=ds.NfsSource("nfs.corp", "/exports", [agent]), lake=DataLake(stack, "Lake"),
                    prefix="images/", verify_mode="SOMETIMES")


def _bad_datasync_endpoint(stack: cdk.Stack) -> None:
    from mlinfra.constructs import datasync as ds

    ds.DataSyncEndpoint(stack, "Bad", vpc=ec2.Vpc(stack, "Vpc", max_azs=1), agent_cidrs=[])


def _bad_sftp(stack: cdk.Stack) -> None:
    from mlinfra.constructs import transfer as tf

    tf.SftpServer(stack, "Bad", vpc=ec2.Vpc(stack, "Vpc", max_azs=1), users=[])


def _bad_hyperpod(stack: cdk.Stack) -> None:
    from mlinfra.constructs.hyperpod import HyperPodCluster, HyperPodInstanceGroup, HyperPodLifecycle

    vpc = ec2.Vpc.from_vpc_attributes(stack, "Vpc", vpc_id="vpc-0123456789abcdef0", availability_zones=["us-east-1a"],
                                      private_subnet_ids=["subnet-0123456789abcdef0"])
    HyperPodCluster(stack, "Bad", vpc=vpc, subnet=vpc.private_subnets[0], cluster_name="ml-training",
                    instance_groups=[HyperPodInstanceGroup("gpu", "ml.g5.xlarge", partition="gpu")],
                    lifecycle=HyperPodLifecycle.bundled(s3.Bucket(stack, "Scripts")), node_recovery="Sometimes")


PATH_CASES = {
    "DataLake": _bad_lake,
    "ImportedDataLake": _bad_imported_lake,
    "Network": lambda s: _network(s, max_azs=9),
    "Endpoint": _bad_endpoint,
    "ImportedEndpoint": _bad_imported_endpoint,
    "ModelPointer": _bad_pointer,
    "RetrainPipeline": lambda s: _pipeline(s, metric_name="no spaces"),
    "DriftMonitor": lambda s: _drift(s, volume_size_gb=0),
    "BatchTransform": lambda s: _transform(s, instance_count=0),
    "HyperPodCluster": _bad_hyperpod,
    "TeamEnvironment": _bad_team,
    "TeamPortfolio": _bad_portfolio,
    "RawDeliveryStream": _bad_stream,
    "DataSyncTask": _bad_datasync,
    "DataSyncEndpoint": _bad_datasync_endpoint,
    "SftpServer": _bad_sftp,
    "GithubOidcDeployRole": lambda s: _github_oidc(s, repository="not-a-repo"),
}


@pytest.mark.parametrize("construct", sorted(PATH_CASES))
def test_validation_errors_start_with_the_construct_path(construct: str) -> None:
    stack = new_stack()
    with pytest.raises(ValueError) as err:
        PATH_CASES[construct](stack)
    expected = {"Network": "Net", "RetrainPipeline": "Pipeline", "DriftMonitor": "Drift", "BatchTransform": "Transform",
                "GithubOidcDeployRole": "Gh"}.get(construct, "Bad")
    assert str(err.value).startswith(f"TestStack/{expected}: "), str(err.value)
