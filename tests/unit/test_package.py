"""The package surface: lazy public names, a clear error for capabilities not installed, no jsii on import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import mlinfra

ROOT = Path(__file__).resolve().parents[2]


def test_import_does_not_start_jsii():
    code = "import sys, mlinfra; assert 'aws_cdk' not in sys.modules and 'jsii' not in sys.modules; print(mlinfra.__version__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == mlinfra.__version__


def test_public_constructs_import_from_the_package():
    from mlinfra import DataLake, GithubOidcDeployRole, Network, TeamEnvironment, create_app
    from mlinfra.constructs.data_lake import DataLake as direct

    assert DataLake is direct
    assert {Network.__name__, TeamEnvironment.__name__, GithubOidcDeployRole.__name__} == {
        "Network", "TeamEnvironment", "GithubOidcDeployRole"}
    assert callable(create_app)
    assert "TeamEnvironment" in dir(mlinfra) and "TeamEnvironment" in mlinfra.__all__


def test_every_export_of_an_installed_module_resolves():
    import importlib.util

    for name, module in mlinfra._EXPORTS.items():
        if importlib.util.find_spec(module) is not None:
            assert getattr(mlinfra, name).__name__ == name, name


def test_a_capability_not_installed_says_which_module_is_missing(monkeypatch):
    monkeypatch.setitem(mlinfra._EXPORTS, "Imaginary", "mlinfra.constructs.imaginary")
    with pytest.raises(AttributeError, match="mlinfra.Imaginary is not available: its module mlinfra.constructs.imaginary"):
        mlinfra.Imaginary  # noqa: B018


def test_unknown_names_raise_the_usual_attribute_error():
    with pytest.raises(AttributeError, match="module 'mlinfra' has no attribute 'Nope'"):
        mlinfra.Nope  # noqa: B018
