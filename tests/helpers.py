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


def resolve_intrinsics(value: Any, ref: Any, get_att: Any, other: Any = None) -> Any:
    """A synthesized value with its intrinsics replaced by stand-ins: ``ref(name)``, ``get_att([logical, attr])``
    and ``other(fn, arg)`` (for anything else; None raises). ``Fn::Join`` is applied."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return [resolve_intrinsics(v, ref, get_att, other) for v in value]
    (fn, arg), = value.items()
    if fn == "Fn::Join":
        return arg[0].join(resolve_intrinsics(p, ref, get_att, other) for p in arg[1])
    if fn == "Ref":
        return ref(arg)
    if fn == "Fn::GetAtt":
        return get_att(arg)
    if other is None:
        raise AssertionError(f"unexpected intrinsic {fn}: {arg}")
    return other(fn, arg)


def run_definition(definition: dict[str, Any], execution_input: dict[str, Any], *, name: str = "run-1",
                   timeout_s: float = 30.0) -> dict[str, Any]:
    """Create ``definition`` in (already mocked) moto Step Functions, run it once and return describe_execution
    when it leaves RUNNING (moto runs executions in a thread)."""
    import json
    import time

    import boto3

    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    arn = sfn.create_state_machine(name=f"sm-{name}", definition=json.dumps(definition),
                                   roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(execution_input))["executionArn"]
    deadline = time.monotonic() + timeout_s
    while True:
        desc = sfn.describe_execution(executionArn=execution)
        if desc["status"] != "RUNNING" or time.monotonic() > deadline:
            return desc
        time.sleep(0.1)
