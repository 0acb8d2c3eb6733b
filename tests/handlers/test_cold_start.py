"""Handler cold start (issue 17): importing a handler, as Lambda does, loads no X-Ray SDK.

Each handler is imported in a fresh interpreter from its own folder (``import handler``, the asset's layout), with
tracing off and in the environment Lambda gives a function with active tracing; the check is what the import put in
``sys.modules``, not a timing. The figures are in docs/performance.md (``scripts/bench.py --handlers``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.bench import handler_envs

LAMBDAS = Path(__file__).resolve().parent.parent.parent / "mlinfra" / "lambdas"
HANDLERS = sorted(p.name for p in LAMBDAS.iterdir() if (p / "handler.py").is_file())
#: loaded only by the code path that needs it (the landing glue's SQS batches), never at import
NOT_AT_IMPORT = ("aws_xray_sdk", "aws_lambda_powertools.utilities.batch")
PROBE = ("import json, sys; sys.path.insert(0, '.'); {statement}; "
         "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('aws_xray_sdk', 'aws_lambda_powertools'))))")


def imported_by(statement: str, folder: Path, env: dict[str, str]) -> list[str]:
    env = dict(env, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    proc = subprocess.run([sys.executable, "-c", PROBE.format(statement=statement)], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def loaded(modules: list[str], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in modules)


@pytest.mark.parametrize("handler", HANDLERS)
@pytest.mark.parametrize("tracing", ["off", "deployed"])
def test_importing_a_handler_loads_no_xray_sdk(handler, tracing):
    folder = LAMBDAS / handler
    modules = imported_by("import handler", folder, handler_envs(folder)[tracing])
    assert "aws_lambda_powertools.logging" in modules  # the probe saw the handler's own imports
    assert [name for name in NOT_AT_IMPORT if loaded(modules, name)] == []


@pytest.mark.parametrize("tracing", ["off", "deployed"])
def test_the_probe_sees_a_tracer(tracing, tmp_path):
    """The check can fail: a handler that makes Powertools' Tracer at import loads the X-Ray SDK, in both
    environments (what every pipeline handler did before issue 17)."""
    (tmp_path / "handler.py").write_text("from aws_lambda_powertools import Logger, Tracer\ntracer = Tracer()\n")
    assert loaded(imported_by("import handler", tmp_path, handler_envs(tmp_path)[tracing]), "aws_xray_sdk")

