"""The training constructs' API shape (issue 17): one class per engine over a shared base, the capacity-type and
on-unhealthy enums, clusters consuming ``ILustreCache`` / ``IDataLake``, an imported Lustre file system, tokens
in validation, and the reference app's training logical ids unchanged by the split."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk.assertions import Template

from mlinfra.constructs.data_lake import DataLake
from mlinfra.constructs.lustre_cache import ILustreCache, ImportedLustreCache, LustreCache, LustreDeploymentType
from mlinfra.constructs.training_cluster import (
    BatchTrainingCluster,
    CapacityType,
    QueueUpdateStrategy,
    SlurmComputeResource,
    SlurmQueue,
    SlurmTrainingCluster,
)
from mlinfra.userdata import OnUnhealthy
from tests.helpers import new_stack, only
from tests.unit.test_training import IMAGE, TOKEN, _net, _strings

FS_ID = "fs-0123456789abcdef0"
DNS = f"{FS_ID}.fsx.us-east-1.amazonaws.com"
FS_SG = "sg-0f5f5f5f5f5f5f5f5"
CR = "cr-0123456789abcdef0"
LUSTRE_PORTS = {(988, 988), (1018, 1023)}


def _imported(stack, **overrides):
    attrs = {"file_system_id": FS_ID, "dns_name": DNS, "mount_name": "abcdefgh",
             "security_group": ec2.SecurityGroup.from_security_group_id(stack, "FsSg", FS_SG, mutable=True,
                                                                         allow_all_outbound=False)}
    attrs.update(overrides)
    return LustreCache.from_file_system_attributes(stack, "Fs", **attrs)


def _task_group(stack):
    return ec2.SecurityGroup.from_security_group_id(stack, "Default", "sg-0default0000000000", mutable=True)


def _clusters_on_an_imported_cache():
    stack = new_stack()
    vpc, subnet = _net(stack)
    cache = _imported(stack)
    batch = BatchTrainingCluster(stack, "Batch", vpc=vpc, subnet=subnet, image=IMAGE, lustre=cache,
                                 task_security_group=_task_group(stack))
    slurm = SlurmTrainingCluster(stack, "Slurm", vpc=vpc, subnet=subnet, service_token=TOKEN, cluster_name="c1",
                                 queues=[SlurmQueue("q", [SlurmComputeResource("r", "p4d.24xlarge")])], lustre=cache)
    return stack, cache, batch, slurm


# ------------------------------------------------------------------------------ the imported file system


def test_imported_cache_is_an_ilustrecache_like_a_made_one():
    stack = new_stack()
    vpc, subnet = _net(stack)
    made = LustreCache(stack, "Cache", vpc=vpc, subnet=subnet, deployment_type=LustreDeploymentType.SCRATCH_2,
                       storage_capacity_gib=1200)
    imported = _imported(stack)
    assert isinstance(made, ILustreCache) and isinstance(imported, ILustreCache)
    assert isinstance(imported, ImportedLustreCache)
    assert imported.mount_command("/data") == f"sudo mount -t lustre -o relatime,flock {DNS}@tcp:/abcdefgh /data"
    assert len(Template.from_stack(stack).find_resources("AWS::FSx::FileSystem")) == 1  # the import makes none


def test_both_clusters_mount_an_imported_cache_and_open_its_group():
    stack, _, batch, slurm = _clusters_on_an_imported_cache()
    t = Template.from_stack(stack).to_json()
    resources = t["Resources"]
    # The file system's own (imported) group admits each cluster on the Lustre ports, both ways.
    for cluster in ("Batch", "Slurm"):
        group = {"Fn::GetAtt": [_key(t, f"{cluster}SecurityGroup"), "GroupId"]}
        ingress = {(r["FromPort"], r["ToPort"]) for r in _props(resources, "AWS::EC2::SecurityGroupIngress")
                   if r["GroupId"] == FS_SG and r.get("SourceSecurityGroupId") == group}
        egress = {(r["FromPort"], r["ToPort"]) for r in _props(resources, "AWS::EC2::SecurityGroupEgress")
                  if r["GroupId"] == FS_SG and r.get("DestinationSecurityGroupId") == group}
        assert ingress == LUSTRE_PORTS and egress == LUSTRE_PORTS, cluster
        # and the cluster's group reaches the file system's group on the same ports
        out = {(r["FromPort"], r["ToPort"]) for r in _props(resources, "AWS::EC2::SecurityGroupEgress")
               if r["GroupId"] == group and r.get("DestinationSecurityGroupId") == FS_SG}
        assert out == LUSTRE_PORTS, cluster
    # Batch: the bootstrap mounts it on the host and the job maps the host path.
    lt = only(Template.from_stack(stack), "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    bootstrap = "\n".join(_strings(lt["UserData"]))
    assert f'LUSTRE_DNS="{DNS}"' in bootstrap and 'LUSTRE_MOUNT_NAME="abcdefgh"' in bootstrap
    container = only(Template.from_stack(stack), "AWS::Batch::JobDefinition")["Properties"]["NodeProperties"][
        "NodeRangeProperties"][0]["Container"]
    assert container["Volumes"] == [{"Host": {"SourcePath": "/fsx"}, "Name": "lustre"}]
    # Slurm: ParallelCluster's shared storage names the imported file system.
    (storage,) = slurm.cluster_configuration["SharedStorage"]
    assert storage["FsxLustreSettings"] == {"FileSystemId": FS_ID} and storage["MountDir"] == "/fsx"
    assert batch.lustre is slurm.lustre


def test_parallelclusters_fsx_validator_accepts_an_imported_cache():
    """ParallelCluster's ExistingFsxNetworkingValidator on the rules the Slurm cluster adds to the imported group."""
    pytest.importorskip("pcluster")
    from tests.unit.test_pcluster_validators import _run_fsx_validator, _security_groups

    stack, _, _, _ = _clusters_on_an_imported_cache()
    t = Template.from_stack(stack).to_json()
    assert _run_fsx_validator(_security_groups(t), FS_SG, _key(t, "SlurmSecurityGroup")) == []


def test_an_immutable_imported_group_fails_parallelclusters_fsx_validator():
    """The negative: imported without ``mutable=True`` the group gets no client rules, and ParallelCluster refuses
    the file system (what docs/training.md warns about)."""
    pytest.importorskip("pcluster")
    from tests.unit.test_pcluster_validators import _run_fsx_validator, _security_groups

    stack = new_stack()
    vpc, subnet = _net(stack)
    cache = _imported(stack, security_group=ec2.SecurityGroup.from_security_group_id(stack, "Fixed", FS_SG,
                                                                                      mutable=False))
    SlurmTrainingCluster(stack, "Slurm", vpc=vpc, subnet=subnet, service_token=TOKEN, cluster_name="c1", lustre=cache,
                         queues=[SlurmQueue("q", [SlurmComputeResource("r", "p4d.24xlarge")])])
    t = Template.from_stack(stack).to_json()
    groups = _security_groups(t)
    groups.setdefault(FS_SG, {"GroupId": FS_SG, "IpPermissions": [], "IpPermissionsEgress": []})
    failures = _run_fsx_validator(groups, FS_SG, _key(t, "SlurmSecurityGroup"))
    assert failures and "inbound and outbound TCP traffic through ports [988]" in failures[0], failures


def test_hyperpod_mounts_an_imported_cache():
    from mlinfra.constructs.hyperpod import HyperPodCluster, HyperPodInstanceGroup, HyperPodLifecycle, SlurmNodeType

    from aws_cdk import aws_s3 as s3

    stack = new_stack()
    vpc, subnet = _net(stack)
    HyperPodCluster(stack, "Hp", vpc=vpc, subnet=subnet, lustre=_imported(stack),
                    lifecycle=HyperPodLifecycle.bundled(s3.Bucket.from_bucket_name(stack, "B", "sagemaker-b"), "lc/"),
                    instance_groups=[
                        HyperPodInstanceGroup(name="controller", instance_type="ml.t3.medium",
                                              node_type=SlurmNodeType.CONTROLLER, instance_count=1),
                        HyperPodInstanceGroup(name="gpu", instance_type="ml.p5.48xlarge", instance_count=0,
                                              partition="gpu")])
    configs = json.dumps(only(Template.from_stack(stack), "AWS::SageMaker::Cluster")["Properties"])
    assert DNS in configs and '"MountName": "abcdefgh"' in configs


@pytest.mark.parametrize(("overrides", "message"), [
    ({"file_system_id": "fs-12"}, "file_system_id must be fs- and 8 to 18 hex digits, got: 'fs-12'"),
    ({"file_system_id": "0123456789abcdef0"}, "file_system_id must be fs- and 8 to 18 hex digits, got: '0123456789abcdef0'"),
    ({"dns_name": "lustre.example.com"},
     "dns_name must be the file system's DNS name (fs-<id>.fsx.<region>.amazonaws.com), got: 'lustre.example.com'"),
    ({"dns_name": "fs-0fedcba9876543210.fsx.us-east-1.amazonaws.com"},
     f"dns_name must belong to file_system_id '{FS_ID}', got: 'fs-0fedcba9876543210.fsx.us-east-1.amazonaws.com'"),
    ({"mount_name": "toolongname"}, "mount_name must be 1 to 8 letters, digits, '_' or '-', got: 'toolongname'"),
    ({"mount_name": ""}, "mount_name must be 1 to 8 letters, digits, '_' or '-', got: ''"),
    ({"security_group": None}, "security_group must be an ec2.ISecurityGroup of the file system, got: None"),
])
def test_bad_imported_attribute_is_refused_by_name(overrides, message):
    from mlinfra.domain.rules import cite

    stack = new_stack()
    with pytest.raises(ValueError) as err:
        _imported(stack, **overrides)
    cited = "" if "security_group" in overrides else f" {cite('fsx.file-system-attributes')}"
    assert str(err.value) == f"TestStack/Fs: {message}{cited}"


def test_several_bad_attributes_are_reported_together():
    with pytest.raises(ValueError) as err:
        _imported(new_stack(), file_system_id="fs-12", mount_name="toolongname")
    assert "file_system_id must be" in str(err.value) and "; mount_name must be" in str(err.value)


def test_imported_attributes_may_be_tokens():
    stack = new_stack()
    cache = _imported(stack, file_system_id=cdk.Fn.import_value("FsId"), dns_name=cdk.Fn.import_value("FsDns"),
                      mount_name=cdk.Fn.import_value("FsMount"))
    assert stack.resolve(cache.file_system_id) == {"Fn::ImportValue": "FsId"}


def test_import_patterns_are_the_fsx_api_patterns():
    """The patterns the import checks are botocore's FSx model's (FileSystemId, DNSName, LustreFileSystemMountName)."""
    import botocore.session

    from mlinfra.constructs import lustre_cache

    model = botocore.session.get_session().get_service_model("fsx")
    for ours, shape in ((lustre_cache.FILE_SYSTEM_ID_RE, "FileSystemId"), (lustre_cache.DNS_NAME_RE, "DNSName"),
                        (lustre_cache.MOUNT_NAME_RE, "LustreFileSystemMountName")):
        meta = model.shape_for(shape).metadata
        theirs = re.compile(meta["pattern"])
        samples = [FS_ID, "fs-01234567", "fs-" + "a" * 18, "fs-" + "a" * 19, "fs-0123", DNS, "fc-0123456789.fsx.x.y",
                   "abcdefgh", "fsx", "a_b-c", "toolongname", "", "FS-0123456789abcdef0"]
        for sample in samples:
            accepted = bool(theirs.fullmatch(sample)) and meta.get("min", 0) <= len(sample) <= meta.get("max", 10**6)
            assert bool(ours.fullmatch(sample)) == accepted, (shape, sample)


# ------------------------------------------------------------------------------ consumers take the protocols


def test_clusters_take_a_made_lake_through_idatalake():
    stack = new_stack()
    vpc, subnet = _net(stack)
    lake = DataLake(stack, "Lake", zones=("raw", "artifacts"), glue_zones=())
    from mlinfra.constructs.training_cluster import LakeAccess

    BatchTrainingCluster(stack, "B", vpc=vpc, subnet=subnet, image=IMAGE, lake=lake, task_security_group=_task_group(stack),
                         job_read=[LakeAccess("raw")], job_write=[LakeAccess("artifacts", "checkpoints/")])
    imported = DataLake.from_lake_attributes(stack, "Imported", bucket_names={"raw": "raw-bkt"})
    SlurmTrainingCluster(stack, "S", vpc=vpc, subnet=subnet, service_token=TOKEN, cluster_name="c1", lake=imported,
                         instance_read=[LakeAccess("raw", "a/")],
                         queues=[SlurmQueue("q", [SlurmComputeResource("r", "p4d.24xlarge")])])
    Template.from_stack(stack)


# ------------------------------------------------------------------------------ tokens


def test_lustre_cache_skips_token_sizing():
    stack = new_stack()
    vpc, subnet = _net(stack)
    capacity = cdk.CfnParameter(stack, "Capacity", type="Number").value_as_number
    throughput = cdk.CfnParameter(stack, "Throughput", type="Number").value_as_number
    LustreCache(stack, "Cache", vpc=vpc, subnet=subnet, storage_capacity_gib=capacity,
                per_unit_storage_throughput=throughput)
    fs = only(Template.from_stack(stack), "AWS::FSx::FileSystem")["Properties"]
    assert fs["StorageCapacity"] == {"Ref": "Capacity"}
    assert fs["LustreConfiguration"]["PerUnitStorageThroughput"] == {"Ref": "Throughput"}


def test_batch_cluster_skips_token_image_and_ceiling():
    stack = new_stack()
    vpc, subnet = _net(stack)
    image = cdk.CfnParameter(stack, "Image").value_as_string
    ceiling = cdk.CfnParameter(stack, "MaxVcpus", type="Number").value_as_number
    BatchTrainingCluster(stack, "C", vpc=vpc, subnet=subnet, image=image, max_vcpus=ceiling,
                         task_security_group=_task_group(stack))
    t = Template.from_stack(stack)
    assert only(t, "AWS::Batch::ComputeEnvironment")["Properties"]["ComputeResources"]["MaxvCpus"] == {"Ref": "MaxVcpus"}
    container = only(t, "AWS::Batch::JobDefinition")["Properties"]["NodeProperties"]["NodeRangeProperties"][0]["Container"]
    assert container["Image"] == {"Ref": "Image"}


def test_slurm_cluster_skips_token_name_token_and_reservation():
    stack = new_stack()
    vpc, subnet = _net(stack)
    name = cdk.CfnParameter(stack, "ClusterName").value_as_string
    reservation = cdk.CfnParameter(stack, "Reservation").value_as_string
    token = cdk.Fn.import_value("PclusterServiceToken")
    cluster = SlurmTrainingCluster(stack, "C", vpc=vpc, subnet=subnet, service_token=token, cluster_name=name, queues=[
        SlurmQueue("cb", [SlurmComputeResource("r", "p5.48xlarge", min_count=2, max_count=2,
                                               capacity_reservation_id=reservation)],
                   capacity_type=CapacityType.CAPACITY_BLOCK)])
    pc = only(Template.from_stack(stack), "Custom::PclusterCluster")["Properties"]
    assert pc["ClusterName"] == {"Ref": "ClusterName"} and pc["ServiceToken"] == {"Fn::ImportValue": "PclusterServiceToken"}
    assert stack.resolve(cluster.cluster_configuration)["Scheduling"]["SlurmQueues"][0]["ComputeResources"][0][
        "CapacityReservationTarget"] == {"CapacityReservationId": {"Ref": "Reservation"}}


# ------------------------------------------------------------------------------ enums


def test_capacity_type_and_queue_update_strategy_are_parallelclusters_sets():
    pytest.importorskip("pcluster")
    from pcluster.config.cluster_config import QueueUpdateStrategy as PcQueueUpdateStrategy
    from pcluster.config.common import CapacityType as PcCapacityType

    assert {m.value for m in CapacityType} == {m.value for m in PcCapacityType}
    assert {m.value for m in QueueUpdateStrategy} == {m.value for m in PcQueueUpdateStrategy}


def test_config_spells_the_enums_values():
    import typing

    from mlinfra.config import SlurmQueueConfig, TrainingConfig

    hints = typing.get_type_hints(SlurmQueueConfig)
    assert typing.get_args(hints["capacity_type"]) == tuple(m.value for m in CapacityType)
    hints = typing.get_type_hints(TrainingConfig)
    assert typing.get_args(hints["slurm_queue_update_strategy"]) == tuple(m.value for m in QueueUpdateStrategy)


def test_config_bad_capacity_type_names_field_value_and_allowed():
    from mlinfra.config import ConfigError, load_config

    raw = {"defaults": {"training": {"slurm_queues": [{"name": "gpu", "capacity_type": "ON_DEMAND"}]}},
           "environments": {"dev": {}}}
    with pytest.raises(ConfigError, match=r"training.slurm_queues\[0\].capacity_type: expected one of 'ONDEMAND', "
                                          r"'SPOT', 'CAPACITY_BLOCK', got: 'ON_DEMAND'"):
        load_config(raw, "dev")


@pytest.fixture(scope="module")
def training_stacks(config_file) -> dict[str, cdk.Stack]:
    """The reference app's training stack of prod (Batch with EFA, Slurm, the cache, HyperPod) and local (Batch
    without EFA, Slurm), one synth each for the module."""
    from mlinfra.app import create_app
    from mlinfra.config import load_config_file

    return {env: create_app(config=load_config_file(config_file, env), nag=False)[1].extra["training"]
            for env in ("prod", "local")}


@pytest.mark.slow
def test_prod_stack_converts_capacity_types_to_the_enum(training_stacks):
    cluster = training_stacks["prod"].slurm_cluster
    assert [q.capacity_type for q in cluster.queues] == [CapacityType.ONDEMAND, CapacityType.SPOT]
    assert training_stacks["prod"].batch_cluster.instance_types == ["p5.48xlarge"]
    assert OnUnhealthy.SHUTDOWN == "shutdown"  # a str, as the config and the bootstrap spell it


# ------------------------------------------------------------------------------ logical ids unchanged


@pytest.mark.slow
@pytest.mark.parametrize("env", ["prod", "local"])
def test_training_stack_logical_ids_are_unchanged(env, training_stacks):
    """The reference app's training resources keep their logical ids (and types) from before the split into one
    class per engine (the snapshot was taken from the engine-flag code), so a deployed stack updates in place
    instead of replacing clusters and the cache."""
    expected = json.loads((Path(__file__).parent / "data" / "training_logical_ids.json").read_text())[env]
    resources = Template.from_stack(training_stacks[env]).to_json()["Resources"]
    assert {lid: r["Type"] for lid, r in resources.items() if r["Type"] != "AWS::CDK::Metadata"} == expected


# ------------------------------------------------------------------------------ helpers


def _props(resources: dict, type_: str) -> list[dict]:
    return [r["Properties"] for r in resources.values() if r["Type"] == type_]


def _key(t: dict, contains: str) -> str:
    (key,) = [k for k, v in t["Resources"].items() if v["Type"] == "AWS::EC2::SecurityGroup" and contains in k]
    return key

