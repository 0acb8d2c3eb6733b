"""Configuration: every environment of the reference file loads; invalid input lists every error."""

from __future__ import annotations

import json

import pytest

from mlinfra.config import (
    ConfigError,
    DataLakeConfig,
    LifecycleConfig,
    environment_names,
    load_config,
    load_config_file,
    validate_lifecycle,
)


def doc(defaults=None, **envs):
    return {"defaults": defaults or {}, "environments": envs or {"dev": {}}}


def errors_of(document, env="dev") -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(document, env)
    return exc.value.errors


def test_reference_environments_load(config_file):
    assert environment_names(config_file) == ["dev", "local", "prod"]
    for env in ("local", "dev", "prod"):
        cfg = load_config_file(config_file, env)
        assert cfg.env_name == env
        assert cfg.stack_name("network") == f"mlinfra-{env}-network"


def test_environment_overrides_merge_into_defaults(local_config, prod_config):
    assert local_config.target == "local" and local_config.account == "123456789012"
    assert local_config.network.interface_endpoints == ["SAGEMAKER_API", "SAGEMAKER_RUNTIME", "STS"]
    assert local_config.network.cidr == "10.0.0.0/16"  # from defaults
    assert prod_config.network.max_azs == 3 and len(prod_config.azs) == 3
    assert prod_config.is_production and not local_config.is_production


def test_tags_cover_project_environment_cost_centre(prod_config):
    assert prod_config.all_tags == {
        "project": "mlinfra", "environment": "prod", "cost-centre": "ml-platform", "owner": "ml-platform-team",
    }


def test_all_errors_are_listed_at_once():
    errors = errors_of(doc({
        "prefix": "Bad_Prefix",
        "region": "mars-1",
        "network": {"max_azs": "two", "cidr": "10.0.0.0/8", "colour": "blue"},
        "data_lake": {"encryption": "rot13", "glue_zones": ["gold"]},
    }))
    joined = "\n".join(errors)
    assert len(errors) >= 6, joined
    assert "prefix: must be 3-22 lowercase" in joined and "'Bad_Prefix'" in joined
    assert "region: must be an AWS region" in joined
    assert "network.max_azs: expected an integer, got: 'two'" in joined
    assert "network.colour: unknown field" in joined
    assert "network.cidr: prefix length must be /16 to /20, got: '10.0.0.0/8'" in joined
    assert "data_lake.encryption: expected one of 'kms', 's3', got: 'rot13'" in joined
    assert "data_lake.glue_zones: unknown zone(s) ['gold']" in joined


def test_config_error_message_lists_each_error():
    with pytest.raises(ConfigError, match=r"\(2 error\(s\)\)") as exc:
        load_config(doc({"account": "12", "azs": []}), "dev")
    assert "account: must be 12 digits, got: '12'" in str(exc.value)
    assert "azs: must list at least one availability zone" in str(exc.value)


@pytest.mark.parametrize(
    "defaults, expected",
    [
        ({"network": {"nat_gateways": 5}}, "network.nat_gateways: must be between 0 and max_azs (2), got: 5"),
        ({"network": {"training_az_index": 2}}, "network.training_az_index: must be between 0 and max_azs - 1 (1), got: 2"),
        ({"network": {"interface_endpoints": ["FOO"]}}, "network.interface_endpoints: unknown service(s) ['FOO']"),
        ({"network": {"flow_log_retention_days": 8}}, "network.flow_log_retention_days: must be one of"),
        ({"network": {"vpc_id": "vpc-xyz"}}, "network.vpc_id: must look like vpc-"),
        ({"azs": ["eu-west-1a", "eu-west-1b"]}, "azs: every AZ must be in region us-east-1"),
        ({"azs": ["us-east-1a"]}, "azs: lists 1 AZ(s) but network.max_azs is 2"),
        ({"tags": {"aws:owner": "x"}}, "tags: invalid tag key 'aws:owner'"),
        ({"data_lake": {"lifecycle": {"gold": {}}}}, "data_lake.lifecycle: unknown zone(s) ['gold']"),
        ({"data_lake": {"access_log_retention_days": 0}}, "data_lake.access_log_retention_days: must be between 1 and 36500, got: 0"),
        ({"target": "mars"}, "target: expected one of 'aws', 'local', got: 'mars'"),
    ],
)
def test_each_validation_names_field_and_value(defaults, expected):
    assert any(expected in e for e in errors_of(doc(defaults))), errors_of(doc(defaults))


def test_production_refuses_data_destruction():
    errors = errors_of(doc({"data_lake": {"destroy_data_on_delete": True}}, prod={}), env="prod")
    assert errors == ["data_lake.destroy_data_on_delete: must be false in a production environment, got: true"]


def test_local_target_needs_emulator_account():
    errors = errors_of(doc({"target": "local", "account": "111111111111"}))
    assert errors == ["account: the local emulator's account is 123456789012, got: '111111111111'"]


def test_unknown_environment_and_top_level_key():
    errors = errors_of({"defaults": {}, "environments": {"dev": {}}, "extra": 1}, env="qa")
    assert "extra: unknown top-level key; allowed: ['defaults', 'environments']" in errors
    assert "environments: no environment named 'qa'; defined: ['dev']" in errors


def test_yaml_account_number_is_read_as_string():
    cfg = load_config(doc({"account": 123456789012}), "dev")
    assert cfg.account == "123456789012"


def test_json_file_and_bad_file(tmp_path):
    good = tmp_path / "c.json"
    good.write_text(json.dumps(doc({"prefix": "team-ml"})))
    assert load_config_file(good, "dev").prefix == "team-ml"
    bad = tmp_path / "c.yaml"
    bad.write_text("defaults: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config_file(bad, "dev")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config_file(tmp_path / "missing.yaml", "dev")


@pytest.mark.parametrize(
    "lc, expected",
    [
        (LifecycleConfig(infrequent_access_days=10), "S3 requires at least 30 days before Standard-IA, got: 10"),
        (LifecycleConfig(infrequent_access_days=60, glacier_days=30), "glacier_days: must be later than infrequent_access_days (60), got: 30"),
        (LifecycleConfig(intelligent_tiering_days=1, infrequent_access_days=30), "choose intelligent_tiering_days or infrequent_access_days"),
        (LifecycleConfig(glacier_days=100, deep_archive_days=150), "deep_archive_days: must be at least 90 days after glacier_days (100), got: 150"),
        (LifecycleConfig(noncurrent_expiration_days=0), "noncurrent_expiration_days: must be a positive number of days or null, got: 0"),
        (LifecycleConfig(abort_incomplete_multipart_days=0), "abort_incomplete_multipart_days: must be >= 1 and <= 36500, got: 0"),
    ],
)
def test_lifecycle_rules(lc, expected):
    errors = validate_lifecycle(lc, "lc")
    assert any(expected in e for e in errors), errors


def test_default_lifecycles_are_valid():
    lake = DataLakeConfig()
    assert lake.validate() == []
    assert lake.lifecycle_for("raw").glacier_days == 180
