//! The pack ABI: which WIT package version a component was built against.
//!
//! Checked by parsing the component's top-level exports before anything is
//! compiled, so an incompatible or foreign component is refused cheaply and
//! with a message naming both versions.

use std::path::Path;

use wasmparser::{Parser, Payload};

use crate::error::LoadError;

/// The WIT package that packs implement.
pub const ABI_PACKAGE: &str = "comfyui:workflow";
/// The version of [`ABI_PACKAGE`] this host implements.
pub const ABI_VERSION: &str = "1.0.0";

const EXPORTED_INTERFACE: &str = "comfyui:workflow/templates";

/// Checks that `bytes` is a component exporting a compatible `templates` interface.
pub(crate) fn check(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    let invalid = |reason: String| LoadError::Invalid {
        path: path.to_owned(),
        reason,
    };
    if !Parser::is_component(bytes) {
        let what = if Parser::is_core_wasm(bytes) {
            "a core WebAssembly module, not a component (build for wasm32-wasip2, or wrap it with `wasm-tools component new`)".to_owned()
        } else {
            "no WebAssembly component header".to_owned()
        };
        return Err(invalid(what));
    }
    let exports = top_level_exports(bytes).map_err(|e| invalid(e.to_string()))?;
    let ours = exports
        .iter()
        .find_map(|name| name.strip_prefix(EXPORTED_INTERFACE)?.strip_prefix('@'));
    let Some(found) = ours else {
        return Err(LoadError::NotAPack {
            path: path.to_owned(),
            expected: format!("{EXPORTED_INTERFACE}@{ABI_VERSION}"),
            found: if exports.is_empty() {
                "none".to_owned()
            } else {
                exports.join(", ")
            },
        });
    };
    if major(found) != major(ABI_VERSION) {
        return Err(LoadError::Incompatible {
            path: path.to_owned(),
            found: found.to_owned(),
            supported: ABI_VERSION.to_owned(),
        });
    }
    Ok(())
}

/// Semver compatibility class: the major version, or `0.minor` for 0.x.
pub(crate) fn major(version: &str) -> String {
    let mut parts = version.split('.');
    let first = parts.next().unwrap_or_default();
    if first == "0" {
        format!("0.{}", parts.next().unwrap_or_default())
    } else {
        first.to_owned()
    }
}

fn top_level_exports(bytes: &[u8]) -> Result<Vec<String>, wasmparser::BinaryReaderError> {
    let mut depth = 0usize;
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    names.push(export?.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_classes() {
        assert_eq!(major("1.0.0"), "1");
        assert_eq!(major("1.4.2"), "1");
        assert_ne!(major("2.0.0"), major(ABI_VERSION));
        assert_eq!(major("0.1.0"), "0.1");
        assert_ne!(major("0.2.0"), major("0.1.3"));
    }

    #[test]
    fn garbage_and_core_modules_are_refused_with_a_reason() {
        let p = Path::new("x.wasm");
        let err = check(p, b"not wasm at all").unwrap_err().to_string();
        assert!(err.contains("no WebAssembly component header"), "{err}");
        let core = b"\0asm\x01\0\0\0";
        let err = check(p, core).unwrap_err().to_string();
        assert!(err.contains("core WebAssembly module"), "{err}");
    }
}
