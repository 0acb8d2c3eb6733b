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
    """Resource types the emulator can create: those moto's CloudFormation models (read from moto itself) and
    those :mod:`mlinfra.local_aws.api_models` creates through moto's service APIs."""
    from moto.cloudformation.parsing import get_model_map

    from mlinfra.local_aws.api_models import API_TYPES

    return frozenset(get_model_map()) | frozenset(API_TYPES)


def api_types() -> frozenset[str]:
    """Types created through a service API ("created (API)") rather than by moto's CloudFormation."""
    from moto.cloudformation.parsing import get_model_map

    from mlinfra.local_aws.api_models import API_TYPES

    return frozenset(API_TYPES) - frozenset(get_model_map())


def provides_attribute(resource_type: str, attribute: str) -> bool | None:
    """Whether the emulator's model of ``resource_type`` answers ``Fn::GetAtt`` for ``attribute`` (None: unknown)."""
    from moto.cloudformation.parsing import get_model_map
    from moto.core.common_models import CloudFormationModel

    from mlinfra.local_aws.api_models import API_TYPES

    if resource_type in API_TYPES and resource_type not in get_model_map():
        return attribute in API_TYPES[resource_type].attributes
    model = get_model_map().get(resource_type)
    if model is None:
        return None
    if getattr(model.has_cfn_attr, "__func__", None) is not getattr(CloudFormationModel.has_cfn_attr, "__func__", 0):
        return bool(model.has_cfn_attr(attribute))
    # The model does not declare its attributes. Without get_cfn_attribute it provides none (a GetAtt fails the
    # stack or drops its outputs); otherwise look for the attribute's name in that method's code.
    getter = getattr(model, "get_cfn_attribute", None)
    if getter is None:
        return False
    import inspect

    try:
        source = inspect.getsource(getter)
    except (OSError, TypeError):
        return None
    return f'"{attribute}"' in source or f"'{attribute}'" in source or None


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


@functools.lru_cache(maxsize=1)
def sagemaker_instance_types() -> tuple[str, ...]:
    """The SageMaker hosting instance types moto accepts (read from moto's own validator)."""
    import ast

    from moto.sagemaker.models import FakeEndpointConfig

    try:
        FakeEndpointConfig.validate_instance_type(None, "ml.none.none")  # type: ignore[arg-type]
    except Exception as exc:  # its message lists the accepted set
        text = getattr(exc, "message", str(exc))
        return tuple(ast.literal_eval(text[text.index("["):text.rindex("]") + 1]))
    return ()


@functools.lru_cache(maxsize=1)
def ec2_instance_types() -> frozenset[str]:
    from moto.ec2.models.instance_types import INSTANCE_FAMILIES, INSTANCE_TYPES

    return frozenset(INSTANCE_TYPES) | frozenset(INSTANCE_FAMILIES) | {"optimal"}


_GPU_FAMILIES = ("g", "p", "trn", "inf", "dl")


def _stand_in(instance_type: str, accepted: Any, prefix: str) -> str:
    """An accepted type close to ``instance_type``: same family if the emulator lists it, else a GPU or a general
    purpose type."""
    family = instance_type.removeprefix(prefix).split(".")[0]
    same_family = sorted(t for t in accepted if t.removeprefix(prefix).split(".")[0] == family)
    if same_family:
        return same_family[0]
    gpu = family.startswith(_GPU_FAMILIES)
    for choice in ((f"{prefix}g4dn.xlarge", f"{prefix}p3.2xlarge") if gpu else (f"{prefix}m5.large", f"{prefix}m5.xlarge")):
        if choice in accepted:
            return choice
    return sorted(accepted)[0]


def _sagemaker_variants(props: dict[str, Any], resources: dict[str, Any]) -> str | None:
    accepted = sagemaker_instance_types()
    notes = []
    for key in ("ProductionVariants", "ShadowProductionVariants"):
        for variant in props.get(key) or []:
            itype = variant.get("InstanceType")
            if isinstance(itype, str) and accepted and itype not in accepted:
                variant["InstanceType"] = _stand_in(itype, accepted, "ml.")
                notes.append(f"instance type {itype} is not in the emulator's list: {variant['InstanceType']} stands in")
    return "; ".join(notes) or None


def _batch_compute_environment(props: dict[str, Any], resources: dict[str, Any]) -> str | None:
    notes = [note] if (note := _batch_service_role(props, resources)) else []
    if isinstance(props.get("Type"), str) and props["Type"].upper() != props["Type"]:
        props["Type"] = props["Type"].upper()  # the API's enum spelling; CloudFormation accepts either
    compute = props.get("ComputeResources")
    if not isinstance(compute, dict):
        return "; ".join(notes) or None
    types = compute.get("InstanceTypes")
    if isinstance(types, list):
        accepted = ec2_instance_types()
        new = [_stand_in(t, accepted, "") if isinstance(t, str) and t not in accepted else t for t in types]
        for old, sub in zip(types, new):
            if old != sub:
                notes.append(f"instance type {old} is not in the emulator's list: {sub} stands in")
        compute["InstanceTypes"] = new
    if not compute.get("SecurityGroupIds") and compute.get("Type") not in ("FARGATE", "FARGATE_SPOT"):
        groups = _launch_template_groups(compute.get("LaunchTemplate"), resources)
        if groups:
            compute["SecurityGroupIds"] = groups
            notes.append("the emulator requires security groups on the compute environment: it gets the launch "
                         "template's network-interface groups (EFA puts them there)")
    return "; ".join(notes) or None


def _launch_template_groups(spec: Any, resources: dict[str, Any]) -> list[Any]:
    if not isinstance(spec, dict):
        return []
    ref = spec.get("LaunchTemplateId") or spec.get("LaunchTemplateName")
    target = None
    if isinstance(ref, dict) and len(ref) == 1:
        (fn, value), = ref.items()
        target = value if fn == "Ref" else value[0] if fn == "Fn::GetAtt" and isinstance(value, list) else None
    template = resources.get(target, {}) if isinstance(target, str) else {}
    data = (template.get("Properties") or {}).get("LaunchTemplateData") or {}
    groups: list[Any] = []
    for interface in data.get("NetworkInterfaces") or []:
        groups.extend(interface.get("Groups") or [])
    return groups or list(data.get("SecurityGroupIds") or [])


#: Property rewrites for moto quirks on types it does create, by type. A fix returns a note when the emulated
#: resource differs from the template (a substitution, something left out); notes are shown in the report.
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
    "AWS::KMS::Key": _kms_key_tags,
    "AWS::SSM::Parameter": _ssm_parameter_tags,
    "AWS::Events::Rule": _event_rule_targets,
    "AWS::SageMaker::EndpointConfig": _sagemaker_variants,
    "AWS::Batch::ComputeEnvironment": _batch_compute_environment,
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
    #: logical id -> what the emulated resource differs in from the template (substitutions, omissions)
    adjusted: dict[str, str]


def _add_note(adjusted: dict[str, str], logical_id: str, note: str) -> None:
    adjusted[logical_id] = f"{adjusted[logical_id]}; {note}" if adjusted.get(logical_id) else note


def _normalize_getatt(node: Any) -> tuple[Any, bool]:
    """``{"Fn::GetAtt": "A.B"}`` (the short form a YAML template brought in with CfnInclude keeps) to the list
    form moto reads."""
    changed = False

    def walk(n: Any) -> Any:
        nonlocal changed
        if isinstance(n, dict):
            if len(n) == 1 and isinstance(n.get("Fn::GetAtt"), str) and "." in n["Fn::GetAtt"]:
                changed = True
                target, attr = n["Fn::GetAtt"].split(".", 1)
                return {"Fn::GetAtt": [target, attr]}
            return {k: walk(v) for k, v in n.items()}
        if isinstance(n, list):
            return [walk(v) for v in n]
        return n

    return walk(node), changed


def _unprovided_attributes(node: Any, resources: dict[str, Any], missing: list[str]) -> Any:
    """``Fn::GetAtt`` of an attribute the emulator's model does not provide -> a placeholder (moto would fail the
    stack or silently drop every output)."""
    if isinstance(node, dict):
        if len(node) == 1 and isinstance(node.get("Fn::GetAtt"), list) and len(node["Fn::GetAtt"]) == 2:
            target, attr = node["Fn::GetAtt"]
            res = resources.get(target) if isinstance(target, str) else None
            if res is not None and isinstance(attr, str) and provides_attribute(res["Type"], attr) is False:
                missing.append(f"{target}.{attr}")
                return PLACEHOLDER.format(f"{target}-{attr}")
        return {k: _unprovided_attributes(v, resources, missing) for k, v in node.items()}
    if isinstance(node, list):
        return [_unprovided_attributes(v, resources, missing) for v in node]
    return node


_DYNAMIC_SSM = re.compile(r"\{\{resolve:ssm:([^}:]+)(?::\d+)?\}\}")
#: Literal ids of an imported VPC, subnets and security groups (``Vpc.from_vpc_attributes`` and friends).
IMPORTED_ID = re.compile(r"^(vpc|subnet|sg)-[0-9a-f]{8,17}$")


def dynamic_ssm_names(template: dict[str, Any]) -> set[str]:
    """Parameter names of ``{{resolve:ssm:NAME}}`` references (moto leaves them unresolved)."""
    return set(_DYNAMIC_SSM.findall(json.dumps(template.get("Resources", {}))))


def ssm_typed_parameters(template: dict[str, Any]) -> dict[str, str]:
    """Template parameter -> the SSM parameter name its default reads (``AWS::SSM::Parameter::Value<...>``);
    moto resolves them from its own SSM and fails the stack when the name is absent."""
    out = {}
    for name, param in (template.get("Parameters") or {}).items():
        if str(param.get("Type", "")).startswith("AWS::SSM::Parameter::Value<") and isinstance(param.get("Default"), str):
            out[name] = param["Default"]
    return out


def imported_ids(template: dict[str, Any]) -> set[str]:
    """Literal VPC, subnet and security-group ids in the resources: things the app imports, absent from a fresh
    emulator."""
    found: set[str] = set()

    def walk(n: Any) -> None:
        if isinstance(n, dict):
            for v in n.values():
                walk(v)
        elif isinstance(n, list):
            for v in n:
                walk(v)
        elif isinstance(n, str) and IMPORTED_ID.match(n):
            found.add(n)

    walk(template.get("Resources", {}))
    return found


def _substitute_strings(node: Any, mapping: dict[str, str], used: set[str]) -> Any:
    if isinstance(node, dict):
        return {k: _substitute_strings(v, mapping, used) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute_strings(v, mapping, used) for v in node]
    if isinstance(node, str):
        if node in mapping:
            used.add(node)
            return mapping[node]
        if "{{resolve:ssm:" in node:
            def sub(m: re.Match) -> str:
                used.add(m.group(0))
                return mapping.get(m.group(1), PLACEHOLDER.format("ssm-" + m.group(1).strip("/").replace("/", "-")))
            return _DYNAMIC_SSM.sub(sub, node)
    return node


def rewrite_template(
    template: dict[str, Any],
    *,
    stand_ins: dict[str, str] | None = None,
    ssm_values: dict[str, str] | None = None,
    ssm_stand_ins: set[str] | None = None,
) -> Rewrite:
    """A copy of ``template`` the emulator can deploy, the resources removed from it (with reasons) and the
    resources it deploys differently from the template (with notes).

    ``stand_ins`` maps imported literal ids (``vpc-...``) to the emulator's stand-ins; ``ssm_values`` gives the
    values of ``{{resolve:ssm:NAME}}`` references; ``ssm_stand_ins`` names the SSM parameters the deploy put in
    the emulator with a stand-in value (for the notes). Removing a resource can orphan another that only makes
    sense with it (a policy attached to nothing): such dependents still deploy, holding a placeholder string
    where the removed resource's id was, and say so in their note.
    """
    out = copy.deepcopy(template)
    adjusted: dict[str, str] = {}
    resources: dict[str, Any] = out.get("Resources", {})
    for lid in list(resources):
        resources[lid], changed = _normalize_getatt(resources[lid])
        if changed:
            _add_note(adjusted, lid, "short-form Fn::GetAtt (A.B) normalized to the list form moto reads")
    if "Outputs" in out:
        out["Outputs"], _ = _normalize_getatt(out["Outputs"])
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
    for lid, res in list(resources.items()):  # a fixup may add a resource
        if res.get("Type") in FIXUPS and "Properties" in res:
            note = FIXUPS[res["Type"]](res["Properties"], resources)
            if note:
                _add_note(adjusted, lid, note)
    for lid, res in resources.items():
        missing: list[str] = []
        res["Properties"] = _unprovided_attributes(res.get("Properties", {}), resources, missing)
        if missing:
            _add_note(adjusted, lid, f"the emulator does not provide {', '.join(missing)}: placeholder(s) stand in")
    if "Outputs" in out:
        out["Outputs"] = _unprovided_attributes(out["Outputs"], resources, [])
    for section in ("Resources", "Outputs", "Conditions"):
        if section in out:
            out[section] = _replace_refs(out[section], removed)
    resources = out.get("Resources", {})
    mapping = {**(stand_ins or {}), **(ssm_values or {})}
    ssm_params = ssm_typed_parameters(out)
    for param, name in ssm_params.items():
        if name in (ssm_stand_ins or set()) and name in (ssm_values or {}):
            # moto would fail the stack on the missing parameter: the stand-in value becomes the default
            out["Parameters"][param] = {"Type": "String", "Default": ssm_values[name],
                                        "Description": f"emulator stand-in for SSM parameter {name}"}
    for lid, res in resources.items():
        used: set[str] = set()
        res["Properties"] = _substitute_strings(res.get("Properties", {}), mapping, used)
        for value in sorted(used):
            if value in (stand_ins or {}):
                _add_note(adjusted, lid, f"imported {value} stands in as {stand_ins[value]} (created in the emulator)")
            else:
                name = _DYNAMIC_SSM.match(value).group(1) if _DYNAMIC_SSM.match(value) else value
                if name in (ssm_stand_ins or set()) or name not in (ssm_values or {}):
                    _add_note(adjusted, lid, f"{value}: SSM parameter absent from the emulator, stand-in value "
                              f"{(ssm_values or {}).get(name, PLACEHOLDER.format('ssm'))}")
                else:
                    _add_note(adjusted, lid, f"{value} resolved from the emulator's SSM")
        text = json.dumps(res.get("Properties", {}))
        placeholders = sorted(set(re.findall(r"emulator-skipped-([A-Za-z0-9-]+)", text)))
        if placeholders:
            _add_note(adjusted, lid, "points at placeholder(s) for what the emulator does not create: "
                      + ", ".join(placeholders))
        refs = sorted(p for p in ssm_params if f'"Ref": "{p}"' in text)
        for param in refs:
            if ssm_params[param] in (ssm_stand_ins or set()):
                _add_note(adjusted, lid, f"parameter {param} reads SSM {ssm_params[param]}, absent from the "
                          f"emulator: stand-in value {(ssm_values or {}).get(ssm_params[param])}")
            elif ssm_params[param] in (ssm_values or {}):
                _add_note(adjusted, lid, f"parameter {param} reads SSM {ssm_params[param]}: the emulator's own "
                          f"(sample) value {ssm_values[ssm_params[param]]}")
    return Rewrite(out, skipped, adjusted)
