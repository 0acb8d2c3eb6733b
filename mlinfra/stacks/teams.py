"""Team stacks: one ``TeamStack`` per team of ``vending.teams`` and the shared ``VendingStack`` portfolio.

Adding a team to the configuration and deploying vends it; removing one deletes its stack's compute and
roles, while its data (lake prefixes, model registry) is RETAINED.
"""

from __future__ import annotations

from typing import Sequence

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct

from mlinfra.config import PlatformConfig, TeamConfig
from mlinfra.constructs.data_lake import IDataLake
from mlinfra.constructs.network import Network
from mlinfra.constructs.team_environment import TeamEnvironment, TeamPortfolio, validate_team_write_overlap
from mlinfra.stacks.base import PlatformStack


def _principal(arn: str) -> iam.IPrincipal:
    return iam.AccountPrincipal(arn.split(":")[4]) if arn.endswith(":root") else iam.ArnPrincipal(arn)


def validate_team_trust(config: PlatformConfig, team: TeamConfig) -> None:
    """A production team role trusts named principals only: not an empty list, not a whole account."""
    if not config.is_production:
        return
    broad = [a for a in team.admin_principals if a.endswith(":root")]
    if not team.admin_principals or broad:
        raise ValueError(
            f"vending.teams[{team.name}].admin_principals must name the roles (or role ARN patterns, e.g. the IAM "
            f"Identity Center permission-set roles) that administer the team in production, not an empty list or an "
            f"account root, got: {list(team.admin_principals)}"
        )


class TeamStack(PlatformStack):
    """One vended team: ``<prefix>-<env>-team-<name>``."""

    def __init__(self, scope: Construct, *, config: PlatformConfig, team: TeamConfig, lake: IDataLake,
                 network: Network) -> None:
        super().__init__(scope, f"team-{team.name}", config=config,
                         description=f"Team environment {team.name} (cost centre {team.cost_centre})")
        validate_team_trust(config, team)
        self.team = TeamEnvironment(
            self,
            "Team",
            team_name=team.name,
            cost_centre=team.cost_centre,
            lake=lake,
            vpc=network.vpc,
            vpc_subnets=network.private_subnet_selection,
            read_prefixes=team.read_prefixes,
            write_prefixes=team.write_prefixes,
            admin_principals=[_principal(a) for a in team.admin_principals if "*" not in a],
            admin_principal_patterns=[a for a in team.admin_principals if "*" in a],
            instance_families=team.instance_families,
            max_vcpus=team.max_vcpus,
            monthly_budget_usd=team.monthly_budget_usd,
            budget_thresholds_percent=team.budget_thresholds_percent,
            alert_emails=team.alert_emails,
            model_package_group_name=config.resource_name(team.name),
        )
        cdk.CfnOutput(self, "TeamRoleArn", value=self.team.team_role.role_arn)
        cdk.CfnOutput(self, "ExecutionRoleArn", value=self.team.execution_role.role_arn)
        cdk.CfnOutput(self, "PermissionsBoundaryArn", value=self.team.permissions_boundary.managed_policy_arn)
        cdk.CfnOutput(self, "BudgetTopicArn", value=self.team.alert_topic.topic_arn)


class VendingStack(PlatformStack):
    """The Service Catalog portfolio shared with every team: ``<prefix>-<env>-vending``."""

    def __init__(self, scope: Construct, *, config: PlatformConfig, teams: Sequence[TeamEnvironment]) -> None:
        super().__init__(scope, "vending", config=config, description="Self-service Service Catalog portfolio")
        validate_team_write_overlap(list(teams))
        self.portfolio = TeamPortfolio(self, "Portfolio", teams=teams)
        for name, portfolio in self.portfolio.portfolios.items():
            cdk.CfnOutput(self, f"PortfolioId-{name}", value=portfolio.portfolio_id,
                          description=f"Service Catalog portfolio of team {name}")


def build_teams(scope: Construct, config: PlatformConfig, lake: IDataLake, network: Network) -> dict[str, cdk.Stack]:
    """Every team stack of ``config.vending`` and, when asked, the portfolio stack: name -> stack."""
    stacks: dict[str, cdk.Stack] = {}
    teams = []
    for team in config.vending.teams:
        stack = TeamStack(scope, config=config, team=team, lake=lake, network=network)
        stacks[f"team-{team.name}"] = stack
        teams.append(stack.team)
    validate_team_write_overlap(teams)
    if teams and config.vending.service_catalog:
        stacks["vending"] = VendingStack(scope, config=config, teams=teams)
    return stacks
