"""Pydantic JSON Schema → Kubernetes structural OpenAPI v3 schema.

A structural schema may not use ``$ref``, ``anyOf`` with null, ``title`` or ``const`` the way pydantic emits
them, so this walks pydantic's output once: refs inlined (the referring field's description wins), optional
unions collapsed to the non-null branch, titles and null defaults dropped, ``const`` turned into ``enum``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

JSON = dict[str, Any]
_DROP = frozenset({"title", "$defs", "discriminator"})


def structural_schema(model: type[BaseModel]) -> JSON:
    raw = model.model_json_schema(by_alias=True, mode="serialization")
    return _convert(raw, raw.get("$defs", {}))


def _convert(node: JSON, defs: JSON) -> JSON:
    node = _collapse(node, defs)
    out: JSON = {}
    for key, value in node.items():
        if key in _DROP or (key == "default" and value is None):
            continue
        if key == "properties":
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _convert(value, defs)
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value
    if "properties" in out:
        out.setdefault("type", "object")
    if "enum" in out and "type" not in out:
        out["type"] = _json_type(out["enum"][0])
    return out


def _collapse(node: JSON, defs: JSON) -> JSON:
    """Resolve ``$ref`` and ``anyOf: [X, null]`` into X, keeping the outer node's own keywords."""
    while True:
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            outer = {k: v for k, v in node.items() if k != "$ref"}
            node = {**target, **outer}
            continue
        variants = node.get("anyOf")
        if variants is not None:
            non_null = [v for v in variants if v.get("type") != "null"]
            if len(non_null) != 1:
                raise ValueError(f"a structural schema cannot express the union {variants!r}")
            outer = {k: v for k, v in node.items() if k != "anyOf"}
            node = {**non_null[0], **outer}
            continue
        return node


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"
