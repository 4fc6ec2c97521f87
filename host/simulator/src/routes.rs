//! The HTTP routes of ComfyUI 0.3.75, each also under `/api`, all under the optional prefix.
//!
//! Answers follow the recordings: JSON as `application/json; charset=utf-8` in Python's
//! `json.dumps` style, empty 200/400/404 bodies where the server sends none, and aiohttp's
//! `500 Internal Server Error` text wherever ComfyUI's handler would raise (malformed JSON,
//! unexpected JSON shapes).

use axum::Router;
use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use std::sync::Arc;

use crate::catalog::MODEL_FOLDERS;
use crate::config::MAX_UPLOAD_BYTES;
use crate::files::{Dir, join, normalize, split_annotation};
use crate::images;
use crate::middleware::{not_found, pipeline, text_response};
use crate::pyjson;
use crate::pyval::{self, PyErr, PyNum};
use crate::queue::QueueItem;
use crate::state::{Shared, State as SimState, now_ms};
use crate::validate::{Validation, validate_prompt};
use crate::ws::ws_handler;

type Shr = State<Arc<Shared>>;

/// Builds the whole application: routes, `/api` copies, prefix, pipeline.
pub(crate) fn app(shared: Arc<Shared>) -> Router {
    let routes = comfy_routes();
    let inner = routes.clone().nest("/api", routes);
    let app = if shared.prefix.is_empty() {
        inner
    } else {
        Router::new().nest(&shared.prefix, inner)
    };
    app.fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
        .layer(from_fn_with_state(shared.clone(), pipeline))
        .with_state(shared)
}

fn comfy_routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/ws", get(ws_handler))
        .route("/system_stats", get(system_stats))
        .route("/queue", get(get_queue).post(post_queue))
        .route("/prompt", get(get_prompt).post(post_prompt))
        .route("/history", get(get_history).post(post_history))
        .route("/history/{prompt_id}", get(get_history_item))
        .route("/object_info", get(object_info))
        .route("/object_info/{node_class}", get(object_info_class))
        .route("/models", get(models))
        .route("/models/{folder}", get(models_in))
        .route("/embeddings", get(embeddings))
        .route("/extensions", get(extensions))
        .route("/features", get(features))
        .route("/view", get(view))
        .route("/interrupt", post(interrupt))
        .route("/free", post(free))
        .route("/upload/image", post(upload_image))
}

/// A JSON answer exactly as aiohttp's `web.json_response` writes it.
pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut resp = (status, pyjson::dumps(value)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

fn ok_json(value: &Value) -> Response {
    json_response(StatusCode::OK, value)
}

/// aiohttp's answer when a handler raises.
fn server_error(why: &PyErr) -> Response {
    tracing::debug!(exception = %why.type_name, message = %why.message, "handler raised; answering 500");
    text_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "500 Internal Server Error\n\nServer got itself in trouble",
    )
}

fn empty(status: StatusCode) -> Response {
    status.into_response()
}

fn parse_json(body: &[u8]) -> Result<Value, PyErr> {
    serde_json::from_slice(body)
        .map_err(|e| PyErr::new("json.decoder.JSONDecodeError", e.to_string()))
}

fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

async fn system_stats() -> Response {
    const RAM: u64 = 8 * 1024 * 1024 * 1024;
    ok_json(&json!({
        "system": {
            "os": "posix",
            "ram_total": RAM,
            "ram_free": RAM / 2,
            "comfyui_version": "0.3.75",
            "required_frontend_version": "1.32.9",
            "installed_templates_version": "0.7.25",
            "required_templates_version": "0.7.25",
            "python_version": "none (comfyui-mcp simulator, not a real ComfyUI)",
            "pytorch_version": "none",
            "embedded_python": false,
            "argv": ["comfyui-mcp-simulator"]
        },
        "devices": [{
            "name": "cpu",
            "type": "cpu",
            "index": null,
            "vram_total": RAM,
            "vram_free": RAM / 2,
            "torch_vram_total": RAM,
            "torch_vram_free": RAM / 2
        }]
    }))
}

async fn get_queue(State(shared): Shr) -> Response {
    ok_json(&shared.lock().queue.snapshot())
}

async fn get_prompt(State(shared): Shr) -> Response {
    ok_json(&shared.lock().queue_info())
}

async fn features() -> Response {
    ok_json(&json!({"supports_preview_metadata": true, "max_upload_size": MAX_UPLOAD_BYTES}))
}

async fn embeddings() -> Response {
    ok_json(&json!([]))
}

async fn extensions() -> Response {
    ok_json(&json!([]))
}

async fn models() -> Response {
    ok_json(&json!(MODEL_FOLDERS))
}

async fn models_in(State(shared): Shr, Path(folder): Path<String>) -> Response {
    match shared.lock().catalog.models_in(&folder) {
        Some(files) => ok_json(&Value::Array(files)),
        None => empty(StatusCode::NOT_FOUND),
    }
}

async fn object_info(State(shared): Shr) -> Response {
    let st = shared.lock();
    let doc = st.catalog.to_json(&st.files.top_level_files(Dir::Input));
    drop(st);
    ok_json(&doc)
}

async fn object_info_class(State(shared): Shr, Path(class): Path<String>) -> Response {
    let st = shared.lock();
    let mut out = Map::new();
    if let Some(info) = st
        .catalog
        .class_json(&class, &st.files.top_level_files(Dir::Input))
    {
        out.insert(class, info);
    }
    ok_json(&Value::Object(out))
}

async fn get_history(State(shared): Shr, Query(q): Query<Vec<(String, String)>>) -> Response {
    let parse = |key: &str| -> Result<Option<i128>, PyErr> {
        match first(&q, key) {
            None => Ok(None),
            Some(s) => pyval::parse_int(s).map(Some).ok_or_else(|| {
                PyErr::new(
                    "ValueError",
                    format!(
                        "invalid literal for int() with base 10: {}",
                        pyval::repr_str(s)
                    ),
                )
            }),
        }
    };
    match (parse("max_items"), parse("offset")) {
        (Ok(max_items), Ok(offset)) => {
            ok_json(&shared.lock().queue.history_page(max_items, offset))
        }
        (Err(e), _) | (_, Err(e)) => server_error(&e),
    }
}

async fn get_history_item(State(shared): Shr, Path(prompt_id): Path<String>) -> Response {
    let mut answer = shared.lock().queue.history_entry(&prompt_id);
    if crate::faults::lock(&shared.faults).take_hidden_history()
        && let Some(entries) = answer.as_object_mut()
    {
        for entry in entries.values_mut() {
            if let Some(outputs) = entry.get_mut("outputs") {
                *outputs = serde_json::json!({});
            }
        }
    }
    ok_json(&answer)
}

async fn post_prompt(State(shared): Shr, body: Bytes) -> Response {
    let json = match parse_json(&body) {
        Ok(v) => v,
        Err(e) => return server_error(&e),
    };
    let result = {
        let mut st = shared.lock();
        submit(&mut st, &json)
    };
    match result {
        Ok((resp, queued)) => {
            if queued {
                shared.worker_wake.notify_one();
            }
            resp
        }
        Err(e) => server_error(&e),
    }
}

/// `post_prompt` of ComfyUI's server: number, validation, queueing. Returns the answer and
/// whether a prompt was queued.
fn submit(st: &mut SimState, json: &Value) -> Result<(Response, bool), PyErr> {
    let number = if pyval::contains(json, "number")? {
        match pyval::to_float(pyval::get_item(json, "number")?)? {
            Value::Number(n) => PyNum::Float(n.as_f64().unwrap_or(0.0)),
            _ => PyNum::Float(f64::NAN),
        }
    } else {
        let mut n = st.number;
        if pyval::contains(json, "front")? && pyval::truthy(pyval::get_item(json, "front")?) {
            n = -n;
        }
        st.number += 1;
        PyNum::Int(i128::from(n))
    };
    if !pyval::contains(json, "prompt")? {
        let error = json!({
            "type": "no_prompt",
            "message": "No prompt provided",
            "details": "No prompt provided",
            "extra_info": {}
        });
        let body = json!({"error": error, "node_errors": {}});
        return Ok((json_response(StatusCode::BAD_REQUEST, &body), false));
    }
    let mut prompt = pyval::get_item(json, "prompt")?.clone();
    let prompt_id = match json.get("prompt_id") {
        Some(v) => pyval::py_str(v),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let catalog = st.catalog.clone();
    let validation = validate_prompt(
        &mut prompt,
        json.get("partial_execution_targets"),
        &catalog,
        &st.files,
    );
    let mut extra_data = json.get("extra_data").cloned().unwrap_or_else(|| json!({}));
    if let Some(client_id) = json.get("client_id") {
        match extra_data.as_object_mut() {
            Some(m) => {
                m.insert("client_id".into(), client_id.clone());
            }
            None => {
                return Err(PyErr::new(
                    "TypeError",
                    "extra_data does not support item assignment",
                ));
            }
        }
    }
    match validation {
        Validation::Crash(e) => Err(e),
        Validation::Invalid { error, node_errors } => {
            tracing::debug!(error = %error, "invalid prompt");
            let body = json!({"error": error, "node_errors": node_errors});
            Ok((json_response(StatusCode::BAD_REQUEST, &body), false))
        }
        Validation::Valid {
            outputs,
            node_errors,
        } => {
            let Value::Object(mut extra_data) = extra_data else {
                return Err(PyErr::new(
                    "TypeError",
                    "extra_data does not support item assignment",
                ));
            };
            let mut sensitive = Map::new();
            for key in ["auth_token_comfy_org", "api_key_comfy_org"] {
                if let Some(v) = extra_data.shift_remove(key) {
                    sensitive.insert(key.into(), v);
                }
            }
            extra_data.insert("create_time".into(), json!(now_ms()));
            st.queue.push(QueueItem {
                number,
                prompt_id: prompt_id.clone(),
                prompt,
                extra_data,
                outputs,
                sensitive,
            });
            st.queue_updated();
            let body = json!({
                "prompt_id": prompt_id,
                "number": number.to_value(),
                "node_errors": node_errors
            });
            Ok((ok_json(&body), true))
        }
    }
}

async fn post_queue(State(shared): Shr, body: Bytes) -> Response {
    let result = parse_json(&body).and_then(|json| {
        let mut st = shared.lock();
        if pyval::contains(&json, "clear")? && pyval::truthy(pyval::get_item(&json, "clear")?) {
            st.queue.wipe();
            st.queue_updated();
        }
        if pyval::contains(&json, "delete")? {
            for id in pyval::iterate(pyval::get_item(&json, "delete")?)? {
                let was_last = st.queue.pending_len() == 1;
                if st.queue.delete(&id) {
                    // ComfyUI wipes a one-item queue (one more `status`) before its own update.
                    if was_last {
                        st.queue_updated();
                    }
                    st.queue_updated();
                }
            }
        }
        Ok(())
    });
    match result {
        Ok(()) => empty(StatusCode::OK),
        Err(e) => server_error(&e),
    }
}

async fn post_history(State(shared): Shr, body: Bytes) -> Response {
    let result = parse_json(&body).and_then(|json| {
        let mut st = shared.lock();
        if pyval::contains(&json, "clear")? && pyval::truthy(pyval::get_item(&json, "clear")?) {
            st.queue.wipe_history();
        }
        if pyval::contains(&json, "delete")? {
            for id in pyval::iterate(pyval::get_item(&json, "delete")?)? {
                match &id {
                    Value::String(s) => st.queue.delete_history(s),
                    Value::Array(_) | Value::Object(_) => {
                        return Err(PyErr::new(
                            "TypeError",
                            format!("unhashable type: '{}'", pyval::type_name(&id)),
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    });
    match result {
        Ok(()) => empty(StatusCode::OK),
        Err(e) => server_error(&e),
    }
}

async fn interrupt(State(shared): Shr, body: Bytes) -> Response {
    let json = parse_json(&body).unwrap_or_else(|_| json!({}));
    let Value::Object(map) = json else {
        return server_error(&PyErr::new(
            "AttributeError",
            "object has no attribute 'get'",
        ));
    };
    let target = map.get("prompt_id").filter(|v| pyval::truthy(v)).cloned();
    crate::faults::lock(&shared.recorder)
        .interrupts
        .push(target.as_ref().map(pyval::py_str));
    match target {
        Some(id) => {
            let running = shared
                .lock()
                .queue
                .running()
                .is_some_and(|r| id.as_str() == Some(r.prompt_id.as_str()));
            if running {
                shared.request_interrupt();
            } else {
                tracing::debug!(prompt_id = %id, "prompt is not running; interrupt skipped");
            }
        }
        None => shared.request_interrupt(),
    }
    empty(StatusCode::OK)
}

async fn free(body: Bytes) -> Response {
    match parse_json(&body) {
        Ok(Value::Object(_)) => empty(StatusCode::OK),
        Ok(_) => server_error(&PyErr::new(
            "AttributeError",
            "object has no attribute 'get'",
        )),
        Err(e) => server_error(&e),
    }
}

/// Python's `os.path.splitext` on a file name.
fn splitext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 && !name[..i].chars().all(|c| c == '.') => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

async fn upload_image(
    State(shared): Shr,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let Ok(mut multipart) = multipart else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let mut image: Option<(Option<String>, Bytes)> = None;
    let mut fields: Vec<(String, String)> = Vec::new();
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_string();
                let file_name = field.file_name().map(str::to_string);
                let Ok(data) = field.bytes().await else {
                    return empty(StatusCode::BAD_REQUEST);
                };
                if name == "image" && image.is_none() {
                    image = Some((file_name, data));
                } else {
                    fields.push((name, String::from_utf8_lossy(&data).into_owned()));
                }
            }
            Ok(None) => break,
            Err(_) => return empty(StatusCode::BAD_REQUEST),
        }
    }
    let Some((file_name, data)) = image else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let Some(mut filename) = file_name else {
        return server_error(&PyErr::new(
            "AttributeError",
            "'str' object has no attribute 'file'",
        ));
    };
    if filename.is_empty() {
        return empty(StatusCode::BAD_REQUEST);
    }
    let kind = first(&fields, "type").unwrap_or("input").to_string();
    let Some(dir) = Dir::from_type(&kind) else {
        return server_error(&PyErr::new(
            "UnboundLocalError",
            "type_dir referenced before assignment",
        ));
    };
    let subfolder = first(&fields, "subfolder").unwrap_or("").to_string();
    let overwrite = matches!(first(&fields, "overwrite"), Some("true" | "1"));
    let folder = match normalize(&subfolder) {
        Some(segs) if !filename.starts_with('/') => segs.join("/"),
        _ => return empty(StatusCode::BAD_REQUEST),
    };
    let Some(mut path) = join(&folder, &filename) else {
        return empty(StatusCode::BAD_REQUEST);
    };
    let mut st = shared.lock();
    let mut duplicate = false;
    if !overwrite {
        let original = filename.clone();
        let (stem, ext) = splitext(&original);
        let mut i = 1;
        while let Some(existing) = st.files.get(dir, &path) {
            if existing == data {
                duplicate = true;
                break;
            }
            filename = format!("{stem} ({i}){ext}");
            path = match join(&folder, &filename) {
                Some(p) => p,
                None => return empty(StatusCode::BAD_REQUEST),
            };
            i += 1;
        }
    }
    if !duplicate {
        st.files.put(dir, path, data);
    }
    ok_json(&json!({"name": filename, "subfolder": subfolder, "type": kind}))
}

fn content_type_for(name: &str) -> &'static str {
    let ext = splitext(name).1.to_ascii_lowercase();
    match ext.as_str() {
        ".png" => "image/png",
        ".jpg" | ".jpeg" => "image/jpeg",
        ".webp" => "image/webp",
        ".gif" => "image/gif",
        ".json" => "application/json",
        ".txt" => "text/plain",
        ".mp4" => "video/mp4",
        ".webm" => "video/webm",
        ".flac" => "audio/flac",
        ".wav" => "audio/x-wav",
        _ => "application/octet-stream",
    }
}

async fn view(State(shared): Shr, Query(q): Query<Vec<(String, String)>>) -> Response {
    let Some(filename) = first(&q, "filename") else {
        return empty(StatusCode::NOT_FOUND);
    };
    let (name, annotated) = split_annotation(filename);
    if name.is_empty() {
        return empty(StatusCode::BAD_REQUEST);
    }
    if name.starts_with('/') || name.contains("..") {
        return empty(StatusCode::BAD_REQUEST);
    }
    let dir = match annotated {
        Some(d) => d,
        None => match Dir::from_type(first(&q, "type").unwrap_or("output")) {
            Some(d) => d,
            None => return empty(StatusCode::BAD_REQUEST),
        },
    };
    let folder = match first(&q, "subfolder") {
        Some(sub) => match normalize(sub) {
            Some(segs) => segs.join("/"),
            None => return empty(StatusCode::FORBIDDEN),
        },
        None => String::new(),
    };
    let base = name.rsplit('/').next().unwrap_or(name);
    let Some(path) = join(&folder, base) else {
        return empty(StatusCode::NOT_FOUND);
    };
    let Some(bytes) = shared.lock().files.get(dir, &path) else {
        return empty(StatusCode::NOT_FOUND);
    };
    let (bytes, content_type) = match first(&q, "channel") {
        Some("rgb") => (channel_png(&bytes, false).unwrap_or(bytes), "image/png"),
        Some("a") => (channel_png(&bytes, true).unwrap_or(bytes), "image/png"),
        _ => (bytes, content_type_for(base)),
    };
    let mut resp = (StatusCode::OK, bytes).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("filename=\"{base}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// `/view?channel=rgb|a`: the RGB image, or an RGBA image holding only the alpha channel
/// (fully opaque: the simulator keeps uploads as RGB).
fn channel_png(bytes: &[u8], alpha_only: bool) -> Option<Bytes> {
    let px = images::decode(bytes).ok().filter(|p| !p.data.is_empty())?;
    images::encode_raw(px.width, px.height, &px.data, alpha_only).ok()
}
