"""The AWS rules the training constructs rely on (issue 11): each with a negative test citing the rule, and the
template that follows from it. Sources: the rows of ``mlinfra.domain.rules`` (_BATCH, _PARALLELCLUSTER, _FSX,
_EC2)."""

from __future__ import annotations

import json
import subprocess

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Annotations, Match, Template

from mlinfra.constructs.lustre_cache import LustreCache, LustreDeploymentType, LustreLink
from mlinfra.constructs.training_cluster import (
    ECS_GPU_AMI_SSM_PARAMETER,
    BatchTrainingCluster,
    CapacityType,
    QueueUpdateStrategy,
    SlurmComputeResource,
    SlurmQueue,
    SlurmTrainingCluster,
    capacity_block_errors,
    cluster_name_errors,
    efa_environment,
)
from mlinfra.domain import instances, rules
from mlinfra.userdata import render_node_install_script
from tests.helpers import new_stack, only

from tests.unit.test_training import IMAGE, TOKEN, _net

CR = "cr-0123456789abcdef0"


def _default_group(stack):
    return ec2.SecurityGroup.from_security_group_id(stack, "Default", "sg-0default0000000000",
                                                    allow_all_outbound=False, mutable=True)


def _batch(stack=None, **kw):
    stack = stack or new_stack()
    vpc, subnet = _net(stack)
    kw.setdefault("task_security_group", _default_group(stack))
    kw.setdefault("image", IMAGE)
    return BatchTrainingCluster(stack, "C", vpc=vpc, subnet=subnet, **kw)


def _slurm(queues, stack=None, name="c1", **kw):
    stack = stack or new_stack()
    vpc, subnet = _net(stack)
    return SlurmTrainingCluster(stack, "C", vpc=vpc, subnet=subnet, service_token=TOKEN, cluster_name=name,
                                queues=queues, **kw)


def test_every_training_rule_is_in_the_table():
    for rid in ("batch.mnp-no-spot", "batch.mnp-ecs-agent-image", "batch.mnp-task-eni-security-groups",
                "batch.execution-role-pulls-image", "batch.infrastructure-updates", "batch.efa-no-forced-device-rdma",
                "parallelcluster.cluster-name-not-a-stack-name", "parallelcluster.fsx-networking",
                "parallelcluster.provider-policy-path", "parallelcluster.capacity-block",
                "parallelcluster.queue-update-strategy", "fsx.no-backups-with-s3-links", "fsx.lustre-ports-both-ways",
                "fsx.file-system-attributes", "ec2.imds-hop-limit-containers", "ec2.efa-interface-count",
                "ec2.instance-store"):
        assert rules.rule(rid).source


# ------------------------------------------------------------------ 1. cluster name is no stack name


def test_cluster_name_equal_to_a_stack_name_fails_the_synth():
    stack = new_stack()  # named TestStack
    _slurm([SlurmQueue("q", [SlurmComputeResource("r", "p4d.24xlarge")])], stack=stack, name="TestStack")
    with pytest.raises(Exception, match=r"cluster_name must differ from every stack name.*'TestStack'.*"
                                        r"parallelcluster.cluster-name-not-a-stack-name"):
        Template.from_stack(stack)


def test_cluster_name_equal_to_a_stage_stack_name_fails_the_synth():
    app = cdk.App()
    stage = cdk.Stage(app, "Prod")
    cdk.Stack(stage, "Other", stack_name="mlinfra-prod-slurm")
    stack = cdk.Stack(app, "Training", env=cdk.Environment(account="123456789012", region="us-east-1"))
    _slurm([SlurmQueue("q", [SlurmComputeResource("r", "p4d.24xlarge")])], stack=stack, name="mlinfra-prod-slurm")
    with pytest.raises(Exception, match="cluster-name-not-a-stack-name"):
        app.synth()


def test_cluster_name_errors_is_pure():
    assert cluster_name_errors("a", ["b", "c"]) == []
    assert "got: 'b'" in cluster_name_errors("b", ["b"])[0]


def test_default_cluster_name_is_no_stack_name(prod_config):
    from mlinfra.config import TrainingConfig

    assert prod_config.resource_name(TrainingConfig().slurm_cluster_name) == "mlinfra-prod-slurm"
    assert prod_config.resource_name(TrainingConfig().slurm_cluster_name) != prod_config.stack_name("training")


# ------------------------------------------------------------------ 3. policy path for the hosted provider


def test_lake_policy_is_under_the_parallelcluster_path():
    cluster = _slurm([SlurmQueue("q", [SlurmComputeResource("r", "p4d.24xlarge")])])
    policy = only(Template.from_stack(cdk.Stack.of(cluster)), "AWS::IAM::ManagedPolicy")["Properties"]
    assert policy["Path"] == "/parallelcluster/"


# ------------------------------------------------------------------ 4. capacity blocks


@pytest.mark.parametrize(("resource", "fragments"), [
    (SlurmComputeResource("r", "p5.48xlarge", min_count=0, max_count=2),
     ["capacity_reservation_id must be the capacity block's id", "min_count must equal max_count (> 0)"]),
    (SlurmComputeResource("r", "p5.48xlarge", min_count=2, max_count=2, capacity_reservation_id="cr-1"),
     ["got: 'cr-1'"]),
    (SlurmComputeResource("r", "p5.48xlarge", min_count=1, max_count=2, capacity_reservation_id=CR),
     ["got: min_count=1, max_count=2"]),
])
def test_capacity_block_rules(resource, fragments):
    queue = SlurmQueue("cb", [resource], capacity_type=CapacityType.CAPACITY_BLOCK)
    with pytest.raises(ValueError) as err:
        _slurm([queue])
    message = str(err.value)
    assert message.startswith("TestStack/C: slurm queue cb/r")
    assert "parallelcluster.capacity-block" in message
    for fragment in fragments:
        assert fragment in message


def test_reservation_id_outside_a_capacity_block_is_refused():
    errors = capacity_block_errors([SlurmQueue("q", [SlurmComputeResource("r", "p5.48xlarge",
                                                                          capacity_reservation_id=CR)])])
    assert errors and "capacity_reservation_id is for CAPACITY_BLOCK queues" in errors[0]


def test_capacity_block_queue_renders_reservation_and_no_placement_group():
    cluster = _slurm([SlurmQueue("cb", [SlurmComputeResource("r", "p5.48xlarge", min_count=2, max_count=2,
                                                             capacity_reservation_id=CR)],
                                 capacity_type=CapacityType.CAPACITY_BLOCK),
                      SlurmQueue("od", [SlurmComputeResource("r", "p5.48xlarge")])])
    cb, od = cluster.cluster_configuration["Scheduling"]["SlurmQueues"]
    assert cb["CapacityType"] == "CAPACITY_BLOCK" and "PlacementGroup" not in cb["Networking"]
    assert cb["ComputeResources"][0]["CapacityReservationTarget"] == {"CapacityReservationId": CR}
    assert od["Networking"]["PlacementGroup"]["Enabled"] is True


def test_parallelcluster_accepts_our_capacity_block_queue():
    pytest.importorskip("pcluster")
    from tests.unit.test_pcluster_validators import _load

    cluster = _slurm([SlurmQueue("cb", [SlurmComputeResource("r", "p5.48xlarge", min_count=2, max_count=2,
                                                             capacity_reservation_id=CR)],
                                 capacity_type=CapacityType.CAPACITY_BLOCK)])
    stack = cdk.Stack.of(cluster)
    configuration = stack.resolve(cluster.cluster_configuration)
    loaded = _load("c1", configuration)
    assert loaded.scheduling.queues[0].capacity_type.value == "CAPACITY_BLOCK"


# ------------------------------------------------------------------ 12. queue update strategy


def test_queue_update_strategy_is_emitted_drain_by_default():
    q = [SlurmQueue("q", [SlurmComputeResource("r", "p4d.24xlarge")])]
    assert _slurm(q).cluster_configuration["Scheduling"]["SlurmSettings"] == {"QueueUpdateStrategy": "DRAIN"}
    terminate = _slurm(q, queue_update_strategy=QueueUpdateStrategy.TERMINATE)
    assert terminate.cluster_configuration["Scheduling"]["SlurmSettings"]["QueueUpdateStrategy"] == "TERMINATE"


# ------------------------------------------------------------------ 5. backups and S3 links; the log group key


def _cache(stack=None, **kw):
    stack = stack or new_stack()
    vpc, subnet = _net(stack)
    return LustreCache(stack, "Cache", vpc=vpc, subnet=subnet, **kw), stack


def test_explicit_backup_retention_with_links_is_refused():
    stack = new_stack()
    bucket = s3.Bucket.from_bucket_name(stack, "B", "bkt")
    with pytest.raises(ValueError, match=r"^TestStack/Cache: backup_retention must be 0 days \(or unset\) on a file "
                                         r"system linked to S3 \(links: \['/raw'\]\), got: 7 days .*"
                                         r"fsx.no-backups-with-s3-links"):
        _cache(stack, links=[LustreLink("/raw", bucket)], backup_retention=cdk.Duration.days(7))


def test_backups_default_off_with_links_and_on_without():
    stack = new_stack()
    bucket = s3.Bucket.from_bucket_name(stack, "B", "bkt")
    _cache(stack, links=[LustreLink("/raw", bucket)], backup_retention=cdk.Duration.days(0))
    lc = only(Template.from_stack(stack), "AWS::FSx::FileSystem")["Properties"]["LustreConfiguration"]
    assert lc["AutomaticBackupRetentionDays"] == 0 and "CopyTagsToBackups" not in lc
    _, unlinked = _cache()
    lc = only(Template.from_stack(unlinked), "AWS::FSx::FileSystem")["Properties"]["LustreConfiguration"]
    assert lc["AutomaticBackupRetentionDays"] == 7 and lc["CopyTagsToBackups"] is True


def test_lustre_log_group_has_a_customer_managed_key_logs_may_use():
    _, stack = _cache()
    t = Template.from_stack(stack).to_json()
    (group,) = [v["Properties"] for v in t["Resources"].values() if v["Type"] == "AWS::Logs::LogGroup"]
    assert group["KmsKeyId"]["Fn::GetAtt"][1] == "Arn"
    key = t["Resources"][group["KmsKeyId"]["Fn::GetAtt"][0]]["Properties"]
    logs = [st for st in key["KeyPolicy"]["Statement"]
            if "logs." in json.dumps(st.get("Principal", {}))]
    assert logs and "kms:EncryptionContext:aws:logs:arn" in json.dumps(logs[0]["Condition"])
    _, scratch = _cache(deployment_type=LustreDeploymentType.SCRATCH_2)  # no file-system key: a log key
    assert Template.from_stack(scratch).find_resources("AWS::KMS::Key")


# ------------------------------------------------------------------ 6. the Batch node image and its software


def test_batch_default_image_is_the_ecs_gpu_image_with_the_install_part():
    cluster = _batch()
    t = Template.from_stack(cdk.Stack.of(cluster)).to_json()
    assert ECS_GPU_AMI_SSM_PARAMETER in json.dumps(t["Parameters"])
    assert "deeplearning" not in json.dumps(t["Parameters"])
    (lt,) = [v for v in t["Resources"].values() if v["Type"] == "AWS::EC2::LaunchTemplate"]
    user_data = json.dumps(lt["Properties"]["LaunchTemplateData"]["UserData"])
    assert user_data.index("efa_installer.sh") < user_data.index("gpu_health.py")  # install, then bootstrap
    assert "lustre-client" in user_data


def test_install_part_is_valid_bash_and_skips_what_is_present(tmp_path):
    script = render_node_install_script(efa_enabled=True)
    path = tmp_path / "install.sh"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    assert "[ ! -x /opt/amazon/efa/bin/fi_info ]" in script and "command -v mount.lustre" in script
    assert "@@" not in script
    with pytest.raises(ValueError, match="efa_installer_version must be 'latest' or a release"):
        render_node_install_script(efa_installer_version="1.x; rm -rf /")


# ------------------------------------------------------------------ 7. no Spot for multi-node jobs


def test_batch_cluster_has_no_spot():
    with pytest.raises(TypeError, match="spot"):
        _batch(spot=True)  # rule batch.mnp-no-spot
    cr = only(Template.from_stack(cdk.Stack.of(_batch())), "AWS::Batch::ComputeEnvironment")
    assert cr["Properties"]["ComputeResources"]["Type"] == "EC2"


def test_config_rejects_the_removed_batch_spot_key(tmp_path):
    from mlinfra.config import ConfigError, load_config_file

    path = tmp_path / "p.yaml"
    path.write_text("defaults:\n  prefix: mlinfra\n  training:\n    batch_spot: true\nenvironments:\n  dev: {}\n")
    with pytest.raises(ConfigError, match="batch_spot"):
        load_config_file(path, "dev")


# ------------------------------------------------------------------ 8. the task ENIs' group


def test_task_enis_group_gets_what_a_job_needs():
    t = Template.from_stack(cdk.Stack.of(_batch())).to_json()
    ingress = [v["Properties"] for v in t["Resources"].values() if v["Type"] == "AWS::EC2::SecurityGroupIngress"
               and v["Properties"]["GroupId"] == "sg-0default0000000000"]
    egress = [v["Properties"] for v in t["Resources"].values() if v["Type"] == "AWS::EC2::SecurityGroupEgress"
              and v["Properties"]["GroupId"] == "sg-0default0000000000"]
    assert [(r["IpProtocol"], r["SourceSecurityGroupId"]) for r in ingress] == [("-1", "sg-0default0000000000")]
    assert {(r["IpProtocol"], r.get("DestinationSecurityGroupId") or r.get("CidrIp"), r.get("FromPort"))
            for r in egress} == {("-1", "sg-0default0000000000", None), ("tcp", "0.0.0.0/0", 443)}


def test_task_group_is_required_in_an_imported_vpc():
    with pytest.raises(ValueError, match="task_security_group is required .*batch.mnp-task-eni-security-groups"):
        _batch(task_security_group=None)


def test_created_vpc_default_group_is_used():
    stack = new_stack()
    vpc = ec2.Vpc(stack, "Vpc", max_azs=1, nat_gateways=0,
                  subnet_configuration=[ec2.SubnetConfiguration(name="p", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)])
    BatchTrainingCluster(stack, "C", vpc=vpc, subnet=vpc.isolated_subnets[0], image=IMAGE)
    Template.from_stack(stack).has_resource_properties("AWS::EC2::SecurityGroupIngress", {
        "GroupId": {"Fn::GetAtt": [Match.string_like_regexp("Vpc"), "DefaultSecurityGroup"]}, "IpProtocol": "-1"})


# ------------------------------------------------------------------ 9. image pull; zero library warnings


def _execution_statements(t: dict) -> list[dict]:
    out = []
    for v in t["Resources"].values():
        if v["Type"] == "AWS::IAM::Policy" and "ExecutionRole" in json.dumps(v["Properties"]["Roles"]):
            out += v["Properties"]["PolicyDocument"]["Statement"]
    return out


def test_execution_role_may_pull_the_image_from_its_repository():
    t = Template.from_stack(cdk.Stack.of(_batch())).to_json()
    statements = _execution_statements(t)
    pull = [s for s in statements if "ecr:BatchGetImage" in s["Action"]]
    assert pull and json.dumps(pull[0]["Resource"]).count("repository/train") == 1
    assert any(s["Action"] == "ecr:GetAuthorizationToken" for s in statements)


def test_cross_account_deep_learning_container_is_pulled_by_arn():
    dlc = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311-cu124-ubuntu22.04-ec2"
    t = Template.from_stack(cdk.Stack.of(_batch(image=dlc))).to_json()
    pull = [s for s in _execution_statements(t) if "ecr:BatchGetImage" in s["Action"]]
    assert pull[0]["Resource"] == "arn:aws:ecr:us-east-1:763104351884:repository/pytorch-training"


def test_training_stack_synthesizes_without_library_warnings(prod_config):
    from mlinfra.app import create_app

    _, platform = create_app(config=prod_config, nag=False)
    warnings = Annotations.from_stack(platform.extra["training"]).find_warning("*", Match.any_value())
    assert [(w.id, w.entry.data) for w in warnings] == []


# ------------------------------------------------------------------ 10. libfabric RDMA


@pytest.mark.parametrize("instance_type", ["p4d.24xlarge", "p5.48xlarge", "g5.48xlarge", "g6e.48xlarge"])
def test_efa_environment_never_forces_device_rdma(instance_type):
    assert "FI_EFA_USE_DEVICE_RDMA" not in efa_environment(instance_type)
    assert efa_environment(instance_type)["FI_PROVIDER"] == "efa"


def test_rdma_capable_families_come_from_the_table():
    assert instances.efa_rdma_capable("p5.48xlarge") and not instances.efa_rdma_capable("g5.48xlarge")


# ------------------------------------------------------------------ issue 13 item 4: IMDS and the node role


def test_launch_template_hop_limit_one_and_no_ssm_core():
    t = Template.from_stack(cdk.Stack.of(_batch()))
    lt = only(t, "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    assert lt["MetadataOptions"] == {"HttpPutResponseHopLimit": 1, "HttpTokens": "required"}
    assert "AmazonSSMManagedInstanceCore" not in json.dumps(t.to_json())


# ------------------------------------------------------------------ 13. the instance-store column


def test_instance_store_column():
    assert instances.get("p4d.24xlarge").instance_store_gb == 8000
    assert all(instances.get(t).instance_store_gb > 0 for t in instances.all_instance_types())
    assert instances.has_instance_store("ml.p4d.24xlarge") and instances.has_instance_store("ml.c5d.xlarge")
    assert not instances.has_instance_store("ml.m5.xlarge")
    with pytest.raises(instances.InstanceTypeError):
        instances.has_instance_store("ml.zz9.xlarge")
