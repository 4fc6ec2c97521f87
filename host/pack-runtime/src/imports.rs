//! The pack's imports, checked against what the host links, before compiling.
//!
//! Compiling a 10–40 MB component (CPython, SpiderMonkey) costs seconds of
//! CPU; a component the linker cannot satisfy would only be refused after
//! that, with wasmtime's "matching implementation was not found in the
//! linker". So the binary is parsed first (like `abi.rs` does for exports)
//! and every top-level import is compared with [`LINKED`], the interfaces
//! `runtime.rs` adds to the linker. An import outside it, or a use of the
//! component-model async built-ins (which this host's wasmtime build turns
//! away), is refused at once with a [`LoadError`] naming the import and, for
//! each known toolchain trap, the fix ([`ImportFix`]).
//!
//! Invariants:
//! * only **top-level** imports are checked: nested components' imports are
//!   satisfied inside the component; the top level is what the linker sees;
//! * an import is linked when its package and interface are in [`LINKED`]
//!   and its version is semver-compatible with the linked one (same major,
//!   or same `0.minor`), the rule wasmtime's linker applies;
//! * `LINKED` must follow the linker: an entry it lacks lets a pack through
//!   to the slow link failure, a missing entry refuses a good pack. The
//!   second is tested on real packs (`tests/bigpacks.rs`: `wasi-snoop`
//!   imports the WASI interfaces a `wasm32-wasip2` build uses); wasmtime
//!   cannot be asked which instances a linker defines (an import of a
//!   missing instance fails exactly like one of a wrong export);
//! * at most [`MAX_REPORTED_IMPORTS`] unsatisfied imports are named in one
//!   error (the rest are counted), each escaped and capped by `text.rs`.

use std::path::Path;

use wasmparser::{CanonicalFunction, CanonicalOption, Parser, Payload};

use crate::error::{LoadError, UnlinkedImport};

/// Unsatisfied imports named in one error; further ones are only counted.
pub const MAX_REPORTED_IMPORTS: usize = 8;

/// Longest import name quoted in an error, in bytes (names are pack-provided).
const MAX_IMPORT_NAME_BYTES: usize = 200;

/// Interfaces the host links, per package, with the version they are linked
/// at (any semver-compatible version matches). Must follow `runtime.rs`:
/// `wasmtime_wasi::p2::add_to_linker_sync` and the `comfyui:workflow` world.
pub(crate) const LINKED: &[(&str, &str, &[&str])] = &[
    // One entry per served ABI major (`bindings/`), side by side.
    ("comfyui:workflow", "1.0.0", &["host", "types"]),
    ("comfyui:workflow", "2.0.0", &["host", "types"]),
    ("wasi:io", "0.2.12", &["error", "poll", "streams"]),
    ("wasi:clocks", "0.2.12", &["wall-clock", "monotonic-clock"]),
    (
        "wasi:random",
        "0.2.12",
        &["random", "insecure", "insecure-seed"],
    ),
    (
        "wasi:cli",
        "0.2.12",
        &[
            "exit",
            "environment",
            "stdin",
            "stdout",
            "stderr",
            "terminal-input",
            "terminal-output",
            "terminal-stdin",
            "terminal-stdout",
            "terminal-stderr",
        ],
    ),
    ("wasi:filesystem", "0.2.12", &["types", "preopens"]),
    (
        "wasi:sockets",
        "0.2.12",
        &[
            "tcp",
            "udp",
            "tcp-create-socket",
            "udp-create-socket",
            "instance-network",
            "network",
            "ip-name-lookup",
        ],
    ),
];

/// How to get rid of an import the host does not link: one case per known
/// toolchain trap (see the README's "Big packs"), and a general one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFix {
    /// `wasi:http/*`: componentize-js (StarlingMonkey) imports it by default.
    WasiHttp,
    /// A WASI 0.3 (or other non-0.2) interface of a linked package.
    WasiVersion,
    /// `wasi:logging/*`: packs log through the host API instead.
    WasiLogging,
    /// `comfyui:workflow/*` of another major version, or an interface the
    /// published WIT does not have.
    WorkflowAbi,
    /// An import without a version (`wasi:io/poll`): a hand-made or
    /// mis-adapted component.
    Unversioned,
    /// Anything else: some dependency pulls it in.
    Other,
}

impl std::fmt::Display for ImportFix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ImportFix::WasiHttp => {
                "componentize-js imports wasi:http by default: rebuild with `-d http fetch-event`; \
                 in other languages drop the HTTP client dependency (packs have no network)"
            }
            ImportFix::WasiVersion => {
                "the host links WASI 0.2.x: build for WASI 0.2 (Rust: target wasm32-wasip2; \
                 componentize-py and componentize-js produce 0.2 by default)"
            }
            ImportFix::WasiLogging => {
                "log through `comfyui:workflow/host.log` (or stderr) instead of wasi:logging"
            }
            ImportFix::WorkflowAbi => {
                "rebuild the pack against a published wit/v<major>/workflow.wit (comfyui:workflow@1.x or @2.x)"
            }
            ImportFix::Unversioned => {
                "interface imports need a version (e.g. `@0.2.0`): build the component with a \
                 standard toolchain (wasm-tools component new, cargo for wasm32-wasip2)"
            }
            ImportFix::Other => {
                "remove the dependency that imports it; packs may import only comfyui:workflow/{host,types}@1.x or @2.x \
                 and wasi:{io,clocks,random,cli,filesystem,sockets}@0.2.x (all denied but stdout/stderr)"
            }
        })
    }
}

/// Refuses a component whose imports the host cannot link, or that uses the
/// component-model async built-ins, before anything is compiled.
pub(crate) fn check(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    let scan = scan(bytes).map_err(|e| LoadError::Invalid {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if let Some(builtin) = scan.async_builtin {
        return Err(LoadError::AsyncBuiltins {
            path: path.to_owned(),
            builtin,
        });
    }
    let unlinked: Vec<UnlinkedImport> = scan
        .imports
        .iter()
        .filter_map(|name| {
            fix_for(name).map(|fix| UnlinkedImport {
                name: crate::text::cap(name, MAX_IMPORT_NAME_BYTES),
                fix,
            })
        })
        .collect();
    if unlinked.is_empty() {
        return Ok(());
    }
    let total = unlinked.len();
    Err(LoadError::UnlinkedImports {
        path: path.to_owned(),
        imports: unlinked.into_iter().take(MAX_REPORTED_IMPORTS).collect(),
        total,
    })
}

/// `None` when the host links `name`, else how to get rid of it.
pub(crate) fn fix_for(name: &str) -> Option<ImportFix> {
    let Some((qualified, version)) = name.split_once('@') else {
        // A plain name (`(import "f" (func))`) is never linked either.
        return Some(ImportFix::Unversioned);
    };
    let (package, interface) = qualified.split_once('/').unwrap_or((qualified, ""));
    // A package may be linked at several majors (comfyui:workflow 1.x and 2.x):
    // the entry of the import's major, else the package's first entry.
    let mut entries = LINKED.iter().filter(|(p, _, _)| *p == package).peekable();
    let first = entries.peek().copied();
    let entry = entries
        .find(|(_, linked, _)| crate::abi::major(version) == crate::abi::major(linked))
        .or(first);
    match entry {
        Some((_, linked, interfaces)) => {
            let compatible = crate::abi::major(version) == crate::abi::major(linked);
            if compatible && interfaces.contains(&interface) {
                None
            } else if package == crate::abi::ABI_PACKAGE {
                Some(ImportFix::WorkflowAbi)
            } else if !compatible {
                Some(ImportFix::WasiVersion)
            } else {
                Some(ImportFix::Other)
            }
        }
        None if package == "wasi:http" => Some(ImportFix::WasiHttp),
        None if package == "wasi:logging" => Some(ImportFix::WasiLogging),
        None => Some(ImportFix::Other),
    }
}

/// What the pre-compile scan found.
struct Scan {
    /// Top-level import names, in order.
    imports: Vec<String>,
    /// The first component-model async built-in or option, if any.
    async_builtin: Option<&'static str>,
}

fn scan(bytes: &[u8]) -> Result<Scan, wasmparser::BinaryReaderError> {
    let mut depth = 0usize;
    let mut found = Scan {
        imports: Vec::new(),
        async_builtin: None,
    };
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    found.imports.push(import?.name.name.to_owned());
                }
            }
            Payload::ComponentCanonicalSection(section) if found.async_builtin.is_none() => {
                for function in section {
                    if let Some(name) = async_builtin(&function?) {
                        found.async_builtin = Some(name);
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(found)
}

/// The name of a canonical function that needs component-model async, if it is one.
fn async_builtin(function: &CanonicalFunction) -> Option<&'static str> {
    let async_option = |options: &[CanonicalOption]| {
        options
            .iter()
            .any(|o| matches!(o, CanonicalOption::Async | CanonicalOption::Callback(_)))
    };
    match function {
        CanonicalFunction::Lift { options, .. } | CanonicalFunction::Lower { options, .. } => {
            async_option(&options[..]).then_some("an `async` canon lift/lower option")
        }
        CanonicalFunction::ResourceNew { .. }
        | CanonicalFunction::ResourceDrop { .. }
        | CanonicalFunction::ResourceRep { .. } => None,
        CanonicalFunction::TaskReturn { .. } => Some("task.return"),
        CanonicalFunction::TaskCancel => Some("task.cancel"),
        CanonicalFunction::ContextGet { .. } | CanonicalFunction::ContextSet { .. } => {
            Some("context.get/set")
        }
        CanonicalFunction::WaitableSetNew
        | CanonicalFunction::WaitableSetWait { .. }
        | CanonicalFunction::WaitableSetPoll { .. }
        | CanonicalFunction::WaitableSetDrop
        | CanonicalFunction::WaitableJoin => Some("waitable-set"),
        CanonicalFunction::StreamNew { .. } | CanonicalFunction::FutureNew { .. } => {
            Some("stream/future")
        }
        _ => Some("a component-model async or threads built-in"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linked_imports_pass_and_each_trap_gets_its_fix() {
        for ok in [
            "wasi:io/streams@0.2.0",
            "wasi:cli/stderr@0.2.9",
            "wasi:sockets/tcp@0.2.12",
            "comfyui:workflow/host@1.0.0",
            "comfyui:workflow/types@1.2.0",
            "comfyui:workflow/host@2.0.0",
            "comfyui:workflow/types@2.1.0",
        ] {
            assert_eq!(fix_for(ok), None, "{ok}");
        }
        let cases = [
            ("wasi:http/types@0.2.10", ImportFix::WasiHttp),
            ("wasi:http/outgoing-handler@0.2.10", ImportFix::WasiHttp),
            ("wasi:io/streams@0.3.0", ImportFix::WasiVersion),
            ("wasi:cli/run@0.2.0", ImportFix::Other),
            ("wasi:logging/logging@0.1.0-draft", ImportFix::WasiLogging),
            ("comfyui:workflow/host@3.0.0", ImportFix::WorkflowAbi),
            ("comfyui:workflow/secrets@1.0.0", ImportFix::WorkflowAbi),
            ("comfyui:workflow/secrets@2.0.0", ImportFix::WorkflowAbi),
            ("wasi:io/poll", ImportFix::Unversioned),
            ("acme:db/query@1.0.0", ImportFix::Other),
        ];
        for (name, fix) in cases {
            assert_eq!(fix_for(name), Some(fix), "{name}");
        }
    }
}
