"""What the local emulator (moto 5.2.5) can create through CloudFormation, and the template rewrite.

moto skips some resource types with a warning and still completes the stack, but a ``Ref`` to a skipped
resource becomes ``''`` and a ``Fn::GetAtt`` on one fails the whole stack (see shared LOCAL_AWS.md). The
rewrite removes those resources up front and replaces every reference to them by a visible placeholder
string, so each stack deploys and the report can say exactly what was skipped and why.
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass
from typing import Any

#: Types the rewrite removes although moto would accept them, with the reason.
REMOVED_TYPES: dict[str, str] = {
    "AWS::CDK::Metadata": "CDK bookkeeping, not a cloud resource",
    "AWS::CloudFormation::CustomResource": "a Lambda-backed custom resource: moto cannot run Lambda code without Docker",
}

#: Types moto creates while ignoring some properties: shown in the report so nothing is over-claimed.
PARTIAL_TYPES: dict[str, str] = {
    "AWS::S3::Bucket": "moto applies only BucketEncryption and Tags (not versioning, public access block, "
    "lifecycle, ownership, logging, notifications)",
    "AWS::SageMaker::Endpoint": "moto generates the endpoint name (EndpointName is ignored)",
}


@functools.lru_cache(maxsize=1)
def supported_types() -> frozenset[str]:
    """Resource types the installed moto can create through CloudFormation (read from moto itself)."""
    from moto.cloudformation.parsing import get_model_map

    return frozenset(get_model_map())


def unsupported_reason(resource_type: str) -> str | None:
    """Why the emulator cannot create ``resource_type``, or None when it can."""
    if resource_type in REMOVED_TYPES:
        return REMOVED_TYPES[resource_type]
    if resource_type.startswith("Custom::"):
        return REMOVED_TYPES["AWS::CloudFormation::CustomResource"]
    if resource_type not in supported_types():
        return "moto has no CloudFormation support for this type"
    return None


PLACEHOLDER = "emulator-skipped-{}"


def _kms_key_tags(props: dict[str, Any]) -> None:
    # moto 5.2.5 reads AWS::KMS::Key tags as TagKey/TagValue (the KMS API's shape) instead of CloudFormation's
    # Key/Value and fails the whole stack with KeyError 'TagKey'. Same tags, the shape moto reads.
    if "Tags" in props:
        props["Tags"] = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in props["Tags"]]


#: Property rewrites for moto quirks on types it does create: (what, fix). Listed in the deploy report.
FIXUPS: dict[str, tuple[str, Any]] = {
    "AWS::KMS::Key": ("tags passed as TagKey/TagValue (moto reads the KMS API shape)", _kms_key_tags),
}


@dataclass(frozen=True)
class SkippedResource:
    logical_id: str
    type: str
    reason: str


_SUB_REF = re.compile(r"\$\{([A-Za-z0-9]+)(\.[A-Za-z0-9.]+)?\}")


def _sub_placeholder(match: re.Match, removed: set[str]) -> str:
    return PLACEHOLDER.format(match.group(1)) if match.group(1) in removed else match.group(0)


def _replace_refs(node: Any, removed: set[str]) -> Any:
    """Replace ``Ref``/``Fn::GetAtt`` of removed resources by placeholder strings, recursively."""
    if isinstance(node, dict):
        if len(node) == 1:
            (key, value), = node.items()
            if key == "Ref" and value in removed:
                return PLACEHOLDER.format(value)
            if key == "Fn::GetAtt":
                target = value[0] if isinstance(value, list) else str(value).split(".")[0]
                if target in removed:
                    return PLACEHOLDER.format(target)
            if key == "Fn::Sub" and isinstance(value, str):
                return {"Fn::Sub": _SUB_REF.sub(lambda m: _sub_placeholder(m, removed), value)}
            if key == "Fn::Sub" and isinstance(value, list) and value and isinstance(value[0], str):
                text = _SUB_REF.sub(lambda m: _sub_placeholder(m, removed), value[0])
                return {"Fn::Sub": [text, *_replace_refs(value[1:], removed)]}
        return {k: _replace_refs(v, removed) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_refs(v, removed) for v in node]
    return node


def rewrite_template(template: dict[str, Any]) -> tuple[dict[str, Any], list[SkippedResource]]:
    """A copy of ``template`` the emulator can deploy, and the resources removed from it (with reasons).

    Removing a resource can orphan another that only makes sense with it (a policy attached to nothing):
    such dependents still deploy, holding a placeholder string where the removed resource's id was.
    """
    out = copy.deepcopy(template)
    resources: dict[str, Any] = out.get("Resources", {})
    skipped = [
        SkippedResource(lid, res["Type"], reason)
        for lid, res in resources.items()
        if (reason := unsupported_reason(res["Type"])) is not None
    ]
    removed = {s.logical_id for s in skipped}
    for lid in removed:
        del resources[lid]
    for res in resources.values():
        depends = res.get("DependsOn")
        if isinstance(depends, str) and depends in removed:
            del res["DependsOn"]
        elif isinstance(depends, list):
            kept = [d for d in depends if d not in removed]
            if kept:
                res["DependsOn"] = kept
            else:
                res.pop("DependsOn", None)
    for res in resources.values():
        if res.get("Type") in FIXUPS and "Properties" in res:
            FIXUPS[res["Type"]][1](res["Properties"])
    for section in ("Resources", "Outputs", "Conditions"):
        if section in out:
            out[section] = _replace_refs(out[section], removed)
    return out, skipped
