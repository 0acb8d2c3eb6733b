"""Closed sets: one conversion from a member or its value (a config file's string) to the enum member.

Constructs take an enum for every closed set (``InputMode.FAST_FILE``, ``LakeEncryption.KMS``); the
configuration keeps strings (``input_mode: FastFile``) and the stack or the construct converts them here, so a bad
value fails with the prop, the value and the allowed set, the same way everywhere. No ``aws_cdk`` import.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar

__all__ = ["choice"]

_E = TypeVar("_E", bound=enum.Enum)


def choice(cls: type[_E], value: Any, prop: str) -> _E:
    """The member of ``cls`` that ``value`` is or names by value: ``choice(InputMode, "Pipe", "input_mode")`` is
    ``InputMode.PIPE``. Anything else raises ``"<prop> must be one of 'File', 'Pipe', 'FastFile' (InputMode), got:
    'Stream'"``."""
    if isinstance(value, cls):
        return value
    for member in cls:
        if member.value == value:
            return member
    allowed = ", ".join(repr(m.value) for m in cls)
    raise ValueError(f"{prop} must be one of {allowed} ({cls.__name__}), got: {value!r}")
