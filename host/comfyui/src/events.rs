//! Typed ComfyUI websocket messages (`{"type": …, "data": {…}}` text frames and binary preview
//! frames), parsed tolerantly.
//!
//! Invariants: parsing never panics, whatever the input; optional fields stay optional (the
//! reconnect `executing` carries no `prompt_id`); an unknown `type` becomes
//! [`Event::Unknown`] instead of an error; binary frames are reduced to their 4-byte header
//! ([`Event::Preview`]) and the image bytes are never kept.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::types::ImageRef;

/// One websocket message from ComfyUI.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Queue size broadcast; the first frame of every socket also carries the `sid`.
    Status {
        /// Running + pending jobs.
        queue_remaining: Option<u64>,
        /// The socket's client id (first frame only).
        sid: Option<String>,
    },
    /// A job started executing.
    ExecutionStart {
        /// The job.
        prompt_id: String,
        /// ComfyUI's clock, milliseconds since the epoch.
        timestamp: Option<f64>,
    },
    /// Nodes whose results were reused from the cache (they will not run).
    ExecutionCached {
        /// The job.
        prompt_id: String,
        /// Node ids served from the cache.
        nodes: Vec<String>,
    },
    /// A node started (`node: Some`) or the job ended (`node: None`, the last message of a job).
    Executing {
        /// Node id, `None` at the end of the job.
        node: Option<String>,
        /// The job; absent in the replay ComfyUI sends after a reconnect.
        prompt_id: Option<String>,
    },
    /// Progress inside one node (sampler steps).
    Progress {
        /// Steps done.
        value: f64,
        /// Steps in all.
        max: f64,
        /// The node.
        node: Option<String>,
        /// The job.
        prompt_id: Option<String>,
    },
    /// State of every node seen so far in a job (broadcast to every socket).
    ProgressState {
        /// The job.
        prompt_id: String,
        /// Per node id.
        nodes: BTreeMap<String, NodeProgress>,
    },
    /// An output node finished and produced images.
    Executed {
        /// The job.
        prompt_id: String,
        /// The output node.
        node: String,
        /// Its images (every batch item).
        images: Vec<ImageRef>,
    },
    /// The job ran to the end without error (the final `Executing{node: None}` follows).
    ExecutionSuccess {
        /// The job.
        prompt_id: String,
        /// ComfyUI's clock, milliseconds since the epoch.
        timestamp: Option<f64>,
    },
    /// A node raised an exception; the job stopped.
    ExecutionError(ExecutionErrorInfo),
    /// The job was interrupted (`/interrupt`).
    ExecutionInterrupted {
        /// The job.
        prompt_id: String,
        /// The node that was about to run or running.
        node_id: Option<String>,
        /// Its class.
        node_type: Option<String>,
        /// ComfyUI's clock, milliseconds since the epoch.
        timestamp: Option<f64>,
    },
    /// The server's feature flags (answer to ours).
    FeatureFlags(Value),
    /// A binary frame (preview image); only its event type is kept.
    Preview {
        /// 1 = PREVIEW_IMAGE, 3 = TEXT, 4 = PREVIEW_IMAGE_WITH_METADATA, others unknown.
        event_type: u32,
    },
    /// A text message of a type this client does not know.
    Unknown {
        /// Its `type`.
        kind: String,
    },
}

/// One node's entry in a `progress_state` message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NodeProgress {
    /// Progress value.
    #[serde(default)]
    pub value: f64,
    /// Progress maximum.
    #[serde(default)]
    pub max: f64,
    /// `pending`, `running`, `finished`, …
    #[serde(default)]
    pub state: String,
}

/// The payload of `execution_error` (also found in `/history` messages).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExecutionErrorInfo {
    /// The job.
    pub prompt_id: String,
    /// Failing node id.
    #[serde(default, deserialize_with = "de_opt_id")]
    pub node_id: Option<String>,
    /// Failing node class.
    #[serde(default)]
    pub node_type: Option<String>,
    /// Python exception message.
    #[serde(default)]
    pub exception_message: String,
    /// Python exception type, e.g. `IndexError`.
    #[serde(default)]
    pub exception_type: String,
    /// Python traceback lines.
    #[serde(default)]
    pub traceback: Vec<String>,
    /// ComfyUI's clock, milliseconds since the epoch.
    #[serde(default)]
    pub timestamp: Option<f64>,
}

/// Why a frame could not be turned into an [`Event`].
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not JSON, or not `{"type": string, "data": …}`.
    #[error("websocket text frame is not a ComfyUI message ({reason}): {snippet}")]
    Malformed {
        /// Parser message.
        reason: String,
        /// Start of the frame.
        snippet: String,
    },
    /// A known type whose data lacks a required field.
    #[error("websocket `{kind}` message has unexpected data ({reason})")]
    BadData {
        /// Message type.
        kind: String,
        /// Parser message.
        reason: String,
    },
    /// A binary frame shorter than its 4-byte header.
    #[error("binary websocket frame of {len} bytes is shorter than its 4-byte header")]
    ShortBinary {
        /// Frame length.
        len: usize,
    },
}

impl Event {
    /// The job this event belongs to, when it names one.
    pub fn prompt_id(&self) -> Option<&str> {
        match self {
            Event::ExecutionStart { prompt_id, .. }
            | Event::ExecutionCached { prompt_id, .. }
            | Event::ProgressState { prompt_id, .. }
            | Event::Executed { prompt_id, .. }
            | Event::ExecutionSuccess { prompt_id, .. }
            | Event::ExecutionInterrupted { prompt_id, .. } => Some(prompt_id),
            Event::ExecutionError(info) => Some(&info.prompt_id),
            Event::Executing { prompt_id, .. } | Event::Progress { prompt_id, .. } => {
                prompt_id.as_deref()
            }
            Event::Status { .. }
            | Event::FeatureFlags(_)
            | Event::Preview { .. }
            | Event::Unknown { .. } => None,
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
struct StatusData {
    #[serde(default)]
    status: Option<StatusInner>,
    #[serde(default)]
    sid: Option<String>,
}
#[derive(Deserialize)]
struct StatusInner {
    #[serde(default)]
    exec_info: Option<ExecInfo>,
}
#[derive(Deserialize)]
struct ExecInfo {
    #[serde(default)]
    queue_remaining: Option<u64>,
}
#[derive(Deserialize)]
struct StartData {
    prompt_id: String,
    #[serde(default)]
    timestamp: Option<f64>,
}
#[derive(Deserialize)]
struct CachedData {
    prompt_id: String,
    #[serde(default, deserialize_with = "de_ids")]
    nodes: Vec<String>,
}
#[derive(Deserialize)]
struct ExecutingData {
    #[serde(default, deserialize_with = "de_opt_id")]
    node: Option<String>,
    #[serde(default)]
    prompt_id: Option<String>,
}
#[derive(Deserialize)]
struct ProgressData {
    #[serde(default)]
    value: f64,
    #[serde(default)]
    max: f64,
    #[serde(default, deserialize_with = "de_opt_id")]
    node: Option<String>,
    #[serde(default)]
    prompt_id: Option<String>,
}
#[derive(Deserialize)]
struct ProgressStateData {
    prompt_id: String,
    #[serde(default)]
    nodes: BTreeMap<String, NodeProgress>,
}
#[derive(Deserialize)]
struct ExecutedData {
    prompt_id: String,
    #[serde(deserialize_with = "de_id")]
    node: String,
    #[serde(default)]
    output: Option<OutputData>,
}
#[derive(Deserialize)]
struct OutputData {
    #[serde(default)]
    images: Vec<ImageRef>,
}
#[derive(Deserialize)]
struct InterruptedData {
    prompt_id: String,
    #[serde(default, deserialize_with = "de_opt_id")]
    node_id: Option<String>,
    #[serde(default)]
    node_type: Option<String>,
    #[serde(default)]
    timestamp: Option<f64>,
}

/// Parses one text frame.
pub fn parse_text(text: &str) -> Result<Event, EventError> {
    let env: Envelope = serde_json::from_str(text).map_err(|e| EventError::Malformed {
        reason: e.to_string(),
        snippet: snippet(text),
    })?;
    parse_message(&env.kind, env.data)
}

/// Parses a message given as its `type` and `data` (the websocket shape, also used by
/// `/history` status messages).
pub fn parse_message(kind: &str, data: Value) -> Result<Event, EventError> {
    Ok(match kind {
        "status" => {
            let d: StatusData = data_of(kind, data)?;
            Event::Status {
                queue_remaining: d
                    .status
                    .and_then(|s| s.exec_info)
                    .and_then(|e| e.queue_remaining),
                sid: d.sid,
            }
        }
        "execution_start" => {
            let d: StartData = data_of(kind, data)?;
            Event::ExecutionStart {
                prompt_id: d.prompt_id,
                timestamp: d.timestamp,
            }
        }
        "execution_cached" => {
            let d: CachedData = data_of(kind, data)?;
            Event::ExecutionCached {
                prompt_id: d.prompt_id,
                nodes: d.nodes,
            }
        }
        "executing" => {
            let d: ExecutingData = data_of(kind, data)?;
            Event::Executing {
                node: d.node,
                prompt_id: d.prompt_id,
            }
        }
        "progress" => {
            let d: ProgressData = data_of(kind, data)?;
            Event::Progress {
                value: d.value,
                max: d.max,
                node: d.node,
                prompt_id: d.prompt_id,
            }
        }
        "progress_state" => {
            let d: ProgressStateData = data_of(kind, data)?;
            Event::ProgressState {
                prompt_id: d.prompt_id,
                nodes: d.nodes,
            }
        }
        "executed" => {
            let d: ExecutedData = data_of(kind, data)?;
            Event::Executed {
                prompt_id: d.prompt_id,
                node: d.node,
                images: d.output.map(|o| o.images).unwrap_or_default(),
            }
        }
        "execution_success" => {
            let d: StartData = data_of(kind, data)?;
            Event::ExecutionSuccess {
                prompt_id: d.prompt_id,
                timestamp: d.timestamp,
            }
        }
        "execution_error" => Event::ExecutionError(data_of(kind, data)?),
        "execution_interrupted" => {
            let d: InterruptedData = data_of(kind, data)?;
            Event::ExecutionInterrupted {
                prompt_id: d.prompt_id,
                node_id: d.node_id,
                node_type: d.node_type,
                timestamp: d.timestamp,
            }
        }
        "feature_flags" => Event::FeatureFlags(data),
        other => Event::Unknown {
            kind: other.to_owned(),
        },
    })
}

/// Parses a binary frame: a 4-byte big-endian event type, then a payload that is ignored.
pub fn parse_binary(frame: &[u8]) -> Result<Event, EventError> {
    let header: [u8; 4] = frame
        .get(..4)
        .and_then(|h| h.try_into().ok())
        .ok_or(EventError::ShortBinary { len: frame.len() })?;
    Ok(Event::Preview {
        event_type: u32::from_be_bytes(header),
    })
}

fn data_of<T: DeserializeOwned>(kind: &str, data: Value) -> Result<T, EventError> {
    serde_json::from_value(data).map_err(|e| EventError::BadData {
        kind: kind.to_owned(),
        reason: e.to_string(),
    })
}

fn snippet(text: &str) -> String {
    let mut end = text.len().min(120);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Node ids are strings in ComfyUI; numbers are accepted too.
fn id_of(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn de_opt_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(id_of(Value::deserialize(d)?))
}

fn de_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    id_of(Value::deserialize(d)?).ok_or_else(|| serde::de::Error::custom("node id is not a string"))
}

fn de_ids<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(match v {
        Value::Array(items) => items.into_iter().filter_map(id_of).collect(),
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcripts_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/transcripts")
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    /// Every frame of every recorded websocket session parses, and nothing is `Unknown`.
    #[test]
    fn every_transcript_line_parses() {
        let mut files = 0;
        let mut frames = 0;
        let mut seen = std::collections::HashSet::new();
        for entry in std::fs::read_dir(transcripts_dir()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !(name.starts_with("ws_") && name.ends_with(".jsonl")) {
                continue;
            }
            files += 1;
            for (i, line) in std::fs::read_to_string(&path).unwrap().lines().enumerate() {
                let rec: Value = serde_json::from_str(line).unwrap();
                let event = match rec["frame"].as_str().unwrap() {
                    "text" => parse_text(&rec["msg"].to_string()),
                    "client_sent" => parse_text(&rec["msg"].to_string()),
                    "binary" => {
                        let head = hex_bytes(rec["first_16_bytes_hex"].as_str().unwrap());
                        let ev = parse_binary(&head).unwrap();
                        assert_eq!(
                            ev,
                            Event::Preview {
                                event_type: rec["event_type"].as_u64().unwrap() as u32
                            }
                        );
                        Ok(ev)
                    }
                    _ => continue,
                };
                let event = event.unwrap_or_else(|e| panic!("{name}:{}: {e}", i + 1));
                assert!(
                    !matches!(event, Event::Unknown { .. }),
                    "{name}:{}: unknown {event:?}",
                    i + 1
                );
                seen.insert(std::mem::discriminant(&event));
                frames += 1;
            }
        }
        assert!(files >= 20, "only {files} ws transcripts found");
        assert!(frames > 400, "only {frames} frames");
        // status, start, cached, executing, progress, progress_state, executed, success,
        // error, interrupted, feature_flags, preview
        assert_eq!(seen.len(), 12, "not every event kind was exercised");
    }

    #[test]
    fn reconnect_executing_without_prompt_id() {
        let e = parse_text(r#"{"type":"executing","data":{"node":"12"}}"#).unwrap();
        assert_eq!(
            e,
            Event::Executing {
                node: Some("12".into()),
                prompt_id: None
            }
        );
        assert_eq!(e.prompt_id(), None);
    }

    #[test]
    fn end_of_job_is_executing_null() {
        let e = parse_text(r#"{"type":"executing","data":{"node":null,"prompt_id":"p"}}"#).unwrap();
        assert_eq!(
            e,
            Event::Executing {
                node: None,
                prompt_id: Some("p".into())
            }
        );
    }

    #[test]
    fn executed_carries_every_batch_image() {
        let e = parse_text(
            r#"{"type":"executed","data":{"node":"9","prompt_id":"p","output":{"images":[
            {"filename":"a_00001_.png","subfolder":"s","type":"output"},
            {"filename":"a_00002_.png","subfolder":"s","type":"output"}]}}}"#,
        )
        .unwrap();
        let Event::Executed { images, node, .. } = e else {
            panic!()
        };
        assert_eq!(node, "9");
        assert_eq!(images.len(), 2);
        assert_eq!(images[1].filename, "a_00002_.png");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            "",
            "{",
            "[]",
            "null",
            r#"{"data":{}}"#,
            r#"{"type":"execution_start","data":{}}"#,
            r#"{"type":"executed","data":{"prompt_id":"p","node":[1]}}"#,
        ] {
            assert!(parse_text(bad).is_err(), "{bad}");
        }
        for short in [&[][..], &[0u8][..], &[0, 0, 1][..]] {
            assert!(matches!(
                parse_binary(short),
                Err(EventError::ShortBinary { .. })
            ));
        }
        assert_eq!(
            parse_binary(&[0, 0, 0, 4]).unwrap(),
            Event::Preview { event_type: 4 }
        );
    }

    #[test]
    fn unknown_type_is_kept_as_unknown() {
        assert_eq!(
            parse_text(r#"{"type":"crystools.monitor","data":{"cpu":3}}"#).unwrap(),
            Event::Unknown {
                kind: "crystools.monitor".into()
            }
        );
    }

    /// Arbitrary JSON, nested a few levels deep.
    fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
            prop_oneof![
                Just("prompt_id"),
                Just("node"),
                Just("nodes"),
                Just("output"),
                Just("images"),
                Just("value"),
                Just("max"),
                Just("status"),
                Just("exec_info"),
                Just("sid"),
                Just("timestamp"),
                Just("exception_message"),
                Just("traceback"),
                Just("node_id"),
            ]
            .prop_map(|s| Value::String(s.to_owned())),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("prompt_id".to_owned()),
                        Just("node".to_owned()),
                        Just("nodes".to_owned()),
                        Just("output".to_owned()),
                        Just("images".to_owned()),
                        Just("value".to_owned()),
                        Just("max".to_owned()),
                        Just("status".to_owned()),
                        Just("exec_info".to_owned()),
                        Just("queue_remaining".to_owned()),
                        Just("filename".to_owned()),
                        Just("subfolder".to_owned()),
                        Just("type".to_owned()),
                        Just("display_node".to_owned()),
                        Just("node_id".to_owned()),
                        Just("node_type".to_owned()),
                        Just("traceback".to_owned()),
                        Just("timestamp".to_owned()),
                        ".{0,6}",
                    ],
                    inner,
                    0..6,
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    const KINDS: &[&str] = &[
        "status",
        "execution_start",
        "execution_cached",
        "executing",
        "progress",
        "progress_state",
        "executed",
        "execution_success",
        "execution_error",
        "execution_interrupted",
        "feature_flags",
        "crystools.monitor",
        "",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any text frame, JSON or not, parses to an event or an error; never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,300}") {
            let _ = parse_text(&text);
        }

        /// Every known message type with arbitrary `data` never panics, in a text frame or
        /// as a `/history` status message.
        #[test]
        fn known_types_with_arbitrary_data_never_panic(
            kind in proptest::sample::select(KINDS),
            data in any_json(),
        ) {
            let frame = serde_json::json!({"type": kind, "data": data.clone()}).to_string();
            let _ = parse_text(&frame);
            let _ = parse_message(kind, data);
        }

        /// Any JSON document as a frame never panics (whatever `type` and `data` hold).
        #[test]
        fn arbitrary_json_frames_never_panic(doc in any_json()) {
            let _ = parse_text(&doc.to_string());
        }

        /// Any binary frame is a preview header or a short-frame error; never a panic.
        #[test]
        fn arbitrary_binary_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            match parse_binary(&bytes) {
                Ok(_) => proptest::prop_assert!(bytes.len() >= 4),
                Err(_) => proptest::prop_assert!(bytes.len() < 4),
            }
        }
    }
}
