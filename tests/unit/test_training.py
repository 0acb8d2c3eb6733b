"""LustreCache, BatchTrainingCluster, SlurmTrainingCluster and TrainingStack: template assertions and every
validation."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match, Template

from mlinfra.constructs.data_lake import ImportedDataLake
from mlinfra.constructs.lustre_cache import (
    LustreCache,
    LustreDeploymentType,
    LustreLink,
    RepositoryEvent,
)
from mlinfra.constructs.training_cluster import (
    BatchTrainingCluster,
    CapacityType,
    LakeAccess,
    SlurmComputeResource,
    SlurmQueue,
    SlurmTrainingCluster,
)
from mlinfra.domain.lustre_sizing import plan_cache
from tests.helpers import new_stack, only, props

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1"
TOKEN = "arn:aws:lambda:us-east-1:123456789012:function:pcluster-provider"


def _net(stack):
    vpc = ec2.Vpc.from_vpc_attributes(stack, "Vpc", vpc_id="vpc-0123456789abcdef0", availability_zones=["us-east-1a"],
                                      private_subnet_ids=["subnet-0123456789abcdef0"])
    return vpc, vpc.private_subnets[0]


def _lake(stack):
    return ImportedDataLake(stack, "Lake", bucket_names={"raw": "raw-bkt", "features": "feat-bkt",
                                                         "artifacts": "art-bkt"},
                            key_arn="arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555")


# ------------------------------------------------------------------------------------ construct template


@pytest.fixture(scope="module")
def construct_template() -> dict:
    stack = new_stack()
    vpc, subnet = _net(stack)
    lake = _lake(stack)
    cache = LustreCache(stack, "Cache", vpc=vpc, subnet=subnet, plan=plan_cache(64, 200, 10240, deployment_types=("PERSISTENT_2",)),
                        links=[LustreLink("/raw", lake.bucket("raw"), "dataset=imagenet/version=1/"),
                               LustreLink("/checkpoints", lake.bucket("artifacts"), "checkpoints/",
                                          auto_import=(RepositoryEvent.NEW,),
                                          auto_export=(RepositoryEvent.NEW, RepositoryEvent.CHANGED))],
                        metadata_iops=12000)
    BatchTrainingCluster(stack, "Batch", vpc=vpc, subnet=subnet, lustre=cache, lake=lake,
                         instance_read=[LakeAccess("raw", "dataset=imagenet/")],
                         task_security_group=ec2.SecurityGroup.from_security_group_id(
                             stack, "VpcDefaultGroup", "sg-0default0000000000", allow_all_outbound=False, mutable=True),
                         image=IMAGE, instance_types=("p5.48xlarge",), nodes=4, max_vcpus=768,
                         job_read=[LakeAccess("raw")], job_write=[LakeAccess("artifacts", "checkpoints/")])
    SlurmTrainingCluster(stack, "Slurm", vpc=vpc, subnet=subnet, lustre=cache, lake=lake,
                         service_token=TOKEN, cluster_name="train-a", queues=[
                             SlurmQueue("gpu", [SlurmComputeResource("p5", "p5.48xlarge", max_count=8)]),
                             SlurmQueue("spot", [SlurmComputeResource("p4d", "p4d.24xlarge")],
                                        capacity_type=CapacityType.SPOT)])
    return Template.from_stack(stack).to_json()


def _of(t: dict, type_: str) -> dict[str, dict]:
    return {k: v for k, v in t["Resources"].items() if v["Type"] == type_}


def _one(t: dict, type_: str, contains: str = "") -> dict:
    found = [v for k, v in _of(t, type_).items() if contains in k]
    assert len(found) == 1, (type_, contains, len(found))
    return found[0]


def test_lustre_file_system(construct_template):
    fs = _one(construct_template, "AWS::FSx::FileSystem")
    p, lc = fs["Properties"], fs["Properties"]["LustreConfiguration"]
    assert (p["StorageCapacity"], lc["PerUnitStorageThroughput"], lc["DeploymentType"]) == (14400, 1000, "PERSISTENT_2")
    assert lc["DataCompressionType"] == "LZ4"
    assert lc["MetadataConfiguration"] == {"Mode": "USER_PROVISIONED", "Iops": 12000}
    # Linked to S3: FSx takes no backups and refuses CopyTagsToBackups (rule fsx.no-backups-with-s3-links).
    assert lc["AutomaticBackupRetentionDays"] == 0 and "CopyTagsToBackups" not in lc
    assert lc["LogConfiguration"]["Level"] == "WARN_ERROR"
    assert "KmsKeyId" in p and len(p["SubnetIds"]) == 1 and p["FileSystemTypeVersion"] == "2.15"
    assert fs["DeletionPolicy"] == "Retain"


def test_data_repository_associations(construct_template):
    dras = sorted((v["Properties"] for v in _of(construct_template, "AWS::FSx::DataRepositoryAssociation").values()),
                  key=lambda p: p["FileSystemPath"])
    assert [d["FileSystemPath"] for d in dras] == ["/checkpoints", "/raw"]
    assert dras[1]["DataRepositoryPath"] == "s3://raw-bkt/dataset=imagenet/version=1/"
    assert dras[1]["S3"] == {"AutoImportPolicy": {"Events": ["NEW", "CHANGED", "DELETED"]}}
    assert dras[0]["S3"] == {"AutoImportPolicy": {"Events": ["NEW"]}, "AutoExportPolicy": {"Events": ["NEW", "CHANGED"]}}


def _rules(t: dict, group_key: str, kind: str) -> list[dict]:
    type_ = f"AWS::EC2::SecurityGroup{kind}"
    return [v["Properties"] for v in _of(t, type_).values()
            if v["Properties"]["GroupId"] == {"Fn::GetAtt": [group_key, "GroupId"]}]


def _group_key(t: dict, contains: str) -> str:
    (key,) = [k for k in _of(t, "AWS::EC2::SecurityGroup") if contains in k]
    return key


def test_lustre_security_group_has_only_lustre_ports(construct_template):
    key = _group_key(construct_template, "CacheSecurityGroup")
    ingress = _rules(construct_template, key, "Ingress")
    assert {(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in ingress} == {("tcp", 988, 988), ("tcp", 1018, 1023)}
    # from itself and from both clusters: 3 sources x 2 port ranges
    assert len(ingress) == 6
    # and OUT to the same sources (FSx docs; ParallelCluster's ExistingFsxNetworkingValidator)
    egress = _rules(construct_template, key, "Egress")
    assert {(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in egress} == {("tcp", 988, 988), ("tcp", 1018, 1023)}
    assert len(egress) == 6
    assert {json.dumps(r["DestinationSecurityGroupId"]) for r in egress} == {
        json.dumps(r["SourceSecurityGroupId"]) for r in ingress}
    sg = construct_template["Resources"][key]["Properties"]
    assert "SecurityGroupIngress" not in sg and sg.get("SecurityGroupEgress", [{}])[0].get("CidrIp") != "0.0.0.0/0"


def test_cluster_security_group_is_self_referencing_both_ways(construct_template):
    key = _group_key(construct_template, "BatchSecurityGroup")
    me = {"Fn::GetAtt": [key, "GroupId"]}
    ingress = _rules(construct_template, key, "Ingress")
    egress = _rules(construct_template, key, "Egress")
    assert any(r["IpProtocol"] == "-1" and r.get("SourceSecurityGroupId") == me for r in ingress)
    others = [r for r in ingress if r.get("SourceSecurityGroupId") != me]  # only the cache's Lustre replies
    assert {(r["FromPort"], r["ToPort"]) for r in others} == {(988, 988), (1018, 1023)}
    assert all("CacheSecurityGroup" in json.dumps(r["SourceSecurityGroupId"]) for r in others)
    assert any(r["IpProtocol"] == "-1" and r.get("DestinationSecurityGroupId") == me for r in egress)
    lustre_ports = {(r["FromPort"], r["ToPort"]) for r in egress if r.get("DestinationSecurityGroupId") != me}
    assert lustre_ports == {(988, 988), (1018, 1023)}


def test_launch_template_efa_interfaces_single_subnet_imdsv2_encrypted(construct_template):
    lt = _one(construct_template, "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    nics = lt["NetworkInterfaces"]
    assert len(nics) == 32  # p5.48xlarge: 32 EFA interfaces, one per network card
    assert nics[0]["InterfaceType"] == "efa" and nics[0]["NetworkCardIndex"] == 0 and nics[0]["DeviceIndex"] == 0
    assert all(n["InterfaceType"] == "efa-only" and n["DeviceIndex"] == 1 for n in nics[1:])
    assert sorted(n["NetworkCardIndex"] for n in nics) == list(range(32))
    assert {json.dumps(n["SubnetId"]) for n in nics} == {'"subnet-0123456789abcdef0"'}
    assert "SecurityGroupIds" not in lt
    assert lt["MetadataOptions"]["HttpTokens"] == "required"
    assert lt["MetadataOptions"]["HttpPutResponseHopLimit"] == 1  # containers have their own role
    assert lt["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
    assert lt["InstanceInitiatedShutdownBehavior"] == "terminate"
    user_data = json.dumps(lt["UserData"])
    assert "Content-Type: text/x-shellscript" in user_data and "gpu_health.py" in user_data


def test_placement_groups_are_cluster(construct_template):
    pgs = _of(construct_template, "AWS::EC2::PlacementGroup")
    assert len(pgs) == 2 and all(v["Properties"]["Strategy"] == "cluster" for v in pgs.values())


def test_batch_compute_environment(construct_template):
    ce = _one(construct_template, "AWS::Batch::ComputeEnvironment")["Properties"]
    cr = ce["ComputeResources"]
    # No ServiceRole: the service-linked role, which infrastructure updates need.
    assert ce["Type"] == "MANAGED" and "ServiceRole" not in ce
    assert cr["MinvCpus"] == 0 and cr["MaxvCpus"] == 768 and cr["SecurityGroupIds"] == []
    assert cr["Type"] == "EC2" and cr["AllocationStrategy"] == "BEST_FIT_PROGRESSIVE"  # no Spot for MNP
    assert cr["LaunchTemplate"]["Version"] == {"Fn::GetAtt": [cr["LaunchTemplate"]["LaunchTemplateId"]["Ref"],
                                                              "LatestVersionNumber"]}
    assert ce["ReplaceComputeEnvironment"] is False and cr["UpdateToLatestImageVersion"] is True
    assert cr["InstanceTypes"] == ["p5.48xlarge"] and cr["Subnets"] == ["subnet-0123456789abcdef0"]
    assert cr["PlacementGroup"]["Ref"].startswith("BatchPlacementGroup")


def test_job_queue_and_multi_node_job_definition(construct_template):
    q = _one(construct_template, "AWS::Batch::JobQueue")["Properties"]
    assert q["ComputeEnvironmentOrder"][0]["ComputeEnvironment"]["Ref"].startswith("BatchComputeEnvironment")
    jd = _one(construct_template, "AWS::Batch::JobDefinition")["Properties"]
    assert jd["Type"] == "multinode" and jd["NodeProperties"]["NumNodes"] == 4
    c = jd["NodeProperties"]["NodeRangeProperties"][0]["Container"]
    devices = c["LinuxParameters"]["Devices"]
    assert [d["HostPath"] for d in devices] == [f"/dev/infiniband/uverbs{i}" for i in range(32)]
    assert {p.lower() for p in devices[0]["Permissions"]} == {"read", "write", "mknod"}
    assert c["LinuxParameters"]["SharedMemorySize"] == 49152
    assert {"HardLimit": -1, "Name": "memlock", "SoftLimit": -1} in c["Ulimits"]
    assert c["Volumes"] == [{"Host": {"SourcePath": "/fsx"}, "Name": "lustre"}]
    assert c["MountPoints"] == [{"ContainerPath": "/fsx", "SourceVolume": "lustre"}]
    assert c["Image"] == {"Fn::Join": ["", ["123456789012.dkr.ecr.us-east-1.", {"Ref": "AWS::URLSuffix"}, "/train:1"]]}
    assert {"Type": "GPU", "Value": "8"} in c["ResourceRequirements"]
    env = {e["Name"]: e["Value"] for e in c["Environment"]}
    assert env["FI_PROVIDER"] == "efa" and "FI_EFA_USE_DEVICE_RDMA" not in env


def _policy_of_role(t: dict, role_contains: str) -> list[dict]:
    out = []
    for v in _of(t, "AWS::IAM::Policy").values():
        if any(role_contains in r["Ref"] for r in v["Properties"].get("Roles", [])):
            out += v["Properties"]["PolicyDocument"]["Statement"]
    return out


def test_job_role_scoped_to_lake_prefixes(construct_template):
    statements = _policy_of_role(construct_template, "BatchJobRole")
    resources = json.dumps([s["Resource"] for s in statements])
    assert "art-bkt/checkpoints/*" in resources and "raw-bkt/*" in resources
    assert "feat-bkt" not in resources
    writes = [s for s in statements if "s3:PutObject" in s["Action"]]
    assert writes and all("checkpoints/*" in json.dumps(s["Resource"]) for s in writes)


def test_instance_role_reads_given_prefix_only(construct_template):
    policies = [v["Properties"] for k, v in _of(construct_template, "AWS::IAM::ManagedPolicy").items()
                if "BatchLakeReadPolicy" in k]
    (doc,) = [p["PolicyDocument"] for p in policies]
    assert policies[0]["Path"] == "/parallelcluster/"
    actions = {a for s in doc["Statement"] for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    assert actions == {"s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "kms:Decrypt", "kms:DescribeKey"}
    listing = [s for s in doc["Statement"] if s["Action"] == "s3:ListBucket"][0]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["dataset=imagenet/*"]}}
    role = _one(construct_template, "AWS::IAM::Role", "BatchInstanceRole")["Properties"]
    managed = json.dumps(role["ManagedPolicyArns"])
    # Session Manager only: not AmazonSSMManagedInstanceCore (ssm:GetParameter* on every parameter)
    assert "AmazonSSMManagedInstanceCore" not in managed and "CloudWatchAgentServerPolicy" in managed
    (session,) = [v["Properties"]["PolicyDocument"] for k, v in _of(construct_template, "AWS::IAM::ManagedPolicy").items()
                  if "BatchSessionManagerPolicy" in k]
    actions = {a for st in session["Statement"] for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])}
    assert not any(a.startswith("ssm:GetParameter") for a in actions) and "ssm:UpdateInstanceInformation" in actions


def test_parallelcluster_configuration(construct_template):
    pc = _one(construct_template, "Custom::PclusterCluster")
    p = pc["Properties"]
    assert p["ServiceToken"] == TOKEN and p["ClusterName"] == "train-a" and p["DeletionPolicy"] == "Delete"
    cfg = p["ClusterConfiguration"]
    assert cfg["Scheduling"]["Scheduler"] == "slurm"
    gpu, spot = cfg["Scheduling"]["SlurmQueues"]
    assert (gpu["Name"], spot["Name"], spot["CapacityType"]) == ("gpu", "spot", "SPOT")
    assert gpu["ComputeResources"] == [{"Name": "p5", "InstanceType": "p5.48xlarge", "MinCount": 0, "MaxCount": 8,
                                        "Efa": {"Enabled": True}}]
    assert gpu["Networking"]["PlacementGroup"]["Enabled"] is True
    assert gpu["Networking"]["PlacementGroup"]["Id"]["Ref"].startswith("SlurmPlacementGroup")
    assert gpu["Networking"]["SubnetIds"] == ["subnet-0123456789abcdef0"]
    assert gpu["HealthChecks"] == {"Gpu": {"Enabled": True}}
    (policy,) = gpu["Iam"]["AdditionalIamPolicies"]
    assert policy["Policy"]["Ref"].startswith("SlurmLakeReadPolicy")
    assert gpu["ComputeSettings"]["LocalStorage"]["RootVolume"]["Encrypted"] is True
    assert cfg["HeadNode"]["Networking"]["SubnetId"] == "subnet-0123456789abcdef0"
    (storage,) = cfg["SharedStorage"]
    assert storage["StorageType"] == "FsxLustre" and storage["MountDir"] == "/fsx"
    assert storage["FsxLustreSettings"]["FileSystemId"]["Ref"].startswith("CacheFileSystem")


# ------------------------------------------------------------------------------------ Lustre validations


def _cache(**kwargs):
    stack = new_stack()
    vpc, subnet = _net(stack)
    if "links" in kwargs and callable(kwargs["links"]):
        kwargs["links"] = kwargs["links"](s3.Bucket.from_bucket_name(stack, "B", "bkt"))
    return LustreCache(stack, "Cache", vpc=vpc, subnet=subnet, **kwargs), stack


P2, P1, S2 = LustreDeploymentType.PERSISTENT_2, LustreDeploymentType.PERSISTENT_1, LustreDeploymentType.SCRATCH_2


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"deployment_type": P2, "per_unit_storage_throughput": 300},
     r"per_unit_storage_throughput must be 125, 250, 500 or 1000 MB/s/TiB for PERSISTENT_2, got: 300"),
    ({"deployment_type": P1, "per_unit_storage_throughput": 125}, "must be 50, 100 or 200 MB/s/TiB for PERSISTENT_1"),
    ({"deployment_type": S2, "per_unit_storage_throughput": 200}, "is not set for SCRATCH_2"),
    ({"storage_capacity_gib": 3600}, "must be 1200 or a multiple of 2400 GiB for PERSISTENT_2, got: 3600"),
    ({"deployment_type": P1, "metadata_iops": 3000}, "metadata_iops is for PERSISTENT_2 only"),
    ({"metadata_iops": 5000}, "metadata_iops must be 1500, 3000, 6000, 12000 or a multiple of 12000"),
    ({"deployment_type": S2, "backup_retention": cdk.Duration.days(3)}, "SCRATCH_2 file systems take no automatic backups"),
    ({"backup_retention": cdk.Duration.days(91)}, "backup_retention must be 0 to 90 days"),
    ({"deployment_type": "PERSISTENT_2"}, "deployment_type must be a LustreDeploymentType"),
    ({"plan": plan_cache(8, 25, 1024), "storage_capacity_gib": 1200}, "pass either plan or deployment_type"),
    ({"links": lambda b: [LustreLink(f"/d{i}", b) for i in range(9)]}, "at most 8 data repository associations"),
    ({"links": lambda b: [LustreLink("/data", b), LustreLink("/data/raw", b, "raw/")]}, "must not overlap"),
    ({"links": lambda b: [LustreLink("raw", b)]}, "file_system_path must be an absolute path"),
    ({"links": lambda b: [LustreLink("/raw", b, "no-slash")]}, "LustreLink prefix must be one or more path segments"),
    ({"links": lambda b: [LustreLink("/", b)], "use_import_export_paths": True},
     "PERSISTENT_2 accepts only data repository associations"),
    ({"deployment_type": S2, "links": lambda b: [LustreLink("/raw", b)], "use_import_export_paths": True},
     "import/export paths link exactly one bucket prefix at file_system_path '/'"),
    ({"deployment_type": S2, "links": lambda b: [LustreLink("/", b, auto_import=(RepositoryEvent.DELETED,))],
      "use_import_export_paths": True}, "import paths support NEW, NEW\\+CHANGED"),
    ({"links": lambda b: [LustreLink("/raw", b, auto_import=("NEW",))]}, "take RepositoryEvent members"),
    ({"log_retention_days": 10}, "log_retention_days must be one of"),
])
def test_lustre_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _cache(**kwargs)


def test_scratch_refuses_a_key():
    stack = new_stack()
    key = kms.Key(stack, "K")
    with pytest.raises(ValueError, match="SCRATCH_2 file systems are encrypted with FSx-managed keys only"):
        _cache(deployment_type=S2, kms_key=key)


def test_scratch_import_path_and_no_kms_no_backups():
    cache, stack = _cache(deployment_type=S2, storage_capacity_gib=2400, use_import_export_paths=True,
                          links=lambda b: [LustreLink("/", b, "raw/", auto_export=(RepositoryEvent.NEW,))])
    lc = only(Template.from_stack(stack), "AWS::FSx::FileSystem")["Properties"]
    assert "KmsKeyId" not in lc
    lc = lc["LustreConfiguration"]
    assert lc["ImportPath"] == "s3://bkt/raw/" and lc["ExportPath"] == "s3://bkt/raw/"
    assert lc["AutoImportPolicy"] == "NEW_CHANGED_DELETED" and "AutomaticBackupRetentionDays" not in lc
    assert "PerUnitStorageThroughput" not in lc and "MetadataConfiguration" not in lc
    assert not Template.from_stack(stack).find_resources("AWS::FSx::DataRepositoryAssociation")
    assert cache.aggregate_throughput_mbps == pytest.approx(2400 / 1024 * 200)


def test_cache_takes_a_scratch_plan_and_mount_command():
    cache, stack = _cache(plan=plan_cache(8, 25, 1024))
    assert cache.deployment_type is S2 and cache.per_unit_storage_throughput is None
    assert "mount -t lustre" in cache.mount_command()
    assert only(Template.from_stack(stack), "AWS::FSx::FileSystem")["Properties"]["StorageCapacity"] == 1200


# ------------------------------------------------------------------------------------ cluster validations


def _batch(**kwargs):
    stack = new_stack()
    vpc, subnet = _net(stack)
    if kwargs.pop("with_lake", False):
        kwargs["lake"] = _lake(stack)
    kwargs.setdefault("image", IMAGE)
    return BatchTrainingCluster(stack, "C", vpc=vpc, subnet=subnet, **kwargs)


def _slurm(*queues, **kw):
    stack = new_stack()
    vpc, subnet = _net(stack)
    return SlurmTrainingCluster(stack, "C", vpc=vpc, subnet=subnet, service_token=kw.pop("token", TOKEN),
                                cluster_name=kw.pop("name", "c1"), queues=list(queues), **kw)


R = SlurmComputeResource


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"instance_types": ("g5.xlarge",)}, r"'g5.xlarge' has no EFA"),
    ({"instance_types": ("trn1.32xlarge",)}, "not NVIDIA GPUs"),
    ({"instance_types": ("m5.large",)}, "must be a GPU or Trainium type"),
    ({"instance_types": ("dl1.24xlarge",)}, "retired"),
    ({"instance_types": ()}, "at least one GPU instance type"),
    ({"instance_types": ("p4d.24xlarge", "p5.48xlarge"), "max_vcpus": 1000}, "must share one EFA interface count"),
    ({"nodes": 4, "max_vcpus": 100}, r"max_vcpus must hold nodes x vCPUs"),
    ({"nodes": 0}, r"^TestStack/C: nodes must be an integer >= 1 .*, got: 0$"),
    ({"image": ""}, r"^TestStack/C: image must be a container image URI, got: ''$"),
    ({"shared_memory_mib": 10}, "shared_memory_mib must be 64 to"),
    ({"root_volume_size": cdk.Size.gibibytes(10)}, "root_volume_size must be 30"),
    ({"job_read": [LakeAccess("raw")]}, "lake is required"),
    ({"job_read": [LakeAccess("curated")], "with_lake": True}, "LakeAccess zone must be one of"),
    ({"instance_read": [LakeAccess("raw", "x")], "with_lake": True}, "LakeAccess prefix must be one or more path segments"),
    ({"on_unhealthy": "reboot"}, r"^TestStack/C: on_unhealthy must be one of 'shutdown', 'report' \(OnUnhealthy\), "
                                 r"got: 'reboot'$"),
    ({"lustre": "fs-0123456789abcdef0"}, r"^TestStack/C: lustre must be an ILustreCache .*, got: 'fs-0123456789abcdef0'$"),
    ({"lake": {"raw": "bucket"}}, r"^TestStack/C: lake must be an IDataLake .*, got: \{'raw': 'bucket'\}$"),
])
def test_batch_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _batch(**kwargs)


def test_batch_takes_only_its_own_props():
    with pytest.raises(TypeError, match="service_token"):
        _batch(service_token=TOKEN)
    with pytest.raises(TypeError, match="image"):
        _slurm(SlurmQueue("q", [R("r", "p4d.24xlarge")]), image=IMAGE)


def test_the_base_is_abstract():
    from mlinfra.constructs.training_cluster import GpuTrainingClusterBase

    stack = new_stack()
    vpc, subnet = _net(stack)
    with pytest.raises(TypeError, match="GpuTrainingClusterBase is abstract"):
        GpuTrainingClusterBase(stack, "C", vpc=vpc, subnet=subnet, instance_types=["p4d.24xlarge"])


@pytest.mark.parametrize("name", ["GpuTrainingCluster", "TrainingEngine", "BatchOptions", "SlurmOptions"])
def test_the_engine_flag_api_is_gone_with_a_clear_error(name):
    import mlinfra.constructs.training_cluster as tc

    with pytest.raises(ImportError, match=rf"training_cluster.{name} was removed: .*(BatchTrainingCluster|SlurmTrainingCluster)"):
        getattr(tc, name)


def _strings(value) -> list[str]:
    """Every literal string inside a resolved CloudFormation value (the parts of Fn::Join, Fn::Base64, ...)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_on_unhealthy_reaches_the_bootstrap():
    from mlinfra.userdata import OnUnhealthy

    def bootstrap(**kw):
        cluster = _batch(efa=False, instance_types=("g5.2xlarge",), max_vcpus=64, **kw)
        resolved = cdk.Stack.of(cluster).resolve(cluster.launch_template.user_data.render())
        return "\n".join(_strings(resolved))

    assert 'ON_FAILURE="report"' in bootstrap(on_unhealthy=OnUnhealthy.REPORT)
    assert 'ON_FAILURE="shutdown"' in bootstrap()


def test_batch_without_efa_allows_small_types():
    cluster = _batch(efa=False, instance_types=("g5.2xlarge",), max_vcpus=64)
    t = Template.from_stack(cdk.Stack.of(cluster))
    lt = only(t, "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    assert "NetworkInterfaces" not in lt
    ce = only(t, "AWS::Batch::ComputeEnvironment")["Properties"]["ComputeResources"]
    assert len(ce["SecurityGroupIds"]) == 1 and not t.find_resources("AWS::EC2::SecurityGroup", {
        "Properties": {"GroupDescription": Match.string_like_regexp("ComputeEnvironment")}})


@pytest.mark.parametrize(("queues", "kw", "match"), [
    ((SlurmQueue("q", [R("r", "p4d.24xlarge")]), SlurmQueue("q", [R("r", "p4d.24xlarge")])), {},
     r"queue names must be unique, got duplicates: \['q'\]"),
    ((SlurmQueue("q", [R("r", "p4d.24xlarge"), R("r", "p5.48xlarge")]),), {}, "compute resource names must be unique"),
    ((SlurmQueue("q", [R("r", "p4d.24xlarge", min_count=3, max_count=2)]),), {}, "need 0 <= min_count <= max_count"),
    ((SlurmQueue("q", [R("r", "p4d.24xlarge", max_count=0)]),), {}, "max_count >= 1"),
    ((SlurmQueue("q", [R("r", "g5.2xlarge")]),), {}, "'g5.2xlarge' has no EFA"),
    ((SlurmQueue("Queue_1", [R("r", "p4d.24xlarge")]),), {}, "slurm queue name must be"),
    ((SlurmQueue("q", [R("R1", "p4d.24xlarge")]),), {}, "slurm compute resource name must be"),
    ((SlurmQueue("q", [R("r", "p4d.24xlarge")]),), {"token": ""}, r"^TestStack/C: service_token must be"),
    ((SlurmQueue("q", [R("r", "p4d.24xlarge")]),), {"name": "1bad"}, r"^TestStack/C: cluster_name must start with a letter"),
    ((), {}, r"^TestStack/C: queues must list at least one queue, got: \[\]$"),
    ((SlurmQueue("q", []),), {}, "compute_resources must not be empty"),
    ((SlurmQueue("q", [R("r", "p4d.24xlarge")], capacity_type="RESERVED"),), {},
     r"^TestStack/C: slurm queue q: capacity_type must be one of 'ONDEMAND', 'SPOT', 'CAPACITY_BLOCK' "
     r"\(CapacityType\), got: 'RESERVED'$"),
    ((SlurmQueue("q", [R("r", "p4d.24xlarge")]),), {"queue_update_strategy": "STOP"},
     r"^TestStack/C: queue_update_strategy must be one of 'DRAIN', .* \(QueueUpdateStrategy\), got: 'STOP'$"),
])
def test_slurm_validation(queues, kw, match):
    with pytest.raises(ValueError, match=match):
        _slurm(*queues, **kw)


def test_capacity_type_as_its_string_value_is_accepted():
    cluster = _slurm(SlurmQueue("q", [R("r", "p4d.24xlarge")], capacity_type="SPOT"))
    assert cluster.queues[0].capacity_type is CapacityType.SPOT
    assert cluster.cluster_configuration["Scheduling"]["SlurmQueues"][0]["CapacityType"] == "SPOT"


def test_slurm_resource_without_efa_on_an_efa_cluster_is_allowed():
    cluster = _slurm(SlurmQueue("q", [R("r", "g5.2xlarge", efa=False)]))
    q = cluster.cluster_configuration["Scheduling"]["SlurmQueues"][0]
    assert q["ComputeResources"][0]["Efa"] == {"Enabled": False}
    with pytest.raises(ValueError, match="efa=True on a cluster built with efa=False"):
        _slurm(SlurmQueue("q", [R("r", "p4d.24xlarge")]), efa=False)


# ------------------------------------------------------------------------------------ the stack


@pytest.fixture(scope="module")
def local_platform(local_config):
    from mlinfra.app import create_app

    _, platform = create_app(config=local_config, nag=False)
    return platform


def test_stack_has_cache_batch_and_slurm(local_platform):
    t = Template.from_stack(local_platform.extra["training"])
    t.resource_count_is("AWS::FSx::FileSystem", 1)
    t.resource_count_is("AWS::FSx::DataRepositoryAssociation", 3)
    t.resource_count_is("AWS::Batch::ComputeEnvironment", 1)
    t.resource_count_is("Custom::PclusterCluster", 1)
    t.has_resource_properties("AWS::EC2::LaunchTemplate", {"LaunchTemplateData": Match.object_like(
        {"ImageId": "ami-12c6146b"})})
    outputs = t.to_json()["Outputs"]
    for name in ("LustreDnsName", "LustreMountName", "LustreMountCommand", "BatchJobQueueArn", "SlurmClusterName"):
        assert name in outputs


def test_stack_sizes_the_cache_from_config(local_platform):
    stack = local_platform.extra["training"]
    plan = stack.cache_plan
    assert plan is not None and plan.aggregate_throughput_mbps >= plan.demand_mbps
    fs = props(Template.from_stack(stack), "AWS::FSx::FileSystem")[0]
    assert fs["StorageCapacity"] == plan.storage_capacity_gib


def test_stack_training_job_spec(local_platform):
    stack = local_platform.extra["training"]
    spec = stack.training_job_spec(image_uri="img", role_arn="arn:aws:iam::123456789012:role/r",
                                   output_s3_uri="s3://b/models/")
    req = spec.to_request("job-1")
    assert len(req["VpcConfig"]["Subnets"]) == 1 and len(req["VpcConfig"]["SecurityGroupIds"]) == 1


def test_training_config_validation():
    from mlinfra.config import SlurmQueueConfig, TrainingConfig

    bad = TrainingConfig(
        cache_storage_capacity_gib=3000, cache_links={"raw": "lake", **{f"/d{i}": "raw" for i in range(8)}},
        lake_read=["raw:nope"], ami_id="ami-x", batch_instance_types=["g5.xlarge"], batch_nodes=0,
        slurm_enabled=True, slurm_service_token=None,
        slurm_queues=[SlurmQueueConfig(), SlurmQueueConfig(max_count=0), SlurmQueueConfig(name="t", instance_type="dl1.24xlarge")],
        sizing_gpus=0,
    )
    errors = "\n".join(bad.validate())
    for fragment in ("training.cache_storage_capacity_gib: storage_capacity_gib must be 1200",
                     "training.cache_links: at most 8", "training.cache_links: file-system paths must start with '/'",
                     "training.cache_links.raw: zone must be one of", "training.lake_read: prefix must be",
                     "training.ami_id", "training.batch_instance_types:", "training.batch_nodes",
                     "training.slurm_service_token", "training.slurm_queues: need at least one queue and unique",
                     "training.slurm_queues.gpu: need 0 <= min_count", "training.slurm_queues.t.instance_type",
                     "training.sizing_*"):
        assert fragment in errors, fragment
    assert TrainingConfig().validate() == []
    assert "set only with cache_storage_capacity_gib" in "".join(TrainingConfig(cache_per_unit_throughput=250).validate())


@pytest.mark.policy
def test_training_stack_is_nag_clean(prod_config):
    from mlinfra.app import create_app

    app, _ = create_app(config=prod_config, nag=True)
    app.synth()
