"""The one wildcard-acknowledgment helper: declared IAM5 wildcards pass the nag synth, undeclared ones fail it."""

from __future__ import annotations

import re

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3

from mlinfra.app import register_nag
from mlinfra.constructs.wildcards import (
    KMS_WILDCARD_ACTIONS,
    S3_GRANT_WILDCARD_ACTIONS,
    acknowledge_wildcards,
    ending,
    render,
    wildcard_findings,
)

REASON = "Test: objects under the data/ prefix of one bucket, with aws-cdk-lib's read action groups"
LOGS = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/test/*"


def _stack(tmp_path) -> tuple[cdk.App, cdk.Stack]:
    app = cdk.App(outdir=str(tmp_path))
    register_nag(app)
    return app, cdk.Stack(app, "Wildcards", env=cdk.Environment(account="123456789012", region="us-east-1"))


def _role(stack: cdk.Stack) -> tuple[iam.Role, s3.IBucket]:
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    bucket = s3.Bucket.from_bucket_name(stack, "Bucket", "some-bucket")
    bucket.grant_read(role, "data/*")
    return role, bucket


def _managed_policy(stack: cdk.Stack) -> iam.ManagedPolicy:
    return iam.ManagedPolicy(stack, "Policy", statements=[
        iam.PolicyStatement(actions=["ec2:Describe*"], resources=["*"]),
        iam.PolicyStatement(actions=["logs:PutLogEvents"], resources=[LOGS]),
    ])


def _failed_ids(tmp_path) -> set[str]:
    """The IAM5 findings the synth failed on (the validation report lists unacknowledged findings only)."""
    return {f"IAM5[{m}]" for m in re.findall(r"AwsSolutions-IAM5\[([^\]]*)\]", (tmp_path / "validation-report.json").read_text())}


@pytest.mark.policy
def test_role_declared_wildcards_are_acknowledged(tmp_path):
    app, stack = _stack(tmp_path)
    role, bucket = _role(stack)
    acknowledge_wildcards(role, REASON, actions=S3_GRANT_WILDCARD_ACTIONS,
                          resources=[bucket.arn_for_objects("data/*")])  # a token pattern: matched literally
    app.synth()


@pytest.mark.policy
def test_role_undeclared_wildcard_fails(tmp_path):
    app, stack = _stack(tmp_path)
    role, _ = _role(stack)
    role.add_to_policy(iam.PolicyStatement(actions=["s3:Put*"], resources=["arn:aws:s3:::other-bucket/*"]))
    acknowledge_wildcards(role, REASON, actions=S3_GRANT_WILDCARD_ACTIONS, resources=[ending("/data/*")])
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    failed = _failed_ids(tmp_path)
    assert failed == {"IAM5[Action::s3:Put*]", "IAM5[Resource::arn:aws:s3:::other-bucket/*]"}, failed


@pytest.mark.policy
def test_role_statements_added_after_the_call_are_covered(tmp_path):
    app, stack = _stack(tmp_path)
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    acknowledge_wildcards(role, REASON, actions=KMS_WILDCARD_ACTIONS, resources=[LOGS])  # before any policy exists
    role.add_to_policy(iam.PolicyStatement(actions=[*KMS_WILDCARD_ACTIONS], resources=[LOGS]))
    app.synth()


@pytest.mark.policy
def test_managed_policy_declared_wildcards_are_acknowledged(tmp_path):
    app, stack = _stack(tmp_path)
    acknowledge_wildcards(_managed_policy(stack), REASON, actions=["ec2:Describe*"],
                          resources=["*", "arn:aws:logs:*:log-group:/aws/test/*"])
    app.synth()


@pytest.mark.policy
def test_managed_policy_undeclared_wildcard_fails(tmp_path):
    app, stack = _stack(tmp_path)
    acknowledge_wildcards(_managed_policy(stack), REASON, actions=["ec2:Describe*"], resources=["*"])
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    # The bare "*" pattern matches only the resource "*", not every wildcard resource.
    assert _failed_ids(tmp_path) == {f"IAM5[Resource::{LOGS}]"}


def test_render_follows_cdk_nag():
    assert render({"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::b/", {"Fn::GetAtt": ["B", "Arn"]}, "/*"]]}) \
        == "arn:<AWS::Partition>:s3:::b/<B.Arn>/*"
    assert render({"Fn::Sub": "arn:${AWS::Partition}:logs:*"}) == "arn:<AWS::Partition>:logs:*"
    assert render({"Fn::ImportValue": "Stack:ExportsOutputArn"}) == "Stack:ExportsOutputArn"
    assert wildcard_findings({"Statement": [
        {"Effect": "Deny", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Allow", "Action": ["s3:Get*", "s3:PutObject"], "Resource": ["arn:aws:s3:::b/*", "arn:aws:s3:::b"]},
    ]}) == ["Action::s3:Get*", "Resource::arn:aws:s3:::b/*"]


def test_ending_is_a_literal_suffix():
    from fnmatch import fnmatchcase

    assert fnmatchcase("arn:aws:s3:::b/raw/*", ending("/raw/*"))
    assert not fnmatchcase("arn:aws:s3:::b/raw/x*", ending("/raw/*"))
