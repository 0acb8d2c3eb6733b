"""The app's own tests: every environment of config/platform.yaml is valid, synthesizes, and passes cdk-nag."""

from pathlib import Path

import pytest

from mlinfra.config import environment_names, load_config_file

CONFIG = Path(__file__).resolve().parent.parent / "config" / "platform.yaml"
ENVIRONMENTS = environment_names(CONFIG)


def test_environments_are_defined():
    assert {"local", "dev", "prod"} <= set(ENVIRONMENTS)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_configuration_is_valid(env):
    cfg = load_config_file(CONFIG, env)
    assert cfg.env_name == env
    assert cfg.prefix == "__PREFIX__"


def test_local_environment_targets_the_emulator():
    cfg = load_config_file(CONFIG, "local")
    assert cfg.target == "local" and cfg.account == "123456789012"


@pytest.fixture(scope="module")
def prod_platform():
    from mlinfra import create_app

    app, platform = create_app(config=load_config_file(CONFIG, "prod"), nag=True)
    app.synth()  # raises when cdk-nag has an unacknowledged finding
    return platform


def test_prod_synthesizes_nag_clean(prod_platform):
    assert prod_platform.data_lake.stack_name == "__PREFIX__-prod-data-lake"


def test_lake_buckets_are_encrypted_and_retained(prod_platform):
    from aws_cdk.assertions import Match, Template

    template = Template.from_stack(prod_platform.data_lake)
    template.has_resource("AWS::S3::Bucket", {
        "DeletionPolicy": "Retain",
        "Properties": {"BucketEncryption": {"ServerSideEncryptionConfiguration": Match.array_with([
            Match.object_like({"ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                                "KMSMasterKeyID": Match.any_value()}})])}},
    })
