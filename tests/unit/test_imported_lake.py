"""Every construct that consumes a lake takes the public ``IDataLake`` protocol, and works with a lake imported
by ``DataLake.from_lake_attributes`` (an existing lake of another app or account): its grants name the imported
buckets and key (DESIGN.md 7, "Consume a small public protocol")."""

from __future__ import annotations

import json
import typing
from typing import Callable

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk.assertions import Template

from mlinfra.constructs.data_lake import DataLake, IDataLake
from tests.helpers import new_stack

KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
BUCKETS = {zone: f"imported-{zone}-bucket" for zone in ("landing", "raw", "curated", "models", "artifacts")}
AGENT = "arn:aws:datasync:us-east-1:123456789012:agent/agent-0123456789abcdef0"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0bWxpbmZyYXRlc3RrZXlmb3J0cmFuc2Zlcmlk partner"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1"


def _vpc(stack: cdk.Stack) -> ec2.IVpc:
    return ec2.Vpc.from_vpc_attributes(stack, "Vpc", vpc_id="vpc-0123456789abcdef0", availability_zones=["us-east-1a"],
                                       private_subnet_ids=["subnet-0123456789abcdef0"])


def _team(stack: cdk.Stack, lake: IDataLake) -> str:
    from mlinfra.constructs.team_environment import TeamEnvironment

    TeamEnvironment(stack, "Team", team_name="team-a", cost_centre="cc", lake=lake, vpc=_vpc(stack),
                    read_prefixes=["raw/dataset=images/"], write_prefixes=["artifacts/team-a/"])
    return BUCKETS["artifacts"]


def _datasync(stack: cdk.Stack, lake: IDataLake) -> str:
    from mlinfra.constructs import datasync as ds

    ds.DataSyncTask(stack, "Nfs", source=ds.NfsSource("nfs.corp", "/exports/images", [AGENT]), lake=lake,
                    prefix="images/v1/")
    return BUCKETS["landing"]


def _retrain(stack: cdk.Stack, lake: IDataLake) -> str:
    from mlinfra.constructs.retrain_pipeline import RetrainPipeline, TrainingProps

    RetrainPipeline(stack, "Pipeline", lake=lake, training=TrainingProps(image_uri=IMAGE), metric_name="accuracy",
                    datasets=["images"])
    return BUCKETS["models"]


def _hyperpod(stack: cdk.Stack, lake: IDataLake) -> str:
    from mlinfra.constructs.hyperpod import HyperPodCluster, HyperPodInstanceGroup, HyperPodLakeAccess, HyperPodLifecycle
    from mlinfra.domain.hyperpod import SlurmNodeType

    vpc = _vpc(stack)
    HyperPodCluster(stack, "HyperPod", vpc=vpc, subnet=vpc.private_subnets[0], cluster_name="ml-training",
                    instance_groups=[HyperPodInstanceGroup("controller", "ml.m5.xlarge", SlurmNodeType.CONTROLLER),
                                     HyperPodInstanceGroup("gpu", "ml.g5.xlarge", instance_count=0, partition="gpu")],
                    lifecycle=HyperPodLifecycle.bundled(lake.bucket("artifacts")), lake=lake,
                    lake_read=[HyperPodLakeAccess("raw", "dataset=images/")],
                    lake_write=[HyperPodLakeAccess("artifacts", "checkpoints/")])
    return BUCKETS["raw"]


def _firehose(stack: cdk.Stack, lake: IDataLake) -> str:
    from mlinfra.constructs.firehose import RawDeliveryStream

    RawDeliveryStream(stack, "Stream", lake=lake, name="events")
    return BUCKETS["raw"]


def _transfer(stack: cdk.Stack, lake: IDataLake) -> str:
    from mlinfra.constructs import transfer as tf

    tf.SftpServer(stack, "Sftp", lake=lake, vpc=ec2.Vpc(stack, "Net", max_azs=1),
                  users=[tf.SftpUser("partner-a", "images/", [SSH_KEY])])
    return BUCKETS["landing"]


def _batch_training(stack: cdk.Stack, lake: IDataLake) -> str:
    from mlinfra.constructs.training_cluster import BatchTrainingCluster, LakeAccess

    vpc = _vpc(stack)
    BatchTrainingCluster(stack, "Batch", vpc=vpc, subnet=vpc.private_subnets[0], image=IMAGE, lake=lake,
                         task_security_group=ec2.SecurityGroup.from_security_group_id(stack, "Tasks", "sg-0default0000000000"),
                         job_read=[LakeAccess("raw", "dataset=images/")], job_write=[LakeAccess("artifacts", "checkpoints/")])
    return BUCKETS["raw"]


def _slurm_training(stack: cdk.Stack, lake: IDataLake) -> str:
    from mlinfra.constructs.training_cluster import LakeAccess, SlurmComputeResource, SlurmQueue, SlurmTrainingCluster

    vpc = _vpc(stack)
    SlurmTrainingCluster(stack, "Slurm", vpc=vpc, subnet=vpc.private_subnets[0], cluster_name="c1", lake=lake,
                         service_token="arn:aws:lambda:us-east-1:123456789012:function:pcluster-provider",
                         instance_read=[LakeAccess("raw", "dataset=images/")],
                         queues=[SlurmQueue("q", [SlurmComputeResource("r", "p4d.24xlarge")])])
    return BUCKETS["raw"]


CONSUMERS: dict[str, Callable[[cdk.Stack, IDataLake], str]] = {
    "BatchTrainingCluster": _batch_training, "SlurmTrainingCluster": _slurm_training,
    "TeamEnvironment": _team, "DataSyncTask": _datasync, "RetrainPipeline": _retrain, "HyperPodCluster": _hyperpod,
    "RawDeliveryStream": _firehose, "SftpServer": _transfer,
}


@pytest.mark.parametrize("consumer", sorted(CONSUMERS))
def test_an_imported_lake_works_and_its_buckets_and_key_are_granted(consumer: str) -> None:
    stack = new_stack()
    lake = DataLake.from_lake_attributes(stack, "Lake", bucket_names=BUCKETS, key_arn=KEY_ARN)
    bucket = CONSUMERS[consumer](stack, lake)
    policies = json.dumps([r for r in Template.from_stack(stack).to_json()["Resources"].values()
                           if r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::Role", "AWS::IAM::ManagedPolicy")])
    # Bucket ARNs render as Fn::Join ["arn:", {"Ref": "AWS::Partition"}, ":s3:::<name>/..."].
    assert f":s3:::{bucket}" in policies, f"{consumer}: no grant on the imported bucket {bucket}"
    assert KEY_ARN in policies, f"{consumer}: the imported lake key is not granted"


@pytest.mark.parametrize("consumer", sorted(CONSUMERS))
def test_the_lake_prop_is_typed_with_the_public_protocol(consumer: str) -> None:
    hint = typing.get_type_hints(_class_of(consumer).__init__)["lake"]
    assert hint is IDataLake or set(typing.get_args(hint)) <= {IDataLake, type(None)}, f"{consumer}.lake: {hint}"


def _class_of(consumer: str) -> type:
    import importlib

    module = {"TeamEnvironment": "team_environment", "DataSyncTask": "datasync", "RetrainPipeline": "retrain_pipeline",
              "HyperPodCluster": "hyperpod", "RawDeliveryStream": "firehose", "SftpServer": "transfer",
              "BatchTrainingCluster": "training_cluster", "SlurmTrainingCluster": "training_cluster"}[consumer]
    return getattr(importlib.import_module(f"mlinfra.constructs.{module}"), consumer)
