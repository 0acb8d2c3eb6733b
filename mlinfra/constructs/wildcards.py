"""Acknowledge the EXPECTED wildcard findings (cdk-nag AwsSolutions-IAM5) of a role, and only those.

cdk-nag reports each wildcard of a policy as its own finding, with the resource rendered after cross-stack
references are resolved (``Resource::<stack>:ExportsOutput...Arn.../prefix/*``), so the id cannot be written
by hand in a construct that does not know its consumer's stack. :func:`acknowledge_wildcards` registers a
validation that runs at synth time (after references are resolved, before cdk-nag runs), renders each
wildcard exactly as cdk-nag does, and acknowledges those matching the construct's declared patterns (an
action, or a resource suffix). Any other wildcard stays a finding and fails the synth.
"""

from __future__ import annotations

from typing import Any, Sequence

import aws_cdk as cdk
import jsii
from aws_cdk import aws_iam as iam
from constructs import IValidation

from mlinfra.constructs.common import acknowledge

__all__ = ["acknowledge_wildcards", "render", "KMS_WILDCARD_ACTIONS"]

#: The wildcard actions of ``IKey.grant_encrypt_decrypt`` / ``grant_encrypt``.
KMS_WILDCARD_ACTIONS = ("kms:GenerateDataKey*", "kms:ReEncrypt*")


def render(value: Any) -> str:
    """A CloudFormation value as cdk-nag prints it in a finding id."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Ref":
            return f"<{arg}>"
        if fn == "Fn::GetAtt":
            return f"<{arg[0]}.{arg[1]}>" if isinstance(arg, list) else f"<{arg}>"
        if fn == "Fn::ImportValue":
            return render(arg)
        if fn == "Fn::Join":
            return arg[0].join(render(p) for p in arg[1])
    return str(value)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@jsii.implements(IValidation)
class _AcknowledgeWildcards:
    def __init__(self, role: iam.Role, reason: str, actions: Sequence[str], resource_suffixes: Sequence[str]) -> None:
        self._role, self._reason = role, reason
        self._actions, self._suffixes = set(actions), tuple(resource_suffixes)

    def validate(self) -> list[str]:
        stack = cdk.Stack.of(self._role)
        ids: set[str] = set()
        for child in self._role.node.children:
            if isinstance(child, iam.Policy) or child.node.id == "DefaultPolicy":
                doc = stack.resolve(child.document) if hasattr(child, "document") else {}
                for st in doc.get("Statement", []):
                    for action in _as_list(st.get("Action", [])):
                        if "*" in action and action in self._actions:
                            ids.add(f"AwsSolutions-IAM5[Action::{action}]")
                    for resource in _as_list(st.get("Resource", [])):
                        text = render(resource)
                        if "*" in text and text.endswith(self._suffixes):
                            ids.add(f"AwsSolutions-IAM5[Resource::{text}]")
        for rule in sorted(ids):
            acknowledge(self._role, rule, self._reason)
        return []


def acknowledge_wildcards(role: iam.Role, reason: str, *, actions: Sequence[str] = (), resource_suffixes: Sequence[str] = ()) -> None:
    """Acknowledge ``role``'s wildcard actions in ``actions`` and wildcard resources ending with one of
    ``resource_suffixes`` (e.g. ``"/_quarantine/*"``), with ``reason``. Others stay findings."""
    role.node.add_validation(_AcknowledgeWildcards(role, reason, actions, resource_suffixes))
