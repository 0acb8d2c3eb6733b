"""Every stack of the local environment deployed into a moto server with the CDK CLI (one deploy shared by
all tests of this module), the report checked against what the emulator really holds."""

from __future__ import annotations

import json

import boto3
import pytest

from mlinfra.local_aws.deploy import CREATED_API, SKIPPED, LocalDeploy
from mlinfra.local_aws.server import MotoServer

# `make test` runs --dist loadfile, so the module's tests (and its one deploy) stay on one worker. (xdist 3.8's
# loadgroup does not group under pytest 9.2: it sets item._nodeid, which pytest 9 no longer reads.)
pytestmark = [pytest.mark.deploy, pytest.mark.slow]

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


# Session scope: one deploy per test run even when xdist interleaves this module with others on its worker.
@pytest.fixture(scope="session")
def deployed(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("local-aws")
    lines: list[str] = []
    run = LocalDeploy(app_dir=ROOT, keep=True, say=lines.append, workdir=workdir)
    report = run.run()
    server = MotoServer.load(run.state_file)
    yield report, server, run, lines
    server.stop()


def cfn(server):
    return boto3.client("cloudformation", endpoint_url=server.endpoint_url, region_name="us-east-1")


def test_every_stack_deployed(deployed, local_config):
    report, server, run, _ = deployed
    synthesized = {s.name for s in run.stacks_in_assembly(run.assembly)}
    assert {s.name for s in report.stacks} == synthesized
    assert {local_config.stack_name("network"), local_config.stack_name("data-lake")} <= synthesized
    live = {s["StackName"]: s["StackStatus"] for s in cfn(server).describe_stacks()["Stacks"]}
    for name in synthesized:
        assert live[name] == "CREATE_COMPLETE", (name, live.get(name))
    assert {s.outcome for s in report.stacks} == {"deployed"} and report.state == "complete"


def test_report_matches_emulator_exactly(deployed):
    report, server, _, _ = deployed
    client = cfn(server)
    for stack in report.stacks:
        live = {r["LogicalResourceId"] for r in client.list_stack_resources(StackName=stack.name)["StackResourceSummaries"]}
        created = {r.logical_id for r in stack.resources if r.is_created}
        skipped = {r.logical_id for r in stack.resources if r.status == SKIPPED}
        assert created <= live, f"{stack.name}: reported created but absent: {created - live}"
        assert not (skipped & live), f"{stack.name}: reported skipped but present: {skipped & live}"


def test_lake_buckets_exist_encrypted(deployed, local_config):
    report, server, _, _ = deployed
    outputs = next(s.outputs for s in report.stacks if s.name == local_config.stack_name("data-lake"))
    s3 = boto3.client("s3", endpoint_url=server.endpoint_url, region_name="us-east-1")
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    for zone in ("Landing", "Raw", "Curated", "Features", "Models", "Artifacts"):
        bucket = outputs[f"{zone}BucketName"]
        assert bucket in names
        rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"


def test_skipped_resources_have_reasons_and_api_types_are_created_and_read_back(deployed):
    report, _, _, _ = deployed
    everything = [r for s in report.stacks for r in s.resources]
    skipped = [r for r in everything if r.status == SKIPPED]
    assert skipped and all(r.detail for r in skipped)
    types = {r.type for r in skipped}
    assert "AWS::S3::Bucket" not in types and "AWS::S3::BucketPolicy" not in types
    api = [r for r in everything if r.status == CREATED_API]
    assert {"AWS::S3::BucketPolicy", "AWS::Glue::Database", "AWS::CloudWatch::Alarm"} <= {r.type for r in api}
    assert all(r.read_back for r in api), [r.logical_id for r in api if not r.read_back]


def test_created_share_of_the_reference_app_is_at_least_90_percent(deployed):
    report, _, _, _ = deployed
    assert report.created_share >= 0.90, (report.created, report.skipped)


def test_smoke_checks_pass(deployed):
    report, _, _, lines = deployed
    failed = [s for s in report.smoke if s["status"] == "failed"]
    assert not failed, json.dumps(failed, indent=1)
    assert any(s["check"] == "data_lake" for s in report.smoke)
    assert any("wrote and read back" in line for line in lines)


def test_report_file_written(deployed):
    report, _, run, _ = deployed
    data = json.loads((run.workdir / "report.json").read_text())
    assert data["state"] == "complete" and data["run_id"] == report.run_id
    assert data["created"] > 250 and data["created_share"] >= 0.9
