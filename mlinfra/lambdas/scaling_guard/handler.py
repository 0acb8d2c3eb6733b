"""Endpoint scaling guard: keep an autoscaled variant's Application Auto Scaling registration in step with the
instance type the endpoint runs, so that an instance-type change deploys in one stack update.

SageMaker refuses an ``UpdateEndpoint`` that changes the instance type of, or removes, a variant registered with
Application Auto Scaling ("Update endpoints that use auto scaling": deregister, update, register again). The
scalable target stays ONE CloudFormation resource with a stable logical id (its primary identifier
``ResourceId|ScalableDimension|ServiceNamespace`` cannot be held by two resources of a stack); two custom resources
backed by this handler reconcile its registration around the endpoint update:

- ``Release``: the endpoint ``DependsOn`` it, it ``DependsOn`` the endpoint config.
- ``Restore``: it ``DependsOn`` the endpoint; the scalable target and the scaling policies ``DependsOn`` it.

Properties, the same for both but ``Phase`` (CloudFormation sends every scalar as a string; :func:`typed` restores the
API's types)::

    {"EndpointLogicalId": "<the AWS::SageMaker::Endpoint's logical id in this stack>", "Phase": "Release" | "Restore",
     "Variants": {"<variant>": {"InstanceType": "ml.g5.xlarge", "TargetLogicalId": "<the ScalableTarget's>",
                                "Target": {"MinCapacity": 1, "MaxCapacity": 4, "SuspendedState": {}},
                                "ScheduledActions": [{PutScheduledAction fields}],
                                "Policies": [{"LogicalId": "<the ScalingPolicy's>", PutScalingPolicy fields}]}}}

``{{EndpointName}}`` in a value stands for the endpoint's name (Release cannot reference the endpoint: a cycle). No
RoleARN: Application Auto Scaling uses the SageMaker service-linked role (no ``iam:PassRole``).

On ``Create`` and ``Update`` (``Delete`` does nothing: the target is CloudFormation's to remove), for each variant scaled
in the old or the new properties (a Create has no old ones), with the endpoint's CURRENT type of the variant
(DescribeEndpoint -> EndpointConfigName -> DescribeEndpointConfig; no endpoint, as on a new stack: nothing to do):

1. registered, and its current type differs from the desired type or it is no longer scaled -> DeregisterScalableTarget
   (ObjectNotFoundException = already done). A Create of Release does this too: the first deploy of the guards over an
   existing stack may change the type.
2. current type == desired type, not registered, and CloudFormation already has the target (scaled in the old
   properties; on a Create of Restore: ``DescribeStackResource`` finds ``TargetLogicalId``, i.e. an existing stack) ->
   RegisterScalableTarget and PutScheduledAction with the spec CloudFormation has on record: the OLD properties going
   forward (its own target update, after Restore, applies this deploy's min/max/schedule change), the NEW ones in a
   rollback (stack status ``*ROLLBACK*``) and on a Create.
3. registered (now), by Restore, or by either guard right after step 2 -> delete the target's policies whose names the
   properties do not carry (Application Auto Scaling takes one target-tracking policy per metric: CloudFormation
   creates renamed policies before its cleanup deletes the old ones), then PutScalingPolicy for each missing policy
   whose logical id the stack already holds (true in a rollback; going forward CloudFormation creates them after
   Restore). An alarm whose action is an earlier ARN of that policy (the step policy's alarm is a stack resource; a
   re-put policy gets a new ARN) is pointed at the new one.

Forward type change: Release deregisters, the endpoint updates, Restore registers (old spec), CloudFormation updates
the target and creates the new (renamed) policies. First deploy over an existing stack: the same with Create events;
Restore deletes the previous release's policy names. Rollbacks (Update with the properties swapped) work in either
order: reverse order (Restore deregisters, the endpoint reverts, Release registers and re-puts the old policies) or
the previous template's dependency order (Release deregisters, the endpoint reverts, Restore registers, deletes the
renamed policies and re-puts the old ones).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any, Mapping

import boto3
from aws_lambda_powertools import Logger

logger = Logger()

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
ENDPOINT_NAME = "{{EndpointName}}"
#: The error Application Auto Scaling returns for a target that does not exist (botocore model, tested).
NOT_FOUND = "ObjectNotFoundException"
_clients: dict[str, Any] = {}


class MalformedEventError(ValueError):
    """The custom resource event lacks a field the handler needs."""


def client(name: str):
    if name not in _clients:
        _clients[name] = boto3.client(name)
    return _clients[name]


def typed(shape: Any, value: Any) -> Any:
    """``value`` with the scalar types of botocore ``shape`` (CloudFormation passes numbers and booleans as strings)."""
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        return {k: typed(shape.members[k], v) if k in shape.members else v for k, v in value.items()}
    if kind == "list" and isinstance(value, list):
        return [typed(shape.member, v) for v in value]
    if isinstance(value, str):
        if kind in ("integer", "long"):
            return int(value)
        if kind in ("double", "float"):
            return float(value)
        if kind == "boolean":
            return value.lower() == "true"
    return value


def _request(operation: str, params: Mapping[str, Any], endpoint_name: str) -> dict[str, Any]:
    """The request for ``operation``: the endpoint name substituted, scalars typed by the service model."""
    text = json.dumps(params).replace(ENDPOINT_NAME, endpoint_name)
    shape = client("application-autoscaling").meta.service_model.operation_model(operation).input_shape
    return typed(shape, json.loads(text))


def _variants(props: Mapping[str, Any] | None, which: str) -> dict[str, dict[str, Any]]:
    variants = (props or {}).get("Variants", {})
    if not isinstance(variants, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("InstanceType"), str) for v in variants.values()):
        raise MalformedEventError(f"{which}.Variants must map variant names to {{InstanceType, Target, ...}}, "
                                  f"got: {variants!r}")
    return variants


def _stack_resource(stack_id: str, logical_id: str) -> dict[str, Any] | None:
    """The stack's record of ``logical_id``; None when the stack does not (or no longer) hold it."""
    cfn = client("cloudformation")
    try:
        return cfn.describe_stack_resource(StackName=stack_id, LogicalResourceId=logical_id)["StackResourceDetail"]
    except cfn.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] == "ValidationError":
            return None
        raise


def _endpoint_name(stack_id: str, logical_id: str) -> str | None:
    detail = _stack_resource(stack_id, logical_id)
    if detail is None:
        return None
    physical = detail.get("PhysicalResourceId") or ""
    # The physical id is the endpoint ARN (whose name part SageMaker lowercases) or the name.
    return physical.split(":endpoint/", 1)[1] if ":endpoint/" in physical else (physical or None)


def current_types(name: str) -> tuple[str, dict[str, str]] | None:
    """The endpoint's exact name and ``{variant: instance type}`` it runs now; None when there is no endpoint."""
    sm = client("sagemaker")
    try:
        endpoint = sm.describe_endpoint(EndpointName=name)
    except sm.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] not in ("ValidationException", "ResourceNotFound"):
            raise
        # The ARN's name part is lowercased: find the endpoint whose name matches without case.
        exact = [e["EndpointName"] for page in sm.get_paginator("list_endpoints").paginate()
                 for e in page["Endpoints"] if e["EndpointName"].lower() == name.lower() and e["EndpointName"] != name]
        if not exact:
            return None
        endpoint = sm.describe_endpoint(EndpointName=exact[0])
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    return endpoint["EndpointName"], {
        v["VariantName"]: v.get("InstanceType") for v in config["ProductionVariants"]}


def _registered(resource_id: str) -> bool:
    targets = client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace=NAMESPACE, ResourceIds=[resource_id], ScalableDimension=DIMENSION)["ScalableTargets"]
    return bool(targets)


def _repoint_alarms(resource_id: str, policy_name: str, policy_arn: str) -> list[str]:
    """Point the alarms whose action is an earlier incarnation of this policy (a step policy re-put after a rollback
    gets a new ARN; its alarm is a stack resource) at ``policy_arn``; returns the alarm names changed."""
    cw = client("cloudwatch")
    suffix = f":resource/{NAMESPACE}/{resource_id}:policyName/{policy_name}"
    prefix = policy_arn.split(":scalingPolicy:", 1)[0] + ":scalingPolicy:"
    fields = cw.meta.service_model.operation_model("PutMetricAlarm").input_shape.members
    changed = []
    for page in cw.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"], ActionPrefix=prefix):
        for alarm in page["MetricAlarms"]:
            actions = alarm.get("AlarmActions", [])
            if not any(a.endswith(suffix) and a != policy_arn for a in actions):
                continue
            request = {k: v for k, v in alarm.items() if k in fields}
            request["AlarmActions"] = [policy_arn if a.endswith(suffix) else a for a in actions]
            cw.put_metric_alarm(**request)
            changed.append(alarm["AlarmName"])
    return changed


def _in_stack(stack_id: str, logical_id: str | None) -> bool:
    """Whether the stack already holds the resource ``logical_id`` (created, not being created or gone)."""
    detail = _stack_resource(stack_id, logical_id) if logical_id else None
    if detail is None:
        return False
    status = detail.get("ResourceStatus", "")
    return bool(detail.get("PhysicalResourceId")) and status not in (
        "CREATE_IN_PROGRESS", "CREATE_FAILED", "DELETE_COMPLETE", "DELETE_IN_PROGRESS")


def _rolling_back(stack_id: str) -> bool:
    """Whether CloudFormation is rolling the stack back (the event's NEW properties are then the previous template's)."""
    stacks = client("cloudformation").describe_stacks(StackName=stack_id)["Stacks"]
    return bool(stacks) and "ROLLBACK" in stacks[0].get("StackStatus", "")


def _policy_request(policy: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in policy.items() if k != "LogicalId"}


def _prune(resource_id: str, keep: set[str]) -> tuple[list[str], set[str]]:
    """Delete the scaling policies of the target whose names are not in ``keep`` (Application Auto Scaling allows one
    target-tracking policy per metric specification: an old-named policy would refuse CloudFormation's new one);
    returns the names deleted and the names kept."""
    aas = client("application-autoscaling")
    ids = {"ServiceNamespace": NAMESPACE, "ScalableDimension": DIMENSION, "ResourceId": resource_id}
    deleted, kept = [], set()
    for page in aas.get_paginator("describe_scaling_policies").paginate(**ids):
        for policy in page["ScalingPolicies"]:
            if policy["ResourceId"] != resource_id:
                continue
            if policy["PolicyName"] in keep:
                kept.add(policy["PolicyName"])
                continue
            try:
                aas.delete_scaling_policy(PolicyName=policy["PolicyName"], **ids)
            except aas.exceptions.ClientError as exc:
                if exc.response["Error"]["Code"] != NOT_FOUND:
                    raise
            deleted.append(policy["PolicyName"])
    return deleted, kept


def reconcile(event: Mapping[str, Any]) -> dict[str, Any]:
    """Apply the rule of the module docstring; returns ``{"endpoint", "deregistered", "registered", "repointed",
    "pruned"}``."""
    for key in ("RequestType", "StackId", "ResourceProperties"):
        if key not in event:
            raise MalformedEventError(f"custom resource event lacks {key}")
    request_type, props = event["RequestType"], event["ResourceProperties"]
    if request_type not in ("Create", "Update", "Delete"):
        raise MalformedEventError(f"RequestType must be Create, Update or Delete, got: {request_type!r}")
    logical_id = props.get("EndpointLogicalId")
    if not isinstance(logical_id, str) or not logical_id:
        raise MalformedEventError(f"ResourceProperties.EndpointLogicalId must be a logical id, got: {logical_id!r}")
    phase = props.get("Phase") or ("Restore" if "ScalingRestore" in str(event.get("LogicalResourceId")) else "Release")
    if phase not in ("Release", "Restore"):
        raise MalformedEventError(f"ResourceProperties.Phase must be Release or Restore, got: {phase!r}")
    result: dict[str, Any] = {"endpoint": None, "deregistered": [], "registered": [], "repointed": [], "pruned": []}
    if request_type == "Delete":
        return result
    stack_id = event["StackId"]
    new = _variants(props, "ResourceProperties")
    old = _variants(event.get("OldResourceProperties"), "OldResourceProperties") if request_type == "Update" else {}
    name = _endpoint_name(stack_id, logical_id) if (new or old) else None
    found = current_types(name) if name else None
    if found is None:
        return result
    name, running = found
    result["endpoint"] = name
    aas = client("application-autoscaling")
    ids = {"ServiceNamespace": NAMESPACE, "ScalableDimension": DIMENSION}
    for variant in sorted({*old, *new}):
        resource_id = f"endpoint/{name}/variant/{variant}"
        registered = _registered(resource_id)
        desired = new.get(variant, {}).get("InstanceType")
        if registered and (variant not in new or running.get(variant) != desired):
            try:
                aas.deregister_scalable_target(ResourceId=resource_id, **ids)
            except aas.exceptions.ClientError as exc:
                if exc.response["Error"]["Code"] != NOT_FOUND:
                    raise
            result["deregistered"].append(resource_id)
            continue
        if variant not in new or running.get(variant) != desired:
            continue
        spec = new[variant]
        policies = spec.get("Policies", [])
        if not registered:
            # Register again only a target CloudFormation already has (an update of an existing stack, or a
            # rollback); on a new stack CloudFormation creates it after Restore, and a registered one would clash.
            if variant not in old and not (request_type == "Create" and phase == "Restore"
                                           and _in_stack(stack_id, spec.get("TargetLogicalId"))):
                continue
            # Going forward, the target as CloudFormation has it on record (the OLD properties): its own update of
            # the target, after Restore, then applies a min/max or scheduled-action change of this deploy. In a
            # rollback the desired (NEW) properties are the ones the rollback converges to.
            record = spec if request_type == "Create" or _rolling_back(stack_id) else old[variant]
            aas.register_scalable_target(**_request(
                "RegisterScalableTarget", {**record.get("Target", {}), "ResourceId": resource_id, **ids}, name))
            for action in record.get("ScheduledActions", []):
                aas.put_scheduled_action(**_request("PutScheduledAction", {**action, "ResourceId": resource_id, **ids}, name))
            result["registered"].append(resource_id)
        elif phase != "Restore":
            continue
        # The target is registered. Delete the policies the template no longer names (before CloudFormation creates
        # the renamed ones, and before a re-put below), then re-put the missing policies whose logical ids the stack
        # already holds (a rollback; going forward CloudFormation creates the new ones after Restore).
        deleted, kept = _prune(resource_id, {p["PolicyName"] for p in policies})
        result["pruned"] += [f"{resource_id}:{n}" for n in deleted]
        for policy in policies:
            if policy["PolicyName"] in kept or not _in_stack(stack_id, policy.get("LogicalId")):
                continue
            put = aas.put_scaling_policy(**_request(
                "PutScalingPolicy", {**_policy_request(policy), "ResourceId": resource_id, **ids}, name))
            result["repointed"] += _repoint_alarms(resource_id, policy["PolicyName"], put["PolicyARN"])
    logger.info("reconciled scalable targets", extra=result)
    return result


def respond(event: Mapping[str, Any], status: str, reason: str) -> dict[str, Any]:
    """The custom resource response, PUT to the event's pre-signed ResponseURL; returns the body sent."""
    body = {
        "Status": status,
        "Reason": reason[:1000],
        # One physical id for the life of the resource: an Update never becomes a replacement.
        "PhysicalResourceId": event.get("PhysicalResourceId") or f"{event.get('LogicalResourceId', 'ScalingGuard')}-guard",
        "StackId": event.get("StackId"),
        "RequestId": event.get("RequestId"),
        "LogicalResourceId": event.get("LogicalResourceId"),
        "NoEcho": False,
        "Data": {},
    }
    url = event.get("ResponseURL")
    if url:
        encoded = json.dumps(body).encode()
        request = urllib.request.Request(url, data=encoded, method="PUT",
                                         headers={"Content-Type": "", "Content-Length": str(len(encoded))})
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (CloudFormation's https URL)
            response.read()
    return body


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        result = reconcile(event)
    except Exception as exc:  # report every failure to CloudFormation instead of leaving the stack waiting
        logger.exception("scaling guard failed")
        return respond(event, "FAILED", f"{type(exc).__name__}: {exc}")
    return respond(event, "SUCCESS", f"deregistered {result['deregistered']}, registered {result['registered']}")
