"""A user's own app (examples/local-user-app: imported VPC, two lakes, a serverless endpoint, a PERSISTENT_1
cache, a Batch GPU cluster, a retrain pipeline, a CfnInclude'd YAML template; pinned to account 111111111111 in
eu-west-1; no platform configuration) deployed with ``mlinfra deploy-local`` as a user would: zero workarounds,
a complete report. One kept deploy is shared by the module (one worker: `make test` runs --dist loadfile); the
last tests refuse a second deploy and destroy the kept one, checking that no process is left."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from mlinfra.local_aws.deploy import (
    CONDITION_FALSE,
    CREATED,
    CREATED_API,
    NOT_DEPLOYED,
    REFUSED,
    SKIPPED,
    LocalDeploy,
    LocalDeployError,
    destroy,
)
from mlinfra.local_aws.server import MotoServer, pid_alive

# `make test` runs --dist loadfile, so the module's tests (and its one deploy) stay on one worker. (xdist 3.8's
# loadgroup does not group under pytest 9.2: it sets item._nodeid, which pytest 9 no longer reads.)
pytestmark = [pytest.mark.deploy, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "local-user-app"


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("user-app")
    # Exactly what a user runs (the `mlinfra deploy-local` CLI, in a process of its own), with --keep.
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "mlinfra"), "deploy-local", "--app-dir", str(APP), "--keep", "--json",
         "--workdir", str(workdir)],
        capture_output=True, text=True, timeout=900,
    )
    server = MotoServer.load(workdir / "server.json")
    yield proc, json.loads(proc.stdout or "{}"), server, workdir
    if server is not None and server.is_ours():  # the destroy test normally did this
        server.stop()


def _resources(report):
    return [(s["name"], r) for s in report["stacks"] for r in s["resources"]]


def _by_id(report, logical_prefix):
    return [r for _, r in _resources(report) if r["logical_id"].startswith(logical_prefix)]


def test_deploys_with_zero_workarounds_and_a_complete_report(kept):
    proc, report, server, workdir = kept
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report["state"] == "complete" and report["kept"] and server is not None
    assert {s["name"]: s["outcome"] for s in report["stacks"]} == {"churn-data": "deployed", "churn-ml": "deployed"}
    statuses = {r["status"] for _, r in _resources(report)}
    assert REFUSED not in statuses and NOT_DEPLOYED not in statuses
    # Every template resource is in the report, once.
    for stack in report["stacks"]:
        template = json.loads(next((workdir / "cdk.out").glob(f"{stack['name']}.template.json")).read_text())
        assert sorted(template["Resources"]) == sorted(r["logical_id"] for r in stack["resources"])
    assert json.loads((workdir / "report.json").read_text())["run_id"] == report["run_id"]
    assert report["created_share"] >= 0.9


def test_report_matches_what_the_emulator_holds(kept):
    _, report, server, _ = kept
    cfn = boto3.client("cloudformation", endpoint_url=server.endpoint_url, region_name="eu-west-1",
                       aws_access_key_id="x", aws_secret_access_key="x")
    for stack in report["stacks"]:
        live = {r["LogicalResourceId"] for page in cfn.get_paginator("list_stack_resources").paginate(
            StackName=stack["name"]) for r in page["StackResourceSummaries"]}
        created = {r["logical_id"] for r in stack["resources"] if r["status"] in (CREATED, CREATED_API)}
        not_created = {r["logical_id"] for r in stack["resources"] if r["status"] in (SKIPPED, CONDITION_FALSE)}
        assert created <= live and not (not_created & live)
    api = [r for _, r in _resources(report) if r["status"] == CREATED_API]
    assert api and all(r["read_back"] for r in api)
    assert {"AWS::S3::BucketPolicy", "AWS::CloudWatch::Alarm", "AWS::FSx::FileSystem",
            "AWS::EC2::SecurityGroupEgress"} <= {r["type"] for r in api}


def test_pinned_account_and_region_are_served(kept):
    _, report, server, _ = kept
    assert report["account"] == "111111111111" and report["regions"] == ["eu-west-1"]
    sts = boto3.client("sts", endpoint_url=server.endpoint_url, region_name="eu-west-1",
                       aws_access_key_id="MLINFRALOCAL111111111111", aws_secret_access_key="x")
    assert sts.get_caller_identity()["Account"] == "111111111111"


def test_each_substitution_is_a_note_on_its_resource(kept):
    _, report, _, _ = kept
    notes = {r["logical_id"]: r["note"] for _, r in _resources(report)}
    joined = "\n".join(notes.values())
    assert "imported vpc-0a1b2c3d4e5f67890 stands in as vpc-" in joined
    assert "imported subnet-0a1b2c3d4e5f60001 stands in as subnet-" in joined
    assert "launch template's network-interface groups" in joined  # the EFA compute environment
    assert "reads SSM /aws/service/" in joined  # the node image's SSM-typed parameter
    assert "short-form Fn::GetAtt" in notes["AlertQueueArnParameter"]
    assert "{{resolve:ssm:/org/shared/on-call-email}}" in notes["OnCallParameter"]


def test_condition_false_placeholders_and_dropped_properties_are_told(kept):
    _, report, _, _ = kept
    prod = _by_id(report, "ProdPagerQueue")[0]
    assert prod["status"] == CONDITION_FALSE and "IsProd" in prod["detail"]
    buckets = [r for _, r in _resources(report) if r["type"] == "AWS::S3::Bucket"]
    assert all("the emulator ignored:" in b["note"] and "VersioningConfiguration" in b["note"] for b in buckets)
    skipped_pg = [r for _, r in _resources(report) if r["type"] == "AWS::EC2::PlacementGroup"]
    assert skipped_pg and skipped_pg[0]["status"] == SKIPPED
    assert any("points at placeholder(s)" in r["note"] for _, r in _resources(report)
               if r["type"] == "AWS::Batch::ComputeEnvironment")


def test_platform_smoke_checks_are_not_applicable_and_bucket_checks_pass(kept):
    _, report, _, _ = kept
    smoke = {s["check"]: s for s in report["smoke"]}
    assert smoke["buckets"]["status"] == "passed"
    for name in ("data_lake", "ingestion", "training", "serving", "pipeline", "teams"):
        assert smoke[name]["status"] == "not applicable", smoke[name]


def test_a_second_deploy_while_one_is_kept_is_refused_and_leaves_its_state(kept):
    _, _, server, workdir = kept
    before = (workdir / "server.json").read_text()
    with pytest.raises(LocalDeployError, match="kept local deployment .* still running"):
        LocalDeploy(app_dir=APP, workdir=workdir, quiet=True).run()
    assert (workdir / "server.json").read_text() == before and server.answers()


def test_destroy_after_keep_leaves_no_process(kept):
    _, _, server, workdir = kept
    lines: list[str] = []
    assert destroy(APP, say=lines.append, workdir=workdir) == 0, lines
    assert any("Destroyed every stack" in line for line in lines)
    assert not pid_alive(server.pid)
    assert not (workdir / "server.json").exists()
    assert not [p for p in server.helpers if pid_alive(p)]
