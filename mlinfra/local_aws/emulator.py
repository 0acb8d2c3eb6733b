"""What the local emulator (moto 5.2.5) can create through CloudFormation, and the template rewrite.

moto skips some resource types with a warning and still completes the stack, but a ``Ref`` to a skipped
resource becomes ``''`` and a ``Fn::GetAtt`` on one fails the whole stack (see shared LOCAL_AWS.md). The
rewrite removes those resources up front and replaces every reference to them by a visible placeholder
string, so each stack deploys and the report can say exactly what was skipped and why.
"""

from __future__ import annotations

import copy
import json
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


#: Resources of a supported type that moto still cannot create in this shape: (type, predicate, reason).
UNSUPPORTED_SHAPES: list[tuple[str, Any, str]] = [
    (
        "AWS::CloudFormation::Stack",
        lambda props: "cdk-" not in json.dumps(props.get("TemplateURL", "")),
        "a nested stack whose template is hosted outside the app's CDK assets (such as AWS's ParallelCluster "
        "provider): the emulator cannot fetch it offline",
    ),
    (
        "AWS::Batch::JobDefinition",
        lambda props: props.get("Type") == "multinode",
        "moto's CloudFormation JobDefinition registers every definition as type 'container'; a multi-node one "
        "cannot be created",
    ),
]


def unsupported_reason(resource_type: str, properties: dict[str, Any] | None = None) -> str | None:
    """Why the emulator cannot create ``resource_type`` (with these properties), or None when it can."""
    for type_, predicate, reason in UNSUPPORTED_SHAPES:
        if resource_type == type_ and predicate(properties or {}):
            return reason
    if resource_type in REMOVED_TYPES:
        return REMOVED_TYPES[resource_type]
    if resource_type.startswith("Custom::"):
        return REMOVED_TYPES["AWS::CloudFormation::CustomResource"]
    if resource_type not in supported_types():
        return "moto has no CloudFormation support for this type"
    return None


PLACEHOLDER = "emulator-skipped-{}"


def _kms_key_tags(props: dict[str, Any], resources: dict[str, Any]) -> str | None:
    # moto 5.2.5 reads AWS::KMS::Key tags as TagKey/TagValue (the KMS API's shape) instead of CloudFormation's
    # Key/Value and fails the whole stack with KeyError 'TagKey'. Same tags, the shape moto reads.
    if "Tags" not in props:
        return None
    props["Tags"] = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in props["Tags"]]
    return None  # the same tags: nothing is lost, nothing to report


def _ssm_parameter_tags(props: dict[str, Any], resources: dict[str, Any]) -> str | None:
    # moto 5.2.5 reads AWS::SSM::Parameter Tags as a Key/Value list (the API's shape); CloudFormation's is a map
    # (name -> value), on which moto fails the whole stack (TypeError). Same tags, the shape moto reads.
    tags = props.get("Tags")
    if isinstance(tags, dict):
        props["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
    return None


#: Target types moto's EventBridge delivers to; any other target makes PutEvents fail with HTTP 500
#: ("Expr not defined") once a matching event arrives.
_DELIVERABLE_TARGET_TYPES = {"AWS::SQS::Queue": "sqs", "AWS::Logs::LogGroup": "logs", "AWS::Events::EventBus": "events"}


def _target_service(arn: Any, resources: dict[str, Any]) -> str:
    if isinstance(arn, dict) and len(arn) == 1:
        (fn, value), = arn.items()
        ref = value if fn == "Ref" else value[0] if fn == "Fn::GetAtt" and isinstance(value, list) else None
        if isinstance(ref, str) and ref in resources:
            type_ = resources[ref]["Type"]
            return _DELIVERABLE_TARGET_TYPES.get(type_, type_)
    text = json.dumps(arn)
    for service in ("sqs", "logs", "events"):
        if f":{service}:" in text:
            return service
    return text


def _event_rule_targets(props: dict[str, Any], resources: dict[str, Any]) -> str | None:
    targets = props.get("Targets") or []
    services = [_target_service(t.get("Arn"), resources) for t in targets]
    kept = [t for t, service in zip(targets, services) if service in ("sqs", "logs", "events")]
    dropped = [service for service in services if service not in ("sqs", "logs", "events")]
    if not dropped:
        return None
    if kept:
        props["Targets"] = kept
    else:
        props.pop("Targets")
    return (
        f"rule created without its {', '.join(sorted(set(dropped)))} target(s): moto's EventBridge delivers only "
        "to SQS, CloudWatch Logs and event buses"
    )


#: Property rewrites for moto quirks on types it does create. A fix returns a note when the emulated
#: resource does less than the template asks; notes are shown in the deploy report.
def _batch_service_role(props: dict[str, Any], resources: dict[str, Any]) -> str | None:
    """moto requires ServiceRole; AWS uses the service-linked role AWSServiceRoleForBatch when it is absent
    (which infrastructure updates need): give the emulated environment a plain role instead."""
    if props.get("ServiceRole"):
        return None
    resources.setdefault("EmulatorBatchServiceRole", {"Type": "AWS::IAM::Role", "Properties": {
        "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "batch.amazonaws.com"}, "Action": "sts:AssumeRole"}]}}})
    props["ServiceRole"] = {"Fn::GetAtt": ["EmulatorBatchServiceRole", "Arn"]}
    return "an explicit service role (AWS uses the service-linked role AWSServiceRoleForBatch; moto requires one)"


FIXUPS: dict[str, Any] = {
    "AWS::Batch::ComputeEnvironment": _batch_service_role,
    "AWS::KMS::Key": _kms_key_tags,
    "AWS::SSM::Parameter": _ssm_parameter_tags,
    "AWS::Events::Rule": _event_rule_targets,
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


@dataclass(frozen=True)
class Rewrite:
    template: dict[str, Any]
    skipped: list[SkippedResource]
    #: logical id -> what the emulated resource lacks compared with the template
    adjusted: dict[str, str]


def rewrite_template(template: dict[str, Any]) -> Rewrite:
    """A copy of ``template`` the emulator can deploy, the resources removed from it (with reasons) and the
    resources it deploys with less than the template asks (with notes).

    Removing a resource can orphan another that only makes sense with it (a policy attached to nothing):
    such dependents still deploy, holding a placeholder string where the removed resource's id was.
    """
    out = copy.deepcopy(template)
    resources: dict[str, Any] = out.get("Resources", {})
    skipped = [
        SkippedResource(lid, res["Type"], reason)
        for lid, res in resources.items()
        if (reason := unsupported_reason(res["Type"], res.get("Properties"))) is not None
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
    adjusted: dict[str, str] = {}
    for lid, res in list(resources.items()):  # a fixup may add a resource
        if res.get("Type") in FIXUPS and "Properties" in res:
            note = FIXUPS[res["Type"]](res["Properties"], resources)
            if note:
                adjusted[lid] = note
    for section in ("Resources", "Outputs", "Conditions"):
        if section in out:
            out[section] = _replace_refs(out[section], removed)
    return Rewrite(out, skipped, adjusted)
