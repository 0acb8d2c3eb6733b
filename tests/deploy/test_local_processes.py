"""Process hygiene and failure handling of ``deploy-local`` on a tiny three-stack app (issue 14, items 4, 6, 7).

- SIGINT or SIGTERM at any step (synth, while the emulator starts, bootstrap, deploy) leaves no process; a
  SIGKILL leaves only processes ``destroy-local`` finds and stops.
- A stack moto fails on (an SSM parameter without a name: moto answers HTTP 500, the CLI shows only "XML parse
  error") is reported with moto's own error; the independent stack is still deployed and reported; the stack
  that depends on the failed one is "not deployed"; the report never keeps the previous run's resources.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mlinfra.local_aws.deploy import CREATED, LocalDeploy, destroy
from mlinfra.local_aws.server import MotoServer, pid_alive

# `make test` runs --dist loadfile, so the module's tests (and its one deploy) stay on one worker. (xdist 3.8's
# loadgroup does not group under pytest 9.2: it sets item._nodeid, which pytest 9 no longer reads.)
pytestmark = [pytest.mark.deploy, pytest.mark.slow]

TINY_APP = textwrap.dedent('''
    import aws_cdk as cdk
    from aws_cdk import aws_s3 as s3, aws_ssm as ssm

    app = cdk.App()
    good = cdk.Stack(app, "tiny-good")
    s3.CfnBucket(good, "Bucket")
    bad = cdk.Stack(app, "tiny-bad")
    ssm.CfnParameter(bad, "Unnamed", type="String", value="moto needs a name")  # moto: HTTP 500
    after = cdk.Stack(app, "tiny-after")
    s3.CfnBucket(after, "Bucket")
    after.add_dependency(bad)
    app.synth()
''')


@pytest.fixture(scope="module")
def tiny_app(tmp_path_factory) -> Path:
    app = tmp_path_factory.mktemp("tiny-app")
    (app / "app.py").write_text(TINY_APP)
    (app / "cdk.json").write_text(json.dumps({"app": "python3 app.py"}))
    return app


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (by parent id in /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def _still_alive(pids: set[int], within: float = 10.0) -> list[int]:
    """The pids still alive after up to ``within`` seconds (a killed process takes a moment to be reaped)."""
    deadline = time.monotonic() + within
    while (alive := [p for p in pids if pid_alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def _run_and_signal(app: Path, workdir: Path, step: int, signum: int) -> tuple[set[int], int]:
    """Start a deploy, send ``signum`` when it prints step ``step``; return every process it started and its exit."""
    proc = subprocess.Popen([sys.executable, "-u", "-m", "mlinfra.local_aws", "deploy", "--app-dir", str(app),
                             "--workdir", str(workdir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: set[int] = set()
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    sent, deadline = False, time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        seen |= _children(proc.pid)
        buffer = "".join(lines)
        if not sent and f"[{step}/8]" in buffer:
            time.sleep(0.3 if step != 2 else 0.0)  # step 2: while the emulator starts
            seen |= _children(proc.pid)
            os.kill(proc.pid, signum)
            sent = True
        time.sleep(0.05)
    assert sent, f"step {step} never started:\n{''.join(lines)}"
    try:
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return seen, proc.returncode


@pytest.mark.parametrize(("signum", "step"), [(signal.SIGTERM, 1), (signal.SIGTERM, 2), (signal.SIGINT, 3),
                                              (signal.SIGTERM, 6)])
def test_sigint_or_sigterm_at_any_step_leaves_no_process(tiny_app, tmp_path, signum, step):
    seen, code = _run_and_signal(tiny_app, tmp_path, step, signum)
    assert seen, "the deploy started no process before the signal"
    assert code != 0
    assert not _still_alive(seen), "left behind after the signal"
    assert not (tmp_path / "server.json").exists()
    assert json.loads((tmp_path / "report.json").read_text())["state"] == "interrupted"


def test_a_kill_leaves_only_what_destroy_local_finds(tiny_app, tmp_path):
    seen, code = _run_and_signal(tiny_app, tmp_path, 3, signal.SIGKILL)  # during cdk bootstrap
    assert code == -signal.SIGKILL
    left = {p for p in seen if pid_alive(p)}
    assert left, "a SIGKILL leaves the emulator and the CLI running"
    recorded = MotoServer.load(tmp_path / "server.json")
    assert recorded is not None and recorded.pid in left
    assert destroy(tiny_app, say=lambda _line: None, workdir=tmp_path) == 0
    assert not _still_alive(seen)


def test_failed_stack_carries_the_emulators_error_and_the_others_still_deploy(tiny_app, tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({"run_id": "previous", "stacks": [{"name": "old"}]}))
    report = LocalDeploy(app_dir=tiny_app, workdir=tmp_path, quiet=True).run()
    outcomes = {s.name: s for s in report.stacks}
    assert outcomes["tiny-good"].outcome == "deployed"
    assert [r.status for r in outcomes["tiny-good"].resources] == [CREATED]
    bad = outcomes["tiny-bad"]
    assert bad.outcome == "failed"
    assert "Unnamed (AWS::SSM::Parameter)" in bad.error and "XML parse error" not in bad.error
    assert outcomes["tiny-after"].outcome == "not deployed: depends on tiny-bad"
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["run_id"] == report.run_id and saved["state"] == "failed"
    assert {s["name"] for s in saved["stacks"]} == {"tiny-good", "tiny-bad", "tiny-after"}
    assert not (tmp_path / "server.json").exists()
