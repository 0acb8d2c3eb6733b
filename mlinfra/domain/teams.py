"""Team environments' rules (no ``aws_cdk`` import): lake prefixes and instance families.

Shared by the :class:`~mlinfra.constructs.team_environment.TeamEnvironment` construct and the configuration's
``vending`` section.
"""

from __future__ import annotations

__all__ = ["prefixes_overlap", "split_team_prefix", "family_min_vcpus"]


def prefixes_overlap(a: str, b: str) -> bool:
    """Two ``<zone>/<prefix>/`` values overlap when one contains the other."""
    return a.startswith(b) or b.startswith(a)


def split_team_prefix(value: str) -> tuple[str, str]:
    """``"curated/vision/"`` -> ``("curated", "vision/")``."""
    zone, _, prefix = value.partition("/")
    return zone, prefix


def family_min_vcpus() -> dict[str, int]:
    """Instance family (``g5``, ``p4d``, ``trn1``...) -> vCPUs of its smallest size, from the accelerator
    table of :mod:`mlinfra.domain.instances`."""
    from mlinfra.domain import instances

    out: dict[str, int] = {}
    for itype in instances.all_instance_types():
        row = instances.get(itype)
        out[row.family] = min(row.vcpu, out.get(row.family, row.vcpu))
    return out
