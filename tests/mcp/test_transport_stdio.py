"""stdio transport hygiene: stdout carries JSON-RPC only (even while a pack floods its own
stdout), logs go to stderr, and the server exits when its stdin closes."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from harness import TEMPLATES, TEST_PACKS, WAIT, Sim, binary, connect, prepare_workdir, server_env


class RawStdio:
    """`comfyui-mcp serve` driven by hand: newline-delimited JSON-RPC on the pipes."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [binary(), "serve"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.stdout_lines: queue.Queue[bytes | None] = queue.Queue()
        self.stderr: list[bytes] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout_lines.put(line)
        self.stdout_lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()

    def answer(self, request_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Reads stdout until the answer to `request_id`; every line must be a JSON-RPC message."""
        others: list[dict[str, Any]] = []
        while True:
            line = self.stdout_lines.get(timeout=WAIT)
            assert line is not None, f"stdout closed before the answer to {request_id}"
            try:
                msg = json.loads(line)
            except ValueError:
                raise AssertionError(f"non-JSON line on stdout: {line[:200]!r}") from None
            assert isinstance(msg, dict) and msg.get("jsonrpc") == "2.0", f"not JSON-RPC 2.0: {line[:200]!r}"
            if msg.get("id") == request_id and ("result" in msg or "error" in msg):
                return msg, others
            others.append(msg)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


async def test_stdout_is_json_rpc_only_and_logs_go_to_stderr(sim: Sim, tmp_path: Path) -> None:
    packs = sorted(TEMPLATES.glob("*.wasm")) + [TEST_PACKS / "noisy-logger.wasm"]
    env = server_env(sim, tmp_path, prepare_workdir(tmp_path, packs))
    raw = RawStdio(env)
    try:
        raw.send(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "0"},
                },
            }
        )
        init, _ = raw.answer(1)
        assert "result" in init, init
        raw.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        # Packs load in the background after `initialize`: ask until the noisy one is in.
        deadline = time.monotonic() + WAIT
        request_id = 100
        names: set[str] = set()
        while "log-flood" not in names and time.monotonic() < deadline:
            request_id += 1
            raw.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/list"})
            tools, _ = raw.answer(request_id)
            names = {t["name"] for t in tools["result"]["tools"]}
            if "log-flood" not in names:
                time.sleep(0.05)
        assert "log-flood" in names, f"the noisy test pack should load: {sorted(names)}"
        # The pack writes 1 MiB to its stdout and floods its log while building.
        raw.send(
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {"name": "log-flood", "arguments": {"prompt": "x"}},
            }
        )
        call, _ = raw.answer(3)
        assert "result" in call, call
        raw.send({"jsonrpc": "2.0", "id": 4, "method": "ping"})
        pong, _ = raw.answer(4)
        assert pong.get("result") == {}, pong
        # Closing stdin ends the session: the server exits by itself.
        assert raw.proc.stdin is not None
        raw.proc.stdin.close()
        code = raw.proc.wait(WAIT)
        assert code == 0, f"exit code {code} after stdin closed"
        rest = []
        while (line := raw.stdout_lines.get(timeout=WAIT)) is not None:
            rest.append(line)
        for line in rest:
            assert json.loads(line).get("jsonrpc") == "2.0", f"non-JSON-RPC output on stdout: {line[:200]!r}"
        assert raw.stderr, "the server should log to stderr"
    finally:
        raw.close()


async def test_sdk_session_sees_no_garbage_and_the_server_logs(sim: Sim, tmp_path: Path) -> None:
    async with connect("stdio", sim, tmp_path / "server") as c:
        await c.ok("list_workflows", {})
        out = await c.ok("generate_image", {"template": "item-icon", "prompt": "a key", "steps": 1, "wait": True})
        assert out["status"] == "completed"
        assert not c.stream_errors, c.stream_errors
        assert c.stderr().strip(), "the server should log to stderr"
