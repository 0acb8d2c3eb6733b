"""Issue 13 item 7: the retrain pipeline's approval path. The approval function is reached through an AWS_IAM
function URL (the reviewer is the signer), reviewers get only the URL invoke, and the task token goes to a
dedicated approval topic, never to the failure/outcome topic."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Template

from mlinfra.constructs.data_lake import DataLake
from mlinfra.constructs.retrain_pipeline import RetrainPipeline, TrainingProps
from mlinfra.retrain_definition import build_definition
from tests.helpers import new_stack

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1"


def _rendered_definition(template: dict) -> dict:
    """The definition with each CloudFormation reference rendered as its JSON (so topics stay apart)."""
    (sm,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    body = sm["Properties"]["DefinitionString"]
    if isinstance(body, dict):
        sep, parts = body["Fn::Join"]
        body = sep.join(p if isinstance(p, str) else json.dumps(p, sort_keys=True).replace('"', "'") for p in parts)
    return json.loads(body)


@pytest.fixture(scope="module")
def manual():
    stack = new_stack()
    pipeline = RetrainPipeline(stack, "P", lake=DataLake(stack, "Lake"), training=TrainingProps(image_uri=IMAGE),
                               metric_name="accuracy", datasets=["sales"], manual_approval=True)
    reviewer = iam.Role(stack, "Reviewer", assumed_by=iam.AccountRootPrincipal())
    pipeline.grant_approve(reviewer)
    template = Template.from_stack(stack)
    return stack, pipeline, template, template.to_json()


def _logical(stack: cdk.Stack, construct) -> str:
    return stack.get_logical_id(construct.node.default_child)


def test_the_approval_function_url_is_aws_iam(manual):
    stack, pipeline, template, tpl = manual
    urls = template.find_resources("AWS::Lambda::Url")
    (url,) = urls.values()
    assert url["Properties"]["AuthType"] == "AWS_IAM"
    assert url["Properties"]["TargetFunctionArn"] == {"Fn::GetAtt": [_logical(stack, pipeline.approval_fn.function), "Arn"]}


def test_grant_approve_is_the_url_invoke_only(manual):
    stack, _, template, tpl = manual
    (policy,) = [r for k, r in tpl["Resources"].items() if r["Type"] == "AWS::IAM::Policy" and k.startswith("ReviewerDefaultPolicy")]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    by_action = {s["Action"]: s for s in statements}
    assert set(by_action) == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    assert by_action["lambda:InvokeFunctionUrl"]["Condition"] == {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}
    # a plain Invoke would reach the handler without an IAM caller: only invocations through the URL
    assert by_action["lambda:InvokeFunction"]["Condition"] == {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}} or \
        by_action["lambda:InvokeFunction"]["Condition"] == {"Bool": {"lambda:InvokedViaFunctionUrl": True}}


def test_the_token_goes_to_the_approval_topic_never_the_failure_topic(manual):
    stack, pipeline, _, tpl = manual
    states = _rendered_definition(tpl)["States"]
    approval_ref = {"Ref": _logical(stack, pipeline.approval_topic)}
    failure_ref = {"Ref": _logical(stack, pipeline.topic)}
    assert approval_ref != failure_ref
    render = lambda ref: json.dumps(ref, sort_keys=True).replace('"', "'")  # noqa: E731
    publishers = {name: st for name, st in states.items() if st.get("Resource", "").startswith("arn:aws:states:::sns:publish")}
    to_approval = {name for name, st in publishers.items() if st["Parameters"]["TopicArn"] == render(approval_ref)}
    assert to_approval == {"RequestApproval"}
    for name, st in publishers.items():
        if name != "RequestApproval":
            assert "Task.Token" not in json.dumps(st), f"{name} publishes a task token"
            assert st["Parameters"]["TopicArn"] == render(failure_ref)
    request = states["RequestApproval"]
    assert request["Resource"] == "arn:aws:states:::sns:publish.waitForTaskToken"
    assert request["Parameters"]["Message"]["decide_with.$"].startswith("States.Format('mlinfra approve --url ")
    assert "--reviewer" not in request["Parameters"]["Message"]["decide_with.$"]


def test_the_approval_topic_is_encrypted_and_ssl_only(manual):
    stack, pipeline, template, tpl = manual
    topic = tpl["Resources"][_logical(stack, pipeline.approval_topic)]
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [_logical(stack, pipeline.key), "Arn"]}
    policies = [r["Properties"] for r in tpl["Resources"].values() if r["Type"] == "AWS::SNS::TopicPolicy"
                and {"Ref": _logical(stack, pipeline.approval_topic)} in r["Properties"]["Topics"]]
    assert any(s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}} and s["Effect"] == "Deny"
               for p in policies for s in p["PolicyDocument"]["Statement"])


def test_no_approval_topic_without_manual_approval_and_a_given_one_is_refused():
    stack = new_stack()
    auto = RetrainPipeline(stack, "Auto", lake=DataLake(stack, "Lake"), training=TrainingProps(image_uri=IMAGE),
                           metric_name="accuracy", datasets=["sales"])
    assert auto.approval_topic is None and auto.approval_url is None
    assert not Template.from_stack(stack).find_resources("AWS::Lambda::Url")
    with pytest.raises(ValueError, match=r"^TestStack/Auto: grant_approve needs manual_approval=True"):
        auto.grant_approve(iam.Role(stack, "R", assumed_by=iam.AccountRootPrincipal()))
    with pytest.raises(ValueError, match=r"^TestStack/Other: approval_topic is used only with manual_approval=True"):
        RetrainPipeline(stack, "Other", lake=auto.lake, training=TrainingProps(image_uri=IMAGE), metric_name="accuracy",
                        datasets=["sales"], approval_topic=sns.Topic(stack, "T"))


def test_the_definition_refuses_the_failure_topic_for_approvals(manual):
    settings = manual[1].settings
    import dataclasses

    for bad in ("", settings.topic_arn):
        with pytest.raises(ValueError, match="approval_topic_arn: manual approval needs a topic of its own"):
            build_definition(dataclasses.replace(settings, approval_topic_arn=bad))


def test_approval_emails_are_checked():
    from mlinfra.config import PipelineConfig

    assert PipelineConfig(manual_approval=True, approval_emails=["reviewers@example.com"]).validate() == []
    errors = PipelineConfig(approval_emails=["not-an-address"]).validate()
    assert any("pipeline.approval_emails: not e-mail addresses: ['not-an-address']" in e for e in errors)
    assert any("pipeline.approval_emails: used only with manual_approval: true" in e for e in errors)


def test_the_stack_subscribes_the_approval_emails_and_exports_the_url(prod_config):
    import dataclasses

    from mlinfra.app import create_app

    cfg = dataclasses.replace(prod_config, pipeline=dataclasses.replace(
        prod_config.pipeline, manual_approval=True, approval_emails=["reviewers@example.com"]),
        **{f: dataclasses.replace(getattr(prod_config, f), enabled=False) for f in ("ingestion", "training", "serving")})
    _, platform = create_app(config=cfg, nag=False)
    stack = platform.extra["pipeline"]
    template = Template.from_stack(stack)
    (sub,) = template.find_resources("AWS::SNS::Subscription").values()
    assert sub["Properties"]["Protocol"] == "email" and sub["Properties"]["Endpoint"] == "reviewers@example.com"
    assert sub["Properties"]["TopicArn"] == {"Ref": stack.get_logical_id(stack.pipeline.approval_topic.node.default_child)}
    assert {"ApprovalUrl", "ApprovalTopicArn", "ApprovalFunctionName"} <= set(template.to_json()["Outputs"])
