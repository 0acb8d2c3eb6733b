"""Acknowledge the EXPECTED wildcard findings (cdk-nag ``AwsSolutions-IAM5``) of a policy, and only those.

cdk-nag v3 reports each wildcard of a policy as its own granular finding (``AwsSolutions-IAM5[Action::s3:List*]``,
``AwsSolutions-IAM5[Resource::<export name>/prefix/*]``) and acknowledgments match ids exactly. Resource ids
embed cross-stack export names that exist only once references are resolved, so they cannot be written by
hand in a construct that does not know its consumer's stack. :func:`acknowledge_wildcards` registers a
validation that runs at synth time (after references are resolved, before cdk-nag runs), renders each
wildcard of the resolved policy document exactly as cdk-nag does (:func:`render`) and acknowledges those
that were declared: an action listed in ``actions``, or a resource matching one of the ``resources`` globs.
Any other wildcard stays a finding and fails the synth.
"""

from __future__ import annotations

import json
import re
from fnmatch import fnmatchcase
from typing import Any, Iterator, Sequence

import aws_cdk as cdk
import jsii
from aws_cdk import aws_iam as iam
from constructs import IConstruct, IValidation

from mlinfra.constructs.common import acknowledge, is_token

__all__ = ["acknowledge_wildcards", "ending", "render", "wildcard_findings", "KMS_WILDCARD_ACTIONS",
           "S3_GRANT_WILDCARD_ACTIONS"]

#: The wildcard actions of ``IKey.grant_encrypt_decrypt`` / ``grant_encrypt``.
KMS_WILDCARD_ACTIONS = ("kms:GenerateDataKey*", "kms:ReEncrypt*")
#: The wildcard actions of aws-cdk-lib's bucket ``grant_read`` / ``grant_put`` / ``grant_read_write``.
S3_GRANT_WILDCARD_ACTIONS = ("s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:Abort*")


def render(value: Any) -> str:
    """A resolved CloudFormation value as cdk-nag prints it in a finding id (its ``flattenCfnReference``:
    ``Ref`` -> ``<X>``, ``GetAtt`` -> ``<X.Attr>``, ``Fn::Sub``'s ``${X}`` -> ``<X>``, imports by name)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.replace("${", "<").replace("}", ">")
    if isinstance(value, dict):
        if "Fn::Join" in value:
            sep, items = value["Fn::Join"]
            return sep.join(render(i) for i in items)
        if "Fn::Sub" in value:
            return render(value["Fn::Sub"])
        if "Fn::GetAtt" in value:
            res, attr = value["Fn::GetAtt"] if isinstance(value["Fn::GetAtt"], list) else value["Fn::GetAtt"].split(".", 1)
            return f"<{render(res)}.{render(attr)}>"
        if "Fn::ImportValue" in value:
            return render(value["Fn::ImportValue"])
        if "Ref" in value:
            return f"<{render(value['Ref'])}>"
    return json.dumps(value, separators=(",", ":"))


def _literal(text: str) -> str:
    """The glob matching exactly ``text`` (its ``*``, ``?`` and ``[`` are not wildcards)."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def ending(suffix: str) -> str:
    """The glob matching a resource that ends with ``suffix`` literally (its ``*`` are not wildcards)."""
    return "*" + _literal(suffix)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def wildcard_findings(document: Any) -> list[str]:
    """The IAM5 finding suffixes (``Action::...`` / ``Resource::...``) of a resolved policy document, as
    cdk-nag computes them (Allow statements only)."""
    found: dict[str, None] = {}
    for st in (document or {}).get("Statement", []):
        if st.get("Effect") != "Allow":
            continue
        for action in _as_list(st.get("Action", [])):
            if isinstance(action, str) and "*" in action:
                found[f"Action::{action}"] = None
        for resource in _as_list(st.get("Resource", [])):
            text = render(resource)
            if "*" in text:
                found[f"Resource::{text}"] = None
    return list(found)


def _policies(target: IConstruct) -> Iterator[tuple[cdk.CfnResource, list[Any]]]:
    """The L1 policies of ``target`` (and the unresolved documents cdk-nag reads from each), found at synth
    time so that statements added after the call are covered."""
    if isinstance(target, (iam.CfnPolicy, iam.CfnManagedPolicy)):
        yield target, [target.policy_document]
    elif isinstance(target, iam.CfnRole):
        inline = cdk.Stack.of(target).resolve(target.policies) or []
        docs = [p.get("PolicyDocument") if isinstance(p, dict) else p.policy_document for p in inline]
        if docs:
            yield target, docs
    elif isinstance(target, (iam.Policy, iam.ManagedPolicy)):
        yield from _policies(target.node.default_child)
    elif isinstance(target, iam.Role):
        yield from _policies(target.node.default_child)
        for child in target.node.children:
            if isinstance(child, iam.Policy):
                yield from _policies(child)
    else:  # any other construct: every policy in its subtree
        for child in target.node.find_all():
            if isinstance(child, (iam.CfnPolicy, iam.CfnManagedPolicy, iam.CfnRole)):
                yield from _policies(child)


@jsii.implements(IValidation)
class _AcknowledgeWildcards:
    def __init__(self, target: IConstruct, reason: str, actions: Sequence[str], resources: Sequence[str]) -> None:
        self._target, self._reason = target, reason
        self._actions, self._resources = frozenset(actions), tuple(resources)

    def _patterns(self) -> list[str]:
        stack = cdk.Stack.of(self._target)
        return [_literal(render(stack.resolve(p))) if is_token(p) else p for p in self._resources]

    def _expected(self, finding: str, patterns: Sequence[str]) -> bool:
        kind, _, value = finding.partition("::")
        if kind == "Action":
            return value in self._actions
        # A pattern is a glob, except the bare "*", which matches only the resource "*" itself.
        return any(value == p or (p != "*" and fnmatchcase(value, p)) for p in patterns)

    def validate(self) -> list[str]:
        patterns = self._patterns()
        for cfn, documents in _policies(self._target):
            stack = cdk.Stack.of(cfn)
            found = {f for doc in documents for f in wildcard_findings(stack.resolve(doc))}
            for finding in sorted(found):
                if self._expected(finding, patterns):
                    acknowledge(cfn, f"AwsSolutions-IAM5[{finding}]", self._reason)
        return []


def acknowledge_wildcards(target: IConstruct, reason: str, *, actions: Sequence[str] = (),
                          resources: Sequence[str] = ()) -> None:
    """Acknowledge, with ``reason``, the wildcard actions of ``target``'s policies listed in ``actions`` and
    their wildcard resources matching one of the ``resources`` globs (``fnmatch``; a bare ``"*"`` matches only
    the resource ``*``; use :func:`ending` for a literal suffix). A pattern holding tokens, such as
    ``bucket.arn_for_objects("prefix/*")``, is resolved and rendered like a finding and matched literally.
    Every other wildcard stays a finding and fails the synth.

    ``target`` is an ``iam.Role`` (its own inline policies and ``iam.Policy`` children, such as its default
    policy), an ``iam.Policy`` / ``iam.ManagedPolicy`` or their L1, or any other construct (every policy in its
    subtree, e.g. an imported role's).
    """
    target.node.add_validation(_AcknowledgeWildcards(target, reason, actions, resources))
