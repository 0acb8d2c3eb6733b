"""The order in which CloudFormation applies a stack update, computed from the old and the new template.

CloudFormation's documented update behaviour (User Guide, "Monitor the progress of a stack update": a replaced
resource is created first and the old one deleted afterwards; "DependsOn attribute"): a resource is created or updated only after every resource it depends on (``DependsOn``, ``Ref``,
``Fn::GetAtt``, ``Fn::Sub`` in the NEW template) has been processed; a resource whose changed property is
create-only is REPLACED (the new one is created in that same pass); removed resources and the old copies of
replaced ones are deleted only in the cleanup phase, after every create and update, in reverse dependency order of
the OLD template. A resource whose ``DeletionPolicy`` (in the old template) is ``Retain`` leaves the stack without
any API call.

:func:`update_plan` returns those steps in order, so a test can assert that one resource's update runs before
another's. Which properties are create-only comes from the resource schemas cfn-lint ships (the CloudFormation
registry's ``createOnlyProperties``). Values are compared as synthesized, so a property that references a replaced
resource counts as changed (its physical id changes at deploy time).

One refusal is modelled too (rule ``cloudformation.primary-identifier-unique``): CloudFormation will not create a
resource whose primary identifier (the schema's ``primaryIdentifier``, when every part of it is a template property)
is already held by another resource of the stack ("... already exists in stack"); during the update every old
resource still exists, the old copy of a replaced resource included. :func:`update_plan` raises
:class:`IdentifierClash` for such a plan.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cfnlint


@dataclass(frozen=True)
class Step:
    action: str  #: "create", "update", "replace" (create of the new copy) or "delete" (cleanup)
    logical_id: str
    retained: bool = False  #: a delete that makes no API call (DeletionPolicy Retain)


class IdentifierClash(ValueError):
    """The plan creates a resource whose primary identifier another resource of the stack holds."""


@functools.lru_cache(maxsize=None)
def _schema(resource_type: str) -> dict[str, Any]:
    """The registry schema cfn-lint ships for ``resource_type`` (empty for custom resources and unknown types)."""
    schemas = Path(cfnlint.__file__).parent / "data" / "schemas"
    index = json.loads((schemas / "providers" / "us-east-1.json").read_text())
    if resource_type not in index:
        return {}
    return json.loads((schemas / "resources" / f"{index[resource_type]}.json").read_text())


def create_only(resource_type: str) -> frozenset[str]:
    """Top-level create-only properties of ``resource_type`` (empty for custom resources and unknown types)."""
    return frozenset(p.split("/")[2] for p in _schema(resource_type).get("createOnlyProperties", [])
                     if p.startswith("/properties/"))


def primary_identifier(resource: dict[str, Any]) -> tuple[str, ...] | None:
    """The resource's primary identifier as synthesized, or None when a part of it is not a template property
    (a generated ARN or id: two resources cannot clash on it)."""
    parts = _schema(resource["Type"]).get("primaryIdentifier", [])
    props = resource.get("Properties", {})
    names = [p.split("/")[2] for p in parts if p.startswith("/properties/")]
    if not names or len(names) != len(parts) or any(n not in props for n in names):
        return None
    return (resource["Type"], *(json.dumps(props[n], sort_keys=True) for n in names))


def _check_identifiers(old_res: dict[str, Any], new_res: dict[str, Any], changed: dict[str, str],
                       replaced: set[str]) -> None:
    for lid, action in changed.items():
        if action not in ("create", "replace"):
            continue
        ident = primary_identifier(new_res[lid])
        if ident is None or _references([json.loads(v) for v in ident[1:]], replaced):
            continue  # an identifier naming a replaced resource's physical id changes at deploy time
        holders = [o for o, r in old_res.items() if (o != lid or action == "replace") and primary_identifier(r) == ident]
        holders += [o for o, r in new_res.items() if o != lid and o not in old_res and primary_identifier(r) == ident]
        if holders:
            raise IdentifierClash(f"{action} of {lid}: its primary identifier {ident[1:]} already exists in stack "
                                  f"(held by {sorted(set(holders))})")


def dependencies(resource: dict[str, Any]) -> set[str]:
    deps = set(resource.get("DependsOn", []) if isinstance(resource.get("DependsOn"), list) else
               [resource["DependsOn"]] if "DependsOn" in resource else [])

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "Ref" in value and isinstance(value["Ref"], str):
                deps.add(value["Ref"])
            if "Fn::GetAtt" in value:
                target = value["Fn::GetAtt"]
                deps.add(target[0] if isinstance(target, list) else target.split(".")[0])
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(resource.get("Properties", {}))
    return deps


def _references(value: Any, logical_ids: set[str]) -> bool:
    text = json.dumps(value)
    return any(f'"Ref": "{i}"' in text or f'["{i}", ' in text for i in logical_ids)


def update_plan(old: dict[str, Any], new: dict[str, Any]) -> list[Step]:
    old_res, new_res = old.get("Resources", {}), new.get("Resources", {})
    changed: dict[str, str] = {}  # logical id -> "create" | "update" | "replace"
    replaced: set[str] = set()
    pending = [lid for lid in new_res]
    # First the resources whose own properties changed, then (to a fixpoint) those referring to a replaced one.
    for lid in pending:
        if lid not in old_res:
            changed[lid] = "create"
            continue
        before, after = old_res[lid].get("Properties", {}), new_res[lid].get("Properties", {})
        keys = {k for k in {*before, *after} if before.get(k) != after.get(k)}
        if old_res[lid]["Type"] != new_res[lid]["Type"] or keys & create_only(new_res[lid]["Type"]):
            changed[lid], _ = "replace", replaced.add(lid)
        elif keys:
            changed[lid] = "update"
    grew = True
    while grew:
        grew = False
        for lid in pending:
            if lid in changed or lid not in old_res:
                continue
            if _references(new_res[lid].get("Properties", {}), replaced):
                keys_create_only = create_only(new_res[lid]["Type"])
                props = new_res[lid].get("Properties", {})
                if any(_references(props.get(k), replaced) for k in keys_create_only):
                    changed[lid], _ = "replace", replaced.add(lid)
                else:
                    changed[lid] = "update"
                grew = True
    _check_identifiers(old_res, new_res, changed, replaced)
    # Creates and updates in dependency order of the new template (stable: template order among equals).
    order: list[str] = []
    done: set[str] = set()

    def visit(lid: str, stack: tuple[str, ...] = ()) -> None:
        if lid in done or lid not in new_res:
            return
        if lid in stack:
            raise ValueError(f"dependency cycle: {' -> '.join((*stack, lid))}")
        for dep in sorted(dependencies(new_res[lid])):
            visit(dep, (*stack, lid))
        done.add(lid)
        order.append(lid)

    for lid in new_res:
        visit(lid)
    steps = [Step(changed[lid], lid) for lid in order if lid in changed]
    # Cleanup: removed resources and the old copies of replaced ones, dependents first.
    gone = [lid for lid in old_res if lid not in new_res] + sorted(replaced & set(old_res))
    cleanup: list[str] = []
    seen: set[str] = set()

    def visit_old(lid: str) -> None:
        if lid in seen:
            return
        seen.add(lid)
        for other in gone:
            if lid in dependencies(old_res[other]):
                visit_old(other)
        cleanup.append(lid)

    for lid in gone:
        visit_old(lid)
    steps += [Step("delete", lid, old_res[lid].get("DeletionPolicy") == "Retain") for lid in cleanup]
    return steps


def index_of(steps: list[Step], action: str, logical_id: str) -> int:
    for i, step in enumerate(steps):
        if step.action == action and step.logical_id == logical_id:
            return i
    raise AssertionError(f"no {action} of {logical_id} in the update: {[(s.action, s.logical_id) for s in steps]}")
