"""AWS ParallelCluster's own schema and validators on every cluster configuration the platform generates.

The ``aws-parallelcluster`` package (3.16.1, installed by ``make setup`` without its CDK v1 dependencies) carries
the configuration schema and the validators the real provider runs before it creates a cluster. Here, offline:

1. every generated ``ClusterConfiguration`` (local, dev, prod) loads through ``ClusterSchema`` after its
   CloudFormation intrinsics become pattern-valid stand-ins;
2. the cluster validators run with no AWS call: EC2 instance-type data comes from the project's accelerator
   table (a DescribeInstanceTypes-shaped answer), every other AWS call is answered with an offline error, and
   any ERROR not caused by such an answer fails the test;
3. ``ExistingFsxNetworkingValidator`` (the FSx security-group check) runs on the security-group rules of the
   synthesized template, so a cache group without outbound 988 fails here, not in a deploy.

What this cannot see (subnets, AMIs, quotas, capacity, IAM policies that exist) needs a real account: see
docs/training.md, "What has been verified where".
"""

from __future__ import annotations

import copy
import functools
import json

import pytest
from aws_cdk.assertions import Template

pcluster = pytest.importorskip("pcluster", reason="aws-parallelcluster is installed by `make setup` (Makefile)")

from marshmallow import ValidationError  # noqa: E402
from pcluster.aws import aws_api  # noqa: E402
from pcluster.aws.aws_resources import ImageInfo, InstanceTypeInfo  # noqa: E402
from pcluster.aws.common import AWSClientError  # noqa: E402
from pcluster.config.common import ValidatorSuppressor  # noqa: E402
from pcluster.schemas.cluster_schema import ClusterSchema  # noqa: E402
from pcluster.validators import iam_validators  # noqa: E402
from pcluster.validators.cluster_validators import ExistingFsxNetworkingValidator  # noqa: E402

from mlinfra.app import create_app  # noqa: E402
from mlinfra.config import load_config_file  # noqa: E402
from mlinfra.domain import instances  # noqa: E402

SUBNET, VPC = "subnet-0123456789abcdef0", "vpc-0123456789abcdef0"
FS_ID, FS_ENI = "fs-0123456789abcdef0", "eni-0123456789abcdef0"

#: Marks the answer of every AWS call made offline; a validator failing with it needs a real account.
OFFLINE = "offline: needs a real account"

_HEAD_NODE_TYPES = {"m6i.2xlarge": (8, 32768), "m6i.xlarge": (4, 16384), "c6i.2xlarge": (8, 16384),
                    "t3.medium": (2, 4096)}


def _instance_type_data(instance_type: str) -> dict:
    """A DescribeInstanceTypes entry built from the accelerator table (GPU types) or a few head-node types."""
    if instance_type in _HEAD_NODE_TYPES:
        vcpu, mem = _HEAD_NODE_TYPES[instance_type]
        return {"InstanceType": instance_type, "VCpuInfo": {"DefaultVCpus": vcpu, "DefaultCores": vcpu // 2,
                                                            "DefaultThreadsPerCore": 2},
                "MemoryInfo": {"SizeInMiB": mem}, "ProcessorInfo": {"SupportedArchitectures": ["x86_64"]},
                "NetworkInfo": {"EfaSupported": False, "MaximumNetworkCards": 1,
                                "NetworkCards": [{"NetworkCardIndex": 0, "MaximumNetworkInterfaces": 4}]},
                "SupportedUsageClasses": ["on-demand", "spot"], "InstanceStorageSupported": False}
    row = instances.get(instance_type)
    data = {
        "InstanceType": instance_type,
        "VCpuInfo": {"DefaultVCpus": row.vcpu, "DefaultCores": row.vcpu // 2, "DefaultThreadsPerCore": 2},
        "MemoryInfo": {"SizeInMiB": row.host_mem_mib},
        "ProcessorInfo": {"SupportedArchitectures": ["x86_64"]},
        "NetworkInfo": {"EfaSupported": row.efa_supported, "MaximumNetworkCards": row.network_cards,
                        "EfaInfo": {"MaximumEfaInterfaces": row.max_efa_interfaces},
                        "NetworkCards": [{"NetworkCardIndex": i, "MaximumNetworkInterfaces": 2}
                                         for i in range(row.network_cards)]},
        "SupportedUsageClasses": ["on-demand", "spot", "capacity-block"],
        "InstanceStorageSupported": row.instance_store_gb > 0,
        "PlacementGroupInfo": {"SupportedStrategies": ["cluster", "partition", "spread"]},
    }
    if row.is_nvidia_gpu:
        data["GpuInfo"] = {"Gpus": [{"Count": row.accelerators, "Manufacturer": "NVIDIA",
                                     "Name": row.accelerator.upper()}]}
    return data


class _OfflineEc2:
    """The EC2 calls the configuration model itself makes while registering validators, answered offline."""

    def __init__(self, groups: dict[str, dict] | None = None) -> None:
        self._groups = groups or {}

    def get_instance_type_info(self, instance_type: str) -> InstanceTypeInfo:
        return InstanceTypeInfo(_instance_type_data(instance_type))

    def get_subnet_vpc(self, subnet_id: str) -> str:
        return VPC

    def get_official_image_id(self, os, architecture, filters=None):
        return "ami-0123456789abcdef0"  # ParallelCluster's own image of the OS: resolved in the account

    def describe_image(self, ami_id):
        return ImageInfo({"ImageId": ami_id, "Architecture": "x86_64", "RootDeviceName": "/dev/xvda",
                          "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 40}}]})

    def get_subnet_cidr(self, subnet_id):
        return "10.0.64.0/20"

    def get_subnet_avail_zone(self, subnet_id):
        return "us-east-1a"

    def get_subnets_az_mapping(self, subnet_ids):
        return {s: "us-east-1a" for s in subnet_ids}  # the one training subnet

    def describe_network_interfaces(self, ids):
        return [{"NetworkInterfaceId": FS_ENI, "VpcId": VPC, "Groups": [{"GroupId": g} for g in self._fs_groups]}]

    def describe_security_groups(self, ids):
        return [self._groups[i] for i in ids]

    def __getattr__(self, name):
        def offline(*_a, **_k):
            raise AWSClientError(name, f"{OFFLINE} (ec2.{name})")
        return offline


class _OfflineFsx:
    def __init__(self, fs_groups):
        self._fs_groups = fs_groups

    def get_file_systems_info(self, ids):
        class _Fs:
            file_system_id, file_cache_id, vpc_id = FS_ID, None, VPC
            network_interface_ids, file_storage_type, subnet_ids = [FS_ENI], "LUSTRE", [SUBNET]
        return [_Fs()]


class _OfflineApi:
    aws_region = "us-east-1"

    def __init__(self, groups=None, fs_groups=()):
        self.ec2 = _OfflineEc2(groups)
        self.ec2._fs_groups = list(fs_groups)
        self.fsx = _OfflineFsx(fs_groups)

    def __getattr__(self, name):
        return _OfflineEc2()  # every other client: offline errors


class _Recorder(ValidatorSuppressor):
    """Suppresses nothing; remembers which validators ran."""

    def __init__(self) -> None:
        self.ran: set[str] = set()

    def suppress_validator(self, validator) -> bool:
        self.ran.add(validator.type)
        return False


@pytest.fixture(autouse=True)
def _offline_aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setattr(aws_api.AWSApi, "instance", staticmethod(lambda: _OfflineApi()))
    # IamPolicyValidator makes its own client (not through AWSApi)
    monkeypatch.setattr(iam_validators, "IamClient", lambda: _OfflineEc2())


# ------------------------------------------------------------------------------------------ the configurations

#: Stand-ins for the intrinsics of a generated configuration, by the key that holds them (pattern-valid for
#: ParallelCluster's schema). An intrinsic under any other key fails the test: add its stand-in deliberately.
STANDINS = {
    "SubnetId": SUBNET, "SubnetIds": SUBNET, "AdditionalSecurityGroups": "sg-0123456789abcdef0",
    "FileSystemId": FS_ID, "Policy": "arn:aws:iam::123456789012:policy/parallelcluster/mlinfra-lake-read",
    "Id": "mlinfra-placement-group", "Region": "us-east-1", "CapacityReservationId": "cr-0123456789abcdef0",
}


def standins(node, key=None):
    """The configuration with every CloudFormation intrinsic replaced by the stand-in of its key."""
    if isinstance(node, dict):
        if len(node) == 1 and (next(iter(node)) == "Ref" or next(iter(node)).startswith("Fn::")):
            assert key in STANDINS, f"no stand-in for an intrinsic under {key!r}: {node}"
            return STANDINS[key]
        return {k: standins(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [standins(v, key) for v in node]
    return node


def _with_training(config, **changes):
    """The config with training fields changed (dataclass or pydantic model)."""
    training = config.training
    if hasattr(training, "model_copy"):
        return config.model_copy(update={"training": training.model_copy(update=changes)})
    import dataclasses

    return dataclasses.replace(config, training=dataclasses.replace(training, **changes))


@functools.cache
def _templates(config_file, env: str) -> tuple[dict, list[str]]:
    config = load_config_file(config_file, env)
    if not config.training.slurm_enabled:
        # dev idles on HyperPod's managed Slurm (docs/cost.md); its ParallelCluster settings are still checked
        config = _with_training(config, slurm_enabled=True)
    app, platform = create_app(config=config, nag=False)
    stack = platform.extra["training"]
    names = [s.stack_name for s in app.node.find_all() if hasattr(s, "stack_name") and hasattr(s, "template_options")]
    return Template.from_stack(stack).to_json(), names


@pytest.fixture(scope="module", params=["local", "dev", "prod"])
def generated(request, config_file):
    template, stack_names = _templates(config_file, request.param)
    clusters = [v["Properties"] for v in template["Resources"].values() if v["Type"] == "Custom::PclusterCluster"]
    assert clusters, f"{request.param}: no ParallelCluster cluster generated"
    return request.param, template, clusters, stack_names


def _load(name: str, configuration: dict):
    return ClusterSchema(cluster_name=name).load(standins(configuration))


def _errors(cluster) -> tuple[list[str], set[str]]:
    """ERROR failures of every validator, except those whose AWS call was answered offline (they need a real
    account: docs/training.md lists the run that covers them)."""
    recorder = _Recorder()
    failures = cluster.validate(suppressors=[recorder])
    return [f"{f.validator_type}: {f.message}" for f in failures
            if f.level.name == "ERROR" and OFFLINE not in f.message], recorder.ran


NODE_SG, CACHE_SG = "sg-0123456789abcdef0", "sg-0fedcba9876543210"


def _cache_groups(template: dict) -> tuple[dict[str, dict], str, str]:
    """The template's groups, the cache's and the Slurm nodes' keys (skips an environment without a cache)."""
    groups = _security_groups(template)
    caches = [k for k in groups if "CacheSecurityGroup" in k]
    if not caches:
        pytest.skip("no Lustre cache in this environment (training.cache_enabled: false)")
    (node_key,) = [k for k in groups if "SlurmClusterSecurityGroup" in k]
    return groups, caches[0], node_key


def _standin_groups(template: dict) -> dict[str, dict]:
    """The template's groups with the cluster's and the cache's group under their stand-in ids."""
    groups = _security_groups(template)
    caches = [k for k in groups if "CacheSecurityGroup" in k]
    if not caches:
        return groups
    (cache_key,) = caches
    (node_key,) = [k for k in groups if "SlurmClusterSecurityGroup" in k]
    text = json.dumps(groups).replace(f'"{cache_key}"', f'"{CACHE_SG}"').replace(f'"{node_key}"', f'"{NODE_SG}"')
    return json.loads(text)


def test_every_generated_configuration_loads_and_passes_the_offline_validators(generated, monkeypatch):
    env, template, clusters, stack_names = generated
    api = _OfflineApi(groups=_standin_groups(template), fs_groups=[CACHE_SG])
    monkeypatch.setattr(aws_api.AWSApi, "instance", staticmethod(lambda: api))
    for props in clusters:
        cluster = _load(props["ClusterName"], props["ClusterConfiguration"])
        errors, ran = _errors(cluster)
        assert errors == [], f"{env}: ParallelCluster would reject the configuration: {errors}"
        assert len(ran) >= 10, sorted(ran)  # the offline run is not empty
        assert props["ClusterName"] not in stack_names


def test_the_cache_security_group_passes_the_fsx_networking_validator(generated):
    """ParallelCluster's ExistingFsxNetworkingValidator on the synthesized rules of the cache's and nodes' groups."""
    env, template, clusters, _ = generated
    groups, cache_key, node_key = _cache_groups(template)
    failures = _run_fsx_validator(groups, cache_key, node_key)
    assert failures == [], f"{env}: {failures}"


def test_the_fsx_networking_validator_rejects_a_cache_group_without_egress(generated):
    """The negative: the old cache group (ingress from clients, egress only to itself) fails the real validator."""
    _, template, _, _ = generated
    groups, cache_key, node_key = _cache_groups(template)
    groups[cache_key]["IpPermissionsEgress"] = [r for r in groups[cache_key]["IpPermissionsEgress"]
                                                if r["UserIdGroupPairs"][0]["GroupId"] == cache_key]
    failures = _run_fsx_validator(groups, cache_key, node_key)
    assert failures and "inbound and outbound TCP traffic through ports [988]" in failures[0], failures


def _security_groups(template: dict) -> dict[str, dict]:
    """Each security group of the template as DescribeSecurityGroups returns it (group ids = logical ids), and each
    imported group (a literal ``sg-`` id) that the template adds rules to."""
    groups = {k: {"GroupId": k, "IpPermissions": [], "IpPermissionsEgress": []}
              for k, v in template["Resources"].items() if v["Type"] == "AWS::EC2::SecurityGroup"}

    def ref(value):
        if isinstance(value, str):
            if value.startswith("sg-"):
                groups.setdefault(value, {"GroupId": value, "IpPermissions": [], "IpPermissionsEgress": []})
            return value
        return value["Fn::GetAtt"][0] if isinstance(value, dict) and "Fn::GetAtt" in value else json.dumps(value)

    for key, v in template["Resources"].items():
        kind = {"AWS::EC2::SecurityGroupIngress": "IpPermissions",
                "AWS::EC2::SecurityGroupEgress": "IpPermissionsEgress"}.get(v["Type"])
        if kind is None:
            continue
        p = v["Properties"]
        group = ref(p["GroupId"])
        if group not in groups:
            continue
        peer = p.get("SourceSecurityGroupId") or p.get("DestinationSecurityGroupId")
        rule = {"IpProtocol": p["IpProtocol"], "FromPort": p.get("FromPort", -1), "ToPort": p.get("ToPort", -1),
                "IpRanges": [{"CidrIp": p["CidrIp"]}] if "CidrIp" in p else [], "PrefixListIds": [],
                "UserIdGroupPairs": [{"GroupId": ref(peer)}] if peer else []}
        groups[group][kind].append(rule)
    return groups


def _run_fsx_validator(groups: dict, cache_key: str, node_key: str) -> list[str]:
    api = _OfflineApi(groups=groups, fs_groups=[cache_key])
    previous = aws_api.AWSApi.instance
    aws_api.AWSApi.instance = staticmethod(lambda: api)
    try:
        failures = ExistingFsxNetworkingValidator().execute(
            file_storage_ids=[FS_ID], subnet_ids=[SUBNET],
            security_groups_by_nodes={frozenset({node_key})})
    finally:
        aws_api.AWSApi.instance = previous
    return [f.message for f in failures if f.level.name == "ERROR"]


# ------------------------------------------------------------------------------------------ negatives


@pytest.fixture(scope="module")
def prod_cluster(config_file):
    template, _ = _templates(config_file, "prod")
    (props,) = [v["Properties"] for v in template["Resources"].values() if v["Type"] == "Custom::PclusterCluster"]
    return props


def test_pcluster_rejects_a_capacity_block_queue_without_reservation(prod_cluster):
    """What our capacity_block_errors refuses, ParallelCluster refuses too (the rule is theirs, not ours)."""
    configuration = copy.deepcopy(prod_cluster["ClusterConfiguration"])
    queue = configuration["Scheduling"]["SlurmQueues"][0]
    queue["CapacityType"] = "CAPACITY_BLOCK"  # min 0, no reservation id, a placement group: three faults
    try:
        cluster = _load(prod_cluster["ClusterName"], configuration)
    except ValidationError as exc:
        assert "CapacityReservation" in str(exc) or "CAPACITY_BLOCK" in str(exc), exc
        return
    errors, _ = _errors(cluster)
    assert any("CapacityReservation" in e or "capacity" in e.lower() for e in errors), errors


def test_pcluster_rejects_a_queue_update_without_strategy_names_the_setting(prod_cluster):
    configuration = copy.deepcopy(prod_cluster["ClusterConfiguration"])
    configuration["Scheduling"]["SlurmSettings"]["QueueUpdateStrategy"] = "WHENEVER"
    with pytest.raises(ValidationError, match="QueueUpdateStrategy"):
        _load(prod_cluster["ClusterName"], configuration)


def test_pcluster_rejects_an_unknown_key(prod_cluster):
    """The schema is strict: a property our generator invents fails here."""
    configuration = copy.deepcopy(prod_cluster["ClusterConfiguration"])
    configuration["HeadNode"]["Mystery"] = True
    with pytest.raises(ValidationError, match="Mystery"):
        _load(prod_cluster["ClusterName"], configuration)
