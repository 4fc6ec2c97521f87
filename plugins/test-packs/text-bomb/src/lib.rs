//! Hostile test pack `text-bomb`: text a host must bound and escape. Templates:
//!
//! - `empty-lines`: logs empty lines through `host::log` and writes 64 KiB blocks of
//!   `\n` to stdout and stderr, without end (until the host's deadline stops it);
//! - `control-chars`: logs [`FORGED`] through `host::log`, writes it to stdout and
//!   stderr, then fails with `build-error::failed(FORGED)`;
//! - `huge-failed`: fails with a message of [`HUGE`] bytes (`x` repeated, then a
//!   newline and `END`);
//! - `huge-field-errors`: fails with `invalid-params` of [`FIELD_ERRORS`] entries,
//!   param `p<i>` and message `bad value <i>` plus a newline;
//! - `huge-unknown`: answers `unknown-template` with an id of [`HUGE`] bytes.

use std::io::Write;

use test_pack_support::comfyui::workflow::types::FieldError;
use test_pack_support::host::{self, Level};
use test_pack_support::{
    BuildError, Guest, PackInfo, Param, TemplateInfo, pack_info, prompt_param, template,
};

/// A line that would forge a log record, clear the screen and reverse the text
/// after it, if it reached a terminal raw.
pub const FORGED: &str =
    "first\nINFO comfyui_mcp: forged record\r\u{1b}[2J\u{1b}]0;title\u{7}\u{202e}desrever\u{85}end";

/// Bytes of the huge texts (8 MiB).
pub const HUGE: usize = 8 << 20;

/// Entries of the huge field-error list.
pub const FIELD_ERRORS: usize = 100_000;

struct Pack;

impl Guest for Pack {
    fn info() -> PackInfo {
        pack_info!()
    }

    fn list() -> Vec<TemplateInfo> {
        let t = |id: &str, what: &str| template(id, id, what, vec![prompt_param()]);
        vec![
            t("empty-lines", "Floods empty lines until stopped."),
            t("control-chars", "Logs and fails with control characters."),
            t("huge-failed", "Fails with an 8 MiB message."),
            t("huge-field-errors", "Fails with 100 000 field errors."),
            t("huge-unknown", "Answers unknown-template with an 8 MiB id."),
        ]
    }

    fn build(id: String, _params: Vec<Param>) -> Result<String, BuildError> {
        match id.as_str() {
            "empty-lines" => {
                let block = vec![b'\n'; 64 << 10];
                loop {
                    for _ in 0..1024 {
                        host::log(Level::Info, "");
                    }
                    let _ = std::io::stdout().write_all(&block);
                    let _ = std::io::stderr().write_all(&block);
                }
            }
            "control-chars" => {
                host::log(Level::Warn, FORGED);
                let _ = writeln!(std::io::stdout(), "{FORGED}");
                let _ = writeln!(std::io::stderr(), "{FORGED}");
                Err(BuildError::Failed(FORGED.to_string()))
            }
            "huge-failed" => Err(BuildError::Failed(huge())),
            "huge-field-errors" => Err(BuildError::InvalidParams(
                (0..FIELD_ERRORS)
                    .map(|i| FieldError {
                        param: format!("p{i}"),
                        message: format!("bad value {i}\n"),
                    })
                    .collect(),
            )),
            "huge-unknown" => Err(BuildError::UnknownTemplate(huge())),
            _ => Err(BuildError::UnknownTemplate(id)),
        }
    }
}

fn huge() -> String {
    let mut s = "x".repeat(HUGE - 4);
    s.push_str("\nEND");
    s
}

test_pack_support::export!(Pack);
