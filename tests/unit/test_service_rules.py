"""The service-rules table: unique ids, a source for each rule, and an importable enforcer for each."""

from __future__ import annotations

import importlib

import pytest

from mlinfra.domain import rules


def _resolve(dotted: str):
    module, _, attr = dotted.rpartition(".")
    while module:
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError:
            module, _, parent = module.rpartition(".")
            attr = f"{parent}.{attr}"
            continue
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("rule_id", sorted(rules.RULES))
def test_rule_has_source_and_enforcer(rule_id: str) -> None:
    r = rules.RULES[rule_id]
    assert r.id.count(".") >= 1 and r.id == r.id.lower(), r.id
    assert r.rule.strip() and r.source.strip(), r
    assert "docs.aws.amazon.com" in r.source or "validator" in r.source.lower() or "aws" in r.source.lower(), r.source
    assert callable(_resolve(r.enforced_by)), r.enforced_by


def test_unknown_rule_names_known_ids() -> None:
    with pytest.raises(KeyError, match="unknown service rule 'nope'"):
        rules.rule("nope")


def test_cite_carries_id_and_source() -> None:
    rid = next(iter(rules.RULES))
    assert rid in rules.cite(rid) and rules.RULES[rid].source in rules.cite(rid)
