"""The one fully validated synth: built-in CloudFormation validation ON, cdk-nag AwsSolutions and cfn-guard (AWS
Control Tower proactive-control rules) registered, then cfn-lint and checkov on every template (the pipeline's
stage assemblies and the Service Catalog product templates included). Zero unacknowledged findings; cfn-lint
clean with W3005 ignored only. Acknowledgments: ``mlinfra.constructs.common.acknowledge`` next to the resource."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlinfra.app import create_app

pytestmark = [pytest.mark.policy]

#: checkov runs from its own venv (``make setup``; its pins conflict with the project's: requirements-scan.txt).
CHECKOV = Path(__file__).resolve().parents[2] / ".venv-scan" / "bin" / "checkov"
#: The environments the scanners cover: the AWS ones (local is the emulator's variant of the same stacks).
SCANNED_ENVS = ("prod", "dev")


# prod: every production setting; local: what the emulator deploys; dev: the delivery pipeline and its stages.
@pytest.fixture(scope="session", params=["prod", "local", "dev"])
def assembly(request, tmp_path_factory, config_file):
    from mlinfra.config import load_config_file

    outdir = tmp_path_factory.mktemp(f"policy-{request.param}")
    app, platform = create_app(config=load_config_file(config_file, request.param), outdir=str(outdir),
                               nag=True, validation=True, guard=True)
    try:
        app.synth()
    except RuntimeError as exc:  # cdk-nag and validation failures: show the report's findings
        report = outdir / "validation-report.json"
        details = report.read_text()[:4000] if report.exists() else ""
        pytest.fail(f"validated synth of {request.param} failed: {exc}\n{details}")
    return outdir, platform


def test_validation_report_is_clean(assembly):
    outdir, _ = assembly
    report = outdir / "validation-report.json"
    if report.exists():  # written when plugins ran; every plugin must have concluded success
        data = json.loads(report.read_text())
        failures = [p for p in data.get("pluginReports", []) if p.get("conclusion") != "success" or p.get("violations")]
        assert not failures, json.dumps(failures, indent=1)[:3000]


def test_every_stack_synthesized(assembly):
    outdir, platform = assembly
    # Service Catalog product templates (``*.product.template.json``) are assets of the vending stack, not stacks.
    templates = sorted(p.name for p in Path(outdir).glob("*.template.json") if not p.name.endswith(".product.template.json"))
    assert templates == sorted(f"{s.artifact_id}.template.json" for s in platform.stacks)


def test_cfn_lint_clean(assembly):
    outdir, _ = assembly
    templates = sorted(str(p) for p in Path(outdir).rglob("*.template.json"))  # pipeline stage assemblies too
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--ignore-checks", "W3005", "--", *templates],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_guard_ran_on_every_stack(assembly):
    """The cfn-guard plugin reported (so a clean report means clean, not skipped), with its acknowledgments."""
    outdir, platform = assembly
    data = json.loads((outdir / "validation-report.json").read_text())
    guard = [p for p in data.get("pluginReports", []) if p.get("pluginName") == "cdk-validator-cfnguard"]
    assert guard, [p.get("pluginName") for p in data.get("pluginReports", [])]
    suppressed = [v for p in guard for v in p.get("suppressedViolations", p.get("acknowledgedViolations", []))]
    assert all(len(v.get("reason") or "") >= 20 for v in suppressed), suppressed[:3]


@pytest.fixture(scope="session")
def checkov_report(assembly):
    """checkov once per scanned environment (a session fixture: it costs ~20-40 s a run)."""
    outdir, platform = assembly
    env = platform.config.env_name
    if env not in SCANNED_ENVS:
        return env, None
    assert CHECKOV.exists(), f"checkov is not installed at {CHECKOV}: run make setup"
    start = time.monotonic()
    result = subprocess.run(
        [str(CHECKOV), "-d", str(outdir), "--framework", "cloudformation", "--skip-download", "--compact", "-o", "json"],
        capture_output=True, text=True,
    )
    elapsed = time.monotonic() - start
    print(f"checkov {env}: {elapsed:.1f} s")
    data = json.loads(result.stdout or "[]")
    return env, data if isinstance(data, list) else [data]


def test_checkov_clean(checkov_report):
    env, reports = checkov_report
    if reports is None:
        pytest.skip(f"checkov scans {SCANNED_ENVS}; {env} is the emulator's variant")
    failed = [f"{f['check_id']} {Path(f['file_path']).name} {f['resource']}: {f['check_name']}"
              for r in reports for f in r["results"]["failed_checks"]]
    assert not failed, "unacknowledged checkov findings:\n" + "\n".join(failed)
    scanned = {Path(f["file_path"]).as_posix() for r in reports for key in ("passed_checks", "skipped_checks")
               for f in r["results"].get(key, [])}
    assert any(p.endswith(".product.template.json") for p in scanned), "the Service Catalog product templates"
    if env == "dev":  # the delivery pipeline's stage assemblies are scanned too
        assert any("/assembly-" in p for p in scanned), sorted(scanned)[:5]
    skipped = [f for r in reports for f in r["results"].get("skipped_checks", [])]
    # every skip is an acknowledgment with its written reason (checkov puts it in check_result.suppress_comment)
    assert skipped and all(len((f.get("check_result") or {}).get("suppress_comment") or "") >= 20 for f in skipped), \
        skipped[:3]


def test_training_stack_has_no_library_warnings(assembly):
    """`make synth` prints no warning of the library's making for the training stack (issue 11)."""
    from aws_cdk.assertions import Annotations, Match

    _, platform = assembly
    training = platform.extra.get("training")
    if training is None or platform.config.env_name != "prod":
        # local and dev deliberately warn that data is RETAINED without the destruction flag
        pytest.skip("`make synth ENV=prod` is the warning-free build; this environment has no training stack or is not prod")
    warnings = Annotations.from_stack(training).find_warning("*", Match.any_value())
    assert [(w.id, w.entry.data) for w in warnings] == []
