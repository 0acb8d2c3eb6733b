"""The composed platform: stack names, environments, termination protection, tags on every resource."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Template

from mlinfra.app import create_app
from mlinfra.constructs.lambda_function import HandlerFunction
from tests.helpers import new_stack


@pytest.fixture(scope="module")
def prod_platform(prod_config):
    _, platform = create_app(config=prod_config, nag=False)
    return platform


def test_stacks_named_and_placed(prod_platform):
    names = [s.stack_name for s in prod_platform.stacks]
    assert names[:2] == ["mlinfra-prod-network", "mlinfra-prod-data-lake"]
    for stack in prod_platform.stacks:
        assert stack.account == "222222222222" and stack.region == "us-east-1"
        assert stack.termination_protection is True


def test_every_taggable_resource_carries_platform_tags(prod_platform, prod_config):
    expected = prod_config.all_tags
    checked = 0
    for stack in prod_platform.stacks:
        for lid, resource in Template.from_stack(stack).to_json()["Resources"].items():
            tags = resource.get("Properties", {}).get("Tags")
            if tags is None:
                continue
            if isinstance(tags, list):
                tags = {t.get("Key", t.get("TagKey")): t.get("Value", t.get("TagValue")) for t in tags}
            for key, value in expected.items():
                assert tags.get(key) == value, f"{stack.stack_name}/{lid} lacks tag {key}={value}"
            checked += 1
    assert checked > 20


def test_untaggable_types_get_no_tags(prod_platform):
    t = Template.from_stack(prod_platform.data_lake)
    for policy in t.find_resources("AWS::S3::BucketPolicy").values():
        assert "Tags" not in policy["Properties"]


def test_local_environment_is_not_protected(local_config):
    _, platform = create_app(config=local_config, nag=False)
    assert all(s.termination_protection is False for s in platform.stacks)


def test_handler_function_defaults(tmp_path, monkeypatch):
    from mlinfra.constructs import lambda_function

    handler_root = tmp_path / "lambdas"
    (handler_root / "echo").mkdir(parents=True)
    (handler_root / "echo" / "handler.py").write_text("def handler(event, context):\n    return event\n")
    monkeypatch.setattr(lambda_function, "LAMBDAS_DIR", handler_root)
    stack = new_stack()
    fn = HandlerFunction(stack, "Echo", handler="echo", description="echo")
    fn.add_error_alarm()
    t = Template.from_stack(stack)
    f = t.find_resources("AWS::Lambda::Function")
    assert len(f) == 1
    p = next(iter(f.values()))["Properties"]
    assert p["Runtime"] == "python3.13" and p["Architectures"] == ["arm64"]
    assert p["TracingConfig"] == {"Mode": "Active"}
    assert p["Timeout"] == 60 and "KmsKeyArn" in p and "DeadLetterConfig" in p
    assert "AWSLambdaPowertoolsPythonV3-python313-arm64" in str(p["Layers"])
    assert p["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "mlinfra-echo"
    roles = t.find_resources("AWS::IAM::Role")
    assert all("ManagedPolicyArns" not in r["Properties"] for r in roles.values())
    t.has_resource_properties("AWS::SQS::Queue", {"KmsMasterKeyId": {"Fn::GetAtt": [next(iter(t.find_resources("AWS::KMS::Key"))), "Arn"]}})
    t.has_resource_properties("AWS::CloudWatch::Alarm", {"MetricName": "Errors", "Threshold": 1})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"handler": "no_such_handler"}, "handler must name a folder of mlinfra/lambdas"),
        ({"handler": "echo", "memory_size": 64}, "memory_size must be between 128 and 10240 MiB, got: 64"),
    ],
)
def test_handler_function_validation(kwargs, message, tmp_path, monkeypatch):
    from mlinfra.constructs import lambda_function

    (tmp_path / "echo").mkdir()
    (tmp_path / "echo" / "handler.py").write_text("def handler(e, c):\n    return e\n")
    monkeypatch.setattr(lambda_function, "LAMBDAS_DIR", tmp_path)
    with pytest.raises(ValueError, match=message):
        HandlerFunction(new_stack(), "F", description="x", **kwargs)


def test_handler_timeout_bounded(tmp_path, monkeypatch):
    import aws_cdk as cdk
    from mlinfra.constructs import lambda_function

    (tmp_path / "echo").mkdir()
    (tmp_path / "echo" / "handler.py").write_text("def handler(e, c):\n    return e\n")
    monkeypatch.setattr(lambda_function, "LAMBDAS_DIR", tmp_path)
    with pytest.raises(ValueError, match="timeout must be between 1 and 900 seconds, got: 1200"):
        HandlerFunction(new_stack(), "F", handler="echo", description="x", timeout=cdk.Duration.minutes(20))


def test_handler_memory_size_token_is_skipped_not_validated(tmp_path, monkeypatch):
    import aws_cdk as cdk
    from aws_cdk.assertions import Template
    from mlinfra.constructs import lambda_function

    (tmp_path / "echo").mkdir()
    (tmp_path / "echo" / "handler.py").write_text("def handler(e, c):\n    return e\n")
    monkeypatch.setattr(lambda_function, "LAMBDAS_DIR", tmp_path)
    stack = new_stack()
    memory = cdk.CfnParameter(stack, "Memory", type="Number", default=1024)
    HandlerFunction(stack, "F", description="x", handler="echo", memory_size=memory.value_as_number)
    Template.from_stack(stack).has_resource_properties("AWS::Lambda::Function", {"MemorySize": {"Ref": "Memory"}})


def test_handler_function_errors_start_with_its_path(tmp_path, monkeypatch):
    from mlinfra.constructs import lambda_function

    monkeypatch.setattr(lambda_function, "LAMBDAS_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"^TestStack/F: handler must name a folder"):
        HandlerFunction(new_stack(), "F", description="x", handler="missing")
