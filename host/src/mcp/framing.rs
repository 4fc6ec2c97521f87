//! JSON-RPC framing in front of rmcp: every request whose `id` can be read gets an answer
//! with that id, over stdio (newline-delimited JSON) and for the HTTP transport's bodies.
//!
//! rmcp's stdio transport drops what it cannot parse: invalid JSON, lines over its length
//! cap and numbers it cannot represent (`1e999`) get no reply, so the client waits for
//! ever; a request of the wrong shape is answered without its id; a second request with
//! the id of one in flight replaces the first, whose response is then lost. This module
//! reads each message first and answers the ones rmcp would mishandle itself:
//!
//! * not JSON: `-32700` (parse error), id `null` (the spec's rule: the id cannot be known);
//! * JSON that is not a JSON-RPC 2.0 message (not an object, wrong `jsonrpc`, an id that is
//!   neither a string nor an integer, neither `method` nor `result`/`error`): `-32600`,
//!   with the id when it can be read;
//! * a request for a method rmcp knows whose params do not have that method's shape, or
//!   hold values serde cannot represent (`1e999`): `-32602` with the id; for a method it
//!   does not know: `-32601`;
//! * a line over [`DEFAULT_MAX_REQUEST_BYTES`] (configurable, see
//!   [`McpOptions::max_request_bytes`](super::McpOptions::max_request_bytes)): `-32600`
//!   naming the limit, with the id when it can be read from the line's first bytes, and the
//!   rest of the line is skipped without being buffered;
//! * a request whose id is already in flight: `-32600`; the first request is unaffected.
//!
//! Batches (JSON arrays) are not part of MCP since 2025-06-18: each request in one gets a
//! `-32600` answer with its id. Notifications and responses are never answered (the spec
//! forbids it); a malformed one is logged and dropped.
//!
//! Lifecycle over stdio ([`frame_stdio`]): three tasks. The reader reads stdin one line at
//! a time (never more than the limit in memory), answers or forwards each message to rmcp
//! through an in-memory pipe, and closes the pipe at end of input, which ends rmcp's
//! session. The forwarder copies rmcp's output lines and forgets the ids they answer. The
//! writer is the only one writing stdout: it takes whole lines from a bounded channel (so
//! a client that stops reading stops the reader too) and ends when both others have.
//! Invariant: an id is entered in the in-flight set before its request reaches rmcp and
//! removed before its response reaches stdout, so a client may reuse an id as soon as it
//! has the answer.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use rmcp::RoleServer;
use rmcp::model::{ClientJsonRpcMessage, ClientNotification, ClientRequest, RequestId};
use rmcp::transport::async_rw::AsyncRwTransport;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream,
    ReadHalf, WriteHalf,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Default size limit of one JSON-RPC message (a stdio line or an HTTP body): 16 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 16 << 20;

/// JSON-RPC error codes (JSON-RPC 2.0 §5.1).
pub mod codes {
    /// Invalid JSON.
    pub const PARSE_ERROR: i32 = -32700;
    /// Not a valid request object.
    pub const INVALID_REQUEST: i32 = -32600;
    /// The method does not exist.
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// Invalid method parameters.
    pub const INVALID_PARAMS: i32 = -32602;
}

/// Buffer of the in-memory pipes between the framing tasks and rmcp.
const PIPE_BYTES: usize = 256 << 10;
/// Lines waiting for stdout.
const OUTPUT_QUEUE: usize = 64;

/// The request methods rmcp deserializes into a typed request (a message with one of
/// these methods that rmcp reads as a custom request had params of the wrong shape).
const TYPED_METHODS: &[&str] = &[
    "ping",
    "initialize",
    "server/discover",
    "completion/complete",
    "logging/setLevel",
    "prompts/get",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "subscriptions/listen",
    "resources/subscribe",
    "resources/unsubscribe",
    "tools/call",
    "tools/list",
    "tasks/get",
    "tasks/update",
    "tasks/cancel",
    "skills/list",
    "skills/get",
    "resources/directory/read",
];

/// A JSON-RPC error answer the framing layer sends itself.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("JSON-RPC error {code}: {message}")]
pub struct Rejection {
    /// The JSON-RPC error code (see [`codes`]).
    pub code: i32,
    /// The id to answer with (`null` when it could not be read).
    pub id: Value,
    /// What was wrong and what is allowed.
    pub message: String,
}

impl Rejection {
    fn new(code: i32, id: Value, message: impl Into<String>) -> Self {
        Self {
            code,
            id,
            message: message.into(),
        }
    }

    /// The JSON-RPC error response object.
    pub fn to_json(&self) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": self.id,
            "error": {"code": self.code, "message": self.message},
        })
    }

    /// The response as one line (with its newline).
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = self.to_json().to_string().into_bytes();
        line.push(b'\n');
        line
    }
}

/// The rejection of a message of more than `limit` bytes; `prefix` is its beginning, read
/// for an id.
pub fn oversized(prefix: &[u8], limit: usize) -> Rejection {
    let mut envelope = Envelope::default();
    let mut de = serde_json::Deserializer::from_slice(prefix);
    // The prefix is cut off, so this fails; what was read before the cut stays.
    let _ = EnvelopeSeed(&mut envelope).deserialize(&mut de);
    let id = match envelope.id {
        IdField::Readable(id) => id,
        _ => Value::Null,
    };
    Rejection::new(
        codes::INVALID_REQUEST,
        id,
        format!(
            "the message is larger than the {limit}-byte limit of one JSON-RPC message and was not read; \
             send smaller requests or raise the limit with COMFYUI_MCP_MAX_REQUEST_BYTES (--max-request-bytes)"
        ),
    )
}

/// The rejection of an HTTP request whose body did not arrive in time (its id is unknown:
/// the body was not read whole).
pub fn body_timed_out(late: super::body_deadline::BodyTimedOut) -> Rejection {
    Rejection::new(codes::INVALID_REQUEST, Value::Null, late.to_string())
}

/// The rejection of a request whose id is already used by a request in flight.
pub fn duplicate(id: &RequestId) -> Rejection {
    let id = id_json(id);
    Rejection::new(
        codes::INVALID_REQUEST,
        id.clone(),
        format!(
            "invalid request: id {id} is already used by a request in flight; use a new id for each request"
        ),
    )
}

/// What to do with one message.
#[derive(Debug)]
pub enum Inspection {
    /// A request rmcp can serve, with its id.
    Request(RequestId),
    /// A notification; `cancels` is the request a `notifications/cancelled` names.
    Notification {
        /// The cancelled request, if this cancels one.
        cancels: Option<RequestId>,
    },
    /// A response or error answering one of the server's requests.
    Response,
    /// Answer with this error; rmcp never sees the message.
    Reject(Rejection),
    /// A malformed notification or response: log and drop (never answered).
    Drop(String),
    /// A batch: answer with these errors (possibly none), rmcp never sees it.
    Batch(Vec<Rejection>),
}

/// Reads one JSON-RPC message (without its newline) and decides how it is handled.
pub fn inspect(message: &[u8]) -> Inspection {
    let message = message.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(message);
    // Syntax first: `IgnoredAny` reads any well-formed JSON (any nesting, any number).
    if let Err(e) = serde_json::from_slice::<IgnoredAny>(message) {
        return Inspection::Reject(Rejection::new(
            codes::PARSE_ERROR,
            Value::Null,
            format!("parse error: the message is not valid JSON ({e})"),
        ));
    }
    if message.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return inspect_batch(message);
    }
    let mut envelope = Envelope::default();
    let mut de = serde_json::Deserializer::from_slice(message);
    if let Err(e) = EnvelopeSeed(&mut envelope).deserialize(&mut de) {
        return Inspection::Reject(Rejection::new(
            codes::INVALID_REQUEST,
            Value::Null,
            format!("invalid request: {e}"),
        ));
    }
    if let Err(rejection) = envelope.check() {
        return Inspection::Reject(rejection);
    }
    let id = envelope.id.clone();
    match (&envelope.method, id) {
        (Field::Present(method), IdField::Readable(id)) => inspect_request(message, method, id),
        (Field::Present(method), IdField::Absent) => {
            match serde_json::from_slice::<ClientJsonRpcMessage>(message) {
                Ok(ClientJsonRpcMessage::Notification(n)) => Inspection::Notification {
                    cancels: match n.notification {
                        ClientNotification::CancelledNotification(c) => c.params.request_id,
                        _ => None,
                    },
                },
                Ok(_) => Inspection::Notification { cancels: None },
                Err(e) => Inspection::Drop(format!("malformed notification `{method}`: {e}")),
            }
        }
        (Field::Absent, IdField::Readable(_)) if envelope.has_result || envelope.has_error => {
            match serde_json::from_slice::<ClientJsonRpcMessage>(message) {
                Ok(_) => Inspection::Response,
                Err(e) => Inspection::Drop(format!("malformed response: {e}")),
            }
        }
        _ => Inspection::Drop("message without method, id or result".into()),
    }
}

fn inspect_request(message: &[u8], method: &str, id: Value) -> Inspection {
    let typed = TYPED_METHODS.contains(&method);
    match serde_json::from_slice::<ClientJsonRpcMessage>(message) {
        Ok(ClientJsonRpcMessage::Request(request)) => {
            if typed && matches!(request.request, ClientRequest::CustomRequest(_)) {
                // rmcp fell back to a custom request: the params do not fit the method.
                let why = typed_params_error(message, method);
                return Inspection::Reject(Rejection::new(
                    codes::INVALID_PARAMS,
                    id,
                    format!("invalid params for `{method}`: {why}"),
                ));
            }
            Inspection::Request(request.id)
        }
        Ok(_) => Inspection::Reject(Rejection::new(
            codes::INVALID_REQUEST,
            id,
            "invalid request: a message with `method` and `id` must be a request",
        )),
        Err(e) if typed => Inspection::Reject(Rejection::new(
            codes::INVALID_PARAMS,
            id,
            format!("invalid params for `{method}`: {e}"),
        )),
        Err(e) => Inspection::Reject(Rejection::new(
            codes::METHOD_NOT_FOUND,
            id,
            format!("method `{method}` is not served here, and its params could not be read: {e}"),
        )),
    }
}

/// Why the params of a typed method do not fit, from rmcp's own parser of that method.
fn typed_params_error(message: &[u8], method: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Params {
        #[serde(default)]
        params: Option<Value>,
    }
    let params = serde_json::from_slice::<Params>(message)
        .ok()
        .and_then(|p| p.params)
        .unwrap_or(Value::Null);
    if method == "tools/call"
        && let Err(e) = serde_json::from_value::<rmcp::model::CallToolRequestParams>(params)
    {
        return format!("{e}; expected {{\"name\": string, \"arguments\"?: object}}");
    }
    "the params do not have the shape this method takes".into()
}

fn inspect_batch(message: &[u8]) -> Inspection {
    let items = match serde_json::from_slice::<Vec<ProbedEnvelope>>(message) {
        Ok(items) => items,
        Err(e) => {
            return Inspection::Reject(Rejection::new(
                codes::INVALID_REQUEST,
                Value::Null,
                format!("invalid batch: {e}"),
            ));
        }
    };
    if items.is_empty() {
        return Inspection::Reject(Rejection::new(
            codes::INVALID_REQUEST,
            Value::Null,
            "invalid request: an empty batch",
        ));
    }
    let answers = items
        .into_iter()
        .filter_map(|ProbedEnvelope(e)| {
            let notification = e.object
                && matches!(e.method, Field::Present(_))
                && e.id == IdField::Absent;
            // Notifications are never answered; every other element is (null id when
            // it has none that can be read).
            (!notification).then(|| {
                let id = match e.id {
                    IdField::Readable(id) => id,
                    _ => Value::Null,
                };
                Rejection::new(
                    codes::INVALID_REQUEST,
                    id,
                    "JSON-RPC batches are not supported (MCP removed them in 2025-06-18): send each request on its own",
                )
            })
        })
        .collect();
    Inspection::Batch(answers)
}

/// The id of a response line from rmcp, if it is a response or error (not a request or
/// notification).
pub fn response_id(line: &[u8]) -> Option<RequestId> {
    let mut envelope = Envelope::default();
    let mut de = serde_json::Deserializer::from_slice(line);
    EnvelopeSeed(&mut envelope).deserialize(&mut de).ok()?;
    if !matches!(envelope.method, Field::Absent) {
        return None;
    }
    match envelope.id {
        IdField::Readable(Value::String(s)) => Some(RequestId::String(s.into())),
        IdField::Readable(Value::Number(n)) => n.as_i64().map(RequestId::Number),
        _ => None,
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
enum Field {
    #[default]
    Absent,
    Present(String),
    NotText,
}

#[derive(Debug, Clone, Default, PartialEq)]
enum IdField {
    #[default]
    Absent,
    Null,
    /// A string or a number (echoed as sent).
    Readable(Value),
    /// An object, array or boolean.
    Invalid,
}

/// The top-level fields of a message that decide how it is handled; everything else is
/// skipped without being stored.
#[derive(Debug, Default)]
struct Envelope {
    object: bool,
    jsonrpc: Field,
    id: IdField,
    method: Field,
    has_result: bool,
    has_error: bool,
    params_not_structured: bool,
}

impl Envelope {
    /// The JSON-RPC 2.0 rules that do not depend on the method.
    fn check(&self) -> Result<(), Rejection> {
        let reject = |id: Value, message: &str| {
            Err(Rejection::new(
                codes::INVALID_REQUEST,
                id,
                format!("invalid request: {message}"),
            ))
        };
        if !self.object {
            return reject(Value::Null, "a JSON-RPC message is a JSON object");
        }
        let id = match &self.id {
            IdField::Readable(id) => id.clone(),
            _ => Value::Null,
        };
        if self.jsonrpc != Field::Present("2.0".into()) {
            return reject(id, "`jsonrpc` must be \"2.0\"");
        }
        match &self.id {
            IdField::Null => return reject(id, "`id` must be a string or an integer, not null"),
            IdField::Invalid => return reject(id, "`id` must be a string or an integer"),
            IdField::Readable(Value::Number(n)) if n.as_i64().is_none() => {
                return reject(
                    id,
                    "`id` must be a string or an integer in the signed 64-bit range",
                );
            }
            _ => {}
        }
        match &self.method {
            Field::NotText => reject(id, "`method` must be a string"),
            Field::Present(_) if self.params_not_structured => {
                reject(id, "`params` must be an object or an array")
            }
            Field::Present(_) => Ok(()),
            Field::Absent if self.has_result || self.has_error => Ok(()),
            Field::Absent => reject(
                id,
                "a message needs `method` (a request or notification) or `result`/`error` (a response)",
            ),
        }
    }
}

/// Reads a message's envelope into the borrowed [`Envelope`] field by field, so a message
/// cut off (an oversized line's prefix) keeps what was read before the cut.
struct EnvelopeSeed<'a>(&'a mut Envelope);

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC message")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let e = self.0;
        e.object = true;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "jsonrpc" => e.jsonrpc = map.next_value::<TextField>()?.0,
                "method" => e.method = map.next_value::<TextField>()?.0,
                "id" => e.id = map.next_value::<IdValue>()?.0,
                "params" => e.params_not_structured = !map.next_value::<Structured>()?.0,
                "result" => {
                    e.has_result = true;
                    map.next_value::<IgnoredAny>()?;
                }
                "error" => {
                    e.has_error = true;
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// One batch element's envelope.
struct ProbedEnvelope(Envelope);

impl<'de> serde::Deserialize<'de> for ProbedEnvelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut envelope = Envelope::default();
        EnvelopeSeed(&mut envelope).deserialize(deserializer)?;
        Ok(Self(envelope))
    }
}

/// The kind of one JSON value, with its text or number kept; an object's or an array's
/// contents are skipped, not kept. The one reader behind [`TextField`], [`IdValue`] and
/// [`Structured`].
enum Kind {
    Text(String),
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool,
    Null,
    Object,
    Array,
}

impl<'de> serde::Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Kind;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, s: &str) -> Result<Kind, E> {
                Ok(Kind::Text(s.to_owned()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Kind, E> {
                Ok(Kind::Int(n))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Kind, E> {
                Ok(Kind::Uint(n))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Kind, E> {
                Ok(Kind::Float(n))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Kind, E> {
                Ok(Kind::Bool)
            }
            fn visit_unit<E>(self) -> Result<Kind, E> {
                Ok(Kind::Null)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Kind::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Kind::Array)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A field that should be a string.
struct TextField(Field);

impl<'de> serde::Deserialize<'de> for TextField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(TextField(match Kind::deserialize(deserializer)? {
            Kind::Text(s) => Field::Present(s),
            _ => Field::NotText,
        }))
    }
}

/// The `id` field.
struct IdValue(IdField);

impl<'de> serde::Deserialize<'de> for IdValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(IdValue(match Kind::deserialize(deserializer)? {
            Kind::Text(s) => IdField::Readable(Value::String(s)),
            Kind::Int(n) => IdField::Readable(json!(n)),
            Kind::Uint(n) => IdField::Readable(json!(n)),
            Kind::Float(n) => serde_json::Number::from_f64(n)
                .map(|n| IdField::Readable(Value::Number(n)))
                .unwrap_or(IdField::Invalid),
            Kind::Null => IdField::Null,
            Kind::Bool | Kind::Object | Kind::Array => IdField::Invalid,
        }))
    }
}

/// Whether `params` is an object or an array.
struct Structured(bool);

impl<'de> serde::Deserialize<'de> for Structured {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Structured(match Kind::deserialize(deserializer)? {
            // `params: null` is read by rmcp as absent params.
            Kind::Object | Kind::Array | Kind::Null => true,
            Kind::Text(_) | Kind::Int(_) | Kind::Uint(_) | Kind::Float(_) | Kind::Bool => false,
        }))
    }
}

/// Ids of the requests rmcp is serving now.
#[derive(Debug, Default, Clone)]
struct InFlight(Arc<Mutex<HashSet<RequestId>>>);

impl InFlight {
    /// Enters `id`; false when it is already in flight.
    fn enter(&self, id: RequestId) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(id)
    }

    fn leave(&self, id: &RequestId) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

/// The transport rmcp serves on when [`frame_stdio`] is in front of it.
pub type FramedTransport =
    AsyncRwTransport<RoleServer, ReadHalf<DuplexStream>, WriteHalf<DuplexStream>>;

/// The framing tasks of one stdio session.
#[derive(Debug)]
pub struct FramingTasks {
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl FramingTasks {
    /// Ends the session's framing once rmcp is done: stops reading input and waits (at
    /// most `flush_bound`) for the pending output to be written.
    pub async fn finish(self, flush_bound: std::time::Duration) {
        self.reader.abort();
        if tokio::time::timeout(flush_bound, self.writer)
            .await
            .is_err()
        {
            tracing::warn!("stdout did not take the last responses in time; dropping them");
        }
    }
}

/// Puts the framing layer between `input`/`output` (stdin/stdout) and rmcp: returns the
/// transport to serve rmcp on and the tasks that move the bytes.
pub fn frame_stdio<R, W>(
    input: R,
    output: W,
    max_request_bytes: usize,
) -> (FramedTransport, FramingTasks)
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
    let (from_rmcp, to_rmcp) = tokio::io::split(ours);
    let (rmcp_read, rmcp_write) = tokio::io::split(theirs);
    // Lines are already bounded (and answered) here.
    let transport = AsyncRwTransport::new_server(rmcp_read, rmcp_write)
        .with_max_line_length(max_request_bytes.saturating_add(2));
    let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(OUTPUT_QUEUE);
    let in_flight = InFlight::default();
    let reader = tokio::spawn(read_input(
        BufReader::new(input),
        to_rmcp,
        out_tx.clone(),
        in_flight.clone(),
        max_request_bytes,
    ));
    let forwarder = forward_output(BufReader::new(from_rmcp), out_tx, in_flight);
    let writer = tokio::spawn(async move {
        let (_, ()) = tokio::join!(forwarder, write_output(out_rx, output));
    });
    (transport, FramingTasks { reader, writer })
}

/// One line read with a size bound.
enum LineRead {
    Line,
    /// Over the limit: `line` holds the first `limit` bytes, the rest is not read yet.
    Oversized,
    Eof,
}

async fn read_bounded_line<R: AsyncBufRead + Unpin>(
    input: &mut R,
    line: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<LineRead> {
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            return Ok(if line.is_empty() {
                LineRead::Eof
            } else {
                LineRead::Line
            });
        }
        let newline = available.iter().position(|b| *b == b'\n');
        let take = newline.map_or(available.len(), |i| i + 1);
        let content = newline.unwrap_or(available.len());
        if line.len() + content > limit {
            let room = limit - line.len();
            line.extend_from_slice(&available[..room]);
            input.consume(room);
            return Ok(LineRead::Oversized);
        }
        line.extend_from_slice(&available[..content]);
        input.consume(take);
        if newline.is_some() {
            return Ok(LineRead::Line);
        }
    }
}

/// Skips input up to and including the next newline.
async fn skip_line<R: AsyncBufRead + Unpin>(input: &mut R) -> std::io::Result<()> {
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            return Ok(());
        }
        match available.iter().position(|b| *b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = available.len();
                input.consume(n);
            }
        }
    }
}

async fn read_input<R: AsyncBufRead + Unpin>(
    mut input: R,
    mut to_rmcp: WriteHalf<DuplexStream>,
    replies: mpsc::Sender<Vec<u8>>,
    in_flight: InFlight,
    limit: usize,
) {
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = match read_bounded_line(&mut input, &mut line, limit).await {
            Ok(read) => read,
            Err(e) => {
                tracing::error!(error = %e, "could not read the MCP input; closing the session");
                break;
            }
        };
        let message = match read {
            LineRead::Eof => break,
            LineRead::Oversized => {
                let rejection = oversized(&line, limit);
                tracing::warn!(limit, id = %rejection.id, "refused an oversized JSON-RPC message");
                if replies.send(rejection.to_line()).await.is_err() {
                    break;
                }
                if let Err(e) = skip_line(&mut input).await {
                    tracing::error!(error = %e, "could not read the MCP input; closing the session");
                    break;
                }
                continue;
            }
            LineRead::Line => line.strip_suffix(b"\r").unwrap_or(&line),
        };
        if message.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let (replies_now, forward) = match inspect(message) {
            Inspection::Request(id) => {
                if in_flight.enter(id.clone()) {
                    (None, true)
                } else {
                    tracing::debug!(%id, "refused a request whose id is already in flight");
                    (Some(duplicate(&id).to_line()), false)
                }
            }
            Inspection::Notification { cancels } => {
                // rmcp sends no response for a cancelled request: forget its id now.
                if let Some(id) = cancels {
                    in_flight.leave(&id);
                }
                (None, true)
            }
            Inspection::Response => (None, true),
            Inspection::Reject(rejection) => {
                tracing::debug!(code = rejection.code, id = %rejection.id, message = %rejection.message, "answered a message rmcp would mishandle");
                (Some(rejection.to_line()), false)
            }
            Inspection::Batch(rejections) if rejections.is_empty() => (None, false),
            Inspection::Batch(rejections) => {
                let all: Vec<Value> = rejections.iter().map(Rejection::to_json).collect();
                let mut line = Value::Array(all).to_string().into_bytes();
                line.push(b'\n');
                (Some(line), false)
            }
            Inspection::Drop(why) => {
                tracing::warn!(%why, "dropped a malformed message that cannot be answered");
                (None, false)
            }
        };
        if let Some(reply) = replies_now
            && replies.send(reply).await.is_err()
        {
            break;
        }
        if forward {
            let mut bytes = message.to_vec();
            bytes.push(b'\n');
            if to_rmcp.write_all(&bytes).await.is_err() {
                break;
            }
        }
    }
    // End of input: rmcp sees end of input and ends the session.
    let _ = to_rmcp.shutdown().await;
}

fn id_json(id: &RequestId) -> Value {
    match id {
        RequestId::Number(n) => json!(n),
        RequestId::String(s) => json!(s.as_ref()),
    }
}

async fn forward_output<R: AsyncBufRead + Unpin>(
    mut from_rmcp: R,
    out: mpsc::Sender<Vec<u8>>,
    in_flight: InFlight,
) {
    loop {
        let mut line = Vec::new();
        match from_rmcp.read_until(b'\n', &mut line).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "could not read rmcp's output");
                break;
            }
        }
        if let Some(id) = response_id(line.strip_suffix(b"\n").unwrap_or(&line)) {
            in_flight.leave(&id);
        }
        if out.send(line).await.is_err() {
            break;
        }
    }
}

async fn write_output<W: AsyncWrite + Unpin>(mut lines: mpsc::Receiver<Vec<u8>>, mut output: W) {
    while let Some(line) = lines.recv().await {
        if let Err(e) = output.write_all(&line).await {
            tracing::error!(error = %e, "could not write to stdout; the client is gone");
            return;
        }
        if lines.is_empty()
            && let Err(e) = output.flush().await
        {
            tracing::error!(error = %e, "could not flush stdout; the client is gone");
            return;
        }
    }
    let _ = output.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(message: &str) -> Rejection {
        match inspect(message.as_bytes()) {
            Inspection::Reject(r) => r,
            other => panic!("{message}: expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn invalid_json_is_a_parse_error_with_null_id() {
        for text in ["{", "{\"id\": 1,", "not json", "{\"id\":1}x", "\"\\x\""] {
            let r = rejected(text);
            assert_eq!(
                (r.code, &r.id),
                (codes::PARSE_ERROR, &Value::Null),
                "{text}"
            );
        }
    }

    #[test]
    fn invalid_requests_keep_their_readable_id() {
        let cases = [
            (r#"{"jsonrpc":"1.0","id":7,"method":"ping"}"#, json!(7)),
            (r#"{"jsonrpc":"2.0","id":"a","method":5}"#, json!("a")),
            (r#"{"jsonrpc":"2.0","id":8}"#, json!(8)),
            (
                r#"{"jsonrpc":"2.0","id":9,"method":"ping","params":3}"#,
                json!(9),
            ),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, json!(1.5)),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                Value::Null,
            ),
            (
                r#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#,
                Value::Null,
            ),
            ("42", Value::Null),
        ];
        for (text, id) in cases {
            let r = rejected(text);
            assert_eq!((r.code, r.id), (codes::INVALID_REQUEST, id), "{text}");
        }
    }

    #[test]
    fn numbers_out_of_range_and_bad_tool_params_are_invalid_params() {
        let r = rejected(
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x","arguments":{"seed":1e999}}}"#,
        );
        assert_eq!((r.code, r.id), (codes::INVALID_PARAMS, json!(3)));
        let r = rejected(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":5}}"#);
        assert_eq!(
            (r.code, r.id),
            (codes::INVALID_PARAMS, json!(4)),
            "{}",
            r.message
        );
        let r = rejected(r#"{"jsonrpc":"2.0","id":5,"method":"x/y","params":{"a":1e999}}"#);
        assert_eq!((r.code, r.id), (codes::METHOD_NOT_FOUND, json!(5)));
    }

    #[test]
    fn good_messages_pass() {
        assert!(matches!(
            inspect(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
            Inspection::Request(RequestId::Number(1))
        ));
        assert!(matches!(
            inspect(br#"{"jsonrpc":"2.0","id":"s","method":"tools/call","params":{"name":"a","arguments":{}}}"#),
            Inspection::Request(RequestId::String(_))
        ));
        assert!(matches!(
            inspect(
                br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":4}}"#
            ),
            Inspection::Notification {
                cancels: Some(RequestId::Number(4))
            }
        ));
        assert!(matches!(
            inspect(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            Inspection::Response
        ));
    }

    #[test]
    fn batches_answer_each_request() {
        match inspect(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#) {
            Inspection::Batch(r) => {
                assert_eq!(r.len(), 1);
                assert_eq!(r[0].id, json!(1));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rejected("[]").code, codes::INVALID_REQUEST);
    }

    #[test]
    fn oversized_prefix_yields_the_id_when_it_comes_first() {
        let r = oversized(
            br#"{"jsonrpc":"2.0","id":"big-1","method":"tools/call","params":{"name":"aaaa"#,
            64,
        );
        assert_eq!(r.id, json!("big-1"));
        assert!(r.message.contains("64-byte limit"), "{}", r.message);
        assert!(r.message.contains("COMFYUI_MCP_MAX_REQUEST_BYTES"));
        let r = oversized(br#"{"jsonrpc":"2.0","params":{"name":"aaaa"#, 64);
        assert_eq!(r.id, Value::Null);
    }

    #[test]
    fn response_ids_are_read_from_rmcp_output() {
        assert_eq!(
            response_id(br#"{"jsonrpc":"2.0","id":3,"result":{"a":1}}"#),
            Some(RequestId::Number(3))
        );
        assert_eq!(
            response_id(br#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#),
            None
        );
    }

    #[tokio::test]
    async fn bounded_reader_stops_at_the_limit() {
        let data = b"0123456789\nabc\n".to_vec();
        let mut input = BufReader::with_capacity(4, &data[..]);
        let mut line = Vec::new();
        assert!(matches!(
            read_bounded_line(&mut input, &mut line, 5).await.unwrap(),
            LineRead::Oversized
        ));
        assert_eq!(line, b"01234");
        skip_line(&mut input).await.unwrap();
        line.clear();
        assert!(matches!(
            read_bounded_line(&mut input, &mut line, 5).await.unwrap(),
            LineRead::Line
        ));
        assert_eq!(line, b"abc");
        line.clear();
        let exact = b"12345\n".to_vec();
        let mut input = BufReader::new(&exact[..]);
        assert!(matches!(
            read_bounded_line(&mut input, &mut line, 5).await.unwrap(),
            LineRead::Line
        ));
    }
}
