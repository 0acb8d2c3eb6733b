"""Smoke checks run after a local deploy, with boto3 against the emulator.

Each module of this package is a plug-in: ``ORDER`` (buckets 5, data lake 10, ingestion 20, training 30,
serving 40, pipeline 50, teams 60) and ``run(ctx) -> list[str]``, returning the lines to print. A check fails by
raising with a clear message. Plug-ins apply by what the app contains: one whose stack or resources are absent
returns ``[]`` and is reported "not applicable", never "passed". The reference platform's plug-ins need its
configuration (``NEEDS_CONFIG``, default True); for an app without one they are "not applicable" with the
reason, so any CDK app gets the checks that fit it.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from mlinfra.local_aws.server import REGION


@dataclass
class SmokeContext:
    endpoint_url: str
    config: Any  # mlinfra.config.PlatformConfig, or None for an app without one
    stack_outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    #: stack name -> its ResourceReport list (what the deploy created, by type)
    resources: dict[str, list[Any]] = field(default_factory=dict)
    region: str = REGION
    config_missing: str = ""  #: why config is None

    def created(self, resource_type: str) -> list[tuple[str, Any]]:
        """(stack, ResourceReport) of every created resource of ``resource_type``."""
        return [(stack, r) for stack, rs in self.resources.items() for r in rs
                if r.type == resource_type and r.is_created]

    def client(self, service_name: str):
        """A boto3 client pointed at the emulator."""
        import boto3

        return boto3.client(
            service_name, endpoint_url=self.endpoint_url, region_name=self.region,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )

    def has_stack(self, suffix: str) -> bool:
        return self.config is not None and self.config.stack_name(suffix) in self.stack_outputs

    def outputs(self, suffix: str) -> dict[str, str]:
        """Outputs of the stack ``<prefix>-<env>-<suffix>``."""
        name = self.config.stack_name(suffix)
        if name not in self.stack_outputs:
            raise KeyError(f"stack {name} was not deployed; deployed: {sorted(self.stack_outputs)}")
        return self.stack_outputs[name]


def plugins() -> list[Any]:
    modules = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]
    return sorted((m for m in modules if hasattr(m, "run")), key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def run_all(ctx: SmokeContext, say: Callable[[str], None] | None = print) -> list[dict[str, Any]]:
    """Run every plug-in; a failure is recorded (with its message) and the others still run.

    Handlers that plug-ins run in-process log through Powertools; their INFO/WARNING lines would bury the
    report, so plug-ins run with ``POWERTOOLS_LOG_LEVEL=ERROR`` (errors still show)."""
    previous = os.environ.get("POWERTOOLS_LOG_LEVEL")
    os.environ["POWERTOOLS_LOG_LEVEL"] = "ERROR"
    try:
        return _run_all(ctx, say)
    finally:
        if previous is None:
            os.environ.pop("POWERTOOLS_LOG_LEVEL", None)
        else:
            os.environ["POWERTOOLS_LOG_LEVEL"] = previous


def _run_all(ctx: SmokeContext, say: Callable[[str], None] | None) -> list[dict[str, Any]]:
    results = []
    for module in plugins():
        name = module.__name__.rsplit(".", 1)[-1]
        if ctx.config is None and getattr(module, "NEEDS_CONFIG", True):
            results.append({"check": name, "status": "not applicable", "ok": None,
                            "lines": [f"needs the mlinfra platform configuration: {ctx.config_missing}"]})
            continue
        try:
            lines = list(module.run(ctx))
            status = "passed" if lines else "not applicable"
            results.append({"check": name, "status": status, "ok": True if lines else None,
                            "lines": lines or ["nothing of this kind in the app"]})
        except Exception as exc:  # report every failing check, not only the first
            lines = [f"FAILED: {type(exc).__name__}: {exc}"]
            results.append({"check": name, "status": "failed", "ok": False, "lines": lines,
                            "trace": traceback.format_exc()})
        if say is not None and results[-1]["status"] != "not applicable":
            mark = "ok " if results[-1]["ok"] else "FAIL"
            say(f"      [{mark}] {name}")
            for line in lines:
                say(f"             {line}")
    return results
