"""Delivery: the CDK pipeline (stages, synth commands, approval before prod, encrypted artifacts) and the
GitHub OIDC deploy role (trust conditions, narrow permissions)."""

from __future__ import annotations

import dataclasses
import json

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from mlinfra.config import DeliveryConfig, GithubDeployConfig, load_config
from mlinfra.constructs.github_oidc import GithubOidcDeployRole
from mlinfra.stacks.platform import build_platform
from tests.helpers import new_stack, only


@pytest.fixture(scope="module")
def dev_config(config_file):
    from mlinfra.config import load_config_file

    return load_config_file(config_file, "dev")


@pytest.fixture(scope="module")
def pipeline_template(dev_config):
    from mlinfra.app import create_app

    _app, platform = create_app(config=dev_config, nag=False)
    return Template.from_stack(platform.extra["delivery"]), platform.extra["delivery"]


def _pipeline(template: Template) -> dict:
    return only(template, "AWS::CodePipeline::Pipeline")["Properties"]


def _stage(template: Template, name: str) -> dict:
    return next(s for s in _pipeline(template)["Stages"] if s["Name"] == name)


# --- pipeline ---------------------------------------------------------------------------------------


def test_pipeline_is_v2_self_mutating_with_stages_in_order(pipeline_template):
    template, _ = pipeline_template
    props = _pipeline(template)
    assert props["PipelineType"] == "V2"
    names = [s["Name"] for s in props["Stages"]]
    assert names == ["Source", "Build", "UpdatePipeline", "Assets", "Dev", "Prod"]
    assert [a["Name"] for a in _stage(template, "UpdatePipeline")["Actions"]] == ["SelfMutate"]


def test_source_is_the_configured_connection(pipeline_template, dev_config):
    template, _ = pipeline_template
    action = _stage(template, "Source")["Actions"][0]
    assert action["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert action["Configuration"]["ConnectionArn"] == dev_config.delivery.connection_arn
    assert action["Configuration"]["FullRepositoryId"] == "example-org/ml-platform"
    assert action["Configuration"]["BranchName"] == "main"


def test_manual_approval_runs_before_every_prod_deploy_and_not_before_dev(pipeline_template):
    template, _ = pipeline_template
    prod = _stage(template, "Prod")["Actions"]
    approvals = [a for a in prod if a["ActionTypeId"]["Category"] == "Approval"]
    assert [a["Name"] for a in approvals] == ["Approve-prod"]
    deploys = [a for a in prod if a["ActionTypeId"]["Category"] == "Deploy"]
    assert deploys and all(a["RunOrder"] > approvals[0]["RunOrder"] for a in deploys)
    assert not [a for a in _stage(template, "Dev")["Actions"] if a["ActionTypeId"]["Category"] == "Approval"]


def test_prod_stage_deploys_into_the_prod_account(pipeline_template):
    template, _ = pipeline_template
    deploys = [a for a in _stage(template, "Prod")["Actions"] if a["ActionTypeId"]["Category"] == "Deploy"]
    assert all("222222222222" in json.dumps(a.get("RoleArn")) for a in deploys)


def test_synth_step_runs_tests_then_synth_then_cfn_lint(pipeline_template):
    template, _ = pipeline_template
    projects = template.find_resources("AWS::CodeBuild::Project")
    synth = [p for p in projects.values() if "cdk synth" in json.dumps(p["Properties"]["Source"].get("BuildSpec", ""))]
    assert len(synth) == 1
    spec = json.loads(synth[0]["Properties"]["Source"]["BuildSpec"])
    commands = spec["phases"]["build"]["commands"]
    joined = "\n".join(commands)
    assert joined.index("pytest") < joined.index("cdk synth") < joined.index("cfn-lint")
    assert "-c mlinfra:env=dev" in joined
    assert spec["phases"]["install"]["commands"][0] == "npm ci"


def test_artifacts_are_kms_encrypted_with_a_rotated_key(pipeline_template):
    template, _ = pipeline_template
    store = _pipeline(template)["ArtifactStore"]
    assert store["EncryptionKey"]["Type"] == "KMS"
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    template.has_resource_properties("AWS::S3::Bucket", {
        "BucketEncryption": {"ServerSideEncryptionConfiguration": Match.array_with([
            Match.object_like({"ServerSideEncryptionByDefault": Match.object_like({"SSEAlgorithm": "aws:kms"})})])},
    })


def test_bootstrap_commands_trust_the_pipeline_account(pipeline_template):
    _, stack = pipeline_template
    cmds = stack.bootstrap_commands
    assert cmds[0] == "cdk bootstrap aws://111111111111/us-east-1"
    assert any(c.startswith("cdk bootstrap aws://222222222222/us-east-1 --trust 111111111111") for c in cmds)


def test_local_environment_has_no_pipeline(local_config):
    assert local_config.delivery.enabled is False


# --- pipeline validation (negative) -----------------------------------------------------------------


def _delivery_doc(**delivery) -> dict:
    base = {
        "enabled": True, "connection_arn": "arn:aws:codeconnections:us-east-1:111111111111:connection/"
        "00000000-0000-4000-8000-000000000000", "repository": "o/r",
    }
    return {"environments": {"dev": {"account": "111111111111", "delivery": {**base, **delivery}}}}


def test_config_rejects_a_prod_stage_without_approval():
    from mlinfra.config import ConfigError

    with pytest.raises(ConfigError, match=r"delivery.approval_before: production stage\(s\) \['prod'\] need a manual approval"):
        load_config(_delivery_doc(stages=["dev", "prod"], approval_before=[]), "dev")


def test_config_rejects_a_bad_connection_and_repository_at_once():
    from mlinfra.config import ConfigError

    with pytest.raises(ConfigError) as err:
        load_config(_delivery_doc(connection_arn="arn:aws:s3:::nope", repository="no-slash"), "dev")
    assert len(err.value.errors) == 2


def test_pipeline_stack_rejects_a_prod_stage_without_approval(dev_config, prod_config):
    from mlinfra.stacks.delivery import DeliveryPipelineStack

    cfg = dataclasses.replace(dev_config, delivery=dataclasses.replace(dev_config.delivery, approval_before=[]))
    with pytest.raises(ValueError, match=r"approval_before: production stage\(s\) \['prod'\] need a manual approval"):
        DeliveryPipelineStack(cdk.App(), config=cfg, stage_configs=[dev_config, prod_config], build_stage=build_platform)


def test_pipeline_stack_rejects_the_local_emulator_as_a_stage(dev_config, local_config):
    from mlinfra.stacks.delivery import DeliveryPipelineStack

    cfg = dataclasses.replace(dev_config, delivery=dataclasses.replace(dev_config.delivery, stages=["local"], approval_before=[]))
    with pytest.raises(ValueError, match="not to the local emulator"):
        DeliveryPipelineStack(cdk.App(), config=cfg, stage_configs=[local_config], build_stage=build_platform)


def test_s3_source_needs_a_bucket():
    from mlinfra.config import ConfigError

    with pytest.raises(ConfigError, match="delivery.source_bucket: must be an S3 bucket name"):
        load_config(_delivery_doc(source="s3"), "dev")


# --- GitHub OIDC deploy role ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oidc_template():
    stack = new_stack()
    GithubOidcDeployRole(stack, "Gh", repository="example-org/ml-platform", branch="main", environment="prod",
                         role_name="deployer", pull_request_diff=True, diff_role_name="differ",
                         diff_workflow=".github/workflows/cdk-diff.yml", diff_stack_names=["mlinfra-dev-*"])
    return Template.from_stack(stack)


def _role(template: Template, name: str) -> dict:
    return next(r for r in template.find_resources("AWS::IAM::Role").values() if r["Properties"].get("RoleName") == name)


def test_oidc_provider_is_created_natively_for_sts_audience(oidc_template):
    props = only(oidc_template, "AWS::IAM::OIDCProvider")["Properties"]
    assert props["Url"] == "https://token.actions.githubusercontent.com"
    assert props["ClientIdList"] == ["sts.amazonaws.com"]
    assert not oidc_template.find_resources("Custom::AWSCDKOpenIdConnectProvider")


def test_deploy_role_trust_is_one_repository_branch_and_environment(oidc_template):
    trust = _role(oidc_template, "deployer")["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert len(trust) == 1
    st = trust[0]
    assert st["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert st["Condition"] == {"StringEquals": {
        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
        "token.actions.githubusercontent.com:sub": [
            "repo:example-org/ml-platform:ref:refs/heads/main",
            "repo:example-org/ml-platform:environment:prod",
        ],
    }}
    assert "StringLike" not in st["Condition"]


def test_deploy_role_may_only_assume_the_cdk_bootstrap_roles(oidc_template):
    policies = oidc_template.find_resources("AWS::IAM::Policy")
    deploy = [p for p in policies.values() if "Role" in json.dumps(p["Properties"]["Roles"]) and "Diff" not in json.dumps(p["Properties"]["Roles"])]
    assert len(deploy) == 1
    statements = deploy[0]["Properties"]["PolicyDocument"]["Statement"]
    assert len(statements) == 1
    assert statements[0]["Action"] == "sts:AssumeRole"
    assert json.dumps(statements[0]["Resource"]).count("role/cdk-hnb659fds-*-role-123456789012-us-east-1") == 1
    assert not _role(oidc_template, "deployer")["Properties"].get("ManagedPolicyArns")


def test_diff_role_is_pinned_to_one_workflow_and_reads_templates_only(oidc_template):
    """Issue 13 item 6 (iam.github-oidc-job-workflow-ref): a pull request's code runs only through the reusable diff
    workflow of the protected branch, and the role reads the app's deployed templates, never the lookup role."""
    from mlinfra.domain.iam_eval import Request, allowed, evaluate, statements_of

    role = _role(oidc_template, "differ")["Properties"]
    trust = statements_of(role["AssumeRolePolicyDocument"])
    pinned = {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
              "token.actions.githubusercontent.com:sub": "repo:example-org/ml-platform:pull_request",
              "token.actions.githubusercontent.com:job_workflow_ref":
                  "example-org/ml-platform/.github/workflows/cdk-diff.yml@refs/heads/main"}
    provider = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    trust = [{**s, "Principal": {"Federated": provider}} for s in trust]  # the provider's ARN, resolved
    assert evaluate(trust, Request("sts:AssumeRoleWithWebIdentity", principal=provider, context=pinned)) == "Allow"
    edited = {**pinned, "token.actions.githubusercontent.com:job_workflow_ref":
              "example-org/ml-platform/.github/workflows/cdk-diff.yml@refs/pull/7/merge"}
    assert evaluate(trust, Request("sts:AssumeRoleWithWebIdentity", principal=provider, context=edited)) != "Allow"
    policies = [p for p in oidc_template.find_resources("AWS::IAM::Policy").values() if "Diff" in json.dumps(p["Properties"]["Roles"])]
    statements = statements_of(policies[0]["Properties"]["PolicyDocument"])
    text = json.dumps(statements)
    assert "sts:AssumeRole" not in text and "lookup-role" not in text
    resolved = json.loads(text.replace('{"Ref": "AWS::Partition"}', '"aws"'))
    for st in resolved:
        if isinstance(st["Resource"], dict):
            st["Resource"] = "".join(st["Resource"]["Fn::Join"][1])
    assert allowed(resolved, Request("cloudformation:GetTemplate",
                                     "arn:aws:cloudformation:us-east-1:123456789012:stack/mlinfra-dev-serving/abc"))
    assert not allowed(resolved, Request("cloudformation:GetTemplate",
                                         "arn:aws:cloudformation:us-east-1:123456789012:stack/other-app/abc"))
    assert not allowed(resolved, Request("s3:GetObject", "arn:aws:s3:::mlinfra-dev-raw/x"))


def test_diff_role_needs_a_pinned_workflow():
    stack = new_stack()
    with pytest.raises(ValueError, match=r"diff_workflow must be the reusable workflow pull requests call.*got: None"):
        GithubOidcDeployRole(stack, "Gh", repository="o/r", pull_request_diff=True)


def test_an_imported_provider_creates_none():
    stack = new_stack()
    GithubOidcDeployRole(stack, "Gh", repository="o/r",
                         provider_arn="arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com")
    template = Template.from_stack(stack)
    assert not template.find_resources("AWS::IAM::OIDCProvider")
    trust = only(template, "AWS::IAM::Role")["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"]["Federated"] == "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    assert trust["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"] == "repo:o/r:ref:refs/heads/main"


@pytest.mark.parametrize("kwargs, message", [
    ({"repository": "example-org/*"}, "repository must be owner/name"),
    ({"repository": "o/r", "branch": "*"}, "branch must be a branch name without wildcards"),
    ({"repository": "o/r", "branch": "refs/heads/main"}, "branch must be a branch name"),
    ({"repository": "o/r", "branch": None}, "branch or environment must be given"),
    ({"repository": "o/r", "qualifier": "Bad_Q"}, "qualifier must be 1-10 lowercase"),
    ({"repository": "o/r", "provider_arn": "arn:aws:iam::123456789012:oidc-provider/example.com"}, "provider_arn must be"),
])
def test_oidc_role_rejects_broad_or_malformed_trust(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GithubOidcDeployRole(new_stack(), "Gh", **kwargs)


def test_github_section_adds_a_deploy_stack(dev_config):
    from mlinfra.stacks.delivery import GithubDeployStack

    cfg = dataclasses.replace(dev_config, delivery=DeliveryConfig(github=GithubDeployConfig(repository="o/r")))
    stack = GithubDeployStack(cdk.App(), config=cfg)
    template = Template.from_stack(stack)
    names = sorted(r["Properties"]["RoleName"] for r in template.find_resources("AWS::IAM::Role").values())
    assert names == ["mlinfra-dev-github-deploy", "mlinfra-dev-github-diff"]


@pytest.mark.policy
def test_dev_with_the_pipeline_and_teams_is_nag_clean(dev_config, tmp_path):
    from mlinfra.app import create_app

    app, platform = create_app(config=dev_config, nag=True, outdir=str(tmp_path))
    app.synth()  # raises ValidationFailed on any unacknowledged cdk-nag finding
    assert "delivery" in platform.extra


@pytest.mark.policy
def test_github_deploy_stack_is_nag_clean(dev_config, tmp_path):
    from mlinfra.app import register_nag
    from mlinfra.stacks.delivery import GithubDeployStack

    app = cdk.App(outdir=str(tmp_path))
    register_nag(app)
    cfg = dataclasses.replace(dev_config, delivery=DeliveryConfig(github=GithubDeployConfig(repository="o/r", environment="prod")))
    GithubDeployStack(app, config=cfg)
    app.synth()


def test_artifact_bucket_is_versioned_access_logged_and_expiring(pipeline_template):
    """Issue 13: the pipeline's artifact bucket without versioning and access logs."""
    template, _ = pipeline_template
    buckets = template.find_resources("AWS::S3::Bucket")
    (artifacts,) = [r for k, r in buckets.items() if k.startswith("PipelineArtifactsBucket")]
    props = artifacts["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["LoggingConfiguration"]["LogFilePrefix"] == "artifacts/"
    assert props["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 90


def test_every_build_project_logs_to_the_encrypted_build_log_group(pipeline_template):
    template, _ = pipeline_template
    projects = template.find_resources("AWS::CodeBuild::Project")
    assert projects
    for lid, project in projects.items():
        logs = project["Properties"]["LogsConfig"]["CloudWatchLogs"]
        assert logs["Status"] == "ENABLED" and "BuildLogs" in json.dumps(logs["GroupName"]), lid
