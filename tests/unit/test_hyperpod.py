"""HyperPodCluster: the CreateCluster request the template makes (checked against botocore's model), the
service rules as negative tests, and the data flows its execution role needs (proved from the policies)."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk.assertions import Template

from mlinfra.constructs.data_lake import ImportedDataLake
from mlinfra.constructs.hyperpod import (
    DeepHealthCheck,
    HyperPodCluster,
    HyperPodInstanceGroup,
    HyperPodLakeAccess,
    HyperPodLifecycle,
    HyperPodSoftwareUpdates,
    NodeRecovery,
    SlurmNodeType,
)
from mlinfra.constructs.lustre_cache import LustreCache, LustreLink
from mlinfra.domain.api_model import request_errors
from tests.helpers import new_stack, only

KEY = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"


def _net(stack):
    vpc = ec2.Vpc.from_vpc_attributes(stack, "Vpc", vpc_id="vpc-0123456789abcdef0", availability_zones=["us-east-1a"],
                                      private_subnet_ids=["subnet-0123456789abcdef0"])
    return vpc, vpc.private_subnets[0]


def _groups(**compute: Any) -> list[HyperPodInstanceGroup]:
    return [
        HyperPodInstanceGroup("controller", "ml.m5.xlarge", SlurmNodeType.CONTROLLER),
        HyperPodInstanceGroup("login", "ml.m5.xlarge", SlurmNodeType.LOGIN),
        HyperPodInstanceGroup(**{"name": "gpu", "instance_type": "ml.p5.48xlarge", "instance_count": 0,
                                 "partition": "gpu", **compute}),
    ]


def _cluster(stack, *, groups=None, lustre=True, **kwargs) -> HyperPodCluster:
    vpc, subnet = _net(stack)
    lake = ImportedDataLake(stack, "Lake", bucket_names={"raw": "raw-bkt", "artifacts": "art-bkt"}, key_arn=KEY)
    cache = LustreCache(stack, "Cache", vpc=vpc, subnet=subnet,
                        links=[LustreLink("/raw", lake.bucket("raw"))]) if lustre else None
    kwargs.setdefault("lifecycle", HyperPodLifecycle.bundled(lake.bucket("artifacts"), "hyperpod/lifecycle/"))
    return HyperPodCluster(stack, "HyperPod", vpc=vpc, subnet=subnet, instance_groups=groups or _groups(),
                           cluster_name=kwargs.pop("cluster_name", "ml-training"), lustre=cache, lake=lake,
                           lake_read=[HyperPodLakeAccess("raw", "dataset=images/")],
                           lake_write=[HyperPodLakeAccess("artifacts", "checkpoints/")], **kwargs)


@pytest.fixture(scope="module")
def synthesized() -> tuple[cdk.Stack, dict]:
    stack = new_stack()
    alarm = cloudwatch.Alarm(stack, "Alarm", metric=cloudwatch.Metric(namespace="X", metric_name="Y"),
                             threshold=1, evaluation_periods=1)
    from aws_cdk import aws_ecr as ecr

    repo = ecr.Repository.from_repository_name(stack, "Repo", "train")
    cluster = _cluster(stack, software_updates=HyperPodSoftwareUpdates("cron(0 3 ? * SUN *)", [alarm]),
                       image_repositories=[repo])
    return stack, {"template": Template.from_stack(stack).to_json(), "cluster": cluster}


@pytest.fixture(scope="module")
def template(synthesized) -> dict:
    return synthesized[1]["template"]


def _cluster_props(template: dict) -> dict:
    return only(Template.from_json(template), "AWS::SageMaker::Cluster")["Properties"]


# ------------------------------------------------------------------ the request, as SageMaker would see it

_STAND_INS = {
    "role": "arn:aws:iam::123456789012:role/hyperpod-execution",
    "sg": "sg-0123456789abcdef0",
    "dns": "fs-0123456789abcdef0.fsx.us-east-1.amazonaws.com",
    "mount": "abcdef12",
    "bucket": "art-bkt",
}


def _stand_in(value: Any, key: str = "") -> Any:
    """CloudFormation intrinsics -> pattern-valid literals, by what the property holds."""
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)).startswith(("Fn::", "Ref")):
        text = json.dumps(value)
        if key == "ExecutionRole":
            return _STAND_INS["role"]
        if key == "DnsName":
            return _STAND_INS["dns"]
        if key == "MountName":
            return _STAND_INS["mount"]
        if key == "SourceS3Uri" or "s3://" in text:
            return "s3://art-bkt/hyperpod/lifecycle/"
        if "SecurityGroup" in text:
            return _STAND_INS["sg"]
        return "resolved"
    if isinstance(value, dict):
        return {k: _stand_in(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_stand_in(v, key) for v in value]
    return value


def create_cluster_request(properties: dict) -> dict:
    """AWS::SageMaker::Cluster properties -> the CreateCluster request CloudFormation sends (same member names)."""
    return _stand_in(copy.deepcopy(properties))


def test_create_cluster_request_is_valid_for_botocore_model(template) -> None:
    request = create_cluster_request(_cluster_props(template))
    assert request_errors("sagemaker", "CreateCluster", request) == []


def test_request_validator_rejects_what_sagemaker_rejects(template) -> None:
    # The checker is not a rubber stamp: a type HyperPod does not offer and a too-long name fail.
    request = create_cluster_request(_cluster_props(template))
    request["InstanceGroups"][2]["InstanceType"] = "ml.p3.2xlarge"
    request["ClusterName"] = "x" * 64
    errors = request_errors("sagemaker", "CreateCluster", request)
    assert any("InstanceGroups[2].InstanceType: must be one of" in e for e in errors), errors
    assert any("ClusterName: must have at most 63" in e for e in errors), errors


def test_managed_slurm_with_node_types_and_partition(template) -> None:
    p = _cluster_props(template)
    assert p["Orchestrator"] == {"Slurm": {"SlurmConfigStrategy": "Managed"}}
    assert p["NodeRecovery"] == "Automatic"
    groups = {g["InstanceGroupName"]: g for g in p["InstanceGroups"]}
    assert groups["controller"]["SlurmConfig"] == {"NodeType": "Controller"}
    assert groups["login"]["SlurmConfig"] == {"NodeType": "Login"}
    assert groups["gpu"]["SlurmConfig"] == {"NodeType": "Compute", "PartitionNames": ["gpu"]}
    assert groups["gpu"]["InstanceCount"] == 0, "compute at zero at rest"


def test_deep_health_checks_on_gpu_groups_only(template) -> None:
    groups = {g["InstanceGroupName"]: g for g in _cluster_props(template)["InstanceGroups"]}
    assert groups["gpu"]["OnStartDeepHealthChecks"] == ["InstanceStress", "InstanceConnectivity"]
    assert "OnStartDeepHealthChecks" not in groups["controller"]


def test_lustre_mounted_on_every_group(template) -> None:
    # compute and login for jobs and users; the controller for the job bridge's state and the job logs
    groups = {g["InstanceGroupName"]: g for g in _cluster_props(template)["InstanceGroups"]}
    for name in ("controller", "login", "gpu"):
        fsx = groups[name]["InstanceStorageConfigs"][0]["FsxLustreConfig"]
        assert fsx["MountPath"] == "/fsx" and "Fn::GetAtt" in fsx["DnsName"]


def test_lifecycle_runs_after_hyperpods_own_setup(template) -> None:
    # OnInitComplete (Extended mode): HyperPod configures managed Slurm and FSx first; OnCreate would leave the
    # whole node setup, Slurm included, to the scripts (and the two are mutually exclusive).
    for g in _cluster_props(template)["InstanceGroups"]:
        assert g["LifeCycleConfig"]["OnInitComplete"] == "on_init_complete.sh"
        assert "OnCreate" not in g["LifeCycleConfig"]


def test_one_subnet_and_efa_security_group(template) -> None:
    t = Template.from_json(template)
    vpc_config = _cluster_props(template)["VpcConfig"]
    assert vpc_config["Subnets"] == ["subnet-0123456789abcdef0"]
    sg_id = vpc_config["SecurityGroupIds"][0]["Fn::GetAtt"][0]
    ingress = [r["Properties"] for r in t.find_resources("AWS::EC2::SecurityGroupIngress").values()]
    egress = [r["Properties"] for r in t.find_resources("AWS::EC2::SecurityGroupEgress").values()]
    self_all = lambda rules, peer: any(  # noqa: E731
        r["IpProtocol"] == "-1" and r.get(peer, {}).get("Fn::GetAtt", [None])[0] == sg_id
        and r["GroupId"]["Fn::GetAtt"][0] == sg_id for r in rules)
    assert self_all(ingress, "SourceSecurityGroupId") and self_all(egress, "DestinationSecurityGroupId")
    # the cache admits the nodes on the Lustre ports, and the nodes may reach it
    lustre_in = [r for r in ingress if r.get("SourceSecurityGroupId", {}).get("Fn::GetAtt", [None])[0] == sg_id
                 and r.get("FromPort") in (988, 1018)]
    lustre_out = [r for r in egress if r["GroupId"]["Fn::GetAtt"][0] == sg_id and r.get("FromPort") in (988, 1018)]
    assert len(lustre_in) == 2 and len(lustre_out) == 2


def test_rolling_updates_with_rollback_alarm(template) -> None:
    groups = {g["InstanceGroupName"]: g for g in _cluster_props(template)["InstanceGroups"]}
    update = groups["gpu"]["ScheduledUpdateConfig"]
    assert update["ScheduleExpression"] == "cron(0 3 ? * SUN *)"
    assert update["DeploymentConfig"]["RollingUpdatePolicy"]["MaximumBatchSize"] == {
        "Type": "CAPACITY_PERCENTAGE", "Value": 20}
    assert len(update["DeploymentConfig"]["AutoRollbackConfiguration"]) == 1
    assert "ScheduledUpdateConfig" not in groups["controller"]


# ------------------------------------------------------------------ data flows of the execution role


def _role_statements(template: dict) -> list[dict]:
    t = Template.from_json(template)
    out = []
    for policy in t.find_resources("AWS::IAM::Policy").values():
        roles = json.dumps(policy["Properties"].get("Roles", []))
        if "HyperPodExecutionRole" in roles:
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def _allows(statements: list[dict], action: str, resource_fragment: str) -> bool:
    for st in statements:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        if st["Effect"] != "Allow" or not any(re.fullmatch(a.replace("*", ".*"), action) for a in actions):
            continue
        resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        if any(resource_fragment in json.dumps(r) for r in resources):
            return True
    return False


def test_role_reads_lifecycle_prefix_explicitly(template) -> None:
    st = _role_statements(template)
    # ListBucket on the bucket and GetObject on the prefix: what HyperPod checks before provisioning a node.
    assert _allows(st, "s3:ListBucket", "art-bkt")
    assert _allows(st, "s3:GetObject", "art-bkt/hyperpod/lifecycle/*")
    assert _allows(st, "kms:Decrypt", KEY), "the artifacts zone is SSE-KMS: the scripts need the key"


def test_role_reads_only_given_lake_prefix(template) -> None:
    st = _role_statements(template)
    assert _allows(st, "s3:GetObject", "raw-bkt/dataset=images/*")
    assert not _allows(st, "s3:GetObject", "raw-bkt/*\"")
    assert not _allows(st, "s3:PutObject", "raw-bkt")


def test_jobs_write_checkpoints_and_pull_private_images(template) -> None:
    st = _role_statements(template)
    assert _allows(st, "s3:PutObject", "art-bkt/checkpoints/*") and _allows(st, "kms:GenerateDataKey", KEY)
    assert not _allows(st, "s3:PutObject", "raw-bkt")
    assert _allows(st, "ecr:BatchGetImage", "repository/train") and _allows(st, "ecr:GetAuthorizationToken", "*")


def test_role_logs_only_to_this_clusters_log_groups(template) -> None:
    st = _role_statements(template)
    assert _allows(st, "logs:PutLogEvents", "/aws/sagemaker/Clusters/ml-training/*")
    assert not any(st_["Resource"] == "*" and "logs:PutLogEvents" in st_["Action"] for st_ in st)


def test_eni_permissions_are_the_documented_set_scoped_to_interfaces(template) -> None:
    st = _role_statements(template)
    create = [s for s in st if "ec2:CreateNetworkInterface" in s["Action"]]
    assert create and all("subnet-0123456789abcdef0" in json.dumps(s["Resource"]) for s in create)
    for action in ("ec2:DeleteNetworkInterface", "ec2:DetachNetworkInterface", "ec2:CreateNetworkInterfacePermission",
                   "ec2:CreateTags"):
        assert _allows(st, action, ":network-interface/*"), action
        assert not _allows(st, action, '"*"'), f"{action} must not reach every resource type"


def test_lifecycle_config_carries_the_cache_and_group_roles(synthesized) -> None:
    stack, data = synthesized
    cluster: HyperPodCluster = data["cluster"]
    t = Template.from_json(data["template"])
    deployment = only(t, "Custom::CDKBucketDeployment")["Properties"]
    assert deployment["DestinationBucketKeyPrefix"] == "hyperpod/lifecycle/"
    markers = json.dumps(deployment.get("SourceMarkers", []))
    assert "DNSName" in markers and "LustreMountName" in markers
    assert cluster.cluster.node.dependencies, "the cluster waits for the scripts and the role"


# ------------------------------------------------------------------ one negative test per rule


def _error(**kwargs) -> str:
    with pytest.raises(ValueError) as exc:
        _cluster(new_stack(), **kwargs)
    return str(exc.value)


def test_error_starts_with_construct_path() -> None:
    assert _error(cluster_name="bad_name").startswith("TestStack/HyperPod: HyperPodCluster is invalid")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cluster_name": "bad_name"}, "cluster_name must be 1-63 letters"),
    ({"cluster_name": "x" * 64}, "cluster_name must be 1-63 letters"),
    ({"groups": _groups(instance_type="p5.48xlarge")},
     "instance_type must be an instance type HyperPod offers (HyperPod types start with 'ml.')"),
    ({"groups": _groups(instance_type="ml.p3.2xlarge")}, "AWS rule hyperpod.instance-type-offered"),
    ({"groups": _groups(instance_count=6759)}, "instance_count must be an integer from 0 to 6758"),
    ({"groups": _groups(partition=None)}, "partition must name the Slurm partition of a compute group"),
    ({"groups": _groups(deep_health_checks=[DeepHealthCheck.INSTANCE_STRESS], instance_type="ml.m5.xlarge")},
     "runs on GPU and Trainium instance groups only"),
    ({"groups": _groups(image_id="ami-0123456789abcdef0", deep_health_checks=[DeepHealthCheck.INSTANCE_STRESS])},
     "needs the HyperPod public AMI"),
    ({"groups": _groups(threads_per_core=4)}, "threads_per_core must be 1 or 2"),
    ({"groups": [HyperPodInstanceGroup("gpu", "ml.p5.48xlarge", partition="gpu")]},
     "must have exactly one Controller group"),
    ({"groups": [*_groups(), HyperPodInstanceGroup("c2", "ml.m5.xlarge", SlurmNodeType.CONTROLLER)]},
     "must have exactly one Controller group"),
    ({"groups": [*_groups(), HyperPodInstanceGroup("gpu", "ml.g5.xlarge", partition="p2")]},
     "instance_groups names must be unique"),
    ({"groups": [HyperPodInstanceGroup("controller", "ml.m5.xlarge", SlurmNodeType.CONTROLLER, partition="x"),
                 HyperPodInstanceGroup("gpu", "ml.p5.48xlarge", partition="gpu")]}, "is for compute groups only"),
    ({"node_recovery": "Sometimes"}, "node_recovery must be one of 'Automatic', 'None' (NodeRecovery), got: 'Sometimes'"),
    ({"lustre_mount_path": "fsx"}, "lustre_mount_path must be an absolute path"),
    ({"software_updates": HyperPodSoftwareUpdates("rate(7 days)", [])}, "schedule_expression must be a cron(...)"),
])
def test_each_rule_is_enforced(kwargs, message) -> None:
    assert message in _error(**kwargs)


def test_lifecycle_uri_rule_needs_sagemaker_prefix_or_explicit_grant() -> None:
    from mlinfra.domain.hyperpod import lifecycle_uri_errors

    assert lifecycle_uri_errors("lifecycle", "s3://sagemaker-scripts/x/", explicit_grant=False) == []
    assert lifecycle_uri_errors("lifecycle", "s3://my-bucket/x/", explicit_grant=True) == []
    [error] = lifecycle_uri_errors("lifecycle", "s3://my-bucket/x/", explicit_grant=False)
    assert "AWS rule hyperpod.lifecycle-source-s3-prefix" in error and "'s3://my-bucket/x/'" in error


def test_several_errors_reported_at_once() -> None:
    message = _error(cluster_name="bad_name", node_recovery="x")
    assert "cluster_name" in message and "node_recovery" in message


def test_token_instance_count_is_not_validated_as_a_literal() -> None:
    stack = new_stack()
    count = cdk.Token.as_number(cdk.CfnParameter(stack, "Count", type="Number").value_as_number)
    _cluster(stack, groups=_groups(instance_count=count))  # no error: resolved at deploy time


def test_without_lustre_no_storage_config_and_no_lustre_step() -> None:
    stack = new_stack()
    _cluster(stack, lustre=False)
    groups = {g["InstanceGroupName"]: g for g in _cluster_props(Template.from_stack(stack).to_json())["InstanceGroups"]}
    assert "InstanceStorageConfigs" not in groups["gpu"]


def test_node_recovery_none_is_passed_through() -> None:
    stack = new_stack()
    _cluster(stack, node_recovery=NodeRecovery.NONE)
    assert _cluster_props(Template.from_stack(stack).to_json())["NodeRecovery"] == "None"


# ------------------------------------------------------------------ config section


def _config_errors(hyperpod: dict) -> str:
    import yaml

    from mlinfra.config import ConfigError, load_config

    document = yaml.safe_load((__import__("pathlib").Path(__file__).parents[2] / "config/platform.yaml").read_text())
    document["defaults"]["training"]["hyperpod"] = hyperpod
    with pytest.raises(ConfigError) as exc:
        load_config(document, "dev")
    return str(exc.value)


def test_config_rejects_a_type_hyperpod_does_not_offer() -> None:
    message = _config_errors({"enabled": True, "groups": [
        {"name": "controller", "instance_type": "ml.t3.medium", "node_type": "Controller", "instance_count": 1},
        {"name": "gpu", "instance_type": "ml.p3.2xlarge", "partition": "gpu"}]})
    assert "training.hyperpod.groups[gpu].instance_type must be an instance type HyperPod offers" in message


def test_config_rejects_a_cluster_without_controller() -> None:
    message = _config_errors({"enabled": True, "groups": [
        {"name": "gpu", "instance_type": "ml.p5.48xlarge", "partition": "gpu"}]})
    assert "training.hyperpod.groups must have exactly one Controller group" in message


def test_reference_app_has_hyperpod_at_zero_compute(prod_config) -> None:
    hp = prod_config.training.hyperpod
    assert hp.enabled and all(g.instance_count == 0 for g in hp.groups if g.node_type == "Compute")


def test_controller_bridge_can_take_jobs_and_end_tasks(template) -> None:
    st = _role_statements(template)
    assert _allows(st, "sqs:ReceiveMessage", "HyperPodJobQueue") and _allows(st, "sqs:DeleteMessage", "HyperPodJobQueue")
    assert _allows(st, "states:SendTaskSuccess", "*") and _allows(st, "states:SendTaskHeartbeat", "*")


def test_grant_submit_jobs_lets_a_state_machine_send_requests() -> None:
    from aws_cdk import aws_iam as iam

    stack = new_stack()
    cluster = _cluster(stack)
    role = iam.Role(stack, "Sfn", assumed_by=iam.ServicePrincipal("states.amazonaws.com"))
    cluster.grant_submit_jobs(role)
    statements = [s for p in Template.from_stack(stack).find_resources("AWS::IAM::Policy").values()
                  if "Sfn" in json.dumps(p["Properties"]["Roles"]) for s in p["Properties"]["PolicyDocument"]["Statement"]]
    assert _allows(statements, "sqs:SendMessage", "HyperPodJobQueue")
    no_queue = _cluster(new_stack(), job_queue=False)
    with pytest.raises(ValueError, match="grant_submit_jobs needs job_queue=True"):
        no_queue.grant_submit_jobs(role)
