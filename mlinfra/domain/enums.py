"""Closed sets given as strings (configuration files, older callers): the one conversion to an enum member, with
the error every construct raises (no ``aws_cdk`` import)."""

from __future__ import annotations

import enum
from typing import TypeVar

__all__ = ["enum_member", "enum_values"]

_E = TypeVar("_E", bound=enum.Enum)


def enum_member(cls: type[_E], value: object, prop: str) -> _E:
    """``value`` as a member of ``cls`` (a member, or a member's value); otherwise a ``ValueError`` naming
    ``prop``, the value and the allowed members (``on_unhealthy must be one of OnUnhealthy.SHUTDOWN ('shutdown'),
    OnUnhealthy.REPORT ('report'), got: 'reboot'``)."""
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(f"{cls.__name__}.{m.name} ({m.value!r})" for m in cls)
        raise ValueError(f"{prop} must be one of {allowed}, got: {value!r}") from None


def enum_values(cls: type[enum.Enum]) -> tuple[str, ...]:
    """The members' values, in declaration order: what a configuration file spells (``Literal[enum_values(X)]``)."""
    return tuple(m.value for m in cls)
