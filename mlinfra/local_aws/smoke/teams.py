"""Smoke check of the vended teams (ORDER 60): every team's roles exist under its IAM path, each carries
the team's permissions boundary, and its Batch job queue is there."""

from __future__ import annotations

ORDER = 60


def _team_path(team: str) -> str:
    return f"/mlinfra/team/{team}/"


def run(ctx) -> list[str]:
    teams = list(ctx.config.vending.teams)
    if not teams:
        return []  # none configured: "not applicable", never "passed"
    iam = ctx.client("iam")
    lines: list[str] = []
    for team in teams:
        path = _team_path(team.name)
        roles = [r for page in iam.get_paginator("list_roles").paginate(PathPrefix=path) for r in page["Roles"]]
        if len(roles) < 3:
            raise AssertionError(
                f"team {team.name}: expected its team, SageMaker execution and Batch job roles under {path}, "
                f"found {sorted(r['RoleName'] for r in roles)}"
            )
        boundaries = set()
        for role in roles:
            detail = iam.get_role(RoleName=role["RoleName"])["Role"]
            arn = (detail.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
            if not arn:
                raise AssertionError(f"team {team.name}: role {role['RoleName']} has no permissions boundary")
            boundaries.add(arn)
        if len(boundaries) != 1 or f":policy{path}" not in next(iter(boundaries)):
            raise AssertionError(f"team {team.name}: roles must share the team's boundary under {path}, got {sorted(boundaries)}")
        policy = iam.get_policy(PolicyArn=next(iter(boundaries)))["Policy"]
        line = (f"team {team.name}: {len(roles)} roles under {path}, all bounded by {policy['PolicyName']}")
        queues = _team_queues(ctx, team.name)
        if queues is not None:
            line += f"; Batch queue(s) {queues}"
        lines.append(line)
    return lines


def _team_queues(ctx, team: str) -> list[str] | None:
    """Names of the team's job queues (None when Batch cannot be asked)."""
    try:
        batch = ctx.client("batch")
        queues = batch.describe_job_queues()["jobQueues"]
    except Exception:  # Batch is optional for this check: the roles are what it proves
        return None
    # Tagged team=<team>, or (the emulator drops job queue tags) named after the team's stack.
    return sorted(q["jobQueueName"] for q in queues
                  if (q.get("tags") or {}).get("team") == team or f"-team-{team}-" in q["jobQueueName"])
