"""Helpers shared by the template tests."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk.assertions import Template


def resources(template: Template, type_: str) -> dict[str, dict[str, Any]]:
    """Logical id -> resource of one type."""
    return template.find_resources(type_)


def only(template: Template, type_: str) -> dict[str, Any]:
    """The single resource of ``type_`` (fails when there are none or several)."""
    found = template.find_resources(type_)
    assert len(found) == 1, f"expected one {type_}, found {len(found)}: {sorted(found)}"
    return next(iter(found.values()))


def props(template: Template, type_: str) -> list[dict[str, Any]]:
    return [r.get("Properties", {}) for r in template.find_resources(type_).values()]


def new_stack(**kwargs) -> cdk.Stack:
    """A fresh stack in a fresh app (no nag): for small construct-level tests."""
    app = cdk.App()
    return cdk.Stack(app, "TestStack", env=cdk.Environment(account="123456789012", region="us-east-1"), **kwargs)
