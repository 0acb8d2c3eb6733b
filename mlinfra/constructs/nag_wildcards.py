"""Acknowledge the cdk-nag IAM5 wildcard findings of specific policies, with a reason, without guessing
token-dependent finding ids.

cdk-nag v3 reports each wildcard as its own finding (``AwsSolutions-IAM5[Action::s3:GetObject*]``,
``AwsSolutions-IAM5[Resource::<import>/team-a/*]``) and has no prefix matching. A policy whose resources are
cross-stack references (a lake bucket in another stack) only gets its final ids once references are resolved
into ``Fn::ImportValue``. :func:`acknowledge_wildcards` therefore registers a construct validation, which runs
after references are resolved and before cdk-nag, computes the ids of the policy's wildcard actions and
resources the way cdk-nag prints them, and acknowledges those that ``allow`` accepts (all by default).
"""

from __future__ import annotations

from typing import Any, Callable

import aws_cdk as cdk
import jsii
from constructs import IConstruct, IValidation

from mlinfra.constructs.common import acknowledge

__all__ = ["acknowledge_wildcards", "flatten"]


def flatten(value: Any) -> str:
    """A resolved CloudFormation value as cdk-nag prints it in a finding id."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Ref":
            return f"<{arg}>"
        if fn == "Fn::GetAtt":
            return f"<{arg[0]}.{arg[1]}>" if isinstance(arg, list) else f"<{arg}>"
        if fn == "Fn::ImportValue":
            return flatten(arg)
        if fn == "Fn::Join":
            sep, parts = arg
            return sep.join(flatten(p) for p in parts)
    return str(value)


@jsii.implements(IValidation)
class _AcknowledgeWildcards:
    def __init__(self, policy: IConstruct, reason: str, allow: Callable[[str], bool]) -> None:
        self._policy = policy
        self._reason = reason
        self._allow = allow

    def validate(self) -> list[str]:
        cfn = self._policy.node.default_child if not isinstance(self._policy, cdk.CfnResource) else self._policy
        if cfn is None:
            return []
        document = cdk.Stack.of(cfn).resolve(cfn.policy_document) or {}
        statements = document.get("Statement", [])
        for finding in sorted(_wildcard_findings(statements)):
            if self._allow(finding):
                acknowledge(cfn, f"AwsSolutions-IAM5[{finding}]", self._reason)
        return []


def _wildcard_findings(statements: list[dict]) -> set[str]:
    found: set[str] = set()
    for st in statements:
        if st.get("Effect") != "Allow":
            continue
        for key, kind in (("Action", "Action"), ("Resource", "Resource")):
            values = st.get(key, [])
            for v in values if isinstance(values, list) else [values]:
                text = flatten(v)
                if "*" in text:
                    found.add(f"{kind}::{text}")
    return found


def acknowledge_wildcards(policy: IConstruct, reason: str, allow: Callable[[str], bool] = lambda finding: True) -> None:
    """Acknowledge ``policy``'s IAM5 wildcard findings that ``allow`` accepts (``"Action::s3:GetObject*"``,
    ``"Resource::..."``), with ``reason``. ``policy`` is an ``iam.Policy``/``ManagedPolicy``/``CfnPolicy``, or a
    role (its default policy is used)."""
    from aws_cdk import aws_iam as iam

    if isinstance(policy, iam.Role):
        target = policy.node.try_find_child("DefaultPolicy")
        if target is None:
            return
    else:
        target = policy
    target.node.add_validation(_AcknowledgeWildcards(target, reason, allow))
