"""Team vending: two teams in one platform, each scoped to its own prefixes, roles with the boundary,
quota-capped compute, budgets, and the shared Service Catalog portfolio."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Template

from mlinfra.config import ConfigError, load_config
from mlinfra.constructs.team_environment import TeamEnvironment, team_role_path
from tests.helpers import new_stack, only


@pytest.fixture(scope="module")
def platform(prod_config):
    from mlinfra.app import create_app

    _app, platform = create_app(config=prod_config, nag=False)
    return platform


@pytest.fixture(scope="module")
def templates(platform):
    return {name: Template.from_stack(stack) for name, stack in platform.extra.items()
            if name.startswith("team-") or name == "vending"}


def _team_roles(template: Template, team: str) -> dict[str, dict]:
    return {k: r for k, r in template.find_resources("AWS::IAM::Role").items()
            if r["Properties"].get("Path") == team_role_path(team)}


def _role_policies(template: Template, logical_ids) -> str:
    docs = [p["Properties"]["PolicyDocument"] for p in template.find_resources("AWS::IAM::Policy").values()
            if any(r.get("Ref") in logical_ids for r in p["Properties"]["Roles"])]
    return json.dumps(docs)


def test_two_teams_and_the_portfolio_are_vended(templates):
    assert sorted(templates) == ["team-nlp", "team-vision", "vending"]


@pytest.mark.parametrize("team", ["vision", "nlp"])
def test_every_team_role_carries_the_boundary(templates, team):
    template = templates[f"team-{team}"]
    roles = _team_roles(template, team)
    assert len(roles) == 3  # team, SageMaker execution, Batch job
    boundary_id = next(iter(template.find_resources("AWS::IAM::ManagedPolicy")))
    for role in roles.values():
        assert role["Properties"]["PermissionsBoundary"] == {"Ref": boundary_id}


@pytest.mark.parametrize("team", ["vision", "nlp"])
def test_boundary_forces_itself_on_roles_the_team_creates_and_cannot_be_removed(templates, team):
    boundary = only(templates[f"team-{team}"], "AWS::IAM::ManagedPolicy")["Properties"]
    statements = {s.get("Sid"): s for s in boundary["PolicyDocument"]["Statement"]}
    create = statements["CreateRolesOnlyWithThisBoundary"]
    assert "iam:CreateRole" in create["Action"]
    assert f"policy/mlinfra/team/{team}/" in json.dumps(create["Condition"]["StringEquals"]["iam:PermissionsBoundary"])
    assert f"role/mlinfra/team/{team}/*" in json.dumps(create["Resource"])
    deny = statements["NeverRemoveOrEditTheBoundary"]
    assert deny["Effect"] == "Deny" and "iam:DeleteRolePermissionsBoundary" in deny["Action"]


@pytest.mark.parametrize("team, other", [("vision", "nlp"), ("nlp", "vision")])
def test_team_roles_reach_only_their_own_prefixes(templates, prod_config, team, other):
    template = templates[f"team-{team}"]
    roles = _team_roles(template, team)
    policies = _role_policies(template, set(roles))
    mine = next(t for t in prod_config.vending.teams if t.name == team)
    theirs = next(t for t in prod_config.vending.teams if t.name == other)
    for value in mine.write_prefixes + mine.read_prefixes:
        assert f"/{value.split('/', 1)[1]}*" in policies, value
    for value in theirs.write_prefixes + theirs.read_prefixes:
        prefix = value.split("/", 1)[1]
        if value not in mine.read_prefixes:
            assert f"/{prefix}" not in policies, f"{team} reaches {other}'s {value}"
    assert "s3:Delete" not in policies
    # no whole-bucket object access: every object ARN is under a prefix
    assert '"/*"' not in policies


def test_write_prefixes_are_writable_and_read_prefixes_read_only(templates):
    template = templates["team-vision"]
    docs = json.loads(_role_policies(template, set(_team_roles(template, "vision"))))
    statements = [s for d in docs for s in d["Statement"]]
    put = [s for s in statements if "s3:PutObject" in json.dumps(s["Action"])]
    assert put and all("dataset=images" not in json.dumps(s["Resource"]) for s in put)
    assert any("vision/*" in json.dumps(s["Resource"]) for s in put)


def test_compute_is_capped_at_the_quota_and_the_allowed_families(templates):
    ce = only(templates["team-vision"], "AWS::Batch::ComputeEnvironment")["Properties"]
    assert ce["Type"] == "MANAGED"
    assert ce["ServiceRole"]  # moto needs an explicit service role
    res = ce["ComputeResources"]
    assert res["MaxvCpus"] == 192 and res["MinvCpus"] == 0
    assert res["InstanceTypes"] == ["g5", "g6"]
    lt = only(templates["team-vision"], "AWS::EC2::LaunchTemplate")["Properties"]
    assert lt["LaunchTemplateData"]["MetadataOptions"]["HttpTokens"] == "required"
    assert only(templates["team-nlp"], "AWS::Batch::ComputeEnvironment")["Properties"]["ComputeResources"]["MaxvCpus"] == 96


def test_budget_thresholds_notify_the_encrypted_topic(templates):
    template = templates["team-nlp"]
    budget = only(template, "AWS::Budgets::Budget")["Properties"]
    data = budget["Budget"]
    assert data["BudgetLimit"] == {"Amount": 20000, "Unit": "USD"}
    assert data["TimeUnit"] == "MONTHLY" and data["BudgetType"] == "COST"
    assert data["CostFilters"] == {"TagKeyValue": ["user:team$nlp"]}
    notes = [(n["Notification"]["NotificationType"], n["Notification"]["Threshold"]) for n in budget["NotificationsWithSubscribers"]]
    assert notes == [("ACTUAL", 50), ("ACTUAL", 90), ("ACTUAL", 100), ("FORECASTED", 100)]
    topic_id = next(iter(template.find_resources("AWS::SNS::Topic")))
    assert all(n["Subscribers"] == [{"SubscriptionType": "SNS", "Address": {"Ref": topic_id}}]
               for n in budget["NotificationsWithSubscribers"])
    assert only(template, "AWS::SNS::Topic")["Properties"]["KmsMasterKeyId"]
    policy = json.dumps(only(template, "AWS::SNS::TopicPolicy")["Properties"]["PolicyDocument"])
    assert '"Service": "budgets.amazonaws.com"' in policy and "sns:Publish" in policy


def test_cost_allocation_tags_and_retained_model_registry(templates):
    template = templates["team-vision"]
    queue = only(template, "AWS::Batch::JobQueue")["Properties"]
    assert queue["Tags"]["team"] == "vision" and queue["Tags"]["team-cost-centre"] == "cc-vision"
    assert queue["Tags"]["cost-centre"] == "ml-platform"  # the platform's tags stay
    role_tags = {t["Key"]: t["Value"] for t in next(iter(_team_roles(template, "vision").values()))["Properties"]["Tags"]}
    assert role_tags["team"] == "vision" and role_tags["team-cost-centre"] == "cc-vision"
    group = only(template, "AWS::SageMaker::ModelPackageGroup")
    assert group["DeletionPolicy"] == "Retain"
    assert group["Properties"]["ModelPackageGroupName"] == "mlinfra-prod-vision"


def test_portfolio_products_constraints_tags_and_sharing(templates):
    template = templates["vending"]
    products = template.find_resources("AWS::ServiceCatalog::CloudFormationProduct")
    assert len(products) == 4  # endpoint and training queue, per team
    for product in products.values():
        tags = {t["Key"]: t["Value"] for t in product["Properties"]["Tags"]}
        assert tags["sagemaker:studio-visibility"] == "true"
    assert len(template.find_resources("AWS::ServiceCatalog::LaunchRoleConstraint")) == 4
    options = {(p["Properties"]["Key"], p["Properties"]["Value"]) for p in template.find_resources("AWS::ServiceCatalog::TagOption").values()}
    assert {("team", "vision"), ("team", "nlp"), ("team-cost-centre", "cc-vision"), ("team-cost-centre", "cc-nlp")} <= options
    shared = template.find_resources("AWS::ServiceCatalog::PortfolioPrincipalAssociation")
    assert len(shared) == 4  # team role and Studio execution role, per team portfolio


def _product_template(platform, name: str, team: str = "vision") -> Template:
    return Template.from_json(json.loads(_product_path(platform, name, team).read_text()))


def _product_path(platform, name: str, team: str = "vision"):
    from pathlib import Path

    outdir = Path(platform.extra["vending"].node.root.outdir)
    if not list(outdir.glob("*.product.template.json")):
        Template.from_stack(platform.extra["vending"])  # the product templates are written at synth
    (path,) = outdir.glob(f"*Portfolio{team}{name}*.product.template.json")
    return path


def test_product_templates_have_validated_parameters(platform, templates):
    endpoint = _product_template(platform, "EndpointProductStack")
    params = endpoint.to_json()["Parameters"]
    assert params["InstanceType"]["AllowedValues"][0].startswith("ml.")
    assert "AllowedPattern" in params["ModelDataUrl"] and "AllowedPattern" in params["ExecutionRoleArn"]
    endpoint.has_resource_properties("AWS::SageMaker::Model", {"EnableNetworkIsolation": True})
    queue = _product_template(platform, "TrainingQueueProductStack")
    assert queue.to_json()["Parameters"]["Priority"]["MaxValue"] == 100


def test_endpoint_product_accepts_only_its_teams_execution_role(platform):
    import re

    pattern = _product_template(platform, "EndpointProductStack", "vision").to_json()["Parameters"]["ExecutionRoleArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, "arn:aws:iam::222222222222:role/mlinfra/team/vision/mlinfra-prod-team-vision-Exec-1")
    assert not re.fullmatch(pattern, "arn:aws:iam::222222222222:role/mlinfra/team/nlp/mlinfra-prod-team-nlp-Exec-1")
    assert not re.fullmatch(pattern, "arn:aws:iam::222222222222:role/Admin")


def test_endpoint_product_defaults_to_ebs_and_sets_the_volume_key_only_where_allowed(platform):
    """sagemaker.no-volume-kms-with-instance-storage: KmsKeyId only for EBS-backed instance types; the default type is
    EBS-backed; the product's key is deleted with the product (7-day window) and limits grants to AWS services."""
    from mlinfra.domain.hosting_instances import family_of

    tpl = _product_template(platform, "EndpointProductStack").to_json()
    types = tpl["Parameters"]["InstanceType"]
    assert not family_of(types["Default"]).local_storage
    local = sorted(t for t in types["AllowedValues"] if family_of(t).local_storage)
    assert local, "the offer includes instance-storage types (g5)"
    cond = tpl["Conditions"]["EbsBacked"]
    equals = sorted(e["Fn::Equals"][1] for e in cond["Fn::Not"][0]["Fn::Or"])
    assert equals == local
    (config,) = [r for r in tpl["Resources"].values() if r["Type"] == "AWS::SageMaker::EndpointConfig"]
    assert config["Properties"]["KmsKeyId"]["Fn::If"][0] == "EbsBacked"
    assert config["Properties"]["KmsKeyId"]["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    (key,) = [r for r in tpl["Resources"].values() if r["Type"] == "AWS::KMS::Key"]
    assert key["DeletionPolicy"] == "Delete" and key["Properties"]["PendingWindowInDays"] == 7
    assert key["Condition"] == "EbsBacked"
    sids = {s.get("Sid") for s in key["Properties"]["KeyPolicy"]["Statement"]}
    assert "GrantsOnlyForAwsResources" in sids


def test_products_are_sagemaker_project_templates_tagged_for_their_team(platform):
    """iam.sagemaker-project-template: the SageMakerProjectName/Id parameters; every taggable resource carries the
    team's tag (the launch role creates and changes only resources with it)."""
    for name in ("EndpointProductStack", "TrainingQueueProductStack"):
        tpl = _product_template(platform, name, "nlp").to_json()
        assert {"SageMakerProjectName", "SageMakerProjectId"} <= set(tpl["Parameters"])
        for lid, res in tpl["Resources"].items():
            tags = res["Properties"].get("Tags")
            if tags is None:
                continue
            found = {t["Key"]: t["Value"] for t in tags} if isinstance(tags, list) else tags
            assert found.get("team") == "nlp", (name, lid)


def test_endpoint_product_launches_in_the_emulator(platform):
    """The vision endpoint product template, deployed into moto's CloudFormation with a team execution role."""
    import boto3
    from moto import mock_aws

    from mlinfra.local_aws.emulator import rewrite_template

    rewrite = rewrite_template(json.loads(_product_path(platform, "EndpointProductStack").read_text()))
    assert not rewrite.skipped, rewrite.skipped  # every resource of the product is emulated (KMS tags reshaped)
    body = json.dumps(rewrite.template)
    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        role = iam.create_role(RoleName="exec", Path="/mlinfra/team/vision/",
                               AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))["Role"]
        cfn = boto3.client("cloudformation", region_name="us-east-1")
        params = {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1",
                  "ModelDataUrl": "s3://mlinfra-prod-models/vision/model.tar.gz", "ExecutionRoleArn": role["Arn"],
                  "InstanceType": "ml.m5.xlarge"}
        cfn.create_stack(StackName="SC-123456789012-pp-abc", TemplateBody=body,
                         Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])
        stack = cfn.describe_stacks(StackName="SC-123456789012-pp-abc")["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        types = {r["ResourceType"] for r in cfn.list_stack_resources(StackName="SC-123456789012-pp-abc")["StackResourceSummaries"]}
        assert {"AWS::SageMaker::Model", "AWS::SageMaker::EndpointConfig", "AWS::SageMaker::Endpoint", "AWS::KMS::Key"} <= types
        config = boto3.client("sagemaker", region_name="us-east-1").list_endpoint_configs()["EndpointConfigs"]
        assert len(config) == 1


# --- negative: configuration ------------------------------------------------------------------------


def _doc(*teams) -> dict:
    return {"environments": {"prod": {"vending": {"teams": list(teams)}}}}


def _team(name="a-team", **kw) -> dict:
    return {"name": name, "cost_centre": "cc", **kw}


def test_config_rejects_duplicate_team_names():
    with pytest.raises(ConfigError, match=r"vending.teams: duplicate team name\(s\) \['vision'\]"):
        load_config(_doc(_team("vision"), _team("vision")), "prod")


def test_config_rejects_overlapping_write_prefixes():
    with pytest.raises(ConfigError, match="write prefixes of 'aaa' and 'bbb' overlap, got: 'curated/shared/' and 'curated/shared/x/'"):
        load_config(_doc(_team("aaa", write_prefixes=["curated/shared/"]),
                         _team("bbb", write_prefixes=["curated/shared/x/"])), "prod")


def test_config_rejects_a_quota_below_one_instance():
    with pytest.raises(ConfigError, match=r"max_vcpus: below one instance of an allowed family .*'p4d': 96.*got: 64"):
        load_config(_doc(_team(instance_families=["p4d"], max_vcpus=64)), "prod")


def test_config_rejects_an_unknown_instance_family():
    with pytest.raises(ConfigError, match=r"instance_families: unknown instance family \['x9'\]"):
        load_config(_doc(_team(instance_families=["x9"])), "prod")


def test_config_lists_every_team_error_at_once():
    with pytest.raises(ConfigError) as err:
        load_config(_doc(_team("A", write_prefixes=["nozone/x/"], admin_principals=["bob"], monthly_budget_usd=0)), "prod")
    assert len(err.value.errors) == 4


# --- negative: construct ----------------------------------------------------------------------------


def _construct(**kw):
    from aws_cdk import aws_ec2 as ec2

    from mlinfra.constructs.data_lake import DataLake

    stack = new_stack()
    lake = DataLake(stack, "Lake")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2)
    args = {"team_name": "team-a", "cost_centre": "cc", "lake": lake, "vpc": vpc, **kw}
    return TeamEnvironment(stack, "Team", **args)


@pytest.mark.parametrize("kwargs, message", [
    ({"team_name": "Team_A"}, "team_name must be 3-22 lowercase"),
    ({"instance_families": ["x9"]}, r"instance_families: unknown instance family \['x9'\]"),
    ({"instance_families": []}, "instance_families must list at least one"),
    ({"instance_families": ["p5e"], "max_vcpus": 96}, r"max_vcpus is below one instance of an allowed family .*'p5e': 192.*got: 96"),
    ({"write_prefixes": ["bogus/a/"]}, "write_prefixes must be <zone>/<prefix>/"),
    ({"read_prefixes": ["raw/no-slash"]}, "read_prefixes must be one or more path segments"),
    ({"monthly_budget_usd": 0}, "monthly_budget_usd must be positive"),
    ({"budget_thresholds_percent": [10, 20, 30, 40, 50, 60]}, "budget_thresholds_percent must be 1-5 values"),
])
def test_team_environment_rejects_bad_props(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _construct(**kwargs)


def test_overlapping_teams_are_rejected_by_the_vending_stack():
    from mlinfra.constructs.team_environment import validate_team_write_overlap

    a = _construct(write_prefixes=["curated/x/"])
    b = _construct(team_name="team-b", write_prefixes=["curated/x/y/"])
    with pytest.raises(ValueError, match="write_prefixes of teams 'team-a' and 'team-b' overlap"):
        validate_team_write_overlap([a, b])
    with pytest.raises(ValueError, match=r"team_name must be unique across teams, got duplicates: \['team-a'\]"):
        validate_team_write_overlap([a, _construct()])


@pytest.mark.policy
def test_local_teams_are_nag_clean(local_config, tmp_path):
    from mlinfra.app import create_app

    app, platform = create_app(config=local_config, nag=True, outdir=str(tmp_path))
    app.synth()
    assert {"team-vision", "team-nlp", "vending"} <= set(platform.extra)


@pytest.mark.slow
def test_product_templates_are_cfn_lint_clean(platform, templates):
    from pathlib import Path

    from cfnlint.api import ManualArgs, lint_file

    outdir = Path(platform.extra["vending"].node.root.outdir)
    paths = sorted(outdir.glob("*.product.template.json"))
    assert len(paths) == 4
    for path in paths:
        matches = lint_file(path, config=ManualArgs(ignore_checks=["W3005"]))
        assert not matches, [str(m) for m in matches]


@pytest.mark.policy
def test_only_the_expected_wildcards_are_acknowledged(tmp_path):
    """A wildcard the team construct did not declare (here s3:* on *) still fails the nag synth."""
    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_iam as iam

    from mlinfra.app import register_nag
    from mlinfra.constructs.data_lake import DataLake

    app = cdk.App(outdir=str(tmp_path))
    register_nag(app)
    stack = cdk.Stack(app, "Teams", env=cdk.Environment(account="123456789012", region="us-east-1"))
    team = TeamEnvironment(stack, "Team", team_name="team-a", cost_centre="cc", lake=DataLake(stack, "Lake"),
                           vpc=ec2.Vpc(stack, "Vpc", max_azs=2, restrict_default_security_group=False),
                           write_prefixes=["curated/team-a/"])
    team.team_role.add_to_policy(iam.PolicyStatement(actions=["s3:*"], resources=["*"]))
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = (tmp_path / "validation-report.json").read_text()
    assert "AwsSolutions-IAM5[Action::s3:*]" in report
    assert "Action::s3:GetObject*" not in report  # the declared grant wildcards stay acknowledged
