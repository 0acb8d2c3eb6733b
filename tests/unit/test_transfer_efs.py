"""SftpServer on the EFS backend: domain, POSIX profiles, logical homes on the file system, EFS-only grants,
read-only sessions that cannot write; and the backend validations."""

from __future__ import annotations

import json

import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_efs as efs
from aws_cdk.assertions import Template

from mlinfra.constructs.data_lake import DataLake
from mlinfra.constructs.transfer import IdentityProvider, Protocol, SftpServer, SftpUser
from tests.helpers import new_stack

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH9mbGluZnJhLWV4YW1wbGUta2V5LXJlcGxhY2UtbWU test"


def efs_setup():
    stack = new_stack()
    vpc = ec2.Vpc.from_vpc_attributes(
        stack, "Vpc", vpc_id="vpc-0123456789abcdef0", vpc_cidr_block="10.0.0.0/16",
        availability_zones=["us-east-1a", "us-east-1b"], private_subnet_ids=["subnet-1", "subnet-2"],
    )
    fs = efs.FileSystem.from_file_system_attributes(
        stack, "Fs", file_system_id="fs-0123456789abcdef0",
        security_group=ec2.SecurityGroup.from_security_group_id(stack, "FsSg", "sg-0123456789abcdef0"),
    )
    return stack, vpc, fs


@pytest.fixture(scope="module")
def efs_template():
    stack, vpc, fs = efs_setup()
    SftpServer(stack, "Sftp", vpc=vpc, file_system=fs, users=[
        SftpUser("partner-a", "partner-a/", [KEY], posix_uid=2001, posix_gid=2000),
        SftpUser("auditor", "partner-a/", [KEY], read_only=True, posix_uid=2002, posix_gid=2000),
    ])
    return Template.from_stack(stack)


def test_server_uses_efs_without_s3_options(efs_template):
    server = next(iter(efs_template.find_resources("AWS::Transfer::Server").values()))["Properties"]
    assert server["Domain"] == "EFS"
    assert "S3StorageOptions" not in server
    assert server["EndpointType"] == "VPC" and server["SecurityPolicyName"] == "TransferSecurityPolicy-2024-01"


def test_users_get_posix_profile_and_logical_home_on_the_file_system(efs_template):
    users = {u["Properties"]["UserName"]: u["Properties"] for u in efs_template.find_resources("AWS::Transfer::User").values()}
    partner = users["partner-a"]
    assert partner["PosixProfile"] == {"Uid": 2001, "Gid": 2000}
    assert partner["HomeDirectoryType"] == "LOGICAL"
    assert partner["HomeDirectoryMappings"] == [{"Entry": "/", "Target": "/fs-0123456789abcdef0/partner-a/", "Type": "DIRECTORY"}]
    assert "Policy" not in partner  # session policies are S3-only


def test_read_only_user_has_a_role_that_cannot_write(efs_template):
    users = {u["Properties"]["UserName"]: u["Properties"] for u in efs_template.find_resources("AWS::Transfer::User").values()}
    assert users["auditor"]["Role"] != users["partner-a"]["Role"]
    policies = {lid: json.dumps(p["Properties"]["PolicyDocument"]) for lid, p in efs_template.find_resources("AWS::IAM::Policy").items()}
    read_only = next(doc for lid, doc in policies.items() if lid.startswith("SftpReadOnlyRole"))
    writer = next(doc for lid, doc in policies.items() if lid.startswith("SftpUserRole"))
    assert "elasticfilesystem:ClientMount" in read_only and "ClientWrite" not in read_only
    assert "elasticfilesystem:ClientWrite" in writer
    assert "fs-0123456789abcdef0" in writer and "s3:" not in writer


def test_s3_backend_unchanged_by_the_option():
    stack = new_stack()
    lake = DataLake(stack, "Lake", zones=["landing"], glue_zones=())
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2)
    SftpServer(stack, "Sftp", lake=lake, vpc=vpc, users=[SftpUser("partner-a", "partner-a/", [KEY])])
    t = Template.from_stack(stack)
    server = next(iter(t.find_resources("AWS::Transfer::Server").values()))["Properties"]
    assert server["Domain"] == "S3" and server["S3StorageOptions"] == {"DirectoryListingOptimization": "ENABLED"}
    user = next(iter(t.find_resources("AWS::Transfer::User").values()))["Properties"]
    assert "Policy" in user and "PosixProfile" not in user


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"both": True}, "pass either lake .* or file_system .*, not both"),
        ({"neither": True}, "pass either lake .* or file_system .*not neither"),
        ({"users": [SftpUser("partner-a", "partner-a/", [KEY])]}, r"users\[partner-a\].posix_uid must be an integer between 0 and 4294967295 .* got: None"),
        ({"users": [SftpUser("partner-a", "partner-a/", [KEY], posix_uid=-1, posix_gid=1)]}, r"posix_uid must be an integer .* got: -1"),
        ({"protocols": [Protocol.SFTP, Protocol.AS2]}, "AS2 stores messages in S3 only"),
        ({"identity_provider": IdentityProvider.LAMBDA}, "the EFS backend takes service-managed users here"),
    ],
)
def test_efs_backend_validation(kwargs, message):
    stack, vpc, fs = efs_setup()
    args = {"vpc": vpc, "file_system": fs}
    if kwargs.pop("both", False):
        args["lake"] = DataLake(stack, "Lake", zones=["landing"], glue_zones=())
    if kwargs.pop("neither", False):
        args.pop("file_system")
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        SftpServer(stack, "Sftp", **args)


def test_posix_ids_refused_on_s3():
    stack = new_stack()
    lake = DataLake(stack, "Lake", zones=["landing"], glue_zones=())
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2)
    with pytest.raises(ValueError, match=r"users \['partner-a'\]: posix_uid/posix_gid apply to the EFS backend only"):
        SftpServer(stack, "Sftp", lake=lake, vpc=vpc, users=[SftpUser("partner-a", "partner-a/", [KEY], posix_uid=1, posix_gid=1)])


@pytest.mark.policy
def test_efs_backend_is_nag_clean(tmp_path):
    import aws_cdk as cdk

    from mlinfra.app import register_nag

    app = cdk.App(outdir=str(tmp_path))
    register_nag(app)
    stack = cdk.Stack(app, "S", env=cdk.Environment(account="123456789012", region="us-east-1"))
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, restrict_default_security_group=False)
    cdk.Validations.of(vpc).acknowledge(cdk.Acknowledgment(id="AwsSolutions::AwsSolutions-VPC7", reason="test VPC only: flow logs are the Network construct's concern"))
    fs = efs.FileSystem(stack, "Fs", vpc=vpc, encrypted=True)
    SftpServer(stack, "Sftp", vpc=vpc, file_system=fs, users=[
        SftpUser("partner-a", "partner-a/", [KEY], posix_uid=2001, posix_gid=2000),
        SftpUser("auditor", "partner-a/", [KEY], read_only=True, posix_uid=2002, posix_gid=2000),
    ])
    app.synth()  # raises on any unacknowledged cdk-nag finding
