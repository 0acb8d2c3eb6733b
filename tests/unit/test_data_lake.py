"""DataLake construct and stack: encryption, TLS, versioning, ownership, logging, lifecycle, retention,
EventBridge, Glue, grants, import, validation."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Match, Template

from mlinfra.app import create_app
from mlinfra.config import ZONES, LifecycleConfig
from mlinfra.constructs.data_lake import DataLake, ImportedDataLake, dataset_prefix, validate_prefix
from tests.helpers import new_stack


@pytest.fixture(scope="module")
def stack_template(prod_config):
    _, platform = create_app(config=prod_config, nag=False)
    return platform.data_lake.lake, Template.from_stack(platform.data_lake)


def zone_buckets(template: Template) -> dict[str, dict]:
    buckets = template.find_resources("AWS::S3::Bucket")
    return {lid: r for lid, r in buckets.items() if "AccessLogs" not in lid}


def test_one_bucket_per_zone_plus_access_logs(stack_template):
    lake, t = stack_template
    assert lake.zones == ZONES
    assert len(zone_buckets(t)) == len(ZONES) == 6
    assert len(t.find_resources("AWS::S3::Bucket")) == 7


def test_zone_buckets_kms_encrypted_with_rotated_key(stack_template):
    _, t = stack_template
    t.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    for lid, bucket in zone_buckets(t).items():
        rule = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms", lid
        assert "KMSMasterKeyID" in rule["ServerSideEncryptionByDefault"], lid
        assert rule["BucketKeyEnabled"] is True, lid


def test_every_bucket_blocks_public_access_versioned_owner_enforced(stack_template):
    _, t = stack_template
    for lid, bucket in t.find_resources("AWS::S3::Bucket").items():
        p = bucket["Properties"]
        assert p["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
        }, lid
        assert p["VersioningConfiguration"] == {"Status": "Enabled"}, lid
        assert p["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}], lid


def test_tls_enforced_with_minimum_version(stack_template):
    _, t = stack_template
    policies = t.find_resources("AWS::S3::BucketPolicy")
    assert len(policies) == 7
    for lid, policy in policies.items():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        conditions = [s["Condition"] for s in statements if s["Effect"] == "Deny"]
        assert {"Bool": {"aws:SecureTransport": "false"}} in conditions, lid
        assert {"NumericLessThan": {"s3:TlsVersion": 1.2}} in conditions, lid


def test_server_access_logs_per_zone(stack_template):
    _, t = stack_template
    for lid, bucket in zone_buckets(t).items():
        cfg = bucket["Properties"]["LoggingConfiguration"]
        assert cfg["LogFilePrefix"].endswith("/"), lid
        assert "DestinationBucketName" in cfg, lid
    logs = next(r for lid, r in t.find_resources("AWS::S3::Bucket").items() if "AccessLogs" in lid)
    assert logs["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"  # log delivery needs SSE-S3


def test_eventbridge_notifications_native_no_custom_resource(stack_template):
    _, t = stack_template
    for lid, bucket in zone_buckets(t).items():
        assert bucket["Properties"]["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}, lid
    assert not t.find_resources("Custom::S3BucketNotifications")
    assert not t.find_resources("AWS::Lambda::Function")


def test_lifecycle_defaults(stack_template):
    _, t = stack_template
    by_zone = {lid.split("DataLake")[1].split("Bucket")[0].lower(): b for lid, b in zone_buckets(t).items()}
    raw_rule = by_zone["raw"]["Properties"]["LifecycleConfiguration"]["Rules"][0]
    assert raw_rule["Transitions"] == [
        {"StorageClass": "INTELLIGENT_TIERING", "TransitionInDays": 1},
        {"StorageClass": "GLACIER", "TransitionInDays": 180},
    ]
    assert raw_rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 365}
    assert raw_rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    landing_rule = by_zone["landing"]["Properties"]["LifecycleConfiguration"]["Rules"][0]
    assert landing_rule["Transitions"] == [{"StorageClass": "STANDARD_IA", "TransitionInDays": 30}]
    models_rule = by_zone["models"]["Properties"]["LifecycleConfiguration"]["Rules"][0]
    assert "NoncurrentVersionExpiration" not in models_rule  # model versions are kept


def test_retain_on_every_bucket_and_key(stack_template):
    _, t = stack_template
    for type_ in ("AWS::S3::Bucket", "AWS::KMS::Key", "AWS::Glue::Database"):
        for lid, r in t.find_resources(type_).items():
            assert r["DeletionPolicy"] == "Retain", lid
            assert r["UpdateReplacePolicy"] == "Retain", lid


def test_glue_databases_per_configured_zone(stack_template, prod_config):
    lake, t = stack_template
    dbs = t.find_resources("AWS::Glue::Database")
    names = sorted(r["Properties"]["DatabaseInput"]["Name"] for r in dbs.values())
    assert names == sorted(f"mlinfra_prod_{z}" for z in prod_config.data_lake.glue_zones)


def test_grant_read_is_prefix_scoped_with_kms_decrypt():
    stack = new_stack()
    lake = DataLake(stack, "Lake")
    role = iam.Role(stack, "R", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    lake.grant_read("raw", role, prefix="dataset=images/")
    lake.grant_write("models", role, prefix="resnet/")
    policy = json.dumps(Template.from_stack(stack).find_resources("AWS::IAM::Policy"))
    assert '"/dataset=images/*"' in policy
    assert '"/resnet/*"' in policy
    assert "kms:Decrypt" in policy
    assert "s3:DeleteObject" not in policy


def test_s3_managed_encryption_has_no_key():
    stack = new_stack()
    lake = DataLake(stack, "Lake", encryption="s3", glue_zones=())
    t = Template.from_stack(stack)
    assert lake.encryption_key is None
    assert not t.find_resources("AWS::KMS::Key")
    t.has_resource_properties("AWS::S3::Bucket", {
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [Match.object_like({
            "ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}})]}})


def test_destruction_needs_two_keys():
    app = cdk.App(context={"mlinfra:allowDataDestruction": "true"})
    stack = cdk.Stack(app, "S")
    DataLake(stack, "Lake", destroy_data_on_delete=True, zones=["raw"], glue_zones=())
    t = Template.from_stack(stack)
    for r in t.find_resources("AWS::S3::Bucket").values():
        assert r["DeletionPolicy"] == "Delete"
    one_key = new_stack()
    DataLake(one_key, "Lake", destroy_data_on_delete=True, zones=["raw"], glue_zones=())
    for r in Template.from_stack(one_key).find_resources("AWS::S3::Bucket").values():
        assert r["DeletionPolicy"] == "Retain"
    warnings = [m for m in one_key.node.find_all() if m.node.metadata]
    assert any("RETAINED" in str(e.data) for c in warnings for e in c.node.metadata)


def test_auto_delete_refused_without_destruction():
    with pytest.raises(ValueError, match="auto_delete_objects needs data destruction on"):
        DataLake(new_stack(), "Lake", auto_delete_objects=True)


def test_transfer_acceleration_only_on_landing():
    stack = new_stack()
    DataLake(stack, "Lake", transfer_acceleration=True, zones=["landing", "raw"], glue_zones=["raw"])
    buckets = Template.from_stack(stack).find_resources("AWS::S3::Bucket")
    accelerated = [lid for lid, b in buckets.items() if "AccelerateConfiguration" in b["Properties"]]
    assert len(accelerated) == 1 and "Landing" in accelerated[0]


def test_imported_lake_grants():
    stack = new_stack()
    lake = ImportedDataLake(stack, "Lake", bucket_names={"raw": "team-raw"},
                            key_arn="arn:aws:kms:us-east-1:123456789012:key/abc")
    role = iam.Role(stack, "R", assumed_by=iam.ServicePrincipal("batch.amazonaws.com"))
    lake.grant_read("raw", role, "images/")
    policy = json.dumps(Template.from_stack(stack).find_resources("AWS::IAM::Policy"))
    assert ":s3:::team-raw/images/*" in policy and "kms:Decrypt" in policy
    with pytest.raises(ValueError, match="zone must be one of \\['raw'\\], got: 'models'"):
        lake.bucket("models")


def test_dataset_prefix_convention():
    assert dataset_prefix("images", "2026-11-01") == "dataset=images/version=2026-11-01/"
    assert validate_prefix(dataset_prefix("a", "1")) == "dataset=a/version=1/"


@pytest.mark.parametrize("prefix", ["/abs/", "no-slash", "a//b/", "spaces here/", "a/b"])
def test_bad_prefix_rejected(prefix):
    with pytest.raises(ValueError, match="prefix must be one or more path segments"):
        validate_prefix(prefix)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"zones": ["gold"]}, r"zones must be a non-empty subset of"),
        ({"zones": ["raw", "raw"], "glue_zones": []}, "zones must be unique"),
        ({"encryption": "rot13"}, "encryption must be 'kms' or 's3', got: 'rot13'"),
        ({"zones": ["raw"], "glue_zones": ["curated"]}, r"glue_zones must be zones of this lake \['raw'\], got: \['curated'\]"),
        ({"lifecycle": {"raw": LifecycleConfig(infrequent_access_days=5)}}, "S3 requires at least 30 days before Standard-IA, got: 5"),
        ({"lifecycle": {"gold": LifecycleConfig()}}, "lifecycle has zone"),
        ({"access_log_retention_days": 0}, "access_log_retention_days must be >= 1, got: 0"),
    ],
)
def test_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DataLake(new_stack(), "Lake", **kwargs)


def test_key_with_s3_encryption_is_an_error():
    stack = new_stack()
    from aws_cdk import aws_kms as kms

    key = kms.Key(stack, "K")
    with pytest.raises(ValueError, match="encryption_key is only used with encryption='kms'"):
        DataLake(stack, "Lake", encryption="s3", encryption_key=key)


def test_storage_metrics(stack_template):
    lake, _ = stack_template
    metric = lake.metric_bucket_size_bytes("raw")
    assert metric.metric_name == "BucketSizeBytes" and metric.namespace == "AWS/S3"
    assert lake.metric_number_of_objects("models").metric_name == "NumberOfObjects"


def test_lake_key_lets_only_fsx_s3_access_roles_through_s3(stack_template):
    _, t = stack_template
    key = next(iter(t.find_resources("AWS::KMS::Key").values()))
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    fsx = [s for s in statements if s.get("Sid") == "AllowFsxLustreRepositoryAccessThroughS3"]
    assert len(fsx) == 1
    st = fsx[0]
    assert st["Principal"] == {"AWS": "*"}
    assert "kms:Decrypt" in st["Action"] and "kms:CreateGrant" not in st["Action"]
    assert st["Condition"]["StringEquals"]["aws:PrincipalAccount"] == {"Ref": "AWS::AccountId"}
    assert st["Condition"]["StringEquals"]["kms:ViaService"] == {"Fn::Join": ["", ["s3.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
    arn = json.dumps(st["Condition"]["ArnLike"]["aws:PrincipalArn"])
    assert "s3.data-source.lustre.fsx.amazonaws.com/AWSServiceRoleForFSxS3Access_fs-*" in arn


def test_lustre_key_access_can_be_turned_off():
    stack = new_stack()
    DataLake(stack, "Lake", allow_lustre_repository_access=False, zones=["raw"], glue_zones=())
    key = next(iter(Template.from_stack(stack).find_resources("AWS::KMS::Key").values()))
    assert not [s for s in key["Properties"]["KeyPolicy"]["Statement"] if s.get("Sid", "").startswith("AllowFsx")]


def test_created_and_imported_lakes_satisfy_the_public_protocol():
    from mlinfra.constructs.data_lake import DataLake, IDataLake, ImportedDataLake

    stack = new_stack()
    created = DataLake(stack, "Lake", zones=["raw"], glue_zones=[])
    imported = DataLake.from_lake_attributes(stack, "Imported", bucket_names={"raw": "my-raw-bucket"})
    assert isinstance(imported, ImportedDataLake)
    for lake in (created, imported):
        assert isinstance(lake, IDataLake)
    assert stack.resolve(imported.bucket("raw").bucket_name) == "my-raw-bucket"


def test_zone_and_encryption_enums_are_accepted_where_strings_were():
    from mlinfra.constructs.data_lake import DataLake, LakeEncryption, Zone

    stack = new_stack()
    lake = DataLake(stack, "Lake", zones=[Zone.RAW, Zone.MODELS], glue_zones=[Zone.RAW], encryption=LakeEncryption.S3_MANAGED)
    assert lake.zones == ("raw", "models") and lake.encryption_key is None
    assert lake.bucket(Zone.RAW) is lake.bucket("raw")


def test_validation_messages_start_with_the_construct_path():
    stack = new_stack()
    with pytest.raises(ValueError, match=r"^TestStack/Lake: zones must be a non-empty subset of"):
        DataLake(stack, "Lake", zones=["gold"])
    with pytest.raises(ValueError, match=r"^TestStack/Old: bucket_names must map zones"):
        ImportedDataLake(stack, "Old", bucket_names={"gold": "b"})
