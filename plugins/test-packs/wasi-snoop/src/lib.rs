//! Hostile test pack `wasi-snoop`: `build` of its one template, `snoop-wasi`, tries
//! everything a sandboxed pack must not be able to do, and reports what it got.
//!
//! Result format (stable; host tests assert on it): `build` always returns
//! `build-error::failed` with exactly one line
//!
//! ```text
//! wasi-snoop: passwd=<P> root=<R> cwd=<C> write=<W> env=<E> args=<A> tcp=<T>
//! ```
//!
//! - `P`: `denied`, or `read:<bytes>` if `/etc/passwd` could be read;
//! - `R`, `C`: `denied`, or `entries:<n>` if `read_dir("/")` / `read_dir(".")` worked;
//! - `W`: `denied`, or `ok` if creating `./wasi-snoop.txt` worked (the file is removed);
//! - `E`, `A`: the number of `std::env::vars()` / `std::env::args()` entries;
//! - `T`: `denied` (any failure, or no answer within 2 s), or `connected` if a TCP
//!   connection to 127.0.0.1:8188 was made. The probe uses the raw `wasi:sockets`
//!   interfaces (not `std::net`), so it is the same whichever wasi-libc the pack was
//!   linked with.
//!
//! A fully sandboxed run gives exactly
//! `wasi-snoop: passwd=denied root=denied cwd=denied write=denied env=0 args=0 tcp=denied`
//! (see `SANDBOXED`). The same line is also logged through `host::log` at info level.

use test_pack_support::host::{self, Level};
use test_pack_support::{BuildError, Param};
use wasip2::clocks::monotonic_clock;
use wasip2::io::poll;
use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::network::{ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
use wasip2::sockets::tcp_create_socket::create_tcp_socket;

/// The report of a run in a sandbox that grants nothing.
pub const SANDBOXED: &str =
    "wasi-snoop: passwd=denied root=denied cwd=denied write=denied env=0 args=0 tcp=denied";

test_pack_support::single_template_pack! {
    template: ("snoop-wasi", "Snoop WASI", "Probes files, environment, arguments and network; fails with a report."),
    build: build,
}

fn build(_params: Vec<Param>) -> Result<String, BuildError> {
    let report = snoop();
    host::log(Level::Info, &report);
    Err(BuildError::Failed(report))
}

fn snoop() -> String {
    let passwd = match std::fs::read("/etc/passwd") {
        Ok(bytes) => format!("read:{}", bytes.len()),
        Err(_) => "denied".to_string(),
    };
    format!(
        "wasi-snoop: passwd={passwd} root={} cwd={} write={} env={} args={} tcp={}",
        list_dir("/"),
        list_dir("."),
        try_write(),
        std::env::vars_os().count(),
        std::env::args_os().count(),
        try_connect(),
    )
}

fn list_dir(path: &str) -> String {
    match std::fs::read_dir(path) {
        Ok(entries) => format!("entries:{}", entries.count()),
        Err(_) => "denied".to_string(),
    }
}

fn try_write() -> &'static str {
    let path = "wasi-snoop.txt";
    match std::fs::write(path, b"wasi-snoop was here\n") {
        Ok(()) => {
            let _ = std::fs::remove_file(path);
            "ok"
        }
        Err(_) => "denied",
    }
}

/// How long the TCP probe waits for the connection: 2 s, in nanoseconds.
const CONNECT_TIMEOUT_NS: u64 = 2_000_000_000;

fn try_connect() -> &'static str {
    let Ok(socket) = create_tcp_socket(IpAddressFamily::Ipv4) else {
        return "denied";
    };
    let remote = IpSocketAddress::Ipv4(Ipv4SocketAddress {
        port: 8188,
        address: (127, 0, 0, 1),
    });
    if socket.start_connect(&instance_network(), remote).is_err() {
        return "denied";
    }
    let ready = socket.subscribe();
    let deadline = monotonic_clock::subscribe_duration(CONNECT_TIMEOUT_NS);
    loop {
        match socket.finish_connect() {
            Ok(_) => return "connected",
            Err(ErrorCode::WouldBlock) if !deadline.ready() => {
                poll::poll(&[&ready, &deadline]);
            }
            Err(_) => return "denied",
        }
    }
}
