"""The training smoke plug-in, run in-process against moto with the resources the stack deploys."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from mlinfra.local_aws.smoke import training as smoke


class FakeCtx:
    def __init__(self, config, outputs):
        self.config = config
        self._outputs = outputs

    def client(self, name):
        return boto3.client(name, region_name="us-east-1")

    def has_stack(self, suffix):
        return suffix == "training" and self._outputs is not None

    def outputs(self, suffix):
        return self._outputs


def _deploy_batch(multinode: bool = True, min_vcpus: int = 0) -> dict[str, str]:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/20")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="nodes", Description="nodes", VpcId=vpc)["GroupId"]
    iam = boto3.client("iam", region_name="us-east-1")
    role = iam.create_role(RoleName="batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    profile = iam.create_instance_profile(InstanceProfileName="nodes")["InstanceProfile"]["Arn"]
    batch = boto3.client("batch", region_name="us-east-1")
    ce = batch.create_compute_environment(
        computeEnvironmentName="gpu", type="MANAGED", serviceRole=role, state="ENABLED",
        computeResources={"type": "EC2", "minvCpus": min_vcpus, "maxvCpus": 192, "instanceTypes": ["p4d.24xlarge"],
                          "subnets": [subnet], "securityGroupIds": [sg], "instanceRole": profile})["computeEnvironmentArn"]
    queue = batch.create_job_queue(jobQueueName="q", state="ENABLED", priority=1,
                                   computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce}])["jobQueueArn"]
    container = {"image": "img", "resourceRequirements": [{"type": "VCPU", "value": "94"},
                                                          {"type": "MEMORY", "value": "1000"}],
                 "linuxParameters": {"devices": [{"hostPath": f"/dev/infiniband/uverbs{i}"} for i in range(4)]},
                 "volumes": [{"name": "lustre", "host": {"sourcePath": "/fsx"}}]}
    if multinode:
        jd = batch.register_job_definition(jobDefinitionName="mnp", type="multinode", nodeProperties={
            "numNodes": 2, "mainNode": 0, "nodeRangeProperties": [{"targetNodes": "0:1", "container": container}]})
    else:
        jd = batch.register_job_definition(jobDefinitionName="single", type="container", containerProperties=container)
    return {"BatchJobQueueArn": queue, "BatchJobDefinitionArn": jd["jobDefinitionArn"]}


@mock_aws
def test_smoke_passes_on_what_the_stack_deploys(local_config):
    lines = smoke.run(FakeCtx(local_config, _deploy_batch()))
    text = "\n".join(lines)
    assert "ENABLED, VALID" in text and "mnp:1: multinode, ACTIVE" in text
    assert "FSx create_file_system through the API" in text and "then deleted" in text
    assert boto3.client("fsx", region_name="us-east-1").describe_file_systems()["FileSystems"] == []


@mock_aws
def test_smoke_fails_on_a_single_node_job_definition(local_config):
    with pytest.raises(AssertionError, match="expected multinode/ACTIVE"):
        smoke.run(FakeCtx(local_config, _deploy_batch(multinode=False)))


@mock_aws
def test_smoke_fails_when_the_environment_does_not_scale_to_zero(local_config):
    with pytest.raises(AssertionError, match="minvCpus 96; expected MANAGED, VALID, 0"):
        smoke.run(FakeCtx(local_config, _deploy_batch(min_vcpus=96)))


@mock_aws
def test_smoke_reports_a_job_definition_the_emulator_skipped(local_config):
    outputs = _deploy_batch()
    outputs["BatchJobDefinitionArn"] = "emulator-skipped-BatchClusterJobDefinition"
    text = "\n".join(smoke.run(FakeCtx(local_config, outputs)))
    assert "skipped by the emulator" in text and "ENABLED, VALID" in text


def test_smoke_skips_without_the_stack(local_config):
    assert smoke.run(FakeCtx(local_config, None)) == []
