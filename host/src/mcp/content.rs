//! Tool result envelopes: a success carries its JSON twice (as `structuredContent` and as
//! the first text block), a failure carries its message as the only text block and
//! `{"error": …}` as structured content.

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{Value, json};

/// A successful tool result: `value` as structured content and as the first (text)
/// content block, followed by `extra` blocks.
pub fn tool_success(value: Value, extra: Vec<ContentBlock>) -> CallToolResult {
    let mut result = CallToolResult::structured(value);
    result.content.extend(extra);
    result
}

/// A failed tool result: `message` as the only text block and `{"error": error}` as
/// structured content.
pub fn tool_error(message: impl Into<String>, error: Value) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(message.into())]);
    result.structured_content = Some(json!({ "error": error }));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_and_error_envelopes() {
        let ok = tool_success(json!({"a": 1}), vec![]);
        assert_eq!(ok.is_error, Some(false));
        let text = ok.content[0].as_text().unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&text.text).unwrap(),
            ok.structured_content.clone().unwrap()
        );
        let err = tool_error("bad thing", json!({"kind": "k", "message": "bad thing"}));
        assert_eq!(err.is_error, Some(true));
        assert_eq!(err.content[0].as_text().unwrap().text, "bad thing");
        assert_eq!(err.structured_content.unwrap()["error"]["kind"], "k");
    }
}
