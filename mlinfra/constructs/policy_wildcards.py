"""Acknowledge the EXPECTED cdk-nag IAM5 wildcard findings of any policy (a role's default policy, an
``iam.Policy`` or a ``ManagedPolicy`` such as a permissions boundary), and only those.

The role-level sibling :func:`mlinfra.constructs.wildcards.acknowledge_wildcards` covers a role's policies;
this one takes any policy construct and matches resources with glob patterns (``fnmatch``), because some
ids (CDK Pipelines' generated policies, a boundary's ARNs) are only known after references are resolved.
It registers a validation that runs at synth time (after references are resolved, before cdk-nag), renders
each wildcard exactly as cdk-nag does (:func:`mlinfra.constructs.wildcards.render`) and acknowledges the
actions listed in ``actions`` and the resources matching one of ``resources``. Any other wildcard stays a
finding and fails the synth.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Sequence

import aws_cdk as cdk
import jsii
from aws_cdk import aws_iam as iam
from constructs import IConstruct, IValidation

from mlinfra.constructs.common import acknowledge
from mlinfra.constructs.wildcards import render

__all__ = ["acknowledge_policy_wildcards", "wildcard_findings"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def wildcard_findings(document: dict) -> set[str]:
    """The IAM5 finding suffixes (``Action::...`` / ``Resource::...``) of a resolved policy document."""
    found: set[str] = set()
    for st in document.get("Statement", []):
        if st.get("Effect", "Allow") != "Allow":
            continue
        for action in _as_list(st.get("Action", [])):
            if isinstance(action, str) and "*" in action:
                found.add(f"Action::{action}")
        for resource in _as_list(st.get("Resource", [])):
            text = render(resource)
            if "*" in text:
                found.add(f"Resource::{text}")
    return found


@jsii.implements(IValidation)
class _AcknowledgePolicyWildcards:
    def __init__(self, cfn: cdk.CfnResource, reason: str, actions: Sequence[str], resources: Sequence[str]) -> None:
        self._cfn, self._reason = cfn, reason
        self._actions, self._resources = set(actions), tuple(resources)

    def _expected(self, finding: str) -> bool:
        kind, _, value = finding.partition("::")
        if kind == "Action":
            return value in self._actions
        # A pattern is a glob, except the bare "*", which matches only the resource "*" itself.
        return any(value == pattern or (pattern != "*" and fnmatchcase(value, pattern)) for pattern in self._resources)

    def validate(self) -> list[str]:
        document = cdk.Stack.of(self._cfn).resolve(self._cfn.policy_document) or {}
        for finding in sorted(wildcard_findings(document)):
            if self._expected(finding):
                acknowledge(self._cfn, f"AwsSolutions-IAM5[{finding}]", self._reason)
        return []


def acknowledge_policy_wildcards(
    policy: IConstruct, reason: str, *, actions: Sequence[str] = (), resources: Sequence[str] = ()
) -> None:
    """Acknowledge ``policy``'s wildcard actions listed in ``actions`` and wildcard resources matching one of
    the glob ``resources`` patterns (a bare ``"*"`` matches only the resource ``*``), with ``reason``. ``policy`` is an ``iam.Policy``, ``iam.ManagedPolicy``,
    their L1, or a role (its default policy)."""
    if isinstance(policy, iam.Role):
        policy = policy.node.try_find_child("DefaultPolicy")
        if policy is None:
            return
    cfn = policy if isinstance(policy, cdk.CfnResource) else policy.node.default_child
    cfn.node.add_validation(_AcknowledgePolicyWildcards(cfn, reason, actions, resources))
