"""The built wheel works outside the repository: build it, install it into a fresh virtualenv, check the
package data, run the console script, and synthesize every example app from its own directory.

The fresh virtualenv gets only the mlinfra wheel; its dependencies (aws-cdk-lib, cdk-nag...) come from the
test interpreter's site-packages, appended AFTER the new venv's site-packages through a ``.pth`` file, so the
repository checkout and the editable install are never importable (``.pth`` files of an appended directory
are not processed, which keeps the editable finder out).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if (p / "cdk.json").is_file())

pytestmark = pytest.mark.slow


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    # Build from a copy of the tracked sources, so the build leaves nothing in the checkout.
    src = tmp / "src"
    files = _run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    dist = tmp / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", str(src), "-w", str(dist)])
    (wheel,) = dist.glob("cdk_mlinfra-*.whl")

    env_dir = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)])
    python = env_dir / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", str(wheel)])
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "zz_mlinfra_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["CDK_VALIDATION"] = "false"
    return env


def test_installed_package_is_the_wheel_and_ships_its_data(venv):
    code = (
        "import json, mlinfra, pathlib; p = pathlib.Path(mlinfra.__file__).parent; "
        "print(json.dumps({'file': mlinfra.__file__, 'version': mlinfra.__version__, "
        "'templates': sorted(str(f.relative_to(p)) for f in (p / 'templates').rglob('*') if f.is_file()), "
        "'csv': (p / 'data' / 'accelerator-instances.csv').is_file(), 'typed': (p / 'py.typed').is_file()}))"
    )
    data = json.loads(_run([str(venv / "bin" / "python"), "-c", code], cwd=venv, env=_env()).stdout)
    assert data["file"].startswith(str(venv)), data["file"]
    assert data["csv"] and data["typed"]
    assert "templates/app/app.py" in data["templates"] and "templates/ci/github/workflow.yml" in data["templates"]


def test_console_script_scaffolds_and_validates(venv, tmp_path):
    mlinfra = venv / "bin" / "mlinfra"
    _run([str(mlinfra), "init", str(tmp_path / "app"), "--ci", "github"], cwd=tmp_path, env=_env())
    out = _run([str(mlinfra), "validate", "config/platform.yaml", "--json"], cwd=tmp_path / "app", env=_env()).stdout
    assert json.loads(out)["valid"] is True


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_synthesizes_from_its_own_directory(venv, example, tmp_path):
    env = {**_env(), "CDK_OUTDIR": str(tmp_path / "cdk.out")}
    app = json.loads((example / "cdk.json").read_text())["app"].replace("python3", str(venv / "bin" / "python"))
    _run(app.split(), cwd=example, env=env)  # cdk-nag runs inside: a finding fails the synth
    templates = list((tmp_path / "cdk.out").glob("*.template.json"))
    assert templates, "no template synthesized"
    for template in templates:
        assert json.loads(template.read_text())["Resources"]
