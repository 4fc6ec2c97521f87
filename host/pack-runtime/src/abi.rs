//! The pack ABI: which WIT package version a component was built against.
//!
//! Checked by parsing the component's top-level exports before anything is
//! compiled, so an incompatible or foreign component is refused cheaply and
//! with a message naming the version found and every major this host serves
//! (see `bindings/mod.rs`: 1.x and 2.x side by side).
//!
//! The major is the one of the exported `comfyui:workflow/templates@X.Y.Z`.
//! A 2.x pack may also export `comfyui:workflow/postprocessor@2.x` (world
//! `postprocessing-pack`); an export of that interface at another major
//! than its templates is refused as incompatible.

use std::path::Path;

use wasmparser::{Parser, Payload};

use crate::bindings::Major;
use crate::error::LoadError;

/// The WIT package that packs implement.
pub const ABI_PACKAGE: &str = "comfyui:workflow";
/// The newest version of [`ABI_PACKAGE`] this host implements.
pub const ABI_VERSION: &str = "2.0.0";
/// Every version of [`ABI_PACKAGE`] this host implements, oldest first; a
/// pack of any semver-compatible version (same major) is served.
pub const SUPPORTED_ABI_VERSIONS: &[&str] = &["1.0.0", "2.0.0"];

const EXPORTED_INTERFACE: &str = "comfyui:workflow/templates";
const POSTPROCESSOR_INTERFACE: &str = "comfyui:workflow/postprocessor";

/// What the export scan found in a pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Detected {
    /// The served major the pack was built against.
    pub major: Major,
    /// The exact version of its `templates` export.
    pub version: String,
    /// Whether it exports the postprocessor interface (same major).
    pub postprocessor: bool,
}

/// Checks that `bytes` is a component exporting a `templates` interface of
/// a served major, and returns which.
pub(crate) fn check(path: &Path, bytes: &[u8]) -> Result<Detected, LoadError> {
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
    let version_of = |interface: &str| {
        exports
            .iter()
            .find_map(|name| name.strip_prefix(interface)?.strip_prefix('@'))
    };
    let Some(found) = version_of(EXPORTED_INTERFACE) else {
        return Err(LoadError::NotAPack {
            path: path.to_owned(),
            expected: format!(
                "{EXPORTED_INTERFACE}@{}",
                Major::supported_labels().replace(", ", " or @")
            ),
            found: if exports.is_empty() {
                "none".to_owned()
            } else {
                crate::text::cap(&exports.join(", "), 1 << 10)
            },
        });
    };
    let incompatible = |found: &str| LoadError::Incompatible {
        path: path.to_owned(),
        found: crate::text::cap(found, 64),
        supported: Major::supported_labels(),
    };
    let major = Major::of(found).ok_or_else(|| incompatible(found))?;
    let postprocessor = match version_of(POSTPROCESSOR_INTERFACE) {
        None => false,
        Some(v) if self::major(v) == self::major(found) => true,
        Some(v) => return Err(incompatible(&format!("{v} (its postprocessor export)"))),
    };
    Ok(Detected {
        major,
        version: found.to_owned(),
        postprocessor,
    })
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
        assert_eq!(major("0.1.0"), "0.1");
        assert_ne!(major("0.2.0"), major("0.1.3"));
    }

    #[test]
    fn served_majors_follow_the_bindings() {
        assert_eq!(Major::of("1.3.0"), Some(Major::V1));
        assert_eq!(Major::of("2.0.0"), Some(Major::V2));
        assert_eq!(Major::of("3.0.0"), None);
        assert_eq!(Major::of("0.1.0"), None);
        assert_eq!(Major::supported_labels(), "1.x, 2.x");
        let versions: Vec<&str> = Major::SUPPORTED.iter().map(|m| m.version()).collect();
        assert_eq!(versions, SUPPORTED_ABI_VERSIONS);
        assert_eq!(versions.last(), Some(&ABI_VERSION));
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
