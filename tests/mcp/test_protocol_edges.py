"""JSON-RPC edges from a second, independent client: every request whose id can be read is
answered with that id (stdio), oversized lines are refused naming the limit, a duplicate
in-flight id is refused while the first call still completes, and malformed JSON over HTTP
is a 400 with a -32700 body."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import anyio
from harness import WAIT, Sim, binary, prepare_workdir, server_env, start_http_server

INIT = {
    "jsonrpc": "2.0",
    "id": "init",
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "edges", "version": "0"}},
}


class Stdio:
    """`comfyui-mcp serve` with raw lines on its pipes."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [binary(), "serve"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.send(INIT)
        assert "result" in self.answer(), "initialize failed"
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, msg: Any) -> None:
        self.send_raw((json.dumps(msg) + "\n").encode())

    def answer(self) -> Any:
        """The next message that is not a notification (fails instead of waiting for ever)."""
        while True:
            line = self.lines.get(timeout=WAIT)
            assert line is not None, "stdout closed"
            msg = json.loads(line)
            if isinstance(msg, dict) and "method" in msg and "id" not in msg:
                continue
            return msg

    def wait_for_tool(self, name: str) -> None:
        """Packs load in the background after `initialize`: polls `tools/list` until `name` is served."""
        for n in range(int(WAIT * 20)):
            self.send({"jsonrpc": "2.0", "id": f"tools-{n}", "method": "tools/list"})
            listed = self.answer()
            if any(t["name"] == name for t in listed["result"]["tools"]):
                return
            time.sleep(0.05)
        raise AssertionError(f"tool {name} was never served")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


async def test_every_readable_id_is_answered_over_stdio(sim: Sim, tmp_path: Path) -> None:
    env = server_env(sim, tmp_path, prepare_workdir(tmp_path), COMFYUI_MCP_MAX_REQUEST_BYTES="2048")
    s = Stdio(env)
    try:
        s.send_raw(b'{"jsonrpc": "2.0", "id": 1,\n')
        a = s.answer()
        assert (a["id"], a["error"]["code"]) == (None, -32700), a
        s.send({"jsonrpc": "2.0", "id": 2})
        a = s.answer()
        assert (a["id"], a["error"]["code"]) == (2, -32600), a
        s.send_raw(
            b'{"jsonrpc":"2.0","id":3,"method":"tools/call",'
            b'"params":{"name":"list_workflows","arguments":{"x":1e999}}}\n'
        )
        a = s.answer()
        assert (a["id"], a["error"]["code"]) == (3, -32602), a
        s.send({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": 4}})
        a = s.answer()
        assert (a["id"], a["error"]["code"]) == (4, -32602), a
        line = b'{"jsonrpc":"2.0","id":5,"method":"ping"' + b" " * 3000 + b"}\n"
        s.send_raw(line)
        a = s.answer()
        assert (a["id"], a["error"]["code"]) == (5, -32600), a
        assert "2048-byte limit" in a["error"]["message"], a
        s.send({"jsonrpc": "2.0", "id": 6, "method": "ping"})
        assert s.answer() == {"jsonrpc": "2.0", "id": 6, "result": {}}
    finally:
        s.close()


async def test_a_duplicate_in_flight_id_is_refused_and_the_first_call_completes(sim: Sim, tmp_path: Path) -> None:
    s = Stdio(server_env(sim, tmp_path, prepare_workdir(tmp_path)))
    try:
        s.wait_for_tool("item-icon")
        await sim.hold(True)
        s.send(
            {
                "jsonrpc": "2.0",
                "id": 9,
                "method": "tools/call",
                "params": {
                    "name": "generate_image",
                    "arguments": {"template": "item-icon", "prompt": "a coin", "steps": 1, "wait": True},
                },
            }
        )
        for _ in range(int(WAIT * 20)):
            if await sim.prompt_posts():
                break
            await anyio.sleep(0.05)
        else:
            raise AssertionError("the job never reached the simulator")
        s.send({"jsonrpc": "2.0", "id": 9, "method": "ping"})
        refusal = s.answer()
        assert (refusal["id"], refusal["error"]["code"]) == (9, -32600), refusal
        await sim.hold(False)
        done = s.answer()
        assert done["id"] == 9 and done["result"]["structuredContent"]["status"] == "completed", done
    finally:
        s.close()


async def test_malformed_json_over_http_is_400_with_a_parse_error(sim: Sim, tmp_path: Path) -> None:
    env = server_env(sim, tmp_path, prepare_workdir(tmp_path))
    proc, url = start_http_server(env, tmp_path / "http.log")
    try:
        request = urllib.request.Request(
            url,
            data=b'{"jsonrpc": "2.0", "id": 1,',
            method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
        )
        try:
            urllib.request.urlopen(request, timeout=WAIT)
            raise AssertionError("malformed JSON was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 400, e.code
            body = json.loads(e.read())
            assert body["error"]["code"] == -32700 and body["id"] is None, body
    finally:
        proc.stop()
