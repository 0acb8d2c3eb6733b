"""Read a configuration document (YAML or JSON) defensively: no ``aws_cdk`` import.

What a hand-edited or hostile file can do to a plain ``yaml.safe_load``, and what happens here instead:

- **Alias bombs** ("billion laughs"): nested aliases that expand to billions of values. The expanded size is
  counted on the composed node graph (shared nodes counted once per use, memoized, so counting is linear) and a
  document over :data:`MAX_EXPANDED_NODES` values is refused before anything walks it.
- **Duplicate keys** in one mapping (the last silently wins in PyYAML and ``json``): refused, with the line.
- **Encodings**: only UTF-8 (a UTF-8 byte-order mark is accepted); UTF-16/32 and other bytes are refused with
  the position of the first bad byte.
- **Depth**: nesting deeper than :data:`MAX_DEPTH` is refused (instead of a RecursionError).
- **Timestamps**: ``2024-01-01`` stays a string (YAML 1.1 would make it a date, which no field takes).

Every refusal is a :class:`DocumentError` whose message says what is wrong and where.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

__all__ = ["DocumentError", "MAX_EXPANDED_NODES", "MAX_DEPTH", "decode", "load_yaml", "load_json", "load_document"]

#: Most values (scalars, lists and mappings, aliases expanded) a document may hold. The reference platform
#: configuration has about 400.
MAX_EXPANDED_NODES = 100_000
#: Deepest nesting of lists and mappings.
MAX_DEPTH = 64


class DocumentError(ValueError):
    """A document that cannot be read: its message says what is wrong and where."""


_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"),
)


def decode(data: bytes) -> str:
    """The text of ``data``, which must be UTF-8 (a BOM is dropped)."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise DocumentError(f"the file is {name} encoded; save it as UTF-8")
    if len(data) >= 2 and (data[0] == 0) != (data[1] == 0) and b"\x00" in data[:64]:
        raise DocumentError("the file looks UTF-16 encoded (NUL bytes between characters); save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(
            f"the file is not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} cannot be decoded; save it as UTF-8"
        ) from None


class _Loader(yaml.SafeLoader):
    """SafeLoader without timestamps, refusing duplicate keys."""

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: dict[Any, Node] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    raise DocumentError(f"line {key_node.start_mark.line + 1}: a mapping key must be a scalar") from None
                if key in seen:
                    raise DocumentError(
                        f"line {key_node.start_mark.line + 1}: duplicate key {key!r} in one mapping "
                        f"(first at line {seen[key].start_mark.line + 1})"
                    )
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _expanded_size(root: Node) -> int:
    """Values in the document once aliases are expanded, counted without expanding (memoized per node)."""
    sizes: dict[int, int] = {}
    # Iterative post-order walk: a deep document must not exhaust Python's stack.
    stack: list[tuple[Node, int, bool]] = [(root, 0, False)]
    while stack:
        node, depth, done = stack.pop()
        if id(node) in sizes:
            continue
        if depth > MAX_DEPTH:
            raise DocumentError(f"line {node.start_mark.line + 1}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, SequenceNode):
            children = node.value
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            sizes[id(node)] = 1
            continue
        if done:
            total = 1 + sum(sizes[id(c)] for c in children)
            sizes[id(node)] = min(total, MAX_EXPANDED_NODES + 1)
            continue
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def load_yaml(text: str) -> Any:
    """Parse YAML ``text`` (one document) with the limits of this module."""
    loader = _Loader(text)
    try:
        try:
            root = loader.get_single_node()
        except RecursionError:
            raise DocumentError(f"nested deeper than {MAX_DEPTH} levels") from None
        if root is None:
            return None
        if _expanded_size(root) > MAX_EXPANDED_NODES:
            raise DocumentError(
                f"the document expands to more than {MAX_EXPANDED_NODES} values (YAML aliases nested too deeply?)"
            )
        return loader.construct_document(root)
    finally:
        loader.dispose()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DocumentError(f"duplicate key {key!r} in one object")
        out[key] = value
    return out


def load_json(text: str) -> Any:
    """Parse JSON ``text``, refusing duplicate keys and nesting deeper than :data:`MAX_DEPTH`."""
    depth = max_depth = 0
    in_string = escaped = False
    for ch in text:  # a cheap bracket count before the recursive parser sees the text
        if in_string:
            escaped = not escaped and ch == "\\"
            if ch == '"' and not escaped:
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            max_depth = max(max_depth, depth)
        elif ch in "]}":
            depth -= 1
    if max_depth > MAX_DEPTH:
        raise DocumentError(f"nested deeper than {MAX_DEPTH} levels")
    return json.loads(text, object_pairs_hook=_no_duplicates)


def load_document(data: bytes, *, json_format: bool) -> Any:
    """Decode ``data`` (UTF-8) and parse it as JSON or YAML. Raises :class:`DocumentError`,
    ``yaml.YAMLError`` or ``json.JSONDecodeError``."""
    text = decode(data)
    return load_json(text) if json_format else load_yaml(text)
