//! JSON text exactly as Python's `json.dumps` writes it (what aiohttp's `json_response` and
//! `send_json` put on the wire): `", "` and `": "` separators, floats spelled like
//! `repr(float)` (`1e-05`, `100.0`), and every non-ASCII character escaped as `\uXXXX`.
//!
//! Invariant: the output is valid JSON (JSON values cannot hold NaN or infinities) and pure
//! ASCII, so byte counts match the recordings for the same content.

use serde::Serialize;
use serde_json::Value;
use serde_json::ser::{Formatter, Serializer};
use std::io::{self, Write};

use crate::pyval;

/// Serializes a JSON value the way Python's `json.dumps(value)` does.
pub(crate) fn dumps(value: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    let mut ser = Serializer::with_formatter(&mut out, PyFormatter);
    // Writing a `Value` into a Vec has no failure mode: no I/O, and map keys are strings.
    if value.serialize(&mut ser).is_err() {
        return "null".to_string();
    }
    // The formatter only ever writes ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// The `serde_json` formatter that reproduces Python's default `json.dumps` style.
struct PyFormatter;

impl Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_f64<W: ?Sized + Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(pyval::float_repr_json(value).as_bytes())
    }

    fn write_f32<W: ?Sized + Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for ch in fragment.chars() {
            if (' '..='~').contains(&ch) {
                let mut buf = [0u8; 4];
                writer.write_all(ch.encode_utf8(&mut buf).as_bytes())?;
            } else {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_python_dumps() {
        assert_eq!(
            dumps(&json!({"queue_running": [], "queue_pending": []})),
            r#"{"queue_running": [], "queue_pending": []}"#
        );
        assert_eq!(
            dumps(&json!({"a": [1, 2.0, 1e-5, "é"]})),
            r#"{"a": [1, 2.0, 1e-05, "\u00e9"]}"#
        );
        assert_eq!(
            dumps(&json!("line\nbreak \u{7f}")),
            r#""line\nbreak \u007f""#
        );
        assert_eq!(dumps(&json!("😀")), r#""\ud83d\ude00""#);
    }
}
