"""Validate an AWS API request against botocore's service model: the service's own published rules.

botocore's client-side validator checks types, required members and minimums only; the service model also
carries maximums, enums and patterns, which the service enforces on its side. :func:`request_errors` checks all
of them, so a request our code builds (a state-machine task's Parameters, a CloudFormation resource whose
properties are the API's) can be proven acceptable offline. Pure Python: botocore only, no CDK.
"""

from __future__ import annotations

import functools
import re
from typing import Any

__all__ = ["request_errors", "shape_errors", "operation_input", "service_model"]


@functools.lru_cache(maxsize=None)
def service_model(service: str) -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


def operation_input(service: str, operation: str) -> Any:
    """The input shape of ``service``'s ``operation`` (a KeyError-like botocore error if unknown)."""
    return service_model(service).operation_model(operation).input_shape


def request_errors(service: str, operation: str, params: dict[str, Any]) -> list[str]:
    """Every way ``params`` breaks the input shape of ``service.operation`` (empty when the request is valid)."""
    return shape_errors(operation_input(service, operation), params, operation)


def shape_errors(shape: Any, value: Any, path: str) -> list[str]:
    errors: list[str] = []
    _check(shape, value, path, errors)
    return errors


def _check(shape: Any, value: Any, path: str, errors: list[str]) -> None:
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            errors.append(f"{path}: must be an object ({shape.name}), got: {type(value).__name__}")
            return
        for name in meta.get("required", []):
            if name not in value:
                errors.append(f"{path}.{name}: is required by {shape.name}")
        for name, member_value in value.items():
            member = shape.members.get(name)
            if member is None:
                errors.append(f"{path}.{name}: is not a member of {shape.name}; members: {sorted(shape.members)}")
                continue
            _check(member, member_value, f"{path}.{name}", errors)
        return
    if kind == "list":
        if not isinstance(value, list):
            errors.append(f"{path}: must be a list, got: {type(value).__name__}")
            return
        _bounds(len(value), meta, path, "items", errors)
        for i, item in enumerate(value):
            _check(shape.member, item, f"{path}[{i}]", errors)
        return
    if kind == "map":
        if not isinstance(value, dict):
            errors.append(f"{path}: must be a map, got: {type(value).__name__}")
            return
        _bounds(len(value), meta, path, "entries", errors)
        for k, v in value.items():
            _check(shape.key, k, f"{path}<key {k!r}>", errors)
            _check(shape.value, v, f"{path}.{k}", errors)
        return
    if kind == "string":
        if not isinstance(value, str):
            errors.append(f"{path}: must be a string, got: {value!r}")
            return
        enum = getattr(shape, "enum", None) or []
        if enum and value not in enum:
            shown = enum if len(enum) <= 12 else [*enum[:12], "..."]
            errors.append(f"{path}: must be one of {shown}, got: {value!r}")
        _bounds(len(value), meta, path, "characters", errors)
        pattern = meta.get("pattern")
        if pattern and not _matches(pattern, value):
            errors.append(f"{path}: must match the pattern {pattern!r}, got: {value!r}")
        return
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{path}: must be an integer, got: {value!r}")
            return
        _bounds(value, meta, path, "", errors)
        return
    if kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{path}: must be a number, got: {value!r}")
        return
    if kind == "boolean":
        if not isinstance(value, bool):
            errors.append(f"{path}: must be true or false, got: {value!r}")
        return
    # timestamp, blob: accepted as given


def _matches(pattern: str, value: str) -> bool:
    """``value`` matches the model's ``pattern``; a pattern Python's ``re`` cannot compile (the models use Java's
    ``\\p{...}`` classes in places) is not checked."""
    try:
        return re.fullmatch(pattern, value, flags=re.DOTALL) is not None
    except re.error:
        return True


def _bounds(n: int, meta: dict[str, Any], path: str, unit: str, errors: list[str]) -> None:
    lo, hi = meta.get("min"), meta.get("max")
    what = f" {unit}" if unit else ""
    if lo is not None and n < lo:
        errors.append(f"{path}: must have at least {lo}{what}, got: {n}")
    if hi is not None and n > hi:
        errors.append(f"{path}: must have at most {hi}{what}, got: {n}")
