//! Reading a request body of the plain HTTP API: at most the request size cap, then JSON
//! of the shape the route takes.
//!
//! Invariants: no more than the cap is ever buffered (a declared `Content-Length` over it
//! is refused before reading); an empty body is the empty object; anything but a JSON
//! object is refused with what was sent instead.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use comfyui::nodes::json_type;
use serde_json::{Map, Value};

use super::error::ApiError;

/// Reads `body` (at most `limit` bytes) as a JSON object; empty means `{}`.
pub async fn read_object(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Map<String, Value>, ApiError> {
    let bytes = read_capped(headers, body, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::InvalidBody(format!(
            "the body must be a JSON object, got {}",
            json_type(&other)
        ))),
        Err(e) => Err(ApiError::InvalidJson(e.to_string())),
    }
}

/// The `{"tool": name, "params": {...}}` envelope of `POST /api`: the tool and its
/// arguments (`params` absent or `null` means none).
pub fn envelope(mut body: Map<String, Value>) -> Result<(String, Map<String, Value>), ApiError> {
    let tool = match body.remove("tool") {
        Some(Value::String(name)) if !name.trim().is_empty() => name,
        Some(Value::String(_)) => {
            return Err(ApiError::InvalidBody("`tool` must not be empty".into()));
        }
        None | Some(Value::Null) => {
            return Err(ApiError::InvalidBody(
                "`tool` is required: send {\"tool\": \"<name>\", \"params\": {...}} (GET /api/tools lists the tools)".into(),
            ));
        }
        Some(other) => {
            return Err(ApiError::InvalidBody(format!(
                "`tool` must be a string, got {}",
                json_type(&other)
            )));
        }
    };
    let params = match body.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(params)) => params,
        Some(other) => {
            return Err(ApiError::InvalidBody(format!(
                "`params` must be an object of the tool's arguments, got {}",
                json_type(&other)
            )));
        }
    };
    if let Some(key) = body.keys().next() {
        return Err(ApiError::InvalidBody(format!(
            "unknown field `{key}`; the body takes `tool` and `params`"
        )));
    }
    Ok((tool, params))
}

async fn read_capped(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    use futures_util::StreamExt as _;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge { limit });
    }
    let mut out = Vec::new();
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| match crate::mcp::body_deadline::timed_out(&e) {
            Some(late) => ApiError::BodyTimedOut(late),
            None => ApiError::BrokenBody(format!("the body broke off: {e}")),
        })?;
        if out.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[tokio::test]
    async fn bodies_are_capped_and_must_be_objects() {
        let h = HeaderMap::new();
        let read = |s: &'static str, limit| read_object(&h, Body::from(s), limit);
        assert_eq!(read("", 10).await.unwrap(), Map::new());
        assert_eq!(read(" \n", 10).await.unwrap(), Map::new());
        assert_eq!(read("{\"a\":1}", 7).await.unwrap(), object(json!({"a": 1})));
        assert!(matches!(
            read("{\"a\":12}", 7).await,
            Err(ApiError::TooLarge { limit: 7 })
        ));
        assert!(matches!(read("{", 10).await, Err(ApiError::InvalidJson(_))));
        assert!(
            matches!(read("[1]", 10).await, Err(ApiError::InvalidBody(m)) if m.contains("an array"))
        );
        let mut declared = HeaderMap::new();
        declared.insert(header::CONTENT_LENGTH, "8".parse().unwrap());
        assert!(matches!(
            read_object(&declared, Body::from("{}"), 7).await,
            Err(ApiError::TooLarge { .. })
        ));
    }

    #[test]
    fn envelopes_take_a_tool_and_params() {
        let (tool, params) = envelope(object(
            json!({"tool": "generate_image", "params": {"prompt": "x"}}),
        ))
        .unwrap();
        assert_eq!(tool, "generate_image");
        assert_eq!(params, object(json!({"prompt": "x"})));
        let (_, params) =
            envelope(object(json!({"tool": "list_workflows", "params": null}))).unwrap();
        assert!(params.is_empty());
        for (body, says) in [
            (json!({}), "`tool` is required"),
            (json!({"tool": ""}), "must not be empty"),
            (json!({"tool": 3}), "a number"),
            (json!({"tool": "t", "params": [1]}), "an array"),
            (json!({"tool": "t", "extra": 1}), "unknown field `extra`"),
        ] {
            match envelope(object(body.clone())) {
                Err(ApiError::InvalidBody(m)) => assert!(m.contains(says), "{body}: {m}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
