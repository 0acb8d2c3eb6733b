"""The teams smoke plug-in, run against moto in-process with a small fake ctx."""

from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from mlinfra.local_aws.smoke import teams as smoke


def _ctx(config):
    return SimpleNamespace(client=lambda name: boto3.client(name, region_name="us-east-1"), config=config)


def _make_team(iam, team: str, boundary: bool = True) -> None:
    path = f"/mlinfra/team/{team}/"
    policy = iam.create_policy(PolicyName=f"{team}-boundary", Path=path, PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}))
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                                "Principal": {"Service": "sagemaker.amazonaws.com"}}]})
    for name in ("team", "exec", "job"):
        kwargs = {"PermissionsBoundary": policy["Policy"]["Arn"]} if boundary or name != "job" else {}
        iam.create_role(RoleName=f"{team}-{name}", Path=path, AssumeRolePolicyDocument=trust, **kwargs)


def test_smoke_passes_when_every_team_role_is_bounded(local_config):
    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        for team in local_config.vending.teams:
            _make_team(iam, team.name)
        lines = smoke.run(_ctx(local_config))
    assert [line.split(":")[0] for line in lines] == ["team vision", "team nlp"]
    assert "3 roles under /mlinfra/team/vision/, all bounded by vision-boundary" in lines[0]


def test_smoke_fails_on_a_role_without_the_boundary(local_config):
    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        _make_team(iam, "vision")
        _make_team(iam, "nlp", boundary=False)
        with pytest.raises(AssertionError, match="team nlp: role nlp-job has no permissions boundary"):
            smoke.run(_ctx(local_config))


def test_smoke_fails_when_a_team_is_missing(local_config):
    with mock_aws():
        with pytest.raises(AssertionError, match="team vision: expected its team, SageMaker execution and Batch job roles"):
            smoke.run(_ctx(local_config))
