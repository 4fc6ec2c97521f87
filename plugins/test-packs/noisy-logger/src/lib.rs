//! Hostile test pack `noisy-logger`: `build` of its one template, `log-flood`, calls
//! `host::log` 100 000 times with 1 KiB lines (about 100 MiB), writes 1 MiB to stdout
//! and 1 MiB to stderr, then returns a valid graph (EmptyImage -> SaveImage, prefix
//! `comfyui-mcp/log-flood`).
//!
//! The host must cap what it keeps of all three and still return the graph. stdout and
//! stderr write errors (a closed or full pipe) are ignored, so the build succeeds
//! whatever the host does with them short of trapping.

use std::io::Write;

use test_pack_support::host::{self, Level};
use test_pack_support::{BuildError, Param, solid_color_graph};

/// Host log calls per build.
const LOG_LINES: usize = 100_000;
/// Bytes per log line and per stdout/stderr line.
const LINE: usize = 1024;
/// Bytes written to each of stdout and stderr.
const STREAM_BYTES: usize = 1 << 20;

test_pack_support::single_template_pack! {
    template: ("log-flood", "Log Flood", "Floods the log, stdout and stderr, then returns a tiny graph."),
    build: build,
}

fn build(_params: Vec<Param>) -> Result<String, BuildError> {
    for i in 0..LOG_LINES {
        host::log(Level::Info, &line(i, "log"));
    }
    flood(&mut std::io::stdout().lock(), "stdout");
    flood(&mut std::io::stderr().lock(), "stderr");
    Ok(solid_color_graph(64, 64, 0, "comfyui-mcp/log-flood"))
}

/// Line `i`: a numbered tag padded with `.` to `LINE - 1` bytes (no newline).
fn line(i: usize, tag: &str) -> String {
    let mut s = format!("noisy-logger {tag} line {i} ");
    s.extend(std::iter::repeat_n('.', (LINE - 1).saturating_sub(s.len())));
    s
}

fn flood(out: &mut dyn Write, tag: &str) {
    for i in 0..STREAM_BYTES / LINE {
        let _ = writeln!(out, "{}", line(i, tag));
    }
    let _ = out.flush();
}
