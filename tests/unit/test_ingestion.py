"""Ingestion: DataSync, Transfer Family, Firehose constructs and the IngestionStack (template assertions,
negative tests for every validation, one nag-enabled synth)."""

from __future__ import annotations

import dataclasses
import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as sm
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_events_targets as targets
from aws_cdk.assertions import Template

from mlinfra.config import (
    DataSyncConfig, DataSyncTaskConfig, IngestionConfig, TransferConfig, TransferUserConfig, DatasetRuleConfig,
)
from mlinfra.constructs import datasync as ds
from mlinfra.constructs import transfer as tf
from mlinfra.constructs.data_lake import DataLake, ImportedDataLake
from mlinfra.constructs.firehose import RawDeliveryStream
from mlinfra.constructs.network import Network
from tests.helpers import new_stack, props

AGENT = "arn:aws:datasync:us-east-1:123456789012:agent/agent-0123456789abcdef0"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0bWxpbmZyYXRlc3RrZXlmb3J0cmFuc2Zlcmlk partner"


def tiny():
    stack = new_stack()
    lake = ImportedDataLake(stack, "Lake", bucket_names={"landing": "l-bucket", "raw": "r-bucket", "artifacts": "a-bucket"},
                            key_arn="arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555")
    return stack, lake


def by_id(template: Template, type_: str, fragment: str) -> dict:
    found = {k: v for k, v in template.find_resources(type_).items() if fragment in k}
    assert len(found) == 1, f"{type_} with {fragment!r}: {sorted(found)}"
    return next(iter(found.values()))["Properties"]


# --------------------------------------------------------------------------------------------------
# DataSync
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dst() -> Template:
    stack = new_stack()
    lake = DataLake(stack, "Lake")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2)
    sg = ec2.SecurityGroup(stack, "Sg", vpc=vpc)
    topic = sns.Topic(stack, "Alarms")
    queue = sqs.Queue(stack, "Glue")
    secret = sm.Secret(stack, "SmbPassword")
    ds.DataSyncTask(stack, "Nfs", source=ds.NfsSource("nfs.corp", "/exports/images", [AGENT], nfs_version="NFS4_1"),
                    lake=lake, prefix="images/v1/", schedule="cron(0 2 ? * SUN *)", includes=["/train*", "/val*"],
                    excludes=["*/.snapshot", "/tmp"], alarm_topic=topic, state_change_targets=[targets.SqsQueue(queue)],
                    bytes_per_second=100_000_000)
    ds.DataSyncTask(stack, "Smb", source=ds.SmbSource("smb.corp", "/share/docs", "svc-datasync", secret, [AGENT], domain="CORP"),
                    lake=lake, prefix="docs/v1/", verify_mode=ds.VerifyMode.POINT_IN_TIME_CONSISTENT,
                    transfer_mode=ds.TransferMode.ALL, overwrite_mode=ds.OverwriteMode.ALWAYS, log_level=ds.LogLevel.BASIC)
    ds.DataSyncTask(stack, "Hdfs", source=ds.HdfsSource([("nn1.corp", 8020)], "hdfs", [AGENT], "/data"),
                    lake=lake, prefix="logs/v1/", report_level=ds.ReportLevel.SUCCESSES_AND_ERRORS)
    ds.DataSyncTask(stack, "Archive", source=ds.S3Source(s3.Bucket.from_bucket_name(stack, "Partner", "partner-bucket"), "exports/"),
                    lake=lake, zone="raw", prefix="archive/", storage_class=ds.S3StorageClass.DEEP_ARCHIVE, schedule="rate(1 day)")
    ds.DataSyncTask(stack, "Efs", source=ds.EfsSource("arn:aws:elasticfilesystem:us-east-1:123456789012:file-system/fs-1",
                                                      vpc.private_subnets[0], sg), lake=lake, prefix="efs/")
    ds.DataSyncTask(stack, "Lustre", source=ds.FsxLustreSource("arn:aws:fsx:us-east-1:123456789012:file-system/fs-2", [sg]),
                    lake=lake, prefix="lustre/", preserve_posix=False)
    ds.DataSyncTask(stack, "Win", source=ds.FsxWindowsSource("arn:aws:fsx:us-east-1:123456789012:file-system/fs-3", [sg], "admin", secret),
                    lake=lake, prefix="win/")
    ds.DataSyncEndpoint(stack, "Endpoint", vpc=vpc, agent_cidrs=["192.168.0.0/16"])
    return Template.from_stack(stack)


def task_options(t: Template, fragment: str) -> dict:
    return by_id(t, "AWS::DataSync::Task", fragment)["Options"]


def test_task_defaults_are_safe(dst):
    opts = task_options(dst, "Nfs")
    assert opts["VerifyMode"] == "ONLY_FILES_TRANSFERRED"
    assert opts["OverwriteMode"] == "NEVER"
    assert opts["PreserveDeletedFiles"] == "PRESERVE"
    assert opts["TransferMode"] == "CHANGED"
    assert opts["LogLevel"] == "TRANSFER"
    assert opts["TaskQueueing"] == "ENABLED" and opts["ObjectTags"] == "PRESERVE"
    assert (opts["PosixPermissions"], opts["Uid"], opts["Gid"], opts["Mtime"]) == ("PRESERVE", "INT_VALUE", "INT_VALUE", "PRESERVE")
    assert opts["BytesPerSecond"] == 100_000_000
    assert task_options(dst, "Hdfs")["BytesPerSecond"] == -1  # default: unlimited


def test_task_options_overridden(dst):
    opts = task_options(dst, "Smb")
    assert opts["VerifyMode"] == "POINT_IN_TIME_CONSISTENT" and opts["TransferMode"] == "ALL"
    assert opts["OverwriteMode"] == "ALWAYS" and opts["LogLevel"] == "BASIC"
    # SMB carries Windows ACLs, not POSIX ids
    assert opts["PosixPermissions"] == "NONE" and opts["SecurityDescriptorCopyFlags"] == "OWNER_DACL"
    assert task_options(dst, "Lustre")["PosixPermissions"] == "NONE"  # preserve_posix=False


def test_schedule_filters_and_report(dst):
    nfs = by_id(dst, "AWS::DataSync::Task", "Nfs")
    assert nfs["Schedule"] == {"ScheduleExpression": "cron(0 2 ? * SUN *)", "Status": "ENABLED"}
    assert nfs["Includes"] == [{"FilterType": "SIMPLE_PATTERN", "Value": "/train*|/val*"}]
    assert nfs["Excludes"] == [{"FilterType": "SIMPLE_PATTERN", "Value": "*/.snapshot|/tmp"}]
    report = nfs["TaskReportConfig"]
    assert report["ReportLevel"] == "ERRORS_ONLY" and report["OutputType"] == "STANDARD"
    assert report["Destination"]["S3"]["Subdirectory"] == "datasync-reports/Nfs/"
    assert by_id(dst, "AWS::DataSync::Task", "Hdfs")["TaskReportConfig"]["ReportLevel"] == "SUCCESSES_AND_ERRORS"
    assert "Schedule" not in by_id(dst, "AWS::DataSync::Task", "Efs")
    assert by_id(dst, "AWS::DataSync::Task", "Archive")["Schedule"]["ScheduleExpression"] == "rate(1 day)"
    assert "CloudWatchLogGroupArn" in nfs


def test_log_group_retention_encryption_and_datasync_policy(dst):
    groups = [p for p in props(dst, "AWS::Logs::LogGroup")]
    assert all(g["RetentionInDays"] == 90 and "KmsKeyId" in g for g in groups)
    policies = json.dumps(props(dst, "AWS::Logs::ResourcePolicy"))
    assert "datasync.amazonaws.com" in policies


def test_locations(dst):
    nfs = by_id(dst, "AWS::DataSync::LocationNFS", "Nfs")
    assert nfs["OnPremConfig"]["AgentArns"] == [AGENT] and nfs["MountOptions"]["Version"] == "NFS4_1"
    smb = by_id(dst, "AWS::DataSync::LocationSMB", "Smb")
    assert smb["AgentArns"] == [AGENT] and smb["User"] == "svc-datasync" and smb["Domain"] == "CORP"
    password = json.dumps(smb["Password"])
    assert "{{resolve:secretsmanager:" in password and ":SecretString:password::}}" in password
    hdfs = by_id(dst, "AWS::DataSync::LocationHDFS", "Hdfs")
    assert hdfs["NameNodes"] == [{"Hostname": "nn1.corp", "Port": 8020}] and hdfs["AuthenticationType"] == "SIMPLE"
    efs = by_id(dst, "AWS::DataSync::LocationEFS", "Efs")
    assert efs["InTransitEncryption"] == "TLS1_2"
    assert "SecurityGroupArns" in by_id(dst, "AWS::DataSync::LocationFSxLustre", "Lustre")
    assert "{{resolve:secretsmanager:" in json.dumps(by_id(dst, "AWS::DataSync::LocationFSxWindows", "Win")["Password"])


def test_destination_zone_prefix_and_storage_class(dst):
    dest = by_id(dst, "AWS::DataSync::LocationS3", "NfsDestination")
    assert dest["Subdirectory"] == "/images/v1/" and dest["S3StorageClass"] == "STANDARD"
    assert "Landing" in json.dumps(dest["S3BucketArn"])
    archive = by_id(dst, "AWS::DataSync::LocationS3", "ArchiveDestination")
    assert archive["S3StorageClass"] == "DEEP_ARCHIVE" and "Raw" in json.dumps(archive["S3BucketArn"])
    source = by_id(dst, "AWS::DataSync::LocationS3", "ArchiveSource")
    assert source["Subdirectory"] == "/exports/" and "partner-bucket" in json.dumps(source["S3BucketArn"])


def test_s3_roles_are_scoped_to_one_prefix_and_never_delete(dst):
    policies = {k: v["Properties"]["PolicyDocument"]["Statement"] for k, v in dst.find_resources("AWS::IAM::Policy").items()}
    dest = next(v for k, v in policies.items() if k.startswith("NfsDestinationRole"))
    text = json.dumps(dest)
    assert "/images/v1/*" in text and "s3:DeleteObject" not in text and "s3:PutObject" in text
    src = json.dumps(next(v for k, v in policies.items() if k.startswith("ArchiveSourceRole")))
    assert "partner-bucket/exports/*" in src and "s3:PutObject" not in src
    roles = {k: v["Properties"] for k, v in dst.find_resources("AWS::IAM::Role").items() if k.startswith("NfsDestinationRole")}
    trust = json.dumps(next(iter(roles.values()))["AssumeRolePolicyDocument"])
    assert "datasync.amazonaws.com" in trust and "aws:SourceAccount" in trust


def test_error_rule_to_sns_and_state_changes_to_queue(dst):
    rules = {k: v["Properties"] for k, v in dst.find_resources("AWS::Events::Rule").items()}
    error = next(v for k, v in rules.items() if k.startswith("NfsErrorRule"))
    assert error["EventPattern"]["detail"] == {"State": ["ERROR"]}
    assert error["EventPattern"]["source"] == ["aws.datasync"]
    assert error["EventPattern"]["resources"][0]["prefix"]["Ref"].startswith("NfsTask")
    assert "Alarms" in json.dumps(error["Targets"])
    change = next(v for k, v in rules.items() if k.startswith("NfsStateChangeRule"))
    assert "detail" not in change["EventPattern"] and "Glue" in json.dumps(change["Targets"])
    assert not any(k.startswith("EfsErrorRule") for k in rules)  # no topic, no rule


def test_datasync_endpoint_and_security_group(dst):
    endpoint = next(p for p in props(dst, "AWS::EC2::VPCEndpoint") if "datasync" in json.dumps(p["ServiceName"]))
    assert endpoint["VpcEndpointType"] == "Interface"
    sg = by_id(dst, "AWS::EC2::SecurityGroup", "EndpointSecurityGroup")
    ports = sorted((r["FromPort"], r["ToPort"]) for r in sg["SecurityGroupIngress"])
    assert ports == [(443, 443), (1024, 1064)]
    assert {r["CidrIp"] for r in sg["SecurityGroupIngress"]} == {"192.168.0.0/16"}


@pytest.mark.parametrize("schedule", [
    "rate(30 minutes)", "rate(1 hours)", "rate(0 days)", "cron(*/5 * * * ? *)", "cron(0 2 * * MON *)",
    "every day", "cron(0 2 * *)", "cron(61 2 ? * * *)",
])
def test_invalid_schedules(schedule):
    stack, lake = tiny()
    with pytest.raises(ValueError, match="schedule"):
        ds.DataSyncTask(stack, "T", source=ds.NfsSource("h", "/x", [AGENT]), lake=lake, prefix="a/", schedule=schedule)


@pytest.mark.parametrize("bandwidth", [0, 5, 1024 * 1024 - 1, -2, 1.5, True])
def test_invalid_bandwidth(bandwidth):
    stack, lake = tiny()
    with pytest.raises(ValueError, match="bytes_per_second"):
        ds.DataSyncTask(stack, "T", source=ds.NfsSource("h", "/x", [AGENT]), lake=lake, prefix="a/", bytes_per_second=bandwidth)


@pytest.mark.parametrize("prop,patterns", [
    ("includes", ["train*"]), ("includes", ["/a*b"]), ("includes", [""]), ("includes", ["/a|/b"]),
    ("excludes", ["tmp"]), ("excludes", ["/a\n"]), ("excludes", ["/" + "a" * 102_400]),
])
def test_invalid_filters(prop, patterns):
    stack, lake = tiny()
    with pytest.raises(ValueError, match=prop):
        ds.DataSyncTask(stack, "T", source=ds.NfsSource("h", "/x", [AGENT]), lake=lake, prefix="a/", **{prop: patterns})


@pytest.mark.parametrize("source", [
    ds.NfsSource("h", "/x"), ds.HdfsSource([("nn", 8020)], "hdfs"), "smb",
])
def test_missing_agent_for_nfs_smb_hdfs(source):
    stack, lake = tiny()
    if source == "smb":
        source = ds.SmbSource("h", "/share", "u", sm.Secret.from_secret_name_v2(stack, "S", "smb"))
    with pytest.raises(ValueError, match="agent_arns: a (NFS|SMB|HDFS) source needs at least one"):
        ds.DataSyncTask(stack, "T", source=source, lake=lake, prefix="a/")


def test_malformed_agent_arn():
    stack, lake = tiny()
    with pytest.raises(ValueError, match="agent_arns must be DataSync agent ARNs"):
        ds.DataSyncTask(stack, "T", source=ds.NfsSource("h", "/x", ["agent-1"]), lake=lake, prefix="a/")


@pytest.mark.parametrize("kwargs,match", [
    ({"preserve_deleted_files": ds.PreserveDeletedFiles.REMOVE}, "allow_deletes"),
    ({"storage_class": ds.S3StorageClass.GLACIER}, "landing"),
    ({"zone": "raw", "storage_class": ds.S3StorageClass.DEEP_ARCHIVE, "verify_mode": ds.VerifyMode.POINT_IN_TIME_CONSISTENT}, "POINT_IN_TIME"),
    ({"prefix": ""}, "prefix"),
    ({"prefix": "/abs/"}, "prefix"),
    ({"zone": "nowhere"}, "zone"),
])
def test_invalid_task_combinations(kwargs, match):
    stack, lake = tiny()
    args = {"source": ds.NfsSource("h", "/x", [AGENT]), "lake": lake, "prefix": "a/", **kwargs}
    with pytest.raises(ValueError, match=match):
        ds.DataSyncTask(stack, "T", **args)


def test_remove_needs_second_key_and_grants_delete():
    stack, lake = tiny()
    ds.DataSyncTask(stack, "T", source=ds.NfsSource("h", "/x", [AGENT]), lake=lake, prefix="a/",
                    preserve_deleted_files=ds.PreserveDeletedFiles.REMOVE, allow_deletes=True)
    text = json.dumps(Template.from_stack(stack).find_resources("AWS::IAM::Policy"))
    assert "s3:DeleteObject" in text


@pytest.mark.parametrize("source,match", [
    (ds.NfsSource("h", "relative", [AGENT]), "subdirectory"),
    (ds.HdfsSource([], "u", [AGENT]), "name_nodes"),
    (ds.HdfsSource([("nn", 70000)], "u", [AGENT]), "name_nodes"),
])
def test_invalid_source_details(source, match):
    stack, lake = tiny()
    with pytest.raises(ValueError, match=match):
        ds.DataSyncTask(stack, "T", source=source, lake=lake, prefix="a/")


@pytest.mark.parametrize("cidrs", [[], ["0.0.0.0/0"], ["not-a-cidr"]])
def test_invalid_endpoint_cidrs(cidrs):
    stack = new_stack()
    with pytest.raises(ValueError, match="agent_cidrs"):
        ds.DataSyncEndpoint(stack, "E", vpc=ec2.Vpc(stack, "V", max_azs=1, nat_gateways=0), agent_cidrs=cidrs)


def test_schedule_validator_accepts_hourly_and_slower():
    for ok in ("rate(1 hour)", "rate(2 hours)", "rate(7 days)", "cron(15 */6 ? * * *)", "cron(0 2 1 * ? *)"):
        assert ds.validate_schedule(ok) == ok


# --------------------------------------------------------------------------------------------------
# Transfer Family
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tft() -> Template:
    stack = new_stack()
    lake = DataLake(stack, "Lake")
    net = Network(stack, "Net")
    tf.SftpServer(stack, "Sftp", lake=lake, vpc=net.vpc, subnets=net.private_subnet_selection, users=[
        tf.SftpUser("partner-a", "images/", [KEY]),
        tf.SftpUser("auditor", "tabular/", [KEY], read_only=True, extra_mappings=[("/reports", "tabular/reports/")]),
    ])
    tf.SftpServer(stack, "Public", lake=lake, vpc=net.vpc, allow_public_endpoint=True, allowed_cidrs=["203.0.113.0/24"],
                  identity_provider=tf.IdentityProvider.LAMBDA, security_policy="TransferSecurityPolicy-FIPS-2024-01",
                  protocols=[tf.Protocol.SFTP, tf.Protocol.FTPS], certificate_arn="arn:aws:acm:us-east-1:123456789012:certificate/abc")
    return Template.from_stack(stack)


def test_private_vpc_endpoint_by_default(tft):
    server = by_id(tft, "AWS::Transfer::Server", "SftpServer")
    assert server["EndpointType"] == "VPC" and "AddressAllocationIds" not in server["EndpointDetails"]
    assert all("private" in s["Ref"] for s in server["EndpointDetails"]["SubnetIds"])
    assert server["SecurityPolicyName"] == "TransferSecurityPolicy-2024-01"
    assert server["Protocols"] == ["SFTP"] and server["IdentityProviderType"] == "SERVICE_MANAGED"
    assert server["Domain"] == "S3" and len(server["StructuredLogDestinations"]) == 1
    sg = by_id(tft, "AWS::EC2::SecurityGroup", "SftpSecurityGroup")
    assert [(r["FromPort"], r["ToPort"]) for r in sg["SecurityGroupIngress"]] == [(22, 22)]


def test_public_endpoint_is_opt_in_with_allowed_cidrs(tft):
    server = by_id(tft, "AWS::Transfer::Server", "PublicServer")
    assert len(server["EndpointDetails"]["AddressAllocationIds"]) == 2
    assert all("public" in s["Ref"] for s in server["EndpointDetails"]["SubnetIds"])
    sg = by_id(tft, "AWS::EC2::SecurityGroup", "PublicSecurityGroup")
    assert {r["CidrIp"] for r in sg["SecurityGroupIngress"]} == {"203.0.113.0/24"}
    assert sorted((r["FromPort"], r["ToPort"]) for r in sg["SecurityGroupIngress"]) == [(21, 21), (22, 22), (8192, 8200)]
    assert server["IdentityProviderType"] == "AWS_LAMBDA"
    assert server["IdentityProviderDetails"]["SftpAuthenticationMethods"] == "PUBLIC_KEY_OR_PASSWORD"
    assert server["SecurityPolicyName"] == "TransferSecurityPolicy-FIPS-2024-01" and "Certificate" in server
    perm = props(tft, "AWS::Lambda::Permission")
    assert any(p["Principal"] == "transfer.amazonaws.com" for p in perm)


def test_users_have_logical_home_and_session_policy(tft):
    users = {p["UserName"]: p for p in props(tft, "AWS::Transfer::User")}
    a = users["partner-a"]
    assert a["HomeDirectoryType"] == "LOGICAL" and a["SshPublicKeys"] == [KEY]
    assert a["HomeDirectoryMappings"][0]["Entry"] == "/"
    assert json.dumps(a["HomeDirectoryMappings"][0]["Target"]).endswith('"/images/"]]}')
    policy = json.dumps(a["Policy"])
    assert "images/*" in policy and "s3:PutObject" in policy and "Delete" not in policy
    ro = users["auditor"]
    assert "s3:PutObject" not in json.dumps(ro["Policy"])
    assert [m["Entry"] for m in ro["HomeDirectoryMappings"]] == ["/", "/reports"]


def test_idp_lambda_reads_only_its_secret_prefix(tft):
    text = json.dumps(tft.find_resources("AWS::IAM::Policy"))
    assert "secret:mlinfra/transfer/*" in text


def _sftp(**kwargs):
    stack, lake = tiny()
    vpc = ec2.Vpc(stack, "V", max_azs=1, nat_gateways=0)
    return tf.SftpServer(stack, "S", lake=lake, vpc=vpc, **kwargs)


@pytest.mark.parametrize("user,match", [
    (tf.SftpUser("a", "images/", [KEY]), "name"),
    (tf.SftpUser("alice", "", [KEY]), "prefix"),
    (tf.SftpUser("alice", "_quarantine/", [KEY]), "prefix"),
    (tf.SftpUser("alice", "images", [KEY]), "prefix"),
    (tf.SftpUser("alice", "../", [KEY]), r"users\[alice\].prefix must be .*\(no '.', '..', '\*'"),
    (tf.SftpUser("alice", "images/*/", [KEY]), r"users\[alice\].prefix must be"),
    (tf.SftpUser("alice", "images/", []), "ssh_public_keys"),
    (tf.SftpUser("alice", "images/", ["ssh-dss AAAAB3Nza"]), "ssh_public_keys"),
    (tf.SftpUser("alice", "images/", [KEY], extra_mappings=[("reports", "images/r/")]), "home_directory_mappings"),
    (tf.SftpUser("alice", "images/", [KEY], extra_mappings=[("/r", "tabular/")]), "home_directory_mappings"),
    (tf.SftpUser("alice", "images/", [KEY], extra_mappings=[("/", "images/x/")]), "home_directory_mappings"),
    (tf.SftpUser("alice", "images/", [KEY], extra_mappings=[("/../x", "images/x/")]), "home_directory_mappings"),
    (tf.SftpUser("alice", "images/", [KEY], extra_mappings=[("/x", "images/../tabular/")]), "home_directory_mappings"),
])
def test_invalid_users_and_home_mappings(user, match):
    with pytest.raises(ValueError, match=match):
        _sftp(users=[user])


@pytest.mark.parametrize("kwargs,match", [
    ({"allow_public_endpoint": True}, "allowed_cidrs"),
    ({"allow_public_endpoint": True, "allowed_cidrs": ["0.0.0.0/0"]}, "allowed_cidrs"),
    ({"allowed_cidrs": ["10.0.0.0/33"]}, "allowed_cidrs"),
    ({"security_policy": "TransferSecurityPolicy-2018-11"}, "security_policy"),
    ({"protocols": [tf.Protocol.FTPS]}, "certificate_arn"),
    ({"protocols": []}, "protocols"),
    ({"identity_provider": tf.IdentityProvider.LAMBDA, "users": [tf.SftpUser("alice", "images/", [KEY])]}, "users"),
    ({"users": [tf.SftpUser("alice", "images/", [KEY]), tf.SftpUser("alice", "tabular/", [KEY])]}, "unique"),
])
def test_invalid_server_props(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _sftp(**kwargs)


# --------------------------------------------------------------------------------------------------
# Firehose
# --------------------------------------------------------------------------------------------------


def test_firehose_defaults_and_dynamic_partitioning():
    stack, lake = tiny()
    RawDeliveryStream(stack, "Arrival", lake=lake, name="events")
    RawDeliveryStream(stack, "ByField", lake=lake, name="clicks", date_field="event_time", buffer_size_mib=64)
    t = Template.from_stack(stack)
    streams = {k: v["Properties"] for k, v in t.find_resources("AWS::KinesisFirehose::DeliveryStream").items()}
    arrival = next(v for k, v in streams.items() if k.startswith("Arrival"))
    dest = arrival["ExtendedS3DestinationConfiguration"]
    assert dest["Prefix"] == "stream=events/date=!{timestamp:yyyy-MM-dd}/"
    assert dest["ErrorOutputPrefix"] == "errors/stream=events/!{firehose:error-output-type}/date=!{timestamp:yyyy-MM-dd}/"
    assert dest["CompressionFormat"] == "GZIP" and "KMSEncryptionConfig" in dest["EncryptionConfiguration"]
    assert dest["BufferingHints"] == {"IntervalInSeconds": 300, "SizeInMBs": 128}
    assert arrival["DeliveryStreamEncryptionConfigurationInput"]["KeyType"] == "CUSTOMER_MANAGED_CMK"
    assert dest["CloudWatchLoggingOptions"]["Enabled"] is True
    by_field = next(v for k, v in streams.items() if k.startswith("ByField"))["ExtendedS3DestinationConfiguration"]
    assert by_field["DynamicPartitioningConfiguration"]["Enabled"] is True
    assert by_field["Prefix"] == "stream=clicks/date=!{partitionKeyFromQuery:date}/"
    assert "event_time" in json.dumps(by_field["ProcessingConfiguration"])


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "Bad_Name"}, "name"), ({"name": "x", "date_field": "a b"}, "date_field"),
    ({"name": "x", "buffer_interval": cdk.Duration.seconds(10)}, "buffer_interval"),
    ({"name": "x", "date_field": "t", "buffer_size_mib": 8}, "buffer_size_mib"),
    ({"name": "x", "compression": "BROTLI"}, "compression"),
])
def test_invalid_firehose_props(kwargs, match):
    stack, lake = tiny()
    with pytest.raises(ValueError, match=match):
        RawDeliveryStream(stack, "S", lake=lake, **kwargs)


# --------------------------------------------------------------------------------------------------
# IngestionStack in the reference app
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack_t(prod_config) -> Template:
    from mlinfra.app import create_app

    _, platform = create_app(config=prod_config, nag=False)
    return Template.from_stack(platform.extra["ingestion"])


def test_catalog_table_is_retained_encrypted_with_pitr(stack_t):
    (table_id, table), = stack_t.find_resources("AWS::DynamoDB::Table").items()
    assert table["DeletionPolicy"] == "Retain" and table["UpdateReplacePolicy"] == "Retain"
    p = table["Properties"]
    assert p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert p["SSESpecification"]["SSEEnabled"] is True and p["SSESpecification"]["SSEType"] == "KMS"
    assert [k["AttributeName"] for k in p["KeySchema"]] == ["dataset", "sk"]
    assert p["BillingMode"] == "PAY_PER_REQUEST" and p["DeletionProtectionEnabled"] is True


def test_landing_events_buffered_in_sqs_with_dlq(stack_t):
    rule = next(p for p in props(stack_t, "AWS::Events::Rule") if p["EventPattern"].get("source") == ["aws.s3"])
    assert rule["EventPattern"]["detail-type"] == ["Object Created"]
    assert "bucket" in rule["EventPattern"]["detail"]
    queues = props(stack_t, "AWS::SQS::Queue")
    glue = next(q for q in queues if "RedrivePolicy" in q)
    assert glue["RedrivePolicy"]["maxReceiveCount"] == 5 and glue["VisibilityTimeout"] == 1800
    assert all("KmsMasterKeyId" in q for q in queues)
    mapping = next(p for p in props(stack_t, "AWS::Lambda::EventSourceMapping"))
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and mapping["BatchSize"] == 10


def test_glue_function_environment_and_timeout(stack_t):
    fn = next(p for p in props(stack_t, "AWS::Lambda::Function") if p["Handler"] == "handler.handler"
              and "RAW_BUCKET" in p["Environment"]["Variables"])
    assert fn["Timeout"] == 300 < 900
    env = fn["Environment"]["Variables"]
    assert json.loads(env["DATASETS"])["images"]["extensions"][0] == ".jpg"
    assert env["EVENT_BUS_NAME"] == "default" and env["ALLOW_UNREGISTERED_DATASETS"] == "false"
    assert "DeadLetterConfig" in fn


def test_glue_permissions_never_delete(stack_t):
    glue_policy = next(v for k, v in stack_t.find_resources("AWS::IAM::Policy").items() if k.startswith("LandingGlueRole"))
    text = json.dumps(glue_policy)
    assert "s3:Delete" not in text and "dynamodb:DeleteItem" not in text
    assert "/_quarantine/*" in text and "/dataset=*" in text and "events:PutEvents" in text
    assert "dynamodb:PutItem" in text


def test_alarms_on_errors_dlq_and_backlog(stack_t):
    alarms = props(stack_t, "AWS::CloudWatch::Alarm")
    metrics = {a["MetricName"] for a in alarms}
    assert {"Errors", "ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"} <= metrics
    assert all(a["AlarmActions"] for a in alarms)
    assert any(p["Protocol"] == "email" for p in props(stack_t, "AWS::SNS::Subscription"))


def test_stack_outputs(stack_t):
    outputs = stack_t.to_json()["Outputs"]
    assert outputs["DatasetReadyEventSource"]["Value"] == "mlinfra.ingestion"
    assert outputs["DatasetReadyDetailType"]["Value"] == "Dataset Version Ready"
    assert outputs["DatasetReadyEventBus"]["Value"] == "default"
    assert {"CatalogTableName", "CatalogTableArn", "GlueQueueUrl", "AlarmTopicArn", "SftpServerId"} <= set(outputs)


def test_stack_builds_transfer_datasync_and_firehose_from_config(stack_t):
    assert len(props(stack_t, "AWS::Transfer::User")) == 1
    task = props(stack_t, "AWS::DataSync::Task")[0]
    assert task["Schedule"]["ScheduleExpression"] == "cron(0 2 * * ? *)" and task["Options"]["BytesPerSecond"] == 100_000_000
    assert len(props(stack_t, "AWS::KinesisFirehose::DeliveryStream")) == 1  # prod turns firehose on
    assert any("datasync" in json.dumps(p["ServiceName"]) for p in props(stack_t, "AWS::EC2::VPCEndpoint"))


def test_stack_builds_agent_sources_and_lambda_identity_provider(local_config):
    from mlinfra.app import create_app

    tasks = [
        DataSyncTaskConfig("nfs", "nfs", "images/v9/", server="nfs.corp", subdirectory="/exports", agent_arns=[AGENT]),
        DataSyncTaskConfig("smb", "smb", "docs/v1/", server="smb.corp", subdirectory="/share", user="svc",
                           password_secret_name="corp/smb", agent_arns=[AGENT]),
        DataSyncTaskConfig("hdfs", "hdfs", "logs/v1/", server="nn.corp:9000", user="hdfs", agent_arns=[AGENT]),
    ]
    ing = dataclasses.replace(
        local_config.ingestion,
        transfer=TransferConfig(identity_provider="lambda"),
        datasync=DataSyncConfig(vpc_endpoint=True, agent_cidrs=["192.168.0.0/16"], tasks=tasks),
    )
    cfg = dataclasses.replace(local_config, ingestion=ing)
    assert cfg.validate() == []
    _, platform = create_app(config=cfg, nag=False)
    t = Template.from_stack(platform.extra["ingestion"])
    assert len(props(t, "AWS::DataSync::LocationNFS")) == 1 and len(props(t, "AWS::DataSync::LocationSMB")) == 1
    assert props(t, "AWS::DataSync::LocationHDFS")[0]["NameNodes"] == [{"Hostname": "nn.corp", "Port": 9000}]
    assert "corp/smb" in json.dumps(props(t, "AWS::DataSync::LocationSMB")[0]["Password"])
    server = props(t, "AWS::Transfer::Server")[0]
    assert server["IdentityProviderType"] == "AWS_LAMBDA" and props(t, "AWS::Transfer::User") == []
    idp = next(p for p in props(t, "AWS::Lambda::Function") if "SECRET_PREFIX" in p["Environment"]["Variables"])
    assert idp["Environment"]["Variables"]["SECRET_PREFIX"] == "mlinfra/local/transfer/" and "DeadLetterConfig" not in idp


def test_ingestion_can_be_disabled_and_acceleration_switch(local_config):
    from mlinfra.app import create_app

    cfg = dataclasses.replace(
        local_config, ingestion=dataclasses.replace(local_config.ingestion, enabled=False),
        data_lake=dataclasses.replace(local_config.data_lake, landing_transfer_acceleration=True),
    )
    _, platform = create_app(config=cfg, nag=False)
    assert "ingestion" not in platform.extra
    buckets = Template.from_stack(platform.data_lake).find_resources("AWS::S3::Bucket")
    accelerated = [k for k, v in buckets.items() if "AccelerateConfiguration" in v["Properties"]]
    assert len(accelerated) == 1 and "Landing" in accelerated[0]
    assert buckets[accelerated[0]]["Properties"]["AccelerateConfiguration"] == {"AccelerationStatus": "Enabled"}


# --------------------------------------------------------------------------------------------------
# Config section
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg,match", [
    (IngestionConfig(datasets={"_bad": DatasetRuleConfig()}), "ingestion.datasets"),
    (IngestionConfig(datasets={"x": DatasetRuleConfig(extensions=["csv"])}), "extensions"),
    (IngestionConfig(handler_timeout_seconds=900), "handler_timeout_seconds"),
    (IngestionConfig(alarm_email="nope"), "alarm_email"),
    (IngestionConfig(transfer=TransferConfig(public_endpoint=True)), "allowed_cidrs"),
    (IngestionConfig(transfer=TransferConfig(identity_provider="lambda", users=[TransferUserConfig("alice", "a/", [KEY])])), "users"),
    (IngestionConfig(transfer=TransferConfig(users=[TransferUserConfig("alice", "a", [KEY])])), "prefix"),
    (IngestionConfig(datasync=DataSyncConfig(vpc_endpoint=True)), "agent_cidrs"),
    (IngestionConfig(datasync=DataSyncConfig(tasks=[DataSyncTaskConfig("t", "nfs", "a/", server="h")])), "agent_arns"),
    (IngestionConfig(datasync=DataSyncConfig(tasks=[DataSyncTaskConfig("t", "s3", "a/")])), "source_bucket"),
    (IngestionConfig(datasync=DataSyncConfig(tasks=[DataSyncTaskConfig("t", "s3", "a/", source_bucket="b", storage_class="COLD")])), "storage_class"),
    (IngestionConfig(datasync=DataSyncConfig(tasks=[DataSyncTaskConfig("t", "smb", "a/", server="h", agent_arns=[AGENT])])), "smb"),
])
def test_config_validation(cfg, match):
    errors = cfg.validate()
    assert any(match in e for e in errors), errors


def test_reference_config_is_valid(local_config, prod_config):
    assert local_config.ingestion.validate() == [] and prod_config.ingestion.validate() == []


@pytest.mark.policy
def test_ingestion_stack_is_nag_clean(prod_config):
    from mlinfra.app import create_app

    app, _ = create_app(config=prod_config, nag=True)
    app.synth()  # raises on any unacknowledged cdk-nag finding


def test_glue_reconciler_runs_hourly_with_its_input(stack_t):
    """Issue 19 item 1: a schedule invokes the glue's reconciler (versions catalogued but never marked ready)."""
    rule = next(p for p in props(stack_t, "AWS::Events::Rule") if p.get("ScheduleExpression") == "rate(1 hour)")
    (target,) = rule["Targets"]
    assert json.loads(target["Input"]) == {"mlinfra": "reconcile"} and "DeadLetterConfig" in target
    assert "LandingGlue" in json.dumps(target["Arn"])
    glue_policy = next(v for k, v in stack_t.find_resources("AWS::IAM::Policy").items() if k.startswith("LandingGlueRole"))
    assert "dynamodb:Scan" in json.dumps(glue_policy)
