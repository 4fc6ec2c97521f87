"""Process management and client plumbing for the end-to-end MCP suite.

What lives here:
- `Proc`: a child process whose stderr is drained by a thread into memory and a log file,
  with a bounded wait for a readiness line. Every process is killed by `stop()`.
- `ComfyRoutes`: the ComfyUI routes the tests use to look behind the server's back (queue,
  history, models), shared by `Sim` and `RealComfyUI` (an already running real ComfyUI).
- `Sim`: the ComfyUI simulator (`comfyui-mcp simulate --port 0`) and its `/__sim/` control routes.
- `connect()`: starts `comfyui-mcp serve` (in front of a `Sim` or a `RealComfyUI`) over stdio or
  streamable HTTP and yields a `Conn`,
  an initialised `mcp.ClientSession` with helpers that check the tool-result contract
  (structuredContent mirrored by a JSON text block, isError for user errors).

Invariants: every wait is bounded (`WAIT` seconds unless stated), nothing asserts on
timings, and every process started here is stopped when its context ends.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import mcp_types as types
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
"""Repository root (tests/mcp/ is two levels below it)."""

EXAMPLES_WORKFLOWS = REPO / "examples" / "workflows"
TEMPLATES = REPO / "templates"
TEST_PACKS = REPO / "tests" / "packs"

WAIT = 60.0
"""Upper bound for any single wait (process start, request, state change)."""

FAST_STEP_MS = 10
"""Simulator step delay used between tests: jobs finish quickly but still stream progress."""

TEMPLATE_IDS = ["character-portrait", "item-icon", "environment-texture", "pixel-art"]
CORE_TOOLS = [
    "generate_image",
    "list_workflows",
    "get_workflow_status",
    "cancel_workflow",
    "load_workflow",
    "list_models",
    "list_jobs",
]


def binary() -> str:
    """The comfyui-mcp binary under test."""
    env = os.environ.get("COMFYUI_MCP_BIN")
    if env:
        return env
    fallback = REPO / "target" / "debug" / "comfyui-mcp"
    if fallback.exists():
        return str(fallback)
    raise RuntimeError("set COMFYUI_MCP_BIN to the comfyui-mcp binary (or build target/debug/comfyui-mcp)")


def base_env(**extra: str) -> dict[str, str]:
    """A minimal environment for child processes: no inherited COMFYUI_* or RUST_LOG surprises."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")}
    env["RUST_BACKTRACE"] = "1"
    env.update(extra)
    return env


class Proc:
    """A child process with its stderr drained line by line (memory + log file)."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path, ready: str | None = None) -> None:
        self.argv = argv
        self.log_path = log_path
        self.lines: list[str] = []
        self._ready = ready
        self._cond = threading.Condition()
        self._eof = False
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._thread = threading.Thread(target=self._drain, name=f"stderr:{Path(argv[0]).name}", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                if not self._log.closed:
                    self._log.write(line + "\n")
                    self._log.flush()
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def stderr_text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def tail(self, n: int = 40) -> str:
        with self._cond:
            return "\n".join(self.lines[-n:])

    def wait_for(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """Blocks until a stderr line matches `pattern`; fails with the stderr tail otherwise."""
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            for line in self.lines:
                if m := regex.search(line):
                    return m
            return None

        with self._cond:
            self._cond.wait_for(lambda: found() is not None or self._eof, timeout)
            match = found()
        if match is None:
            code = self.proc.poll()
            self.stop()
            raise RuntimeError(
                f"{' '.join(self.argv)} printed no line matching {pattern!r} "
                f"(exit code {code}); stderr tail:\n{self.tail()}"
            )
        return match

    def wait_ready(self, timeout: float = WAIT) -> re.Match[str]:
        assert self._ready, "no readiness pattern given"
        return self.wait_for(self._ready, timeout)

    def wait_exit(self, timeout: float = WAIT) -> int | None:
        """The exit code, or None if the process is still running after `timeout`."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """Terminates the process (then kills it) and joins the drain thread. Idempotent."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self._thread.join(5)
        with self._cond:
            if not self._log.closed:
                self._log.close()


class ComfyRoutes:
    """The ComfyUI routes the tests use to look behind the server's back (simulator or real)."""

    url: str

    async def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=WAIT, trust_env=False) as c:
            return await c.request(method, path, json=body)

    async def get_json(self, path: str) -> Any:
        r = await self.request("GET", path)
        assert r.status_code == 200, f"ComfyUI GET {self.url}{path} -> {r.status_code} {r.text}"
        return r.json()

    async def queue(self) -> dict[str, list[Any]]:
        return await self.get_json("/queue")

    async def queue_ids(self) -> tuple[list[str], list[str]]:
        """(running ids, pending ids)."""
        q = await self.queue()
        return [e[1] for e in q["queue_running"]], [e[1] for e in q["queue_pending"]]

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The history entry for a job, or None if it has none."""
        h = await self.get_json(f"/history/{prompt_id}")
        return h.get(prompt_id)

    async def submitted_graph(self, prompt_id: str) -> dict[str, Any]:
        """The API-format graph the server submitted for a finished job."""
        entry = await self.history(prompt_id)
        assert entry is not None, f"ComfyUI at {self.url} has no history for {prompt_id}"
        return entry["prompt"][2]

    async def checkpoints(self) -> list[str]:
        return await self.get_json("/models/checkpoints")


class RealComfyUI(ComfyRoutes):
    """An already running real ComfyUI (no control API: nothing can be held, delayed or faulted)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def stop(self) -> None:
        """Nothing to stop: the instance belongs to whoever started it."""


class Sim(ComfyRoutes):
    """A running simulator: its URL, its process and its control routes."""

    def __init__(self, workdir: Path, args: tuple[str, ...] = ()) -> None:
        """`args`: more `simulate` flags, e.g. the machine's `--checkpoints a,b --omit-nodes X`."""
        self.proc = Proc(
            [binary(), "simulate", "--port", "0", *args],
            base_env(),
            workdir / "simulator.stderr.log",
            ready=r"simulator listening on (http://127\.0\.0\.1:\d+)",
        )
        self.url = self.proc.wait_ready().group(1)
        self.control_url = self.proc.wait_for(r"simulator control on (http://127\.0\.0\.1:\d+)/__sim").group(1)

    def stop(self) -> None:
        self.proc.stop()

    async def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """A request to the simulated ComfyUI, or to the control API for `/__sim/` paths."""
        base = self.control_url if path.startswith("/__sim/") else self.url
        async with httpx.AsyncClient(base_url=base, timeout=WAIT, trust_env=False) as c:
            return await c.request(method, path, json=body)

    async def control(self, path: str, body: Any) -> None:
        r = await self.request("POST", f"/__sim/{path}", body)
        assert r.status_code < 300, f"simulator control POST /__sim/{path} {body} -> {r.status_code} {r.text}"

    async def hold(self, on: bool) -> None:
        await self.control("hold", {"on": on})

    async def step_delay(self, ms: int) -> None:
        await self.control("step_delay", {"ms": ms})

    async def faults(self, body: dict[str, Any]) -> None:
        await self.control("faults", body)

    async def restart(self) -> None:
        await self.control("restart", {})

    async def interrupts(self) -> list[str | None]:
        return await self.get_json("/__sim/interrupts")

    async def requests(self) -> list[dict[str, Any]]:
        """ComfyUI requests the simulator received (its own /__sim/ routes left out)."""
        return [r for r in await self.get_json("/__sim/requests") if not r["path"].startswith("/__sim")]

    async def prompt_posts(self) -> int:
        """How many graphs were submitted (`POST /prompt`, also under ComfyUI's `/api` prefix)."""
        return sum(1 for r in await self.requests() if is_prompt_post(r))

    async def reset(self) -> None:
        """Back to a fast, fault-free, idle simulator (bounded wait for the queue to drain)."""
        await self.hold(False)
        await self.step_delay(FAST_STEP_MS)
        await self.faults({"clear": True})
        with anyio.move_on_after(WAIT):
            while True:
                running, pending = await self.queue_ids()
                if not running and not pending:
                    return
                await anyio.sleep(0.05)
        raise AssertionError(f"simulator queue did not drain: {await self.queue()}")


def is_prompt_post(request: dict[str, Any]) -> bool:
    path = request["path"].split("?")[0]
    return request["method"] == "POST" and (path == "/prompt" or path.endswith("/api/prompt"))


async def _value(value: Any) -> Any:
    return value


async def poll(
    fetch: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], what: str, timeout: float = WAIT
) -> Any:
    """Calls `fetch` until `done(value)`; fails with the last value after `timeout` seconds."""
    last: Any = None
    with anyio.move_on_after(timeout):
        while True:
            last = await fetch()
            if done(last):
                return last
            await anyio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}; last value: {last!r}")


@dataclass
class Conn:
    """An initialised MCP session to one server process, plus what the tests need around it."""

    session: ClientSession
    transport: str
    sim: Sim  # or a RealComfyUI (same ComfyUI routes, no control API)
    workdir: Path
    output_dir: Path
    workflows_dir: Path
    templates_dir: Path
    stderr: Callable[[], str]
    stream_errors: list[Exception] = field(default_factory=list)
    notifications: list[Any] = field(default_factory=list)

    async def call(self, name: str, args: dict[str, Any] | None = None, **kw: Any) -> types.CallToolResult:
        try:
            return await self.session.call_tool(name, args or {}, read_timeout_seconds=kw.pop("timeout", WAIT), **kw)
        except MCPError as e:
            raise AssertionError(
                f"tools/call {name} {args} answered a JSON-RPC error ({e}) instead of a tool result"
            ) from e

    async def ok(self, name: str, args: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        """Calls a tool that must succeed; returns its structuredContent (checked against the text block)."""
        result = await self.call(name, args, **kw)
        assert not result.is_error, f"{name} {args} failed: {texts(result)}"
        return structured(result)

    async def err(self, name: str, args: dict[str, Any] | None = None) -> str:
        """Calls a tool that must fail with isError; returns its text, lower-cased."""
        result = await self.call(name, args)
        assert result.is_error, f"{name} {args} should have failed but returned {result.structured_content}"
        text = texts(result)
        assert text.strip(), f"{name} {args}: isError result without any text"
        return text.lower()

    async def status(self, prompt_id: str) -> dict[str, Any]:
        return await self.ok("get_workflow_status", {"prompt_id": prompt_id})

    async def wait_state(self, prompt_id: str, states: set[str], timeout: float = WAIT) -> dict[str, Any]:
        return await poll(
            lambda: self.status(prompt_id), lambda s: s["state"] in states, f"{prompt_id} in {states}", timeout
        )


def texts(result: types.CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, types.TextContent))


def structured(result: types.CallToolResult) -> dict[str, Any]:
    """structuredContent, after checking that a text block carries the same JSON."""
    data = result.structured_content
    assert isinstance(data, dict), f"result has no structuredContent object: {result}"
    mirrored = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            try:
                mirrored.append(json.loads(block.text))
            except ValueError:
                continue
    assert data in mirrored, f"no text block carries the structuredContent JSON; text blocks: {texts(result)[:500]}"
    return data


def server_env(sim: ComfyRoutes, workdir: Path, templates_dir: Path, **extra: str) -> dict[str, str]:
    return base_env(
        COMFYUI_URL=sim.url,
        COMFYUI_OUTPUT_DIR=str(workdir / "out"),
        COMFYUI_TEMPLATES_DIR=str(templates_dir),
        COMFYUI_WORKFLOW_DIRS=f"{EXAMPLES_WORKFLOWS}:{workdir / 'workflows'}",
        COMFYUI_MCP_CACHE_DIR=str(workdir.parent / "pack-cache"),
        **extra,
    )


def prepare_workdir(workdir: Path, packs: list[Path] | None = None) -> Path:
    """Creates out/, workflows/ and a private templates/ copy (default: the shipped packs)."""
    (workdir / "out").mkdir(parents=True, exist_ok=True)
    (workdir / "workflows").mkdir(parents=True, exist_ok=True)
    templates = workdir / "templates"
    templates.mkdir(parents=True, exist_ok=True)
    for pack in packs if packs is not None else sorted(TEMPLATES.glob("*.wasm")):
        shutil.copy(pack, templates / pack.name)
    return templates


def start_http_server(env: dict[str, str], log: Path, bind: str = "127.0.0.1:0") -> tuple[Proc, str]:
    proc = Proc([binary(), "serve", "--http", bind], env, log, ready=r"listening on (http://\S+/mcp)")
    return proc, proc.wait_ready().group(1)


async def call_over_http(url: str, token: str, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """One tool call in a fresh streamable-HTTP session; the call must succeed. Its structuredContent."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=WAIT, trust_env=False) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=WAIT) as s:
                with anyio.fail_after(WAIT):
                    await s.initialize()
                result = await s.call_tool(tool, args)
                assert not result.is_error, f"{tool} {args} failed: {texts(result)}"
                return structured(result)


@asynccontextmanager
async def connect(
    transport: str,
    sim: ComfyRoutes,
    workdir: Path,
    *,
    packs: list[Path] | None = None,
    token: str | None = "test-token-0123456789",
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[Conn]:
    """Starts `comfyui-mcp serve` (stdio or streamable HTTP) and yields an initialised `Conn`."""
    templates = prepare_workdir(workdir, packs)
    env = server_env(sim, workdir, templates, **(extra_env or {}))
    stream_errors: list[Exception] = []
    notifications: list[Any] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):
            stream_errors.append(message)
        else:
            notifications.append(message)

    async def first_scan_done(stderr: Callable[[], str]) -> None:
        # `serve` answers `initialize` at once and loads packs in the background; tests
        # that expect the start-up packs wait for the end of the first scan.
        await poll(lambda: _value(stderr()), lambda text: "first scan done" in text, "the first pack scan to end")

    def make_conn(session: ClientSession, stderr: Callable[[], str]) -> Conn:
        return Conn(
            session=session,
            transport=transport,
            sim=sim,  # type: ignore[arg-type]
            workdir=workdir,
            output_dir=workdir / "out",
            workflows_dir=workdir / "workflows",
            templates_dir=templates,
            stderr=stderr,
            stream_errors=stream_errors,
            notifications=notifications,
        )

    if transport == "stdio":
        errlog_path = workdir / "server.stderr.log"
        with open(errlog_path, "w", encoding="utf-8") as errlog:
            params = StdioServerParameters(command=binary(), args=["serve"], env=env)
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write, read_timeout_seconds=WAIT, message_handler=on_message) as s:
                    with anyio.fail_after(WAIT):
                        await s.initialize()
                    errlog_text = lambda: errlog_path.read_text(encoding="utf-8", errors="replace")  # noqa: E731
                    await first_scan_done(errlog_text)
                    yield make_conn(s, errlog_text)
    elif transport == "http":
        if token:
            env["COMFYUI_MCP_HTTP_TOKEN"] = token
        proc, url = start_http_server(env, workdir / "server.stderr.log")
        try:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            timeout = httpx2.Timeout(WAIT, read=WAIT * 10)
            async with httpx2.AsyncClient(headers=headers, timeout=timeout, trust_env=False) as http:
                async with streamable_http_client(url, http_client=http) as (read, write):
                    async with ClientSession(read, write, read_timeout_seconds=WAIT, message_handler=on_message) as s:
                        with anyio.fail_after(WAIT):
                            await s.initialize()
                        await first_scan_done(proc.stderr_text)
                        conn = make_conn(s, proc.stderr_text)
                        conn.http_url = url  # type: ignore[attr-defined]
                        yield conn
        finally:
            proc.stop()
    else:
        raise ValueError(f"unknown transport {transport!r}")


THUMB_MAX_SIDE = 512
THUMB_MAX_BYTES = 1024 * 1024


def decode_image(data: bytes) -> Any:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


async def read_blob(conn: Conn, uri: str) -> tuple[bytes, str | None]:
    """resources/read of a binary resource: (bytes, mimeType)."""
    res = await conn.session.read_resource(uri)
    assert len(res.contents) == 1, f"{uri}: expected one content item, got {len(res.contents)}"
    item = res.contents[0]
    assert isinstance(item, types.BlobResourceContents), f"{uri}: expected a blob, got {type(item).__name__}"
    return base64.b64decode(item.blob), item.mime_type


async def check_completed(conn: Conn, result: types.CallToolResult, expect_images: int | None = None) -> dict[str, Any]:
    """Checks a finished generation's result: structured images, saved files, thumbnails, links."""
    assert not result.is_error, f"generation failed: {texts(result)}"
    out = structured(result)
    assert out["status"] == "completed", out
    images = out["images"]
    assert images, "a completed generation has images"
    if expect_images is not None:
        assert len(images) == expect_images, images
    pid = out["prompt_id"]
    out_root = conn.output_dir.resolve()
    for im in images:
        for key in ("filename", "subfolder", "type", "path", "uri", "width", "height"):
            assert key in im, f"image entry lacks {key}: {im}"
        path = Path(im["path"])
        assert path.is_absolute(), im["path"]
        assert path.resolve().is_relative_to(out_root), f"{path} is not inside {out_root}"
        assert path.is_file(), f"{path} was not saved"
        saved = decode_image(path.read_bytes())
        assert saved.size == (im["width"], im["height"]), (saved.size, im)
        assert im["uri"].startswith(f"comfyui://images/{pid}/"), im["uri"]
    assert len({im["path"] for im in images}) == len(images), "two images share one path"

    thumbs = [b for b in result.content if isinstance(b, types.ImageContent)]
    links = [b for b in result.content if isinstance(b, types.ResourceLink)]
    assert len(thumbs) == len(images), f"{len(thumbs)} image blocks for {len(images)} images"
    assert len(links) == len(images), f"{len(links)} resource_link blocks for {len(images)} images"
    for block in thumbs:
        assert block.mime_type in ("image/png", "image/jpeg"), block.mime_type
        raw = base64.b64decode(block.data)
        assert len(raw) <= THUMB_MAX_BYTES, f"thumbnail of {len(raw)} bytes"
        thumb = decode_image(raw)
        assert max(thumb.size) <= THUMB_MAX_SIDE, f"thumbnail is {thumb.size}"
        assert thumb.format in ("PNG", "JPEG")
    assert {str(link.uri) for link in links} == {im["uri"] for im in images}
    for im in images:
        blob, mime = await read_blob(conn, im["uri"])
        assert mime == "image/png", mime
        full = decode_image(blob)
        saved = decode_image(Path(im["path"]).read_bytes())
        assert full.size == (im["width"], im["height"])
        assert full.tobytes() == saved.tobytes(), f"{im['uri']} differs from the saved {im['path']}"
    return out
