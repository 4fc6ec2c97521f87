//! The per-call sandbox: the state each `Store` owns, the WASI context that
//! grants nothing (and whose clocks and randomness are fixed per call, see
//! `purity.rs`), the capped capture of a pack's output, and the host
//! functions a pack may import (`log`, `models`, `has-node`).
//!
//! Output invariant: per call, at most `Limits::max_log_lines` lines and
//! `Limits::max_log_bytes` bytes (after escaping) are kept, whatever the
//! pack writes; past either budget, lines are only counted. Each line is
//! escaped with [`escape_control`] when it is kept, so what reaches the log
//! is one record per line. Splitting is linear in what the pack writes.

use std::collections::{BTreeMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::limiter::CallLimiter;
use crate::limits::Limits;
use crate::purity::{CallSeed, FixedWallClock, SteppingClock};
use crate::text::escape_control;

/// The read-only view of ComfyUI that a pack may query during a call.
///
/// Implementations answer from a snapshot taken before the call: a pack
/// never waits on the network.
pub trait HostView: Send + Sync {
    /// Model files in a ComfyUI model folder (e.g. `checkpoints`).
    fn models(&self, folder: &str) -> Vec<String>;
    /// Whether ComfyUI has a node class.
    fn has_node(&self, class_type: &str) -> bool;
}

/// A fixed snapshot: models per folder and, optionally, the set of node classes.
#[derive(Debug, Clone, Default)]
pub struct StaticHost {
    /// Model files per folder.
    pub models: BTreeMap<String, Vec<String>>,
    /// Known node classes; `None` answers `true` for every class.
    pub nodes: Option<Arc<HashSet<String>>>,
}

impl HostView for StaticHost {
    fn models(&self, folder: &str) -> Vec<String> {
        self.models.get(folder).cloned().unwrap_or_default()
    }
    fn has_node(&self, class_type: &str) -> bool {
        self.nodes.as_ref().is_none_or(|n| n.contains(class_type))
    }
}

/// Everything one `Store` owns. Dropped with the store at the end of the call.
pub(crate) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: CallLimiter,
    host: Arc<dyn HostView>,
    pub(crate) output: CapturedOutput,
}

impl StoreState {
    pub(crate) fn new(limits: &Limits, host: Arc<dyn HostView>, seed: CallSeed) -> Self {
        let output = CapturedOutput::new(limits.max_log_bytes, limits.max_log_lines);
        // `WasiCtxBuilder::new()` already denies everything (no preopens, env,
        // args, stdin, sockets, name lookups); the explicit calls keep that
        // true if wasmtime-wasi's defaults ever change. Clocks and randomness
        // are replaced so the call is a pure function of its parameters.
        let wasi = WasiCtxBuilder::new()
            .stdout(output.stream("stdout"))
            .stderr(output.stream("stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(FixedWallClock)
            .monotonic_clock(SteppingClock::default())
            .secure_random(seed.secure())
            .insecure_random(seed.insecure())
            .insecure_random_seed(seed.insecure_seed())
            .max_random_size(limits.max_random_bytes)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: CallLimiter::new(limits),
            host,
            output,
        }
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Severity of a pack's log line; every ABI major's `host.level` converts into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Developer diagnostics.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected.
    Warn,
    /// The call is about to fail.
    Error,
}

/// The host imports, once for every ABI major (`bindings/v*.rs` delegate here).
impl StoreState {
    /// `host.log`: one capped, escaped line.
    pub(crate) fn push_log(&mut self, level: LogLevel, message: &str) {
        self.output.push_log(level, message);
    }
    /// `host.models`: from the call's snapshot.
    pub(crate) fn host_models(&self, folder: &str) -> Vec<String> {
        self.host.models(folder)
    }
    /// `host.has-node`: from the call's snapshot.
    pub(crate) fn host_has_node(&self, class_type: &str) -> bool {
        self.host.has_node(class_type)
    }
}

/// Output a pack produced during one call (stdout, stderr, log lines), capped
/// at a byte and a line budget shared by all three. Past either budget,
/// output is dropped silently for the pack (writes still succeed) and counted.
#[derive(Clone)]
pub(crate) struct CapturedOutput(Arc<Mutex<OutputBuffer>>);

/// An unterminated stdout or stderr tail longer than this is kept as a line.
const MAX_PARTIAL_LINE: usize = 4096;

/// Stderr lines remembered for error messages, and characters kept of each.
const STDERR_TAIL_LINES: usize = 2;
const STDERR_TAIL_CHARS: usize = 300;

/// Stderr lines that are toolchain noise in an error message (still logged):
/// Rust's RUST_BACKTRACE hint, SpiderMonkey's abort redirection.
const STDERR_NOISE: &[&[u8]] = &[
    b"note: run with `RUST_BACKTRACE",
    b"Redirecting call to abort() to mozalloc_abort",
];

/// What a pack's stderr says about why it failed, for error messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StderrTail {
    /// The last line naming an exception (`ValueError: ...`,
    /// `TypeError: ...`, `Exception { ... }`): the cause an interpreter
    /// printed before its runtime trapped, when it is not among `last`.
    pub cause: Option<String>,
    /// The last meaningful lines joined by " / ", if the pack wrote any.
    pub last: Option<String>,
}

/// Whether `line` names an exception the way Python and JavaScript print
/// one: its first word (a dotted identifier) ends in `Error` or
/// `Exception` and is followed by `:`, ` {`, `(` or the end of the line.
fn names_exception(line: &str) -> bool {
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(line.len());
    let (word, rest) = line.split_at(end);
    (word.ends_with("Error") || word.ends_with("Exception"))
        && (rest.is_empty()
            || rest.starts_with(':')
            || rest.starts_with(" {")
            || rest.starts_with('('))
}

#[derive(Default)]
struct OutputBuffer {
    max_bytes: usize,
    max_lines: usize,
    lines: Vec<(LogLevel, String)>,
    used: usize,
    dropped_bytes: usize,
    dropped_lines: usize,
    partial: BTreeMap<&'static str, Vec<u8>>,
    /// The last few meaningful stderr lines (a panic message, typically), escaped.
    stderr_tail: std::collections::VecDeque<String>,
    /// The last stderr line naming an exception, escaped (see [`StderrTail::cause`]).
    stderr_cause: Option<String>,
}

impl CapturedOutput {
    fn new(max_bytes: usize, max_lines: usize) -> Self {
        Self(Arc::new(Mutex::new(OutputBuffer {
            max_bytes,
            max_lines,
            ..Default::default()
        })))
    }

    fn stream(&self, name: &'static str) -> CapturedStream {
        CapturedStream {
            name,
            output: self.clone(),
        }
    }

    fn push_log(&self, level: LogLevel, message: &str) {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        buf.push(level, message.as_bytes());
    }

    fn write(&self, stream: &'static str, bytes: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut pending = buf.partial.remove(stream).unwrap_or_default();
        let level = stream_level(stream);
        let is_stderr = stream == "stderr";
        // Every segment but the last is a complete line; `split` is linear.
        let mut segments = bytes.split(|&b| b == b'\n');
        let last = segments.next_back().unwrap_or_default();
        for (i, segment) in segments.enumerate() {
            if i == 0 && !pending.is_empty() {
                pending.extend_from_slice(segment);
                let line = std::mem::take(&mut pending);
                buf.complete_line(level, is_stderr, &line);
            } else {
                buf.complete_line(level, is_stderr, segment);
            }
        }
        pending.extend_from_slice(last);
        // Bound the unterminated tail too: flush it as a line once it is long.
        if pending.len() > MAX_PARTIAL_LINE {
            let line = std::mem::take(&mut pending);
            buf.complete_line(level, is_stderr, &line);
        }
        buf.partial.insert(stream, pending);
    }

    /// Forwards everything captured to the log, tagged with the pack name.
    /// Logs at most the line budget, so it ends quickly whatever the pack did.
    pub(crate) fn flush_to_log(&self, pack: &str) {
        let pack = escape_control(pack);
        let pack = pack.as_ref();
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let tails: Vec<_> = std::mem::take(&mut buf.partial).into_iter().collect();
        for (stream, tail) in tails {
            if !tail.is_empty() {
                buf.push(stream_level(stream), &tail);
            }
        }
        for (level, line) in buf.lines.drain(..) {
            match level {
                LogLevel::Trace => tracing::trace!(target: "pack", pack, "{line}"),
                LogLevel::Debug => tracing::debug!(target: "pack", pack, "{line}"),
                LogLevel::Info => tracing::info!(target: "pack", pack, "{line}"),
                LogLevel::Warn => tracing::warn!(target: "pack", pack, "{line}"),
                LogLevel::Error => tracing::error!(target: "pack", pack, "{line}"),
            }
        }
        if buf.dropped_lines > 0 {
            tracing::warn!(
                target: "pack",
                pack,
                dropped_lines = buf.dropped_lines,
                dropped_bytes = buf.dropped_bytes,
                "pack output over its budget of {} lines or {} bytes per call was dropped (raise Limits::max_log_lines / max_log_bytes)",
                buf.max_lines,
                buf.max_bytes,
            );
            buf.dropped_lines = 0;
            buf.dropped_bytes = 0;
        }
    }

    /// The pack's last meaningful stderr lines joined by " / " (for a
    /// panic: where it happened and its message) and the exception it named
    /// before them, escaped and capped.
    pub(crate) fn stderr_tail(&self) -> StderrTail {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tail) = buf.partial.remove("stderr").filter(|t| !t.is_empty()) {
            // Complete the line now; it is still logged at flush time.
            buf.complete_line(LogLevel::Warn, true, &tail);
        }
        let lines: Vec<&str> = buf.stderr_tail.iter().map(String::as_str).collect();
        let cause = buf
            .stderr_cause
            .as_ref()
            .filter(|cause| !lines.contains(&cause.as_str()))
            .cloned();
        StderrTail {
            cause,
            last: (!lines.is_empty()).then(|| lines.join(" / ")),
        }
    }

    /// Bytes kept and dropped so far (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn usage(&self) -> (usize, usize) {
        let buf = self.0.lock().unwrap();
        (buf.used, buf.dropped_bytes)
    }

    /// Lines kept and dropped so far (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn line_usage(&self) -> (usize, usize) {
        let buf = self.0.lock().unwrap();
        (buf.lines.len(), buf.dropped_lines)
    }
}

fn stream_level(stream: &str) -> LogLevel {
    if stream == "stderr" {
        LogLevel::Warn
    } else {
        LogLevel::Info
    }
}

impl OutputBuffer {
    fn complete_line(&mut self, level: LogLevel, is_stderr: bool, line: &[u8]) {
        if is_stderr {
            self.remember_stderr(line);
        }
        self.push(level, line);
    }

    fn remember_stderr(&mut self, line: &[u8]) {
        let line = line.trim_ascii();
        if line.is_empty() || STDERR_NOISE.iter().any(|noise| line.starts_with(noise)) {
            return;
        }
        // Only a bounded prefix is decoded, whatever the line's length.
        let prefix = &line[..line.len().min(STDERR_TAIL_CHARS * 4)];
        let text: String = String::from_utf8_lossy(prefix)
            .chars()
            .take(STDERR_TAIL_CHARS)
            .collect();
        let text = escape_control(&text).into_owned();
        if names_exception(&text) {
            self.stderr_cause = Some(text.clone());
        }
        if self.stderr_tail.len() == STDERR_TAIL_LINES {
            self.stderr_tail.pop_front();
        }
        self.stderr_tail.push_back(text);
    }

    fn push(&mut self, level: LogLevel, message: &[u8]) {
        if self.lines.len() >= self.max_lines || message.len() > self.max_bytes - self.used {
            self.drop_line(message.len());
            return;
        }
        let text = String::from_utf8_lossy(message);
        let text = escape_control(&text);
        let room = self.max_bytes - self.used;
        if text.len() > room {
            self.drop_line(text.len());
            return;
        }
        self.used += text.len();
        self.lines.push((level, text.into_owned()));
    }

    fn drop_line(&mut self, bytes: usize) {
        self.dropped_lines += 1;
        self.dropped_bytes = self.dropped_bytes.saturating_add(bytes);
    }
}

/// One of a pack's output streams (stdout or stderr), feeding [`CapturedOutput`].
#[derive(Clone)]
struct CapturedStream {
    name: &'static str,
    output: CapturedOutput,
}

impl IsTerminal for CapturedStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for CapturedStream {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturedStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.output.write(self.name, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for CapturedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.output.write(self.name, buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_split_into_lines_and_capped() {
        let out = CapturedOutput::new(10, 100);
        out.write("stdout", b"abc\ndef");
        out.write("stdout", b"gh\n0123456789\n");
        let (used, dropped) = out.usage();
        assert_eq!(used, 8, "abc + defgh kept");
        assert_eq!(dropped, 10, "the long line is dropped");
    }

    #[test]
    fn empty_lines_count_against_the_line_budget() {
        let out = CapturedOutput::new(1 << 20, 5);
        out.write("stdout", &vec![b'\n'; 1 << 20]);
        out.push_log(LogLevel::Info, "");
        assert_eq!(out.line_usage(), (5, (1 << 20) + 1 - 5));
    }

    #[test]
    fn kept_lines_are_escaped_and_escapes_count_against_the_byte_budget() {
        let out = CapturedOutput::new(100, 100);
        out.push_log(LogLevel::Info, "forged\nINFO admin logged in\u{1b}[2J");
        out.write("stderr", b"a\rb\n");
        let buf = out.0.lock().unwrap();
        let lines: Vec<&str> = buf.lines.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(lines, ["forged\\nINFO admin logged in\\u{1b}[2J", "a\\rb"]);
        assert_eq!(buf.used, lines.iter().map(|l| l.len()).sum::<usize>());
    }

    #[test]
    fn the_exception_an_interpreter_printed_is_kept_past_the_runtime_panic() {
        let out = CapturedOutput::new(1 << 20, 100);
        out.write(
            "stderr",
            b"Traceback (most recent call last):\n  File \"/0/app.py\", line 46, in build\n\
              ValueError: width must be a multiple of 8\n\
              thread '<unnamed>' (1) panicked at runtime/src/lib.rs:1293:29:\n\
              Python function threw an unexpected exception\n\
              note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
        );
        let tail = out.stderr_tail();
        assert_eq!(
            tail.cause.as_deref(),
            Some("ValueError: width must be a multiple of 8")
        );
        assert_eq!(
            tail.last.as_deref(),
            Some(
                "thread '<unnamed>' (1) panicked at runtime/src/lib.rs:1293:29: / Python function threw an unexpected exception"
            )
        );
        // A cause that is among the last lines is not repeated.
        let js = CapturedOutput::new(1 << 20, 100);
        js.write(
            "stderr",
            b"TypeError: x is undefined\nRedirecting call to abort() to mozalloc_abort\n",
        );
        let tail = js.stderr_tail();
        assert_eq!(tail.cause, None);
        assert_eq!(tail.last.as_deref(), Some("TypeError: x is undefined"));
    }

    #[test]
    fn exception_lines_are_told_from_ordinary_ones() {
        for yes in [
            "ValueError: bad",
            "json.decoder.JSONDecodeError: Expecting value",
            "ModuleNotFoundError: No module named 'textwrap'",
            "Error: a bug in the pack",
            "Exception { message: Some(\"boom\") }",
            "RuntimeError",
        ] {
            assert!(names_exception(yes), "{yes}");
        }
        for no in [
            "an Error: occurred",
            "Errors: 3",
            "thread '<unnamed>' panicked at src/lib.rs:1:1:",
            "  File \"/0/app.py\", line 46",
            "KeyboardInterrupt",
        ] {
            assert!(!names_exception(no), "{no}");
        }
    }
}
