//! The per-call sandbox: the state each `Store` owns, the WASI context that
//! grants nothing, the capped capture of a pack's output, and the host
//! functions a pack may import (`log`, `models`, `has-node`).

use std::collections::{BTreeMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::{Level, comfyui::workflow};
use crate::limits::Limits;

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
    pub(crate) limits: StoreLimits,
    host: Arc<dyn HostView>,
    pub(crate) output: CapturedOutput,
}

impl StoreState {
    pub(crate) fn new(limits: &Limits, host: Arc<dyn HostView>) -> Self {
        let output = CapturedOutput::new(limits.max_log_bytes);
        // `WasiCtxBuilder::new()` already denies everything (no preopens, env,
        // args, stdin, sockets, name lookups); the explicit calls keep that
        // true if wasmtime-wasi's defaults ever change.
        let wasi = WasiCtxBuilder::new()
            .stdout(output.stream("stdout"))
            .stderr(output.stream("stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                // Trap instead of returning -1 from memory.grow, so a memory
                // bomb is reported as such rather than as a guest abort.
                .trap_on_grow_failure(true)
                .instances(64)
                .build(),
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

impl workflow::types::Host for StoreState {}

impl workflow::host::Host for StoreState {
    fn log(&mut self, level: Level, message: String) {
        self.output.push_log(level, &message);
    }
    fn models(&mut self, folder: String) -> Vec<String> {
        self.host.models(&folder)
    }
    fn has_node(&mut self, class_type: String) -> bool {
        self.host.has_node(&class_type)
    }
}

/// Output a pack produced during one call (stdout, stderr, log lines), capped
/// at a byte budget shared by all three. Past the budget, output is dropped
/// silently for the pack (writes still succeed) and counted.
#[derive(Clone)]
pub(crate) struct CapturedOutput(Arc<Mutex<OutputBuffer>>);

#[derive(Default)]
struct OutputBuffer {
    budget: usize,
    lines: Vec<(Level, String)>,
    used: usize,
    dropped: usize,
    partial: BTreeMap<&'static str, Vec<u8>>,
    /// The last few meaningful stderr lines (a panic message, typically).
    stderr_tail: std::collections::VecDeque<String>,
}

impl CapturedOutput {
    fn new(budget: usize) -> Self {
        Self(Arc::new(Mutex::new(OutputBuffer {
            budget,
            ..Default::default()
        })))
    }

    fn stream(&self, name: &'static str) -> CapturedStream {
        CapturedStream {
            name,
            output: self.clone(),
        }
    }

    fn push_log(&self, level: Level, message: &str) {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        buf.push(level, message);
    }

    fn write(&self, stream: &'static str, bytes: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut pending = buf.partial.remove(stream).unwrap_or_default();
        pending.extend_from_slice(bytes);
        let level = if stream == "stderr" {
            Level::Warn
        } else {
            Level::Info
        };
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if stream == "stderr" {
                buf.remember_stderr(&text);
            }
            buf.push(level, &text);
        }
        // Bound the unterminated tail too: flush it as a line once it is long.
        if pending.len() > 4096 {
            let line = std::mem::take(&mut pending);
            buf.push(level, String::from_utf8_lossy(&line).as_ref());
        }
        buf.partial.insert(stream, pending);
    }

    /// Forwards everything captured to the log, tagged with the pack name.
    pub(crate) fn flush_to_log(&self, pack: &str) {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let tails: Vec<_> = std::mem::take(&mut buf.partial).into_iter().collect();
        for (stream, tail) in tails {
            if !tail.is_empty() {
                let level = if stream == "stderr" {
                    Level::Warn
                } else {
                    Level::Info
                };
                buf.push(level, String::from_utf8_lossy(&tail).as_ref());
            }
        }
        for (level, line) in buf.lines.drain(..) {
            match level {
                Level::Trace => tracing::trace!(target: "pack", pack, "{line}"),
                Level::Debug => tracing::debug!(target: "pack", pack, "{line}"),
                Level::Info => tracing::info!(target: "pack", pack, "{line}"),
                Level::Warn => tracing::warn!(target: "pack", pack, "{line}"),
                Level::Error => tracing::error!(target: "pack", pack, "{line}"),
            }
        }
        if buf.dropped > 0 {
            tracing::warn!(
                target: "pack",
                pack,
                dropped_bytes = buf.dropped,
                "pack output over the {} byte budget was dropped",
                buf.budget
            );
            buf.dropped = 0;
        }
    }

    /// The pack's last meaningful stderr lines joined by " / " (for a
    /// panic: where it happened and its message), if it wrote any.
    pub(crate) fn stderr_tail(&self) -> Option<String> {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tail) = buf.partial.get("stderr").filter(|t| !t.is_empty()) {
            let text = String::from_utf8_lossy(tail).into_owned();
            buf.remember_stderr(&text);
            buf.partial.remove("stderr");
        }
        let lines: Vec<&str> = buf.stderr_tail.iter().map(String::as_str).collect();
        (!lines.is_empty()).then(|| lines.join(" / "))
    }

    /// Bytes kept and dropped so far (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn usage(&self) -> (usize, usize) {
        let buf = self.0.lock().unwrap();
        (buf.used, buf.dropped)
    }
}

impl OutputBuffer {
    fn remember_stderr(&mut self, line: &str) {
        let line = line.trim();
        // Rust's panic hook adds a hint about RUST_BACKTRACE: noise for our users.
        if line.is_empty() || line.starts_with("note: run with `RUST_BACKTRACE") {
            return;
        }
        if self.stderr_tail.len() == 2 {
            self.stderr_tail.pop_front();
        }
        self.stderr_tail.push_back(line.chars().take(300).collect());
    }

    fn push(&mut self, level: Level, message: &str) {
        let room = self.budget.saturating_sub(self.used);
        if message.len() > room {
            self.dropped += message.len();
            return;
        }
        self.used += message.len();
        self.lines.push((level, message.to_owned()));
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
        let out = CapturedOutput::new(10);
        out.write("stdout", b"abc\ndef");
        out.write("stdout", b"gh\n0123456789\n");
        let (used, dropped) = out.usage();
        assert_eq!(used, 8, "abc + defgh kept");
        assert_eq!(dropped, 10, "the long line is dropped");
    }
}
