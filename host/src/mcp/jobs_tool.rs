//! The `list_jobs` tool: jobs of every server sharing the job store (or of this process
//! with `COMFYUI_MCP_DB=off`), newest first, filtered by state, template and submission
//! time, paged with a capped `limit` and an opaque `cursor`.
//!
//! Invariants: a page never holds more than [`MAX_PAGE`] jobs; every argument mistake is an
//! `invalid_arguments` failure naming the argument and what is allowed; the cursor is the one
//! [`Cursor::encode`] handed out, anything else is refused.

use comfyui::JobState;
use comfyui::store::{Cursor, DEFAULT_PAGE, JobQuery, MAX_PAGE};
use rmcp::model::JsonObject;
use serde_json::{Value, json};

use super::definitions::LIST_JOBS;
use super::outcome::{ArgumentError, Failure, Outcome};
use super::render;
use super::shared::Shared;
use crate::error::AppError;

const ALLOWED: &str = "state, template, since, limit, cursor";

/// Runs `list_jobs`.
pub async fn list_jobs(shared: &Shared, arguments: JsonObject) -> Outcome {
    let query = match read_query(arguments) {
        Ok(q) => q,
        Err(message) => return ArgumentError::new(LIST_JOBS, message).into(),
    };
    match shared.app.comfy().list_jobs(query).await {
        Ok(page) => {
            let jobs: Vec<Value> = page.jobs.iter().map(render::job_json).collect();
            Outcome::success(json!({
                "count": jobs.len(),
                "jobs": jobs,
                "next_cursor": page.next.map(|c| c.encode()),
            }))
        }
        Err(e) => Outcome::Failure(Failure::App(AppError::JobStore(e))),
    }
}

fn read_query(mut args: JsonObject) -> Result<JobQuery, String> {
    let mut take = |name: &str| args.remove(name).filter(|v| !v.is_null());
    let state = match take("state") {
        None => None,
        Some(Value::String(s)) => Some(parse_state(&s)?),
        Some(other) => return Err(format!("`state` must be a string, got {other}")),
    };
    let template = match take("template") {
        None => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(other) => return Err(format!("`template` must be a template id, got {other}")),
    };
    let since = match take("since") {
        None => None,
        Some(Value::Number(n)) if n.as_f64().is_some_and(|t| t.is_finite() && t >= 0.0) => {
            n.as_f64()
        }
        Some(other) => {
            return Err(format!(
                "`since` must be a unix time in seconds (a number of at least 0, as in submitted_at), got {other}"
            ));
        }
    };
    let limit = match take("limit") {
        None => DEFAULT_PAGE,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(l) if (1..=MAX_PAGE as u64).contains(&l) => l as usize,
            _ => {
                return Err(format!(
                    "`limit` must be a whole number from 1 to {MAX_PAGE}, got {n}"
                ));
            }
        },
        Some(other) => {
            return Err(format!(
                "`limit` must be a whole number from 1 to {MAX_PAGE}, got {other}"
            ));
        }
    };
    let cursor = match take("cursor") {
        None => None,
        Some(Value::String(s)) => Some(Cursor::decode(&s).map_err(|e| format!("`cursor`: {e}"))?),
        Some(other) => return Err(format!("`cursor` must be a string, got {other}")),
    };
    if let Some(name) = args.keys().next() {
        return Err(format!(
            "unknown argument `{name}`; allowed arguments: {ALLOWED}"
        ));
    }
    Ok(JobQuery {
        state,
        template,
        since,
        limit,
        cursor,
    })
}

fn parse_state(text: &str) -> Result<JobState, String> {
    let states = [
        JobState::Queued,
        JobState::Running,
        JobState::Completed,
        JobState::Failed,
        JobState::Cancelled,
    ];
    let want = text.trim().to_ascii_lowercase();
    states
        .into_iter()
        .find(|s| s.as_str() == want)
        .ok_or_else(|| {
            format!(
                "`state` must be one of queued, running, completed, failed, cancelled; got {text:?}"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(v: Value) -> Result<JobQuery, String> {
        read_query(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn arguments_are_checked_with_precise_messages() {
        let q = query(json!({"state": "Completed", "limit": 200, "since": 5})).unwrap();
        assert_eq!(
            (q.state, q.limit, q.since),
            (Some(JobState::Completed), 200, Some(5.0))
        );
        assert_eq!(query(json!({})).unwrap().limit, DEFAULT_PAGE);
        assert!(
            query(json!({"limit": 201}))
                .unwrap_err()
                .contains("from 1 to 200")
        );
        assert!(
            query(json!({"limit": 0}))
                .unwrap_err()
                .contains("from 1 to 200")
        );
        assert!(
            query(json!({"state": "done"}))
                .unwrap_err()
                .contains("one of queued")
        );
        assert!(
            query(json!({"since": "yesterday"}))
                .unwrap_err()
                .contains("unix time")
        );
        assert!(
            query(json!({"cursor": "nope"}))
                .unwrap_err()
                .contains("next_cursor")
        );
        assert!(
            query(json!({"bogus": 1}))
                .unwrap_err()
                .contains("unknown argument `bogus`")
        );
    }
}
