"""Every JSON Schema the server publishes is a valid JSON Schema (Draft 2020-12).

One server loads every pack of templates/ and tests/packs/ at once (packs that fail to
load or clash are listed in list_workflows' errors, the rest serve). Every tool's
inputSchema and outputSchema from tools/list, and every template resource's input_schema,
is checked against the 2020-12 meta-schema by the `jsonschema` package. The hostile
metadata packs must be refused, not published.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mcp_types as types
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from harness import TEMPLATES, TEST_PACKS, Sim, connect

HOSTILE_METADATA = {"bad-specs.wasm", "metadata-bomb.wasm"}


def every_pack() -> list[Path]:
    return sorted(TEMPLATES.glob("*.wasm")) + sorted(TEST_PACKS.glob("*.wasm"))


def check(where: str, schema: Any) -> None:
    assert isinstance(schema, dict), f"{where}: a schema object, got {type(schema).__name__}"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        raise AssertionError(f"{where} is not a valid Draft 2020-12 schema: {e.message} at {list(e.path)}") from e
    # Also usable as a validator (compiles every keyword, e.g. patterns).
    Draft202012Validator(schema).is_valid({})


async def test_every_published_schema_is_valid_json_schema(sim: Sim, tmp_path: Path) -> None:
    packs = every_pack()
    assert HOSTILE_METADATA <= {p.name for p in packs}, "the hostile metadata packs are built"
    async with connect("stdio", sim, tmp_path / "server", packs=packs) as c:
        tools: list[types.Tool] = []
        cursor = None
        for _ in range(100):
            page = await c.session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
            tools += page.tools
            cursor = page.next_cursor
            if not cursor:
                break
        assert len(tools) > 5, [t.name for t in tools]
        for tool in tools:
            check(f"{tool.name}.inputSchema", tool.input_schema)
            if tool.output_schema is not None:
                check(f"{tool.name}.outputSchema", tool.output_schema)

        listed = await c.ok("list_workflows", {})
        for w in listed["workflows"]:
            res = await c.session.read_resource(f"comfyui://templates/{w['id']}")
            item = res.contents[0]
            assert isinstance(item, types.TextResourceContents)
            check(f"template resource {w['id']}.input_schema", json.loads(item.text)["input_schema"])

        errors = {Path(e["path"]).name: e["error"] for e in listed["errors"]}
        for name in HOSTILE_METADATA:
            assert name in errors, f"{name} must be refused at load; errors: {sorted(errors)}"
            assert "invalid pack metadata" in errors[name], errors[name]
        served = {w["id"] for w in listed["workflows"]}
        assert "bad-specs" not in served and not any(i.startswith("bomb-") for i in served), served
