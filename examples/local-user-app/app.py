#!/usr/bin/env python3
"""A user's own ML app on the library, deployed locally with ``mlinfra deploy-local`` (no AWS account).

What a platform team typically writes (issue 14): an existing VPC imported by attributes, two lakes, a
serverless inference endpoint, a PERSISTENT_1 Lustre cache over the raw lake, an AWS Batch GPU cluster (EFA,
Deep Learning AMI from SSM), a retrain pipeline, and a legacy CloudFormation template brought in with
``CfnInclude`` (YAML short forms, an SSM dynamic reference, a production-only resource). Stacks are pinned to
their own account and region, as a real app is. Built on the library's public constructs only, no platform
configuration file.

    mlinfra deploy-local --app-dir examples/local-user-app     # or: cdk synth
"""

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import cloudformation_include as cfn_inc

from mlinfra import DataLake, LakeEncryption, Network
from mlinfra.constructs.endpoint import Endpoint, EndpointMode, ModelContainer, ServerlessSettings
from mlinfra.constructs.lustre_cache import LustreCache, LustreDeploymentType, LustreLink
from mlinfra.constructs.retrain_pipeline import RetrainPipeline, TrainingProps
from mlinfra.constructs.training_cluster import BatchTrainingCluster

HERE = Path(__file__).resolve().parent
IMAGE = "111111111111.dkr.ecr.eu-west-1.amazonaws.com/churn@sha256:" + "0" * 64

app = cdk.App()
env = cdk.Environment(account="111111111111", region="eu-west-1")

# Stateful: two lakes (one KMS-encrypted for training data, one S3-managed for shared reports).
data = cdk.Stack(app, "churn-data", env=env, description="Churn: training lake and reports lake")
lake = DataLake(data, "TrainingLake", encryption=LakeEncryption.KMS, glue_zones=["curated"], name_prefix="churn",
                allow_lustre_repository_access=True)
reports = DataLake(data, "ReportsLake", encryption=LakeEncryption.S3_MANAGED, zones=["curated"], glue_zones=["curated"],
                   name_prefix="reports")

ml = cdk.Stack(app, "churn-ml", env=env, description="Churn: cache, GPU cluster, endpoint, retrain pipeline")
vpc = ec2.Vpc.from_vpc_attributes(
    ml, "SharedVpc", vpc_id="vpc-0a1b2c3d4e5f67890", vpc_cidr_block="10.20.0.0/16",
    availability_zones=["eu-west-1a", "eu-west-1b"],
    private_subnet_ids=["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"],
)
network = Network(ml, "Network", vpc=vpc, interface_endpoints=["SAGEMAKER_API", "SAGEMAKER_RUNTIME", "STS"])
subnet = network.training_subnet

cache = LustreCache(
    ml, "Cache", vpc=network.vpc, subnet=subnet, deployment_type=LustreDeploymentType.PERSISTENT_1,
    storage_capacity_gib=1200, per_unit_storage_throughput=200,
    links=[LustreLink(file_system_path="/raw", bucket=lake.bucket("raw"))],
)
# The VPC's default security group, where the multi-node containers' network interfaces land (EFA).
default_sg = ec2.SecurityGroup.from_security_group_id(ml, "SharedVpcDefaultSg", "sg-0a1b2c3d4e5f60003",
                                                      mutable=True)
cluster = BatchTrainingCluster(
    ml, "Gpu", vpc=network.vpc, subnet=subnet, lustre=cache, lake=lake, task_security_group=default_sg,
    image=IMAGE, instance_types=("p5.48xlarge",), nodes=2, max_vcpus=384,
)
endpoint = Endpoint(
    ml, "Scoring", mode=EndpointMode.SERVERLESS, model=ModelContainer(image_uri=IMAGE),
    serverless=ServerlessSettings(memory_size_mb=4096, max_concurrency=10),
)
pipeline = RetrainPipeline(
    ml, "Retrain", lake=lake, training=TrainingProps(image_uri=IMAGE, instance_type="ml.g5.2xlarge"),
    datasets=["churn"], metric_name="validation:auc", threshold=0.8, inference_image_uri=IMAGE,
)

# A template the team already had, kept as YAML (short-form intrinsics, an SSM dynamic reference, a
# production-only queue behind a Condition).
cfn_inc.CfnInclude(ml, "Legacy", template_file=str(HERE / "legacy.yaml"))

cdk.CfnOutput(ml, "JobQueueArn", value=cluster.job_queue.ref)
cdk.CfnOutput(ml, "EndpointName", value=endpoint.endpoint_name)
cdk.CfnOutput(ml, "StateMachineArn", value=pipeline.state_machine.state_machine_arn)
app.synth()
