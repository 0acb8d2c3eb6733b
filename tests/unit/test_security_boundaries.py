"""Team isolation, tried and refused: each test reads the synthesized prod policies (both teams, the portfolio),
resolves them to concrete ARNs and evaluates a crossing with the IAM evaluator (conditions included,
``mlinfra.domain.iam_eval``). A crossing must be refused; the team's own request must be allowed, so a test
never passes because nothing is allowed at all."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mlinfra.domain.iam_eval import ACCOUNT, REGION, Assembly, Request, allowed, evaluate, statements_of

PROD_ACCOUNT = "222222222222"
SSO = "arn:aws:iam::{acct}:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_{set}_0123456789abcdef"


@pytest.fixture(scope="module")
def assembly(prod_config, tmp_path_factory):
    from mlinfra.app import create_app

    outdir = tmp_path_factory.mktemp("isolation")
    app, _platform = create_app(config=prod_config, nag=False, outdir=str(outdir))
    app.synth()
    templates = {p.name.removesuffix(".template.json"): json.loads(p.read_text()) for p in outdir.glob("*.template.json")}
    return Assembly(templates, account=PROD_ACCOUNT)


class Principal:
    """One role of the assembly: its identity statements (inline and attached policies), trust and boundary."""

    def __init__(self, assembly: Assembly, template: str, predicate) -> None:
        tpl = assembly.templates[template]
        matches = [k for k, r in tpl["Resources"].items() if r["Type"] == "AWS::IAM::Role" and predicate(k, r)]
        assert len(matches) == 1, matches
        self.logical_id = matches[0]
        role = assembly.role(template, self.logical_id)
        self.arn, self.identity, self.trust, self.boundary = role.arn, role.identity, role.trust, role.boundary

    def can(self, action: str, resource: str = "*", **context) -> bool:
        return allowed(self.identity, Request(action, resource, context), boundary=self.boundary)


def _team_role(assembly, team: str, kind: str) -> Principal:
    return Principal(assembly, f"mlinfra-prod-team-{team}",
                     lambda k, r: r["Properties"].get("Path") == f"/mlinfra/team/{team}/" and k.startswith(f"TeamRoles{kind}"))


def _launch_role(assembly, team: str) -> Principal:
    return Principal(assembly, "mlinfra-prod-vending", lambda k, r: r["Properties"].get("Path") == f"/mlinfra/launch/{team}/")


def _arn(service: str, resource: str, account: str = PROD_ACCOUNT) -> str:
    return f"arn:aws:{service}:{REGION}:{account}:{resource}"


# --- 1. the launch role acts for its own team only ---------------------------------------------------------------


@pytest.mark.parametrize("team,other", [("vision", "nlp"), ("nlp", "vision")])
def test_launch_role_passes_only_its_own_teams_execution_role(assembly, team, other):
    launch = _launch_role(assembly, team)
    own = _team_role(assembly, team, "SageMakerExecutionRole").arn
    foreign = _team_role(assembly, other, "SageMakerExecutionRole").arn
    passed = {"iam:PassedToService": "sagemaker.amazonaws.com"}
    assert launch.can("iam:PassRole", own, **passed)
    assert not launch.can("iam:PassRole", foreign, **passed)
    assert not launch.can("iam:PassRole", _team_role(assembly, team, "TeamRole").arn, **passed)


@pytest.mark.parametrize("action", ["sagemaker:CreateEndpoint", "sagemaker:CreateModel", "kms:CreateKey"])
def test_launch_role_creates_only_resources_tagged_with_its_team(assembly, action):
    launch = _launch_role(assembly, "vision")
    resource = "*" if action.startswith("kms") else _arn("sagemaker", "endpoint/x" if "Endpoint" in action else "model/x")
    assert launch.can(action, resource, **{"aws:RequestTag/team": "vision"})
    assert not launch.can(action, resource, **{"aws:RequestTag/team": "nlp"})
    assert not launch.can(action, resource)


@pytest.mark.parametrize("action", ["sagemaker:DeleteEndpoint", "sagemaker:UpdateEndpoint", "kms:ScheduleKeyDeletion"])
def test_launch_role_changes_only_its_teams_resources(assembly, action):
    launch = _launch_role(assembly, "vision")
    resource = _arn("kms", "key/1234") if action.startswith("kms") else _arn("sagemaker", "endpoint/nlp-serving")
    assert not launch.can(action, resource, **{"aws:ResourceTag/team": "nlp"})
    assert launch.can(action, resource, **{"aws:ResourceTag/team": "vision"})


def test_launch_role_queues_only_on_its_teams_compute_environment(assembly):
    templates, resolver = assembly.templates, assembly.resolver
    launch = _launch_role(assembly, "vision")

    def ce(team):
        tpl = f"mlinfra-prod-team-{team}"
        (lid,) = [k for k, r in templates[tpl]["Resources"].items() if r["Type"] == "AWS::Batch::ComputeEnvironment"]
        return resolver.resolve({"Ref": lid}, tpl)

    assert launch.can("batch:CreateJobQueue", ce("vision"), **{"aws:RequestTag/team": "vision"})
    assert not launch.can("batch:CreateJobQueue", ce("nlp"), **{"aws:RequestTag/team": "vision"})


def test_launch_role_runs_only_service_catalog_stacks(assembly):
    launch = _launch_role(assembly, "vision")
    assert launch.can("cloudformation:CreateStack", _arn("cloudformation", "stack/SC-222222222222-pp-abc/1"))
    assert not launch.can("cloudformation:CreateStack", _arn("cloudformation", "stack/mlinfra-prod-data-lake/1"))
    assert not launch.can("s3:GetObject", "arn:aws:s3:::mlinfra-prod-raw/dataset=x/file")
    assert launch.can("s3:GetObject", "arn:aws:s3:::sc-templates/x", **{"s3:ExistingObjectTag/servicecatalog:provisioning": "true"})


def test_each_team_has_its_own_portfolio_shared_with_its_own_roles_only(assembly):
    templates, resolver = assembly.templates, assembly.resolver
    vending = templates["mlinfra-prod-vending"]["Resources"]
    portfolios = {k for k, r in vending.items() if r["Type"] == "AWS::ServiceCatalog::Portfolio"}
    assert len(portfolios) == 2
    shared: dict[str, set[str]] = {}
    for r in vending.values():
        if r["Type"] == "AWS::ServiceCatalog::PortfolioPrincipalAssociation":
            arn = resolver.resolve(r["Properties"]["PrincipalARN"], "mlinfra-prod-vending")
            shared.setdefault(r["Properties"]["PortfolioId"]["Ref"], set()).add(arn)
    by_team = {re.search(r"/mlinfra/team/([a-z-]+)/", next(iter(v))).group(1): v for v in shared.values()}
    for team, arns in by_team.items():
        assert arns == {_team_role(assembly, team, "TeamRole").arn, _team_role(assembly, team, "SageMakerExecutionRole").arn}
    constraints = [r for r in vending.values() if r["Type"] == "AWS::ServiceCatalog::LaunchRoleConstraint"]
    assert len(constraints) == 4  # two products x two team portfolios, each with its team's launch role


# --- 2. the boundary holds the team to its own resources -----------------------------------------------------------


@pytest.mark.parametrize("action,kind", [
    ("sagemaker:CreateTrainingJob", "training-job"), ("sagemaker:DeleteEndpoint", "endpoint"),
    ("sagemaker:UpdateEndpoint", "endpoint"), ("sagemaker:CreateModel", "model"),
])
def test_boundary_denies_sagemaker_on_another_teams_resources(assembly, action, kind):
    team = _team_role(assembly, "vision", "TeamRole")
    assert team.boundary is not None
    assert allowed(team.boundary, Request(action, _arn("sagemaker", f"{kind}/vision-run-1")))
    assert not allowed(team.boundary, Request(action, _arn("sagemaker", f"{kind}/nlp-run-1")))
    assert team.can(action, _arn("sagemaker", f"{kind}/vision-run-1"))
    assert not team.can(action, _arn("sagemaker", f"{kind}/nlp-run-1"))


@pytest.mark.parametrize("action", ["servicecatalog:CreatePortfolio", "servicecatalog:AssociatePrincipalWithPortfolio",
                                    "servicecatalog:CreateConstraint", "servicecatalog:UpdateConstraint",
                                    "servicecatalog:CreateProvisioningArtifact", "sagemaker:CreateDomain"])
def test_boundary_allows_no_service_catalog_or_sagemaker_administration(assembly, action):
    for kind in ("TeamRole", "SageMakerExecutionRole", "BatchJobRole"):
        role = _team_role(assembly, "vision", kind)
        assert evaluate(role.boundary, Request(action, "*")) != "Allow", (kind, action)


def test_provisioned_products_of_other_roles_are_out_of_reach(assembly):
    team = _team_role(assembly, "vision", "TeamRole")
    pp = _arn("servicecatalog", "stack/x/pp-123")
    assert team.can("servicecatalog:TerminateProvisionedProduct", pp, **{"servicecatalog:roleLevel": "self"})
    assert not team.can("servicecatalog:TerminateProvisionedProduct", pp, **{"servicecatalog:accountLevel": "self"})


# --- 3. the team role trusts named principals ------------------------------------------------------------------------


def test_team_role_trusts_only_its_permission_set_roles(assembly):
    team = _team_role(assembly, "vision", "TeamRole")
    own = SSO.format(acct=PROD_ACCOUNT, set="MLVisionTeam")
    for principal, ok in ((own, True), (SSO.format(acct=PROD_ACCOUNT, set="MLNlpTeam"), False),
                          (f"arn:aws:iam::{PROD_ACCOUNT}:role/Admin", False),
                          (SSO.format(acct="333333333333", set="MLVisionTeam"), False)):
        req = Request("sts:AssumeRole", principal=principal, context={"aws:PrincipalArn": principal})
        assert (evaluate(team.trust, req) == "Allow") is ok, principal


def test_production_refuses_a_team_without_named_administrators(prod_config):
    import dataclasses

    import aws_cdk as cdk

    from mlinfra.stacks.teams import validate_team_trust

    team = dataclasses.replace(prod_config.vending.teams[0], admin_principals=[])
    with pytest.raises(ValueError, match=r"vending.teams\[vision\].admin_principals must name the roles"):
        validate_team_trust(prod_config, team)
    root = dataclasses.replace(team, admin_principals=[f"arn:aws:iam::{PROD_ACCOUNT}:root"])
    with pytest.raises(ValueError, match="not an empty list or an account root"):
        validate_team_trust(prod_config, root)
    assert cdk  # imported for the synth-free check above


# --- 9, 11. a team can provision its products and run its first job --------------------------------------------------


def test_team_role_can_search_and_provision_its_portfolio(assembly):
    team = _team_role(assembly, "vision", "TeamRole")
    for action in ("servicecatalog:SearchProducts", "servicecatalog:ListLaunchPaths",
                   "servicecatalog:DescribeProvisioningParameters", "servicecatalog:ProvisionProduct"):
        assert team.can(action, _arn("catalog", "product/prod-abc")), action


def test_team_role_registers_and_submits_its_job_definitions(assembly):
    team = _team_role(assembly, "vision", "TeamRole")
    own = _arn("batch", "job-definition/vision-train:1")
    assert team.can("batch:RegisterJobDefinition", own, **{"aws:RequestTag/team": "vision"})
    assert not team.can("batch:RegisterJobDefinition", _arn("batch", "job-definition/nlp-train:1"),
                        **{"aws:RequestTag/team": "vision"})
    assert team.can("batch:SubmitJob", own)
    assert not team.can("batch:TerminateJob", _arn("batch", "job/123"), **{"aws:ResourceTag/team": "nlp"})


def test_execution_role_writes_its_logs_and_pulls_images(assembly):
    role = _team_role(assembly, "vision", "SageMakerExecutionRole")
    stream = _arn("logs", "log-group:/aws/sagemaker/TrainingJobs:log-stream:vision-run-1/algo-1-1700000000")
    assert role.can("logs:PutLogEvents", stream)
    assert not role.can("logs:PutLogEvents", stream.replace("vision-run", "nlp-run"))
    assert role.can("logs:PutLogEvents", _arn("logs", "log-group:/aws/sagemaker/Endpoints/vision-ep:log-stream:AllTraffic/i-1"))
    assert role.can("ecr:GetAuthorizationToken", "*")
    assert role.can("ecr:BatchGetImage", _arn("ecr", "repository/vision/trainer"))
    assert role.can("ecr:BatchGetImage", _arn("ecr", "repository/pytorch-training", account="763104351884"))
    assert not role.can("ecr:BatchGetImage", _arn("ecr", "repository/nlp/trainer"))


def test_evaluator_denies_what_no_statement_allows():
    """The evaluator itself: implicit deny, explicit deny wins, an unknown operator raises."""
    allow = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
    assert evaluate([allow], Request("s3:GetObject", "arn:aws:s3:::b/k")) == "Allow"
    assert evaluate([allow], Request("s3:PutObject", "arn:aws:s3:::b/k")) == "ImplicitDeny"
    deny = {**allow, "Effect": "Deny"}
    assert evaluate([allow, deny], Request("s3:GetObject", "arn:aws:s3:::b/k")) == "Deny"
    with pytest.raises(ValueError, match="not supported"):
        evaluate([{**allow, "Condition": {"NumericLessThan": {"s3:max-keys": "10"}}}],
                 Request("s3:GetObject", "arn:aws:s3:::b/k", {"s3:max-keys": "5"}))
    assert ACCOUNT and Path  # module constants used by other tests


# --- 5. confused deputy: every service principal in a resource policy is pinned to this account -------------------

_POLICY_PROPERTY = {"AWS::KMS::Key": "KeyPolicy", "AWS::SQS::QueuePolicy": "PolicyDocument",
                    "AWS::SNS::TopicPolicy": "PolicyDocument", "AWS::S3::BucketPolicy": "PolicyDocument"}
#: Condition keys that tie a service's request to this account's resources.
_PINNING_KEYS = {"aws:sourceaccount", "aws:sourcearn", "kms:encryptioncontext:aws:logs:arn",
                 "kms:encryptioncontext:aws:states:statemachinearn", "kms:viaservice"}


_PINNED = {"Condition": {"StringEquals": {"aws:SourceAccount": "guarded by a deny"}}}


def _services(st) -> list[str]:
    principal = st.get("Principal")
    services = principal.get("Service") if isinstance(principal, dict) else None
    return [] if not services else services if isinstance(services, list) else [services]


def _pinning(st) -> bool:
    return bool({k.lower() for block in (st.get("Condition") or {}).values() for k in block} & _PINNING_KEYS)


def _service_grants(templates, resolver):
    for name, tpl in templates.items():
        for lid, res in tpl["Resources"].items():
            if res["Type"] in _POLICY_PROPERTY:
                doc = resolver.resolve(res["Properties"].get(_POLICY_PROPERTY[res["Type"]]), name)
                statements = statements_of(doc)
                guarded = {svc for st in statements if st.get("Effect") == "Deny" and _pinning(st)
                           for svc in _services(st)}  # a deny guard pins every allow of that service
                for st in statements:
                    if st.get("Effect") == "Allow":
                        for service in _services(st):
                            yield name, lid, res["Type"], service, (_PINNED if service in guarded else st)
            if res["Type"] == "AWS::Lambda::Permission" and res["Properties"]["Principal"].endswith(".amazonaws.com"):
                props = res["Properties"]
                yield name, lid, res["Type"], props["Principal"], {
                    "Condition": {"X": {k.lower().replace("source", "aws:source"): 1
                                        for k in ("SourceArn", "SourceAccount") if k in props}}}


def test_every_service_principal_grant_is_pinned_to_this_account(assembly):
    """Confused deputy (IAM user guide, "The confused deputy problem"): a service principal granted in a key, queue,
    topic or bucket policy, or a Lambda permission, carries aws:SourceAccount/aws:SourceArn (or the service's
    documented encryption-context condition). The one exception is the rule iam.eventbridge-kms-no-source-keys."""
    from mlinfra.domain.rules import rule

    exempt = rule("iam.eventbridge-kms-no-source-keys")
    templates, resolver = assembly.templates, assembly.resolver
    unpinned = []
    for name, lid, type_, service, st in _service_grants(templates, resolver):
        keys = {k.lower() for block in (st.get("Condition") or {}).values() for k in block}
        if keys & _PINNING_KEYS:
            continue
        if type_ == "AWS::KMS::Key" and service == "events.amazonaws.com":
            continue  # exempt.rule: EventBridge's KMS requests carry no source keys
        unpinned.append(f"{name}/{lid} ({type_}): {service}")
    assert not unpinned, f"{exempt.id}: unpinned service grants:\n" + "\n".join(sorted(unpinned))


def test_eventbridge_deliveries_are_pinned_by_the_queue_and_topic_policies(assembly):
    templates, resolver = assembly.templates, assembly.resolver
    tpl = "mlinfra-prod-ingestion"
    for type_, action in (("AWS::SQS::QueuePolicy", "sqs:SendMessage"), ("AWS::SNS::TopicPolicy", "sns:Publish")):
        docs = [resolver.resolve(r["Properties"]["PolicyDocument"], tpl) for r in templates[tpl]["Resources"].values()
                if r["Type"] == type_]
        statements = [s for d in docs for s in statements_of(d)
                      if any(a.lower() == action.lower() for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))]
        own = f"arn:aws:events:{REGION}:{PROD_ACCOUNT}:rule/landing"
        foreign = f"arn:aws:events:{REGION}:999999999999:rule/attacker"
        for st in statements:
            if st["Effect"] == "Deny":
                res = st["Resource"]
                assert evaluate(statements, Request(action, res, {"aws:SourceArn": foreign},
                                                    principal="events.amazonaws.com")) == "Deny"
                assert evaluate([st], Request(action, res, {"aws:SourceArn": own}, principal="events.amazonaws.com")) != "Deny"
                break
        else:
            pytest.fail(f"no EventBridge guard in the {type_} of {tpl}")


# --- smaller findings of issue 13: data-path rules with DLQs, a capped glue, protected lineage, private subnets ------


def _resources(templates, stack: str, type_: str) -> dict[str, dict]:
    return {k: r for k, r in templates[f"mlinfra-prod-{stack}"]["Resources"].items() if r["Type"] == type_}


def test_data_path_rules_have_dead_letter_queues(assembly):
    templates = assembly.templates
    checked = 0
    for stack, needle in (("ingestion", "LandingObjectCreated"), ("ingestion", "StateChangeRule"),
                          ("ingestion", "PromotionSuccessRule"), ("pipeline", "DatasetReadyRule")):
        rules = {k: r for k, r in _resources(templates, stack, "AWS::Events::Rule").items() if needle in k}
        assert rules, (stack, needle)
        for lid, rule in rules.items():
            for target in rule["Properties"]["Targets"]:
                assert "Arn" in target.get("DeadLetterConfig", {}), (stack, lid)
                checked += 1
    assert checked >= 4


def test_landing_glue_concurrency_is_capped_by_its_event_source(assembly):
    templates = assembly.templates
    mappings = _resources(templates, "ingestion", "AWS::Lambda::EventSourceMapping")
    (mapping,) = [m for k, m in mappings.items() if "LandingGlue" in k]
    assert mapping["Properties"]["ScalingConfig"] == {"MaximumConcurrency": 10}
    others = [m for k, m in mappings.items() if "LandingGlue" not in k]  # the DataSync completion handlers
    assert others and all(m["Properties"]["ScalingConfig"] == {"MaximumConcurrency": 2} for m in others)


def test_lineage_table_has_deletion_protection(assembly):
    templates = assembly.templates
    tables = [r for k, r in _resources(templates, "pipeline", "AWS::DynamoDB::GlobalTable").items()
              if "Lineage" in k] or [r for k, r in _resources(templates, "pipeline", "AWS::DynamoDB::Table").items()
                                     if "Lineage" in k]
    assert tables
    for table in tables:
        props = table["Properties"]
        assert props.get("DeletionProtectionEnabled") is True or \
            all(r.get("DeletionProtectionEnabled") for r in props.get("Replicas", [])), props


def test_public_subnets_assign_no_public_addresses(assembly):
    templates = assembly.templates
    subnets = _resources(templates, "network", "AWS::EC2::Subnet")
    public = [r for k, r in subnets.items() if "public" in k.lower()]
    assert public and all(r["Properties"].get("MapPublicIpOnLaunch") is False for r in public)
