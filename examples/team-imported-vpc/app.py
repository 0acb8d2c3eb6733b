#!/usr/bin/env python3
"""One team in an existing VPC, with an S3-managed-encryption lake.

A platform team that already runs a VPC (imported by attributes: no account lookup) gives one team its
scoped slice: the team's lake prefixes, roles under a permissions boundary, a quota-capped GPU Batch queue,
a model registry and a monthly budget. Uses only the installed ``mlinfra`` package.

    cdk synth        # or: python app.py
"""

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from cdk_nag import AwsSolutionsChecks

from mlinfra import DataLake, LakeEncryption, Network, TeamEnvironment

app = cdk.App()
cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
env = cdk.Environment(account="111111111111", region="eu-west-1")

stack = cdk.Stack(app, "vision-team", env=env, description="Team vision in the shared VPC")
vpc = ec2.Vpc.from_vpc_attributes(
    stack,
    "SharedVpc",
    vpc_id="vpc-0a1b2c3d4e5f67890",
    vpc_cidr_block="10.20.0.0/16",
    availability_zones=["eu-west-1a", "eu-west-1b"],
    private_subnet_ids=["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"],
)
network = Network(stack, "Network", vpc=vpc, interface_endpoints=["SAGEMAKER_API", "SAGEMAKER_RUNTIME", "STS"])
lake = DataLake(stack, "Lake", encryption=LakeEncryption.S3_MANAGED, glue_zones=["curated"], name_prefix="vision")
TeamEnvironment(
    stack,
    "Vision",
    team_name="vision",
    cost_centre="cc-vision",
    lake=lake,
    vpc=network.vpc,
    vpc_subnets=network.private_subnet_selection,
    read_prefixes=["raw/dataset=images/"],
    write_prefixes=["curated/vision/", "models/vision/"],
    instance_families=["g5"],
    max_vcpus=96,
    monthly_budget_usd=3000,
)
app.synth()
