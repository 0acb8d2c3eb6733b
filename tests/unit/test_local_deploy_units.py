"""The local deploy's decisions that need no deploy: finding the CDK CLI (item 2), accounts and regions (item 3),
the rewrites by type and property (items 5 and 8), the report's statuses and share, the emulator's identity
(item 7: never adopt a server we did not start), the API models' request fitting."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from mlinfra.local_aws import deploy as deploy_mod
from mlinfra.local_aws import server as server_mod
from mlinfra.local_aws.deploy import (
    CDK_CLI_VERSION,
    CONDITION_FALSE,
    CREATED,
    CREATED_API,
    REFUSED,
    SKIPPED,
    AssemblyStack,
    DeployReport,
    LocalDeploy,
    LocalDeployError,
    ResourceReport,
    StackReport,
    find_cdk_cli,
)
from mlinfra.local_aws.emulator import (
    PLACEHOLDER,
    api_types,
    dynamic_ssm_names,
    imported_ids,
    rewrite_template,
    sagemaker_instance_types,
    ssm_typed_parameters,
)
from mlinfra.local_aws.server import MotoServer, ServerError

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------- item 2
def test_cdk_cli_pin_matches_package_json():
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"].get("aws-cdk") or \
        json.loads((ROOT / "package.json").read_text())["dependencies"]["aws-cdk"]
    assert CDK_CLI_VERSION == pinned.lstrip("^~")


def test_cdk_cli_missing_says_the_exact_install_command(tmp_path, monkeypatch):
    monkeypatch.delenv("MLINFRA_CDK_CLI", raising=False)
    monkeypatch.setattr(deploy_mod, "_package_root", lambda: tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalDeployError, match=rf"npm install --global aws-cdk@{CDK_CLI_VERSION}"):
        find_cdk_cli(tmp_path)


def test_cdk_cli_found_on_path_outside_the_repository(tmp_path, monkeypatch):
    monkeypatch.delenv("MLINFRA_CDK_CLI", raising=False)
    monkeypatch.setattr(deploy_mod, "_package_root", lambda: tmp_path / "site-packages")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cdk = bin_dir / "cdk"
    cdk.write_text("#!/bin/sh\n")
    cdk.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert find_cdk_cli(tmp_path / "app") == [str(cdk)]


def test_cdk_cli_explicit_override_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("MLINFRA_CDK_CLI", str(tmp_path / "nope"))
    with pytest.raises(LocalDeployError, match="MLINFRA_CDK_CLI=.*is not an executable"):
        find_cdk_cli(tmp_path)


def test_cdk_cli_found_in_a_parent_node_modules(tmp_path, monkeypatch):
    monkeypatch.delenv("MLINFRA_CDK_CLI", raising=False)
    cdk = tmp_path / "node_modules" / ".bin" / "cdk"
    cdk.parent.mkdir(parents=True)
    cdk.write_text("")
    app = tmp_path / "apps" / "mine"
    app.mkdir(parents=True)
    assert find_cdk_cli(app) == [str(cdk)]


# ---------------------------------------------------------------------------------------------- item 3
def _stack(name, account="", region=""):
    return AssemblyStack(name, name, name, Path(f"{name}.template.json"), account, region, ())


def test_any_one_account_and_its_regions(tmp_path):
    run = LocalDeploy(app_dir=tmp_path)
    run.check_environments([_stack("a", "111111111111", "eu-west-1"), _stack("b", "111111111111", "eu-central-1")])
    assert run.account == "111111111111" and run.regions == ["eu-central-1", "eu-west-1"]
    run.check_environments([_stack("a", "222222222222", "ap-southeast-2"), _stack("b")])
    assert run.account == "222222222222" and run.default_region == "ap-southeast-2"
    assert run.regions == ["ap-southeast-2"]
    run.check_environments([_stack("agnostic")])
    assert (run.account, run.regions) == ("123456789012", ["us-east-1"])


def test_several_accounts_are_refused_up_front_with_the_emulators_account(tmp_path):
    run = LocalDeploy(app_dir=tmp_path)
    with pytest.raises(LocalDeployError) as err:
        run.check_environments([_stack("dev", "111111111111", "us-east-1"), _stack("prod", "222222222222", "us-east-1")])
    message = str(err.value)
    assert "one AWS account per run" in message and "111111111111: dev" in message and "222222222222: prod" in message
    assert "123456789012" in message and "not bootstrapped" not in message


# ---------------------------------------------------------------------------------------------- items 5 and 8
def test_short_form_getatt_from_cfn_include_is_normalized_and_noted():
    out = rewrite_template({"Resources": {
        "Q": {"Type": "AWS::SQS::Queue", "Properties": {}},
        "P": {"Type": "AWS::SSM::Parameter", "Properties": {"Name": "/x", "Type": "String",
                                                            "Value": {"Fn::GetAtt": "Q.Arn"}}},
    }, "Outputs": {"A": {"Value": {"Fn::GetAtt": "Q.QueueName"}}}})
    assert out.template["Resources"]["P"]["Properties"]["Value"] == {"Fn::GetAtt": ["Q", "Arn"]}
    assert out.template["Outputs"]["A"]["Value"] == {"Fn::GetAtt": ["Q", "QueueName"]}
    assert "short-form Fn::GetAtt" in out.adjusted["P"]


def test_imported_ids_and_ssm_references_are_found_and_substituted_with_notes():
    template = {
        "Parameters": {"Ami": {"Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>", "Default": "/aws/service/ami"}},
        "Resources": {
            "Sg": {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": "d", "VpcId": "vpc-0a1b2c3d4e5f67890"}},
            "Lt": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {"ImageId": {"Ref": "Ami"}}}},
            "P": {"Type": "AWS::SSM::Parameter", "Properties": {"Name": "/p", "Type": "String",
                                                                "Value": "{{resolve:ssm:/org/email}}"}},
        },
    }
    assert imported_ids(template) == {"vpc-0a1b2c3d4e5f67890"}
    assert dynamic_ssm_names(template) == {"/org/email"}
    assert ssm_typed_parameters(template) == {"Ami": "/aws/service/ami"}
    out = rewrite_template(template, stand_ins={"vpc-0a1b2c3d4e5f67890": "vpc-standin"},
                           ssm_values={"/org/email": "stand-in-email", "/aws/service/ami": "ami-12c6146b"},
                           ssm_stand_ins={"/org/email", "/aws/service/ami"})
    res = out.template["Resources"]
    assert res["Sg"]["Properties"]["VpcId"] == "vpc-standin"
    assert "imported vpc-0a1b2c3d4e5f67890 stands in as vpc-standin" in out.adjusted["Sg"]
    assert res["P"]["Properties"]["Value"] == "stand-in-email"
    assert "SSM parameter absent from the emulator" in out.adjusted["P"]
    assert out.template["Parameters"]["Ami"] == {"Type": "String", "Default": "ami-12c6146b",
                                                 "Description": "emulator stand-in for SSM parameter /aws/service/ami"}
    assert "reads SSM /aws/service/ami" in out.adjusted["Lt"]


def test_instance_types_the_emulator_lacks_get_a_noted_stand_in():
    assert "ml.c6i.xlarge" not in sagemaker_instance_types()  # moto's list is stale (LOCAL_AWS.md)
    out = rewrite_template({"Resources": {
        "Cfg": {"Type": "AWS::SageMaker::EndpointConfig", "Properties": {"ProductionVariants": [
            {"VariantName": "A", "InstanceType": "ml.c6i.xlarge"}, {"VariantName": "B", "InstanceType": "ml.m5.large"}]}},
        "Ce": {"Type": "AWS::Batch::ComputeEnvironment", "Properties": {"Type": "managed", "ComputeResources": {
            "Type": "EC2", "InstanceTypes": ["p6e-gb200.36xlarge", "p4d.24xlarge"], "SecurityGroupIds": ["sg-1"]}}},
    }})
    variants = out.template["Resources"]["Cfg"]["Properties"]["ProductionVariants"]
    assert variants[0]["InstanceType"] in sagemaker_instance_types() and variants[1]["InstanceType"] == "ml.m5.large"
    assert "instance type ml.c6i.xlarge is not in the emulator's list" in out.adjusted["Cfg"]
    ce = out.template["Resources"]["Ce"]["Properties"]
    assert ce["Type"] == "MANAGED" and ce["ComputeResources"]["InstanceTypes"][1] == "p4d.24xlarge"
    assert ce["ComputeResources"]["InstanceTypes"][0] != "p6e-gb200.36xlarge"
    assert "instance type p6e-gb200.36xlarge" in out.adjusted["Ce"]


def test_efa_compute_environment_gets_its_launch_templates_groups():
    out = rewrite_template({"Resources": {
        "Lt": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {"NetworkInterfaces": [
            {"DeviceIndex": 0, "InterfaceType": "efa", "Groups": [{"Fn::GetAtt": ["Sg", "GroupId"]}]}]}}},
        "Sg": {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": "d"}},
        "Ce": {"Type": "AWS::Batch::ComputeEnvironment", "Properties": {"Type": "MANAGED", "ComputeResources": {
            "Type": "EC2", "InstanceTypes": ["p4d.24xlarge"], "SecurityGroupIds": [],
            "LaunchTemplate": {"LaunchTemplateId": {"Ref": "Lt"}}}}},
    }})
    groups = out.template["Resources"]["Ce"]["Properties"]["ComputeResources"]["SecurityGroupIds"]
    assert groups == [{"Fn::GetAtt": ["Sg", "GroupId"]}]
    assert "launch template's network-interface groups" in out.adjusted["Ce"]


def test_attribute_the_emulator_lacks_becomes_a_noted_placeholder():
    out = rewrite_template({"Resources": {
        "Ce": {"Type": "AWS::Batch::ComputeEnvironment", "Properties": {"Type": "UNMANAGED"}},
        "P": {"Type": "AWS::SSM::Parameter", "Properties": {"Name": "/x", "Type": "String",
                                                            "Value": {"Fn::GetAtt": ["Ce", "ComputeEnvironmentArn"]}}},
    }})
    assert out.template["Resources"]["P"]["Properties"]["Value"] == PLACEHOLDER.format("Ce-ComputeEnvironmentArn")
    assert "does not provide Ce.ComputeEnvironmentArn" in out.adjusted["P"]


def test_api_created_types_are_kept_and_types_without_any_support_are_skipped():
    kinds = api_types()
    assert {"AWS::CloudWatch::Alarm", "AWS::S3::BucketPolicy", "AWS::Glue::Database", "AWS::FSx::FileSystem",
            "AWS::ApplicationAutoScaling::ScalableTarget", "AWS::SageMaker::ModelPackageGroup"} <= kinds
    out = rewrite_template({"Resources": {
        "A": {"Type": "AWS::CloudWatch::Alarm", "Properties": {}},
        "Pg": {"Type": "AWS::EC2::PlacementGroup", "Properties": {}},  # moto lacks even the API
    }})
    assert "A" in out.template["Resources"] and [s.logical_id for s in out.skipped] == ["Pg"]


# ---------------------------------------------------------------------------------------------- report
def test_share_counts_api_creations_and_leaves_out_false_conditions():
    stack = StackReport("s", outcome="deployed", resources=[
        ResourceReport("a", "AWS::S3::Bucket", CREATED, "b"),
        ResourceReport("b", "AWS::CloudWatch::Alarm", CREATED_API, "x", read_back="alarm x"),
        ResourceReport("c", "AWS::SQS::Queue", CONDITION_FALSE, "Condition IsProd is false"),
        ResourceReport("d", "Custom::X", SKIPPED, "custom"),
        ResourceReport("e", "AWS::Glue::Database", REFUSED, "the emulator's API refused it"),
    ])
    report = DeployReport(run_id="r", app_dir="/x", stacks=[stack])
    assert (report.created, report.created_api, report.skipped) == (2, 1, 2)
    assert report.created_share == pytest.approx(0.5)
    data = report.to_json()
    assert data["by_status"][CONDITION_FALSE] == 1 and data["created_share"] == 0.5


# ---------------------------------------------------------------------------------------------- API models
def test_api_request_is_fitted_to_botocores_model_and_dropped_members_listed():
    from mlinfra.local_aws.api_models import client, fit

    cw = client("cloudwatch", "http://localhost:1", "us-east-1")
    params, dropped = fit(cw, "PutMetricAlarm", {"AlarmName": "a", "Threshold": "5", "EvaluationPeriods": "2",
                                                "ActionsEnabled": "true", "NotAField": 1,
                                                "Dimensions": [{"Name": "n", "Value": 3, "Extra": 1}]})
    assert params["Threshold"] == 5.0 and params["EvaluationPeriods"] == 2 and params["ActionsEnabled"] is True
    assert params["Dimensions"] == [{"Name": "n", "Value": "3"}]
    assert dropped == ["NotAField", "Dimensions[].Extra"]


# ---------------------------------------------------------------------------------------------- item 7
class _Foreign(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = json.dumps({"pid": 1, "token": "someone-else"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_start_never_adopts_a_server_it_did_not_start(tmp_path, monkeypatch):
    """Our process reports a port another server answers on: refused, and our process is stopped."""
    foreign = HTTPServer(("127.0.0.1", 0), _Foreign)
    threading.Thread(target=foreign.serve_forever, daemon=True).start()
    fake = tmp_path / "fake_emulator.py"
    fake.write_text(
        "import sys, time, pathlib\n"
        "ready = pathlib.Path(sys.argv[sys.argv.index('--ready') + 1])\n"
        f"ready.write_text('{foreign.server_port}')\n"
        "time.sleep(60)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setattr(server_mod, "SERVER_MODULE", "fake_emulator")
    spawned = []
    try:
        with pytest.raises(ServerError, match="another server.*not adopting it"):
            MotoServer.start(tmp_path / "work", on_spawn=spawned.append, timeout=30)
    finally:
        foreign.shutdown()
    assert spawned and not server_mod.pid_alive(spawned[0].pid)


def test_a_recorded_pid_reused_by_another_program_is_not_ours(tmp_path):
    me = MotoServer(pid=os.getpid(), token="t", log_path=tmp_path / "log")
    assert not me.is_ours()  # this pytest process is alive but is not the emulator with token t
    me.stop()  # must not kill us
    assert server_mod.pid_alive(os.getpid())


def test_state_file_round_trip_and_garbage(tmp_path):
    state = tmp_path / "server.json"
    MotoServer(pid=12, token="abc", log_path=tmp_path / "m.log", port=5, account="111111111111", helpers=[7]).save(state)
    loaded = MotoServer.load(state)
    assert (loaded.pid, loaded.token, loaded.port, loaded.account, loaded.helpers) == (12, "abc", 5, "111111111111", [7])
    state.write_text("{not json")
    assert MotoServer.load(state) is None


def test_smoke_plugins_without_config_are_not_applicable_never_passed():
    from mlinfra.local_aws.smoke import SmokeContext, run_all

    results = run_all(SmokeContext(endpoint_url="http://localhost:1", config=None, config_missing="no config"),
                      say=None)
    by_name = {r["check"]: r for r in results}
    assert by_name["teams"]["status"] == "not applicable" and "no config" in by_name["teams"]["lines"][0]
    assert by_name["buckets"]["status"] == "not applicable"  # no buckets in this (empty) app
    assert all(r["status"] == "not applicable" for r in results)


def test_python_is_this_interpreter_for_the_app(tmp_path):
    """The CDK app (``python3 app.py``) runs with the interpreter that has mlinfra (first on PATH)."""
    env = LocalDeploy(app_dir=tmp_path)._env({"PATH": "/usr/bin"})
    assert env["PATH"].split(os.pathsep).index(str(Path(sys.executable).parent)) < env["PATH"].split(os.pathsep).index("/usr/bin")


# ---------------------------------------------------------------------------------------------- item 6
def test_a_stack_hanging_in_progress_stops_the_cli_and_is_named(tmp_path, monkeypatch):
    fake = tmp_path / "cdk"
    fake.write_text("#!/bin/sh\nsleep 61.234\n")
    fake.chmod(0o755)
    monkeypatch.setenv("MLINFRA_CDK_CLI", str(fake))
    run = LocalDeploy(app_dir=tmp_path, workdir=tmp_path / "w", stack_timeout_s=0.5)
    run.workdir.mkdir()
    run.cdk_log.write_text("")
    monkeypatch.setattr(run, "_stack_statuses", lambda: {"stuck": "CREATE_IN_PROGRESS", "other": "CREATE_COMPLETE"})
    with pytest.raises(deploy_mod._Hung, match="stuck"):
        run._run_cdk(["deploy"], dict(os.environ), "cdk deploy", watchdog=run._hang_watchdog(["stuck", "other"]),
                     check=False)
    deadline = time.monotonic() + 10  # a killed process takes a moment to go
    while (left := [p for p in Path("/proc").iterdir() if p.name.isdigit() and b"61.234" in _cmdline_bytes(p)]) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left and run._helpers == []


def _cmdline_bytes(proc_dir: Path) -> bytes:
    try:
        return (proc_dir / "cmdline").read_bytes()
    except OSError:
        return b""


def test_cli_failure_lines_name_exactly_their_stack():
    text = "❌  tiny-bad failed to deploy\ntiny-bad-2: start: Building\nother: fail: UnknownError"
    assert deploy_mod._cli_says_failed(text, "tiny-bad") and deploy_mod._cli_says_failed(text, "other")
    assert not deploy_mod._cli_says_failed(text, "tiny") and not deploy_mod._cli_says_failed(text, "tiny-bad-2")


def test_a_missing_cli_is_refused_before_anything_starts(tmp_path, monkeypatch):
    (tmp_path / "cdk.json").write_text('{"app": "python3 app.py"}')
    monkeypatch.delenv("MLINFRA_CDK_CLI", raising=False)
    monkeypatch.setattr(deploy_mod, "_package_root", lambda: tmp_path / "site-packages")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalDeployError, match="npm install --global aws-cdk@"):
        LocalDeploy(app_dir=tmp_path, quiet=True).run()
    assert not (tmp_path / ".local-aws" / "server.json").exists()


def test_the_state_file_survives_saves_from_two_threads(tmp_path):
    """The deploy saves its state from the main thread and from the thread that starts the emulator. With one shared
    temporary name, one writer's rename took the other's file away (FileNotFoundError ended a run as "failed", or
    interrupted it mid-synth: test_local_processes flaked about one run in four)."""
    state = tmp_path / "server.json"
    server = server_mod.MotoServer(pid=os.getpid(), token="t", log_path=tmp_path / "moto.log")
    errors: list[BaseException] = []

    def save_many() -> None:
        try:
            for _ in range(300):
                server.save(state)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=save_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert server_mod.MotoServer.load(state) == server
    assert not list(tmp_path.glob("*.tmp"))
