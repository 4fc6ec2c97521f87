//! Python semantics on JSON values.
//!
//! ComfyUI is a Python program: its error texts are built with `str()` / `repr()`, it converts
//! widget values with `int()` / `float()` / `str()` / `bool()`, compares them with `<` and `in`,
//! and a few request handlers fail with a `TypeError` on unexpected JSON shapes. This module
//! reproduces those operations on `serde_json::Value` so that the simulator's messages read
//! exactly like the real server's.
//!
//! Invariants: functions are pure; a Python exception is returned as [`PyErr`] (type name and
//! message as Python would print them), never as a panic.

use serde_json::{Map, Number, Value};
use std::cmp::Ordering;

/// A Python exception: its type name (as `full_type_name` prints it) and `str(exception)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PyErr {
    /// e.g. `KeyError`, `IndexError`, `TypeError`.
    pub type_name: String,
    /// `str(exception)`.
    pub message: String,
}

impl PyErr {
    /// Builds an exception of the given type with the given message.
    pub fn new(type_name: &str, message: impl Into<String>) -> Self {
        Self {
            type_name: type_name.to_string(),
            message: message.into(),
        }
    }

    /// `KeyError(key)`: Python prints the key with `repr()`.
    pub fn key_error(key: &Value) -> Self {
        Self::new("KeyError", repr(key))
    }
}

/// A Python number taken from JSON (`bool` counts as `int`, like in Python).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PyNum {
    /// A Python `int`.
    Int(i128),
    /// A Python `float`.
    Float(f64),
}

impl PyNum {
    /// The number as a JSON value (an int that does not fit 64 bits becomes a float).
    pub fn to_value(self) -> Value {
        match self {
            PyNum::Int(i) => int_value(i),
            PyNum::Float(f) => float_value(f),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            PyNum::Int(i) => i as f64,
            PyNum::Float(f) => f,
        }
    }

    /// Numeric comparison across int and float, like Python's.
    pub fn cmp(self, other: PyNum) -> Option<Ordering> {
        match (self, other) {
            (PyNum::Int(a), PyNum::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }
}

/// A JSON value for a Python int.
pub(crate) fn int_value(i: i128) -> Value {
    if let Ok(v) = i64::try_from(i) {
        Value::from(v)
    } else if let Ok(v) = u64::try_from(i) {
        Value::from(v)
    } else {
        float_value(i as f64)
    }
}

/// A JSON value for a Python float (NaN and infinities, which JSON cannot hold, become null).
pub(crate) fn float_value(f: f64) -> Value {
    Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// The number held by a JSON value, if it is a number or a bool.
pub(crate) fn as_num(v: &Value) -> Option<PyNum> {
    match v {
        Value::Bool(b) => Some(PyNum::Int(i128::from(*b))),
        Value::Number(n) => Some(number_to_pynum(n)),
        _ => None,
    }
}

fn number_to_pynum(n: &Number) -> PyNum {
    if let Some(i) = n.as_i64() {
        PyNum::Int(i128::from(i))
    } else if let Some(u) = n.as_u64() {
        PyNum::Int(i128::from(u))
    } else {
        PyNum::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// Python's `type(v).__name__` for a JSON value.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) => match number_to_pynum(n) {
            PyNum::Int(_) => "int",
            PyNum::Float(_) => "float",
        },
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Python's `repr(float)`: shortest round-trip digits, scientific outside `1e-4 <= |x| < 1e16`.
pub(crate) fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Rust's `{:e}` gives the shortest round-trip digits, e.g. "1.2345e3" or "-5e-7".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            let (int_part, frac_part) = if digits.len() > int_len {
                (digits[..int_len].to_string(), digits[int_len..].to_string())
            } else {
                (
                    format!("{digits}{}", "0".repeat(int_len - digits.len())),
                    "0".to_string(),
                )
            };
            format!("{sign}{int_part}.{frac_part}")
        } else {
            let zeros = "0".repeat((-exp - 1) as usize);
            format!("{sign}0.{zeros}{digits}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{exp_sign}{:02}", exp.abs())
    }
}

/// `json.dumps` spelling of a float: like `repr`, but `NaN` / `Infinity` for the non-finite.
pub(crate) fn float_repr_json(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        float_repr(f)
    }
}

fn num_str(n: &Number) -> String {
    match number_to_pynum(n) {
        PyNum::Int(i) => i.to_string(),
        PyNum::Float(f) => float_repr(f),
    }
}

/// Python's `str(v)` for a JSON value (strings unquoted, containers as `repr`).
pub(crate) fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => repr(other),
    }
}

/// Python's `repr(v)` for a JSON value (`None`, `True`, `'text'`, `[1, 'a']`, `{'k': 1}`).
pub(crate) fn repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => num_str(n),
        Value::String(s) => repr_str(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(repr).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(map) => repr_map(map),
    }
}

fn repr_map(map: &Map<String, Value>) -> String {
    let parts: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{}: {}", repr_str(k), repr(v)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Python's `repr(str)`: single quotes unless the text holds `'` and no `"`.
pub(crate) fn repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if (0x80..0xa0).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python truthiness of a JSON value.
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => match number_to_pynum(n) {
            PyNum::Int(i) => i != 0,
            PyNum::Float(f) => f != 0.0,
        },
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python `==` between JSON values (`1 == 1.0 == True`).
pub(crate) fn py_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        _ => match (as_num(a), as_num(b)) {
            (Some(x), Some(y)) => x.cmp(y) == Some(Ordering::Equal),
            _ => false,
        },
    }
}

/// Python `key in container` where `key` is a string (dict keys, list items, substrings).
pub(crate) fn contains(container: &Value, key: &str) -> Result<bool, PyErr> {
    match container {
        Value::Object(m) => Ok(m.contains_key(key)),
        Value::Array(items) => Ok(items.iter().any(|i| i.as_str() == Some(key))),
        Value::String(s) => Ok(s.contains(key)),
        other => Err(PyErr::new(
            "TypeError",
            format!("argument of type '{}' is not iterable", type_name(other)),
        )),
    }
}

/// Python `container[key]` with a string key.
pub(crate) fn get_item<'a>(container: &'a Value, key: &str) -> Result<&'a Value, PyErr> {
    match container {
        Value::Object(m) => m
            .get(key)
            .ok_or_else(|| PyErr::key_error(&Value::String(key.to_string()))),
        Value::Array(_) => Err(PyErr::new(
            "TypeError",
            "list indices must be integers or slices, not str",
        )),
        Value::String(_) => Err(PyErr::new(
            "TypeError",
            "string indices must be integers, not 'str'",
        )),
        other => Err(PyErr::new(
            "TypeError",
            format!("'{}' object is not subscriptable", type_name(other)),
        )),
    }
}

/// Python `for x in v`: list items, dict keys, or the characters of a string.
pub(crate) fn iterate(v: &Value) -> Result<Vec<Value>, PyErr> {
    match v {
        Value::Array(a) => Ok(a.clone()),
        Value::Object(m) => Ok(m.keys().map(|k| Value::String(k.clone())).collect()),
        Value::String(s) => Ok(s.chars().map(|c| Value::String(c.to_string())).collect()),
        other => Err(PyErr::new(
            "TypeError",
            format!("'{}' object is not iterable", type_name(other)),
        )),
    }
}

/// Python `a < b` between JSON values (numbers with numbers, strings with strings).
pub(crate) fn less_than(a: &Value, b: &Value) -> Result<bool, PyErr> {
    compare(a, b, "<").map(|o| o == Some(Ordering::Less))
}

/// Python `a > b` between JSON values.
pub(crate) fn greater_than(a: &Value, b: &Value) -> Result<bool, PyErr> {
    compare(a, b, ">").map(|o| o == Some(Ordering::Greater))
}

fn compare(a: &Value, b: &Value, op: &str) -> Result<Option<Ordering>, PyErr> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(Some(x.cmp(y))),
        _ => match (as_num(a), as_num(b)) {
            (Some(x), Some(y)) => Ok(x.cmp(y)),
            _ => Err(PyErr::new(
                "TypeError",
                format!(
                    "'{op}' not supported between instances of '{}' and '{}'",
                    type_name(a),
                    type_name(b)
                ),
            )),
        },
    }
}

/// Python `int(v)`.
pub(crate) fn to_int(v: &Value) -> Result<Value, PyErr> {
    match v {
        Value::Bool(_) | Value::Number(_) => match as_num(v) {
            Some(PyNum::Int(i)) => Ok(int_value(i)),
            Some(PyNum::Float(f)) if f.is_nan() => Err(PyErr::new(
                "ValueError",
                "cannot convert float NaN to integer",
            )),
            Some(PyNum::Float(f)) if f.is_infinite() => Err(PyErr::new(
                "OverflowError",
                "cannot convert float infinity to integer",
            )),
            Some(PyNum::Float(f)) => Ok(int_value(f.trunc() as i128)),
            None => unreachable!("numbers and bools always convert to PyNum"),
        },
        Value::String(s) => parse_int(s).map(int_value).ok_or_else(|| {
            PyErr::new(
                "ValueError",
                format!("invalid literal for int() with base 10: {}", repr_str(s)),
            )
        }),
        other => Err(PyErr::new(
            "TypeError",
            format!(
                "int() argument must be a string, a bytes-like object or a real number, not '{}'",
                type_name(other)
            ),
        )),
    }
}

/// Python `float(v)`.
pub(crate) fn to_float(v: &Value) -> Result<Value, PyErr> {
    match v {
        Value::Bool(_) | Value::Number(_) => match as_num(v) {
            Some(PyNum::Int(i)) => Ok(float_value(i as f64)),
            Some(PyNum::Float(f)) => Ok(float_value(f)),
            None => unreachable!("numbers and bools always convert to PyNum"),
        },
        Value::String(s) => parse_float(s).map(float_value).ok_or_else(|| {
            PyErr::new(
                "ValueError",
                format!("could not convert string to float: {}", repr_str(s)),
            )
        }),
        other => Err(PyErr::new(
            "TypeError",
            format!(
                "float() argument must be a string or a real number, not '{}'",
                type_name(other)
            ),
        )),
    }
}

/// Python's `int(str)` grammar: optional sign, decimal digits with single `_` separators,
/// surrounding whitespace allowed.
pub(crate) fn parse_int(s: &str) -> Option<i128> {
    let t = s.trim();
    let (neg, digits) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let cleaned = strip_underscores(digits)?;
    if cleaned.is_empty() || !cleaned.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude: i128 = cleaned.parse().ok()?;
    Some(if neg { -magnitude } else { magnitude })
}

/// Python's `float(str)` grammar (decimal, exponent, `inf`, `nan`, `_` separators).
pub(crate) fn parse_float(s: &str) -> Option<f64> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if matches!(unsigned, "inf" | "infinity" | "nan") {
        let neg = lower.starts_with('-');
        let v = if unsigned == "nan" {
            f64::NAN
        } else {
            f64::INFINITY
        };
        return Some(if neg { -v } else { v });
    }
    let cleaned = strip_underscores(t)?;
    let ok_chars = cleaned
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if cleaned.is_empty() || !ok_chars {
        return None;
    }
    cleaned.parse::<f64>().ok()
}

/// Removes `_` digit separators, refusing leading, trailing or doubled ones.
fn strip_underscores(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'_' {
            let before = i.checked_sub(1).map(|j| bytes[j]);
            let after = bytes.get(i + 1).copied();
            if !before.is_some_and(|c| c.is_ascii_digit())
                || !after.is_some_and(|c| c.is_ascii_digit())
            {
                return None;
            }
        }
    }
    Some(s.replace('_', ""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn float_repr_matches_python() {
        assert_eq!(float_repr(1000.0), "1000.0");
        assert_eq!(float_repr(100.0), "100.0");
        assert_eq!(float_repr(0.1), "0.1");
        assert_eq!(float_repr(64.7), "64.7");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(1.5e16), "1.5e+16");
        assert_eq!(float_repr(0.0001), "0.0001");
        assert_eq!(float_repr(0.00001), "1e-05");
        assert_eq!(float_repr(-2.5), "-2.5");
        assert_eq!(float_repr(123456789.0), "123456789.0");
        assert_eq!(float_repr(1e15), "1000000000000000.0");
    }

    #[test]
    fn repr_and_str_match_python() {
        assert_eq!(
            repr(&json!(["random-sd15-full.safetensors", "tiny"])),
            "['random-sd15-full.safetensors', 'tiny']"
        );
        assert_eq!(
            repr(&json!({"a": [1, 2.5, null, true]})),
            "{'a': [1, 2.5, None, True]}"
        );
        assert_eq!(repr_str("it's"), "\"it's\"");
        assert_eq!(py_str(&json!("abc")), "abc");
        assert_eq!(py_str(&json!(1000.0)), "1000.0");
    }

    #[test]
    fn conversions_follow_python() {
        assert_eq!(to_int(&json!(64.7)).unwrap(), json!(64));
        assert_eq!(to_int(&json!(" 12 ")).unwrap(), json!(12));
        assert_eq!(to_int(&json!(true)).unwrap(), json!(1));
        let err = to_int(&json!("abc")).unwrap_err();
        assert_eq!(err.message, "invalid literal for int() with base 10: 'abc'");
        assert_eq!(err.type_name, "ValueError");
        assert_eq!(to_float(&json!(1000)).unwrap(), json!(1000.0));
        assert_eq!(to_float(&json!("1e3")).unwrap(), json!(1000.0));
        assert!(to_float(&json!("x")).is_err());
        assert!(to_int(&json!(null)).is_err());
        assert!(!truthy(&json!("")));
        assert!(truthy(&json!("false")));
    }

    #[test]
    fn comparisons_follow_python() {
        assert!(py_eq(&json!(1), &json!(1.0)));
        assert!(py_eq(&json!(true), &json!(1)));
        assert!(!py_eq(&json!("1"), &json!(1)));
        assert!(less_than(&json!(-5), &json!(0)).unwrap());
        assert!(greater_than(&json!(1000.0), &json!(100.0)).unwrap());
        assert!(less_than(&json!("a"), &json!(1)).is_err());
        assert!(contains(&json!(5), "x").is_err());
        assert!(contains(&json!({"prompt": 1}), "prompt").unwrap());
    }
}
