#!/usr/bin/env python3
"""Generate the API reference from the docstrings (``make docs``): pdoc renders every public module of
``mlinfra`` into ``docs/api/`` (HTML). No hand-kept copy of the props: the constructs' docstrings (each prop
with its ``:default:``) are the reference.

    python scripts/docs.py [--out docs/api]

pdoc is a development dependency (``pdoc==16.0.0``); without it this script says how to install it and
exits 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Modules documented, in reading order. Modules another capability has not shipped yet are skipped.
MODULES = [
    "mlinfra",
    "mlinfra.config",
    "mlinfra.cli",
    "mlinfra.constructs.network",
    "mlinfra.constructs.data_lake",
    "mlinfra.constructs.lambda_function",
    "mlinfra.constructs.endpoint_target",
    "mlinfra.constructs.lustre_cache",
    "mlinfra.constructs.training_cluster",
    "mlinfra.constructs.retrain_pipeline",
    "mlinfra.constructs.endpoint",
    "mlinfra.constructs.team_environment",
    "mlinfra.constructs.github_oidc",
    "mlinfra.stacks.platform",
    "mlinfra.stacks.delivery",
    "mlinfra.stacks.teams",
    "mlinfra.domain.transfer_planner",
    "mlinfra.domain.lustre_sizing",
    "mlinfra.domain.instances",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "api"), help="output folder (default: docs/api)")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("pdoc") is None:
        print("scripts/docs.py: pdoc is not installed. Install the pinned version and run again:\n"
              "    .venv/bin/python -m pip install pdoc==16.0.0", file=sys.stderr)
        return 1
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    modules = [m for m in MODULES if importlib.util.find_spec(m) is not None]
    import pdoc  # noqa: PLC0415

    pdoc.render.configure(docformat="restructuredtext", footer_text="mlinfra API reference")
    pdoc.pdoc(*modules, output_directory=Path(args.out))
    print(f"API reference of {len(modules)} modules written to {args.out}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
