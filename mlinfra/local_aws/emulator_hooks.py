"""What the emulator did with each resource, recorded inside the emulator process.

:func:`install` (called by :mod:`mlinfra.local_aws.server_main`) wraps moto's CloudFormation resource creation
so the deploy report can tell, per stack and logical id, from moto itself:

- ``condition false``: the resource's Condition evaluated false, so CloudFormation does not create it;
- ``created`` and the top-level properties moto's model never read (it dropped them: "the emulator ignored");
- ``failed`` with moto's own exception for the resource (what the CDK CLI shows as ``XML parse error`` when
  moto answers 500);
- ``unsupported``: moto has no model for the type (the rewrite removes those first, so this is a backstop);
- and per stack, the exception that failed ``CreateStack``/``UpdateStack`` as a whole (an output's GetAtt...).

It also makes moto's S3 enforce only the unconditional statements of a bucket policy: moto ignores a
statement's Condition, so the usual ``Deny unless aws:SecureTransport`` would deny every request to the
emulator's plain-HTTP endpoint (the policy itself is stored and read back as written).

``GET /__mlinfra_local__/outcomes`` returns them as JSON.
"""

from __future__ import annotations

import json
import threading
from typing import Any

_LOCK = threading.Lock()
#: "stack|logical id" -> {"stack", "logical_id", "type", "outcome", "error", "unread"}
RESOURCES: dict[str, dict[str, Any]] = {}
#: stack name -> the exception that failed its CreateStack/UpdateStack request
STACK_ERRORS: dict[str, str] = {}


class _ReadTracking(dict):
    """A dict that remembers which keys were read (the top-level properties of one resource)."""

    def __init__(self, data: dict[str, Any]):
        super().__init__(data)
        self.read: set[str] = set()

    def __getitem__(self, key: Any) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key: Any) -> bool:
        self.read.add(key)
        return super().__contains__(key)

    def pop(self, key: Any, *default: Any) -> Any:
        self.read.add(key)
        return super().pop(key, *default)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self.read.add(key)
        return super().setdefault(key, default)

    def _all(self) -> None:
        self.read.update(super().keys())

    def keys(self):  # noqa: D102
        self._all()
        return super().keys()

    def items(self):  # noqa: D102
        self._all()
        return super().items()

    def values(self):  # noqa: D102
        self._all()
        return super().values()

    def __iter__(self):
        self._all()
        return super().__iter__()

    def copy(self) -> dict[str, Any]:
        self._all()
        return dict(super().items())


def _record(stack: str, logical_id: str, type_: str, outcome: str, error: str = "", unread: list[str] | None = None):
    with _LOCK:
        RESOURCES[f"{stack}|{logical_id}"] = {"stack": stack, "logical_id": logical_id, "type": type_,
                                              "outcome": outcome, "error": error, "unread": unread or []}


def outcomes_json() -> bytes:
    with _LOCK:
        return json.dumps({"resources": list(RESOURCES.values()), "stacks": STACK_ERRORS}).encode()


def _error_text(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or getattr(exc, "description", None) or str(exc)
    return f"{type(exc).__name__}: {message}".strip()


def install() -> None:
    from moto.cloudformation import models, parsing

    def parse_and_create_resource(logical_id, resource_json, resources_map, account_id, region_name):
        stack = str(resources_map["AWS::StackName"])
        type_ = resource_json.get("Type", "")
        condition = resource_json.get("Condition")
        if condition and not resources_map.lazy_condition_map[condition]:
            _record(stack, logical_id, type_, "condition false")
            return None
        try:
            parsed = parsing.parse_resource_and_generate_name(logical_id, resource_json, resources_map)
            if not parsed:
                _record(stack, logical_id, type_, "unsupported", "moto has no CloudFormation model for this type")
                return None
            resource_class, parsed_json, physical_name = parsed
            properties = parsed_json.get("Properties") or {}
            tracked = _ReadTracking(properties) if isinstance(properties, dict) else properties
            parsed_json["Properties"] = tracked
            resource = resource_class.create_from_cloudformation_json(
                physical_name, parsed_json, account_id, region_name,
                LogicalId=logical_id, StackId=resources_map.stack_id, ResourceType=type_,
            )
            resource.cf_resource_type = type_
            resource.logical_resource_id = logical_id
        except Exception as exc:
            _record(stack, logical_id, type_, "failed", _error_text(exc))
            raise
        name_property = parsing.resource_name_property_from_type(type_)  # read before the model: not dropped
        unread = sorted(set(properties) - tracked.read - {name_property}) if isinstance(tracked, _ReadTracking) else []
        _record(stack, logical_id, type_, "created", unread=unread)
        return resource

    parsing.parse_and_create_resource = parse_and_create_resource
    _unconditional_bucket_policies()

    backend = models.CloudFormationBackend
    for name in ("create_stack", "update_stack"):
        original = getattr(backend, name)

        def wrapped(self, *args, __original=original, **kwargs):
            stack_name = kwargs.get("name") or kwargs.get("stack_name") or (args[0] if args else "")
            try:
                return __original(self, *args, **kwargs)
            except Exception as exc:
                with _LOCK:
                    STACK_ERRORS[str(stack_name)] = _error_text(exc)
                raise

        setattr(backend, name, wrapped)


def _unconditional_bucket_policies() -> None:
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    def get_permission(self, action: str, resource: str) -> Any:
        if self.policy is None:
            return PermissionResult.NEUTRAL
        policy = json.loads(self.policy.decode() if isinstance(self.policy, bytes) else self.policy)
        statements = policy.get("Statement", [])
        statements = [statements] if isinstance(statements, dict) else statements
        policy["Statement"] = [st for st in statements if not st.get("Condition")]
        return IAMPolicy(json.dumps(policy)).is_action_permitted(action, resource)

    FakeBucket.get_permission = get_permission
