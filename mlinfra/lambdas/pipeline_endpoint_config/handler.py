"""Retrain pipeline: the rollout's new endpoint config, carried forward from the endpoint's CURRENT config.

A rollout swaps the model and nothing else. Event (from the state machine)::

    {"endpoint_name": "...", "variant_name": "AllTraffic", "model_name": "<the new model>",
     "endpoint_config_name": "<the new config's name>"}

1. ``DescribeEndpoint``: the config the endpoint runs now and each variant's current instance count.
2. ``DescribeEndpointConfig``: that whole config.
3. :func:`carry_forward` (pure): every member ``CreateEndpointConfig`` accepts is copied (variants, shadow
   variants, data capture, async inference, explainer, key, VPC...); the target variant's ``ModelName`` becomes
   the new model; every instance-backed variant starts at its CURRENT instance count (not the initial count).
   A target variant that is serverless or missing is refused.
4. ``CreateEndpointConfig`` under the given name; an existing config of that name (a retried task) is kept.

Returns ``{"endpoint_config_name", "previous_config_name", "variants": [{"name", "model", "instances"}]}``.
"""

from __future__ import annotations

import copy
from typing import Any

import boto3
from aws_lambda_powertools import Logger

logger = Logger()
_clients: dict[str, Any] = {}

#: Response-only members of DescribeEndpointConfig (never sent back).
_READ_ONLY = ("EndpointConfigArn", "CreationTime", "EndpointConfigName", "ResponseMetadata")


class MalformedEventError(ValueError):
    """The event lacks a field the handler needs."""


class NotReproducibleError(ValueError):
    """The endpoint's configuration cannot be carried forward with only the model swapped."""


def sagemaker():
    if "sagemaker" not in _clients:
        _clients["sagemaker"] = boto3.client("sagemaker")
    return _clients["sagemaker"]


def carry_forward(current: dict[str, Any], endpoint: dict[str, Any], *, variant_name: str, model_name: str,
                  config_name: str, accepted: set[str]) -> dict[str, Any]:
    """The CreateEndpointConfig request: ``current`` with only the model (and the capacity, from ``endpoint``)
    changed. ``accepted``: the members CreateEndpointConfig accepts (from the service model)."""
    # Empty members are not sent (some describe responses carry an empty DataCaptureConfig, which Create refuses).
    request = {k: copy.deepcopy(v) for k, v in current.items()
               if k in accepted and k not in _READ_ONLY and v not in (None, {}, [])}
    request["EndpointConfigName"] = config_name
    counts = {v["VariantName"]: v.get("CurrentInstanceCount") for v in endpoint.get("ProductionVariants", [])}
    variants = request.get("ProductionVariants", [])
    target = [v for v in variants if v["VariantName"] == variant_name]
    if not target:
        raise NotReproducibleError(f"variant {variant_name!r} is not in endpoint config {current.get('EndpointConfigName')!r}; "
                                   f"variants: {[v['VariantName'] for v in variants]}")
    if "ServerlessConfig" in target[0]:
        raise NotReproducibleError(f"variant {variant_name!r} is serverless: the pipeline rolls out to instance-backed variants")
    for v in variants:
        if v["VariantName"] == variant_name:
            v["ModelName"] = model_name
        if "InstanceType" in v and counts.get(v["VariantName"]):
            v["InitialInstanceCount"] = counts[v["VariantName"]]
    return request


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise MalformedEventError(f"event must be an object, got: {type(event).__name__}")
    missing = [f for f in ("endpoint_name", "variant_name", "model_name", "endpoint_config_name")
               if not isinstance(event.get(f), str) or not event[f]]
    if missing:
        raise MalformedEventError(f"event needs non-empty strings: {missing}")
    sm = sagemaker()
    endpoint = sm.describe_endpoint(EndpointName=event["endpoint_name"])
    current = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    accepted = set(sm.meta.service_model.operation_model("CreateEndpointConfig").input_shape.members)
    request = carry_forward(current, endpoint, variant_name=event["variant_name"], model_name=event["model_name"],
                            config_name=event["endpoint_config_name"], accepted=accepted)
    try:
        sm.create_endpoint_config(**request)
    except sm.exceptions.ClientError as e:
        if "already exist" not in str(e).lower():
            raise
        logger.info("endpoint config exists (a retried task): kept", extra={"name": request["EndpointConfigName"]})
    variants = [{"name": v["VariantName"], "model": v.get("ModelName"), "instances": v.get("InitialInstanceCount")}
                for v in request.get("ProductionVariants", [])]
    return {"endpoint_config_name": request["EndpointConfigName"], "previous_config_name": endpoint["EndpointConfigName"],
            "variants": variants}
