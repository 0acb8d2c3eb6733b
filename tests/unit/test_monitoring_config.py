"""The `monitoring:` configuration section and its composition into the reference app."""

from __future__ import annotations

import dataclasses
import json

import pytest
from aws_cdk.assertions import Template

from mlinfra.app import create_app
from mlinfra.config import ConfigError, load_config


def errors_of(monitoring: dict, **sections) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config({"defaults": {"monitoring": {"enabled": True, **monitoring}, **sections}, "environments": {"dev": {}}}, "dev")
    return exc.value.errors


@pytest.mark.parametrize("monitoring, message", [
    ({"schedule": "every day"}, "monitoring.schedule: must be rate(N minutes|hours|days) or cron(6 fields), got: 'every day'"),
    ({"window_hours": 0}, "monitoring.window_hours: must be between 1 and 744, got: 0"),
    ({"instance_type": "m5.xlarge"}, "monitoring.instance_type: must start with 'ml.', got: 'm5.xlarge'"),
    ({"thresholds": {"psi": -1}}, "monitoring.thresholds: thresholds: psi must be in (0, 10], got: -1"),
    ({"feature_thresholds": {"age": {"bogus": 1}}}, "monitoring.thresholds: thresholds: unknown keys ['bogus']"),
    ({"ground_truth_prefix": "/gt"}, "monitoring.ground_truth_prefix: must be path segments ending with '/', got: '/gt'"),
    ({"retrain_dataset": "Bad Name"}, "monitoring.retrain_dataset: must be 1-63 lowercase letters"),
    ({"retrain_dataset": "other"}, "monitoring.retrain_dataset: must be one of pipeline.datasets ['images'], got: 'other'"),
    ({"cooldown_hours": -1}, "monitoring.cooldown_hours: must be between 0 and 2160, got: -1"),
    ({"enabled": "yes"}, "monitoring.enabled: expected true or false, got: 'yes'"),
])
def test_invalid_monitoring_names_the_field(monitoring, message):
    assert any(e.startswith(message) for e in errors_of(monitoring)), errors_of(monitoring)


def test_monitoring_needs_captured_traffic():
    errors = errors_of({}, serving={"data_capture_percent": 0})
    assert any(e.startswith("monitoring.enabled: needs serving.enabled and serving.data_capture_percent > 0") for e in errors)


def test_thresholds_become_the_engines_document():
    cfg = load_config({"defaults": {"monitoring": {"thresholds": {"psi": 0.3, "min_samples": 1000},
                                                   "feature_thresholds": {"age": {"ks": 0.2}}}},
                       "environments": {"dev": {}}}, "dev")
    assert cfg.monitoring.thresholds_spec() == {"default": {"psi": 0.3, "min_samples": 1000}, "features": {"age": {"ks": 0.2}}}
    assert isinstance(cfg.monitoring.thresholds_spec()["default"]["min_samples"], int)


def test_reference_app_composes_monitoring_and_the_retrain_rule(prod_config):
    assert prod_config.monitoring.enabled  # config/platform.yaml turns it on
    _, platform = create_app(config=prod_config, nag=False)
    monitoring = Template.from_stack(platform.extra["monitoring"])
    monitoring.resource_count_is("AWS::Scheduler::Schedule", 1)
    board = json.dumps(monitoring.find_resources("AWS::CloudWatch::Dashboard"))
    assert "Endpoint latency p99" in board and "Drift: drifted features" in board
    pipeline = Template.from_stack(platform.extra["pipeline"])
    rules = [r["Properties"] for r in pipeline.find_resources("AWS::Events::Rule").values()
             if r["Properties"].get("EventPattern", {}).get("source") == ["mlinfra.drift"]]
    (rule,) = rules
    assert '"dataset":"images"' in json.dumps(rule["Targets"][0]["InputTransformer"]["InputTemplate"]).replace('\\"', '"')


def test_monitoring_off_builds_no_stack(prod_config):
    cfg = dataclasses.replace(prod_config, monitoring=dataclasses.replace(prod_config.monitoring, enabled=False))
    _, platform = create_app(config=cfg, nag=False)
    assert "monitoring" not in platform.extra
