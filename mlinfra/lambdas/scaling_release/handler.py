"""Endpoint scaling release: deregister the scalable targets an endpoint update is about to invalidate.

SageMaker refuses an ``UpdateEndpoint`` that changes the instance type of, or removes, a production variant that is
registered with Application Auto Scaling ("Update endpoints that use auto scaling": deregister the variant first,
update, then register it again). A CloudFormation stack update cannot do that by itself: it updates the endpoint
while the old ``AWS::ApplicationAutoScaling::ScalableTarget`` still exists and deletes replaced or removed resources
only in its cleanup phase, after the endpoint update has already failed.

This handler backs a ``Custom::MlinfraScalingRelease`` resource that the endpoint ``DependsOn`` (so CloudFormation
runs it BEFORE the endpoint update). Its properties::

    {"EndpointLogicalId": "<the AWS::SageMaker::Endpoint's logical id in this stack>",
     "Variants": {"<variant name>": "<instance type>", ...}}   # the autoscaled variants only

1. :func:`to_release` (pure): on ``Update``, the variants of the OLD properties whose instance type changes or that
   are no longer autoscaled (variant removed, scaling turned off). ``Create`` and ``Delete`` release nothing: no
   target of ours exists before the resource, and a ``Delete`` comes after the endpoint's own deletion (which
   deregisters its targets) or from a rollback, which must not remove the registrations the stack returns to.
2. The endpoint's name: ``DescribeStackResource`` of the endpoint's logical id in this stack. Its physical id is the
   endpoint ARN, whose name part SageMaker lowercases, so targets are matched case-insensitively (endpoint names
   are unique regardless of case because their ARNs are).
3. ``DescribeScalableTargets`` (namespace ``sagemaker``, dimension ``sagemaker:variant:DesiredInstanceCount``),
   then ``DeregisterScalableTarget`` for each released variant that is registered. Deregistering deletes the
   target's scaling policies and scheduled actions with it. A target that is already gone (``ObjectNotFoundException``,
   or absent from the listing) is done: re-running the same event is harmless.

The mlinfra construct changes each target's logical id with its instance type, so after the endpoint update
CloudFormation CREATES a fresh target and policies (a new registration) and drops the old one in cleanup; the old
target carries ``DeletionPolicy: Retain`` because its registration identifier is the new target's too.

The response goes to CloudFormation's pre-signed ``ResponseURL`` (PUT, as custom resource providers must). A failure
is reported as FAILED with the reason, so the stack update stops before the endpoint update instead of hanging.
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
#: The error Application Auto Scaling returns for a target that does not exist (botocore model, tested).
NOT_FOUND = "ObjectNotFoundException"
_clients: dict[str, Any] = {}


class MalformedEventError(ValueError):
    """The custom resource event lacks a field the handler needs."""


def client(name: str):
    if name not in _clients:
        _clients[name] = boto3.client(name)
    return _clients[name]


def _variants(props: Mapping[str, Any] | None, which: str) -> dict[str, str]:
    variants = (props or {}).get("Variants", {})
    if not isinstance(variants, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in variants.items()):
        raise MalformedEventError(f"{which}.Variants must map variant names to instance types, got: {variants!r}")
    return variants


def to_release(request_type: str, new: Mapping[str, Any] | None, old: Mapping[str, Any] | None) -> list[str]:
    """The variants whose scalable target must be deregistered before the endpoint changes (sorted)."""
    if request_type not in ("Create", "Update", "Delete"):
        raise MalformedEventError(f"RequestType must be Create, Update or Delete, got: {request_type!r}")
    if request_type != "Update":
        return []
    before, after = _variants(old, "OldResourceProperties"), _variants(new, "ResourceProperties")
    return sorted(name for name, instance_type in before.items() if after.get(name) != instance_type)


def endpoint_name_of(physical_id: str) -> str:
    """The endpoint name in the endpoint's physical id (its ARN, ``arn:...:endpoint/<name>``, or a bare name)."""
    return physical_id.split(":endpoint/", 1)[1] if ":endpoint/" in physical_id else physical_id


def matching_targets(targets: list[dict[str, Any]], endpoint_name: str, variants: list[str]) -> list[str]:
    """The registered ResourceIds (exact case) of ``variants`` of ``endpoint_name`` (matched without case)."""
    wanted = {f"endpoint/{endpoint_name}/variant/{v}".lower() for v in variants}
    return sorted({t["ResourceId"] for t in targets if t["ResourceId"].lower() in wanted})


def _endpoint_name(stack_id: str, logical_id: str) -> str | None:
    try:
        detail = client("cloudformation").describe_stack_resource(
            StackName=stack_id, LogicalResourceId=logical_id)["StackResourceDetail"]
    except client("cloudformation").exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] == "ValidationError":  # the endpoint is not (or no longer) in the stack
            return None
        raise
    physical = detail.get("PhysicalResourceId")
    return endpoint_name_of(physical) if physical else None


def _registered(endpoint_name: str, variants: list[str]) -> list[str]:
    aas = client("application-autoscaling")
    targets: list[dict[str, Any]] = []
    for page in aas.get_paginator("describe_scalable_targets").paginate(
            ServiceNamespace=NAMESPACE, ScalableDimension=DIMENSION):
        targets.extend(page["ScalableTargets"])
    return matching_targets(targets, endpoint_name, variants)


def release(event: Mapping[str, Any]) -> dict[str, Any]:
    """Deregister what :func:`to_release` names; returns ``{"endpoint", "released", "deregistered"}``."""
    for key in ("RequestType", "StackId", "ResourceProperties"):
        if key not in event:
            raise MalformedEventError(f"custom resource event lacks {key}")
    props = event["ResourceProperties"]
    logical_id = props.get("EndpointLogicalId")
    if not isinstance(logical_id, str) or not logical_id:
        raise MalformedEventError(f"ResourceProperties.EndpointLogicalId must be a logical id, got: {logical_id!r}")
    variants = to_release(event["RequestType"], props, event.get("OldResourceProperties"))
    result: dict[str, Any] = {"endpoint": None, "released": variants, "deregistered": []}
    if not variants:
        return result
    name = _endpoint_name(event["StackId"], logical_id)
    result["endpoint"] = name
    if name is None:
        return result
    aas = client("application-autoscaling")
    for resource_id in _registered(name, variants):
        try:
            aas.deregister_scalable_target(ServiceNamespace=NAMESPACE, ResourceId=resource_id, ScalableDimension=DIMENSION)
        except aas.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] != NOT_FOUND:
                raise
            continue  # deregistered meanwhile: done
        result["deregistered"].append(resource_id)
    logger.info("released scalable targets", extra=result)
    return result


def respond(event: Mapping[str, Any], status: str, reason: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The custom resource response, PUT to the event's pre-signed ResponseURL; returns the body sent."""
    body = {
        "Status": status,
        "Reason": reason[:1000],
        # One physical id for the life of the resource: an Update never becomes a replacement.
        "PhysicalResourceId": event.get("PhysicalResourceId") or f"{event.get('LogicalResourceId', 'ScalingRelease')}-release",
        "StackId": event.get("StackId"),
        "RequestId": event.get("RequestId"),
        "LogicalResourceId": event.get("LogicalResourceId"),
        "NoEcho": False,
        "Data": {"Deregistered": ",".join(data.get("deregistered", []))},
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
        result = release(event)
    except Exception as exc:  # report every failure to CloudFormation instead of leaving the stack waiting
        logger.exception("scaling release failed")
        return respond(event, "FAILED", f"{type(exc).__name__}: {exc}", {})
    return respond(event, "SUCCESS", f"deregistered {len(result['deregistered'])} scalable target(s)", result)
