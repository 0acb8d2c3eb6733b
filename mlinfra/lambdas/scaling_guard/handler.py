"""Endpoint scaling guard: keep an autoscaled variant's Application Auto Scaling registration in step with the
instance type the endpoint runs, so that an instance-type change deploys in one stack update.

SageMaker refuses an ``UpdateEndpoint`` that changes the instance type of, or removes, a variant registered with
Application Auto Scaling ("Update endpoints that use auto scaling": deregister, update, register again). The
scalable target stays ONE CloudFormation resource with a stable logical id (its primary identifier
``ResourceId|ScalableDimension|ServiceNamespace`` cannot be held by two resources of a stack); two custom resources
backed by this handler reconcile its registration around the endpoint update:

- ``Release``: the endpoint ``DependsOn`` it, it ``DependsOn`` the endpoint config. Carries the policy specs.
- ``Restore``: it ``DependsOn`` the endpoint; the scalable target and the scaling policies ``DependsOn`` it.

Properties (CloudFormation sends every scalar as a string; :func:`typed` restores the API's types)::

    {"EndpointLogicalId": "<the AWS::SageMaker::Endpoint's logical id in this stack>",
     "Variants": {"<variant>": {"InstanceType": "ml.g5.xlarge",
                                "Target": {"MinCapacity": 1, "MaxCapacity": 4, "RoleARN": "...", "SuspendedState": {}},
                                "ScheduledActions": [{PutScheduledAction fields}],
                                "Policies": [{PutScalingPolicy fields}]}}}   # Policies: Release only

``{{EndpointName}}`` in a value stands for the endpoint's name (Release cannot reference the endpoint: a cycle).

On ``Update`` only (Create and Delete do nothing: on Create no registration of ours exists yet, and CloudFormation's
own target and policies are created after us; on Delete the target resource is CloudFormation's to remove), for each
variant scaled in the old or the new properties, with the endpoint's CURRENT type of the variant (DescribeEndpoint ->
EndpointConfigName -> DescribeEndpointConfig; no endpoint: nothing to do):

- registered, and its current type differs from the desired type or it is no longer scaled -> DeregisterScalableTarget
  (ObjectNotFoundException = already done);
- scaled in both the old and the new properties, current type == desired type, not registered -> RegisterScalableTarget
  with the spec, PutScheduledAction for each, PutScalingPolicy for each policy the resource carries; an alarm whose
  action is an earlier ARN of that policy (the step policy's alarm is a stack resource; a re-put policy gets a new
  ARN) is pointed at the new one.

Forward type change: Release deregisters, the endpoint updates, Restore registers, CloudFormation creates the new
(renamed) policies. Rollbacks (CloudFormation sends Update with the properties swapped, in reverse order): Restore's
deregisters (the endpoint still runs the new type, the old one is desired) so the endpoint can revert, then Release's
registers the old target again with its old policies and scheduled actions.
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


def _endpoint_name(stack_id: str, logical_id: str) -> str | None:
    cfn = client("cloudformation")
    try:
        detail = cfn.describe_stack_resource(StackName=stack_id, LogicalResourceId=logical_id)["StackResourceDetail"]
    except cfn.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] == "ValidationError":  # the endpoint is not (or no longer) in the stack
            return None
        raise
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


def reconcile(event: Mapping[str, Any]) -> dict[str, Any]:
    """Apply the rule of the module docstring; returns ``{"endpoint", "deregistered", "registered", "repointed"}``."""
    for key in ("RequestType", "StackId", "ResourceProperties"):
        if key not in event:
            raise MalformedEventError(f"custom resource event lacks {key}")
    request_type, props = event["RequestType"], event["ResourceProperties"]
    if request_type not in ("Create", "Update", "Delete"):
        raise MalformedEventError(f"RequestType must be Create, Update or Delete, got: {request_type!r}")
    logical_id = props.get("EndpointLogicalId")
    if not isinstance(logical_id, str) or not logical_id:
        raise MalformedEventError(f"ResourceProperties.EndpointLogicalId must be a logical id, got: {logical_id!r}")
    result: dict[str, Any] = {"endpoint": None, "deregistered": [], "registered": [], "repointed": []}
    if request_type != "Update":
        return result
    new = _variants(props, "ResourceProperties")
    old = _variants(event.get("OldResourceProperties"), "OldResourceProperties")
    name = _endpoint_name(event["StackId"], logical_id) if (new or old) else None
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
        elif variant in old and variant in new and running.get(variant) == desired and not registered:
            spec = new[variant]
            aas.register_scalable_target(**_request(
                "RegisterScalableTarget", {**spec.get("Target", {}), "ResourceId": resource_id, **ids}, name))
            for action in spec.get("ScheduledActions", []):
                aas.put_scheduled_action(**_request("PutScheduledAction", {**action, "ResourceId": resource_id, **ids}, name))
            for policy in spec.get("Policies", []):
                put = aas.put_scaling_policy(**_request("PutScalingPolicy", {**policy, "ResourceId": resource_id, **ids}, name))
                result["repointed"] += _repoint_alarms(resource_id, policy["PolicyName"], put["PolicyARN"])
            result["registered"].append(resource_id)
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
