"""The layers hold: import-linter contracts (pyproject.toml) pass, and a violating import fails with the
contract's name. See docs/architecture.md."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(cwd), "LC_ALL": "C.UTF-8"},
    )


def test_import_contracts_are_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture
def package_copy(tmp_path) -> Path:
    shutil.copytree(ROOT / "mlinfra", tmp_path / "mlinfra", ignore=shutil.ignore_patterns("__pycache__", "*.csv"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(
    "module, source, contract",
    [
        ("constructs/_probe.py", "from mlinfra.config import PlatformConfig\n",
         "Constructs never import the app's config, stacks, app or CLI"),
        ("domain/_probe.py", "import aws_cdk\n", "Handlers, domain helpers and the config import no aws_cdk"),
        ("lambdas/landing_glue/_probe.py", "from mlinfra.domain import lake\n",
         "Handlers import no other mlinfra module (each ships alone)"),
        ("constructs/_probe.py", "from mlinfra.stacks.base import PlatformStack\n",
         "Layers: app -> stacks -> constructs | config -> domain"),
        ("stacks/_probe.py", "import mlinfra.stacks.platform\n", "No import cycles between sibling modules"),
    ],
)
def test_a_violating_import_fails_with_the_contract_name(package_copy, module, source, contract):
    (package_copy / "mlinfra" / module).write_text(source)
    if module.startswith("stacks/"):  # close a cycle: platform -> _probe -> platform
        platform = package_copy / "mlinfra" / "stacks" / "platform.py"
        platform.write_text(platform.read_text() + "\nfrom mlinfra.stacks import _probe  # noqa\n")
    result = lint_imports(package_copy)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), result.stdout


def test_import_linter_is_pinned_in_dev_extras():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"import-linter==' in text


def test_every_handler_folder_is_a_package_the_contracts_see():
    folders = [p for p in (ROOT / "mlinfra" / "lambdas").iterdir() if (p / "handler.py").is_file()]
    assert folders
    assert [p.name for p in folders if not (p / "__init__.py").is_file()] == []
