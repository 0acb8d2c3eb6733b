"""The distribution is named cdk-mlinfra (the registry's `mlinfra` is someone else's project); the import
package and the command stay `mlinfra`; nothing tells a user to install the other project."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from mlinfra import __version__
from mlinfra.scaffold import scaffold

ROOT = Path(__file__).resolve().parents[2]


def test_distribution_name_and_command():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "cdk-mlinfra"
    assert project["scripts"] == {"mlinfra": "mlinfra.cli:main"}


def test_scaffold_pins_the_new_distribution_name(tmp_path):
    scaffold(tmp_path / "app", prefix="myapp")
    requirements = (tmp_path / "app" / "requirements.txt").read_text().splitlines()
    assert f"cdk-mlinfra=={__version__}" in requirements
    assert not [r for r in requirements if re.match(r"mlinfra\b", r)]


def test_scaffold_writes_the_config_schema_its_yaml_names(tmp_path):
    scaffold(tmp_path / "app", prefix="myapp")
    first = (tmp_path / "app" / "config" / "platform.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=platform.schema.json"
    assert (tmp_path / "app" / "config" / "platform.schema.json").is_file()


def test_no_document_installs_the_unrelated_mlinfra_distribution():
    texts = [p for p in [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("examples/**/*"),
                         *(ROOT / "mlinfra" / "templates").rglob("*")] if p.is_file()]
    offenders = [str(p.relative_to(ROOT)) for p in texts
                 if re.search(r"pip install (-U )?mlinfra\b(?!-)|^mlinfra[=<>~]", p.read_text(errors="ignore"), re.M)]
    assert offenders == []


def test_readme_says_the_two_cannot_be_installed_together():
    readme = (ROOT / "README.md").read_text()
    assert "pip install cdk-mlinfra" in readme
    assert "cannot be installed side by side" in readme
