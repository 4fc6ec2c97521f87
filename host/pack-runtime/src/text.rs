//! Text that comes from a pack, made safe to show: control characters
//! escaped, and length capped with a note of what was cut.
//!
//! Invariant: every pack-provided string that reaches a log line, a terminal
//! or an error message goes through [`escape_control`] (and, when it has no
//! budget of its own, [`cap`]), so a pack can neither forge log records
//! (newlines, carriage returns) nor drive the operator's terminal (ESC and
//! other C0/C1 controls) nor reorder what is displayed (bidi overrides).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a log line or terminal raw: C0 and C1 controls
/// (newline, carriage return, tab and ESC included), DEL, the Unicode bidi
/// embedding, override and isolate controls, the implicit direction marks,
/// and the line and paragraph separators.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `text` with every [`is_unsafe_char`] written as an escape (`\n`, `\r`,
/// `\t`, or `\u{..}`); borrowed unchanged when there is nothing to escape.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` escaped, then cut to at most `max_bytes` (at a character boundary,
/// never inside an escape) followed by ` ... (N more bytes cut)` when it was
/// longer, N counted in the pack's own bytes. The note comes on top of the
/// budget. The work is bounded by `max_bytes`, not by the length of `text`.
pub fn cap(text: &str, max_bytes: usize) -> String {
    let kept = source_len_within(text, max_bytes);
    if kept == text.len() {
        return escape_control(text).into_owned();
    }
    format!(
        "{} ... ({} more bytes cut)",
        escape_control(&text[..kept]),
        text.len() - kept
    )
}

/// The longest prefix of `source` (in bytes) whose escaped form fits in
/// `budget` bytes.
fn source_len_within(source: &str, budget: usize) -> usize {
    let mut produced = 0usize;
    for (i, c) in source.char_indices() {
        produced += escaped_width(c);
        if produced > budget {
            return i;
        }
    }
    source.len()
}

/// Bytes `c` takes once escaped.
fn escaped_width(c: char) -> usize {
    match c {
        '\n' | '\r' | '\t' => 2,
        // `\u{` + hex digits + `}`
        c if is_unsafe_char(c) => {
            4 + (32 - u32::from(c).leading_zeros()).div_ceil(4).max(1) as usize
        }
        c => c.len_utf8(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_escaped() {
        assert_eq!(
            escape_control("a\nb\rc\td\u{1b}[31me\u{7f}\u{85}\u{202e}f\u{2066}\u{2028}"),
            "a\\nb\\rc\\td\\u{1b}[31me\\u{7f}\\u{85}\\u{202e}f\\u{2066}\\u{2028}"
        );
        assert!(matches!(escape_control("plain é ✓"), Cow::Borrowed(_)));
    }

    #[test]
    fn cap_cuts_at_a_boundary_and_counts_the_rest() {
        assert_eq!(cap("short", 10), "short");
        assert_eq!(
            cap("0123456789abc", 10),
            "0123456789 ... (3 more bytes cut)"
        );
        // `é` is two bytes: never split.
        assert_eq!(cap("ééé", 3), "é ... (4 more bytes cut)");
        // Escapes count against the budget and are never split.
        assert_eq!(cap("a\n\n\n", 4), "a\\n ... (2 more bytes cut)");
        let huge = "x".repeat(10 << 20);
        let capped = cap(&huge, 100);
        assert!(capped.ends_with(&format!("({} more bytes cut)", (10 << 20) - 100)));
    }
}
