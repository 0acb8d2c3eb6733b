"""Acknowledge exactly the granular cdk-nag ``AwsSolutions-IAM5`` findings of one role's own policy.

cdk-nag v3 reports one finding per wildcard action or resource (``AwsSolutions-IAM5[Action::s3:List*]``,
``AwsSolutions-IAM5[Resource::<export name>/prefix/*]``) and acknowledgments match ids exactly. Resource ids
embed cross-stack export names that exist only once references are resolved, so the acknowledgments are
added from a construct validation hook (``node.add_validation``), which runs after reference resolution and
before the synthesis plugins read acknowledgments. Only the wildcards actually present in the role's
``DefaultPolicy`` are acknowledged, each with the reason given for its kind.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import aws_cdk as cdk
import jsii
from aws_cdk import aws_iam as iam
from constructs import IValidation

from mlinfra.constructs.common import acknowledge

__all__ = ["WildcardAcknowledger", "acknowledge_wildcards"]


def acknowledge_wildcards(role: iam.IRole, action_reason: str, resource_reason: str) -> None:
    """Acknowledge the IAM5 wildcard findings of ``role``'s DefaultPolicy (a no-op for imported roles)."""
    if isinstance(role, iam.Role):
        role.node.add_validation(WildcardAcknowledger(role, {"Action": action_reason, "Resource": resource_reason}))


@jsii.implements(IValidation)
class WildcardAcknowledger:
    """Acknowledges exactly the IAM5 wildcard findings of one role's own policy, with the given reasons."""

    def __init__(self, role: iam.Role, reasons: Mapping[str, str]) -> None:
        self._role = role
        self._reasons = dict(reasons)
        self._done = False

    def validate(self) -> list[str]:
        if self._done:
            return []
        self._done = True
        policy = self._role.node.try_find_child("DefaultPolicy")
        if policy is None:
            return []
        doc = cdk.Stack.of(self._role).resolve(policy.document)
        for st in doc.get("Statement", []):
            actions = st.get("Action", [])
            resources = st.get("Resource", [])
            for a in actions if isinstance(actions, list) else [actions]:
                if "*" in a:
                    acknowledge(policy, f"AwsSolutions-IAM5[Action::{a}]", self._reasons["Action"])
            for r in resources if isinstance(resources, list) else [resources]:
                rendered = _render_intrinsic(r)
                if "*" in rendered:
                    acknowledge(policy, f"AwsSolutions-IAM5[Resource::{rendered}]", self._reasons["Resource"])
        return []


def _render_intrinsic(value: Any) -> str:
    """Render a resolved value the way cdk-nag names it in finding ids."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return f"<{arg}>"
        if fn == "Fn::GetAtt":
            return f"<{arg[0]}.{arg[1]}>" if isinstance(arg, list) else f"<{arg}>"
        if fn == "Fn::ImportValue":
            return _render_intrinsic(arg)
        if fn == "Fn::Join":
            return arg[0].join(_render_intrinsic(p) for p in arg[1])
    return json.dumps(value)
