"""Reading JSON Schemas the way a client would: follow `$ref`, merge `allOf`, and look
through `anyOf`/`oneOf` for the non-null branch (how optional fields are usually encoded)."""

from __future__ import annotations

from typing import Any


def resolve(root: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The effective schema of `schema` (inside document `root`), flattened for inspection."""
    seen = 0
    while "$ref" in schema and seen < 16:
        ref = schema["$ref"]
        assert ref.startswith("#/"), f"non-local $ref {ref}"
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **rest}
        seen += 1
    out = {k: v for k, v in schema.items() if k not in ("allOf", "anyOf", "oneOf")}
    for sub in schema.get("allOf", []):
        out.update(resolve(root, sub))
    for key in ("anyOf", "oneOf"):
        branches = [resolve(root, b) for b in schema.get(key, [])]
        non_null = [b for b in branches if b.get("type") != "null" and b.get("const", 0) is not None]
        if len(non_null) == 1:
            out.update(non_null[0])
        elif non_null:
            enum: list[Any] = []
            for b in non_null:
                enum += b.get("enum", []) + ([b["const"]] if "const" in b else [])
            if enum:
                out.setdefault("enum", enum)
    return out


def prop(root: dict[str, Any], name: str) -> dict[str, Any]:
    """The effective schema of property `name` of the object schema `root`."""
    top = resolve(root, root)
    props = top.get("properties", {})
    assert name in props, f"schema has no property {name!r}; properties: {sorted(props)}"
    return resolve(root, props[name])


def types_of(schema: dict[str, Any]) -> set[str]:
    t = schema.get("type")
    if t is None:
        return set()
    return {t} if isinstance(t, str) else set(t)


def required(root: dict[str, Any]) -> set[str]:
    return set(resolve(root, root).get("required", []))
