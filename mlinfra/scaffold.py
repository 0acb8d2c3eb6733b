"""``mlinfra init``: write a standalone CDK app that uses the installed mlinfra package.

The templates ship as package data under ``mlinfra/templates/`` (``app/`` is the app, ``ci/`` the optional
CI/CD pieces). ``__PREFIX__`` in a template is replaced by the app's prefix. No aws_cdk import here.
"""

from __future__ import annotations

import re
from pathlib import Path

from mlinfra import __version__

TEMPLATES = Path(__file__).resolve().parent / "templates"

#: Template files whose names cannot be shipped as is (dotfiles), and the names they get in the app.
RENAMES = {"gitignore": ".gitignore"}

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{1,20}[a-z0-9]$")


class ScaffoldError(ValueError):
    """The app cannot be written (bad directory, prefix or CI choice)."""


def default_prefix(directory: Path) -> str:
    """A valid stack prefix from the directory name: lowercase, hyphens, 3-22 characters."""
    name = re.sub(r"[^a-z0-9-]+", "-", directory.resolve().name.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"ml-{name}".strip("-")
    name = name[:22].rstrip("-")
    return name if _PREFIX_RE.fullmatch(name) else "mlapp"


def _render(text: str, prefix: str, ci: str | None) -> str:
    delivery = (TEMPLATES / "ci" / "pipelines" / "delivery.yaml").read_text() if ci == "pipelines" else ""
    github = (TEMPLATES / "ci" / "github" / "delivery.yaml").read_text() if ci == "github" else ""
    text = text.replace("    # __DELIVERY__\n", delivery).replace("    # __GITHUB__\n", github)
    return text.replace("__PREFIX__", prefix).replace("__MLINFRA_VERSION__", __version__)


def _schema_text() -> str:
    """The configuration's JSON Schema, which the app's config/platform.yaml names for editors."""
    import json

    from mlinfra.config import json_schema

    return json.dumps(json_schema(), indent=2) + "\n"


def scaffold(directory: Path, *, prefix: str | None = None, ci: str | None = None, force: bool = False) -> list[Path]:
    """Write the app into ``directory``; returns the written paths relative to it."""
    if ci not in (None, "github", "pipelines"):
        raise ScaffoldError(f"ci must be 'github' or 'pipelines', got: {ci!r}")
    if directory.exists() and not directory.is_dir():
        raise ScaffoldError(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise ScaffoldError(f"{directory} is not empty (use --force to write into it)")
    prefix = prefix or default_prefix(directory)
    if not _PREFIX_RE.fullmatch(prefix):
        raise ScaffoldError(f"prefix must be 3-22 lowercase letters, digits or hyphens, starting with a letter, got: {prefix!r}")

    files: dict[Path, str] = {}
    app_dir = TEMPLATES / "app"
    for src in sorted(app_dir.rglob("*")):
        if src.is_file() and "__pycache__" not in src.parts:
            rel = src.relative_to(app_dir)
            rel = rel.with_name(RENAMES.get(rel.name, rel.name))
            files[rel] = _render(src.read_text(), prefix, ci)
    files[Path("config/platform.schema.json")] = _schema_text()
    if ci == "github":
        files[Path(".github/workflows/mlinfra.yml")] = _render((TEMPLATES / "ci" / "github" / "workflow.yml").read_text(), prefix, ci)
        files[Path(".github/workflows/cdk-diff.yml")] = _render((TEMPLATES / "ci" / "github" / "cdk-diff.yml").read_text(), prefix, ci)

    written = []
    for rel, text in files.items():
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        if rel.suffix == "" and text.startswith("#!"):
            target.chmod(0o755)
        written.append(rel)
    return written
