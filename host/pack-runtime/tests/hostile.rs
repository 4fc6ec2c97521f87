//! Hostile packs against the sandbox's per-call budgets: one memory budget
//! for all memories and tables (hand-written WAT components, since Rust
//! cannot express several memories or grown tables), instance counts, the
//! stack, pure clocks and randomness, and text budgets and escaping (Rust
//! packs under `plugins/test-packs`). After each, the runtime still serves.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pack_runtime::{CallError, HostView, Limits, LoadError, Runtime, RuntimeConfig, StaticHost};
use serde_json::{Map, Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn runtime_with(limits: Limits) -> Runtime {
    Runtime::new(RuntimeConfig {
        limits,
        ..RuntimeConfig::default()
    })
    .expect("engine")
}

fn runtime() -> Runtime {
    runtime_with(Limits::default())
}

// The variants that name a cause, one predicate each.

fn is_export_mismatch(e: &LoadError) -> bool {
    matches!(e, LoadError::ExportMismatch { .. })
}

fn is_instantiate_limit(e: &LoadError) -> bool {
    matches!(
        e,
        LoadError::Describe {
            source: CallError::Instantiate { .. },
            ..
        }
    )
}

fn is_stack_exhausted(e: &CallError) -> bool {
    matches!(e, CallError::StackExhausted { .. })
}

fn host() -> Arc<dyn HostView> {
    Arc::new(StaticHost::default())
}

fn args(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn pack(rt: &Runtime, name: &str) -> pack_runtime::Pack {
    rt.load_file(&repo().join("tests/packs").join(format!("{name}.wasm")))
        .unwrap_or_else(|e| panic!("{name} loads: {e}"))
}

/// The shipped pack still answers after a hostile call.
fn assert_still_serving(rt: &Runtime) {
    let pack = rt
        .load_file(&repo().join("templates/game-assets.wasm"))
        .expect("shipped pack loads");
    let mut h = StaticHost::default();
    h.models.insert(
        "checkpoints".into(),
        vec!["tiny-random-sd15.safetensors".into()],
    );
    pack.build(
        "item-icon",
        &args(json!({"prompt": "a sword", "seed": 1})),
        Arc::new(h),
    )
    .expect("shipped pack still builds");
}

// ---------------------------------------------------------------------------
// WAT components. Each exports `comfyui:workflow/templates@1.0.0` with
// functions of the right names but the wrong types (`func() -> u32`), so it
// passes every check up to instantiation: what it does at instantiation
// (declared sizes, start function) is the hostile part. A pack that
// instantiates within its budget then fails at binding, as an export mismatch.

/// A component around core module text `module`, instantiated `instances` times.
fn component(module: &str, instances: usize) -> Vec<u8> {
    let mut wat = format!(
        "(component\n(core module $m {module}\n(func (export \"f\") (result i32) i32.const 0))\n"
    );
    for i in 0..instances {
        wat.push_str(&format!("(core instance $i{i} (instantiate $m))\n"));
    }
    wat.push_str(
        r#"(func $f (result u32) (canon lift (core func $i0 "f")))
(instance $t (export "info" (func $f)) (export "list" (func $f)) (export "build" (func $f)))
(export "comfyui:workflow/templates@1.0.0" (instance $t)))"#,
    );
    wat::parse_str(&wat).expect("valid component text")
}

fn load_wat(rt: &Runtime, bytes: &[u8]) -> LoadError {
    rt.load_bytes(Path::new("hostile.wasm"), bytes)
        .expect_err("a WAT pack with wrong export types never loads")
}

/// The load failed because the store-wide memory budget refused something.
fn assert_memory_refused(err: &LoadError) {
    assert!(
        matches!(
            err,
            LoadError::Describe {
                source: CallError::MemoryLimit { limit_bytes },
                ..
            } if *limit_bytes == 64 << 20
        ),
        "{err}"
    );
    assert!(err.to_string().contains("memory limit of 64 MiB"), "{err}");
}

const PAGE: usize = 64 << 10;

#[test]
fn several_memories_are_summed_against_one_cap() {
    // Three memories of 48 MiB: each under the 64 MiB cap, together 144 MiB.
    let pages = (48 << 20) / PAGE;
    let module = format!("(memory {pages}) (memory {pages}) (memory {pages})");
    let rt = runtime();
    assert_memory_refused(&load_wat(&rt, &component(&module, 1)));
    assert_still_serving(&rt);
}

#[test]
fn several_instances_of_one_module_are_summed_against_one_cap() {
    // Four instances of a module with one 20 MiB memory: 80 MiB in all.
    let pages = (20 << 20) / PAGE;
    let rt = runtime();
    assert_memory_refused(&load_wat(&rt, &component(&format!("(memory {pages})"), 4)));
    assert_still_serving(&rt);
}

#[test]
fn grown_tables_count_against_the_memory_cap() {
    // A start function grows a table by 16 Mi elements (128 MiB of pointers).
    let module = r#"(table $t 1 funcref)
        (func $grow (drop (table.grow $t (ref.null func) (i32.const 16777216))))
        (start $grow)"#;
    let rt = runtime();
    assert_memory_refused(&load_wat(&rt, &component(module, 1)));
    assert_still_serving(&rt);
}

#[test]
fn a_start_function_growing_two_memories_is_stopped_at_the_cap() {
    // Two memories of one page, each grown by 40 MiB in the start function.
    let pages = (40 << 20) / PAGE;
    let module = format!(
        r#"(memory $a 1) (memory $b 1)
        (func $grow
            (drop (memory.grow $a (i32.const {pages})))
            (drop (memory.grow $b (i32.const {pages}))))
        (start $grow)"#
    );
    let rt = runtime();
    assert_memory_refused(&load_wat(&rt, &component(&module, 1)));
    assert_still_serving(&rt);
}

#[test]
fn memories_and_tables_share_the_budget_exactly_up_to_the_limit() {
    // 32 MiB of memory + 2 Mi table elements (16 MiB on 64-bit) = 48 MiB:
    // fits a 48 MiB budget exactly, and is refused by one page less.
    let elements = (16 << 20) / pack_runtime::TABLE_ELEMENT_BYTES;
    let module = format!("(memory {}) (table {elements} funcref)", (32 << 20) / PAGE);
    let bytes = component(&module, 1);
    let at_limit = runtime_with(Limits {
        memory_bytes: 48 << 20,
        ..Limits::default()
    });
    let err = load_wat(&at_limit, &bytes);
    assert!(is_export_mismatch(&err), "{err}");
    let under = runtime_with(Limits {
        memory_bytes: (48 << 20) - PAGE,
        ..Limits::default()
    });
    let err = load_wat(&under, &bytes);
    assert!(
        matches!(
            err,
            LoadError::Describe {
                source: CallError::MemoryLimit { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn instance_count_is_capped_with_a_message_naming_the_limit() {
    let rt = runtime();
    let max = Limits::default().max_instances;
    let at_limit = load_wat(&rt, &component("", max));
    assert!(is_export_mismatch(&at_limit), "{at_limit}");
    let err = load_wat(&rt, &component("", max + 1));
    assert!(is_instantiate_limit(&err), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("allows {max} core instances")) && text.contains("max_instances"),
        "{text}"
    );
}

#[test]
fn memory_count_is_capped() {
    let rt = runtime();
    // Default: 4 memories. Five tiny ones are refused before any is created.
    let err = load_wat(
        &rt,
        &component("(memory 1) (memory 1) (memory 1) (memory 1) (memory 1)", 1),
    );
    assert!(is_instantiate_limit(&err), "{err}");
    assert!(err.to_string().contains("4 memories"), "{err}");
}

#[test]
fn table_count_is_capped_at_the_limit() {
    let rt = runtime();
    let max = Limits::default().max_tables;
    let tables = |n: usize| "(table 1 funcref) ".repeat(n);
    let at_limit = load_wat(&rt, &component(&tables(max), 1));
    assert!(is_export_mismatch(&at_limit), "{at_limit}");
    let err = load_wat(&rt, &component(&tables(max + 1), 1));
    assert!(is_instantiate_limit(&err), "{err}");
    assert!(err.to_string().contains(&format!("{max} tables")), "{err}");
}

#[test]
fn a_random_request_over_its_cap_fails_and_one_at_the_cap_succeeds() {
    // clock-snoop asks for 16 bytes at a time.
    let at = runtime_with(Limits {
        max_random_bytes: 16,
        ..Limits::default()
    });
    pack(&at, "clock-snoop")
        .build("snoop-time", &Map::new(), host())
        .expect("16 bytes at a cap of 16");
    let under = runtime_with(Limits {
        max_random_bytes: 15,
        ..Limits::default()
    });
    let err = pack(&under, "clock-snoop")
        .build("snoop-time", &Map::new(), host())
        .unwrap_err();
    assert!(matches!(err, CallError::Trap { .. }), "{err}");
}

#[test]
fn an_export_of_the_wrong_shape_fails_at_load_naming_the_abi() {
    let rt = runtime();
    let err = load_wat(&rt, &component("(memory 1)", 1));
    assert!(is_export_mismatch(&err), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("exports do not match the comfyui:workflow@1.0.0 ABI")
            && text.contains("type mismatch")
            && !text.contains("crashed"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// Stack.

#[test]
fn runaway_recursion_is_a_clear_stack_exhausted_error() {
    let rt = runtime();
    let p = pack(&rt, "deep-recursion");
    let err = p.build("runaway", &Map::new(), host()).unwrap_err();
    assert!(is_stack_exhausted(&err), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("pack exhausted its call stack of 4096 KiB"),
        "{text}"
    );
    assert_still_serving(&rt);
}

#[test]
fn interpreter_deep_recursion_fits_the_default_stack() {
    // 40 000 levels need more than wasmtime's 512 KiB default stack.
    let rt = runtime();
    let p = pack(&rt, "deep-recursion");
    let built = p
        .build("deep", &args(json!({"depth": 40_000})), host())
        .expect("deep recursion within the stack limit");
    assert!(built.graph.to_string().contains("comfyui-mcp/deep-40000"));
    // The same depth under a 512 KiB limit is stopped, cleanly.
    let small = runtime_with(Limits {
        wasm_stack_bytes: 512 << 10,
        ..Limits::default()
    });
    let err = pack(&small, "deep-recursion")
        .build("deep", &args(json!({"depth": 40_000})), host())
        .unwrap_err();
    assert!(is_stack_exhausted(&err), "{err}");
}

// ---------------------------------------------------------------------------
// Purity.

#[test]
fn equal_params_give_identical_graphs_whatever_the_clock_and_randomness() {
    let rt = runtime();
    let p = pack(&rt, "clock-snoop");
    let a = args(json!({"prompt": "a"}));
    let first = p.build("snoop-time", &a, host()).unwrap().graph;
    std::thread::sleep(Duration::from_millis(20));
    let second = p.build("snoop-time", &a, host()).unwrap().graph;
    assert_eq!(first, second);
    // Another runtime (another process, in practice) gives the same bytes.
    let again = pack(&runtime(), "clock-snoop")
        .build("snoop-time", &a, host())
        .unwrap()
        .graph;
    assert_eq!(first.to_string(), again.to_string());

    let b = p
        .build("snoop-time", &args(json!({"prompt": "b"})), host())
        .unwrap()
        .graph;
    let readings = |g: &Value| {
        let prefix = g["2"]["inputs"]["filename_prefix"]
            .as_str()
            .unwrap()
            .to_owned();
        let (_, readings) = prefix.rsplit_once('/').unwrap();
        readings
            .split('-')
            .map(str::to_owned)
            .collect::<Vec<String>>()
    };
    let (ra, rb) = (readings(&first), readings(&second));
    assert_eq!(ra, rb);
    let rb = readings(&b);
    // Clocks are fixed: the same in both; random parts (secure, insecure,
    // seed) follow the parameters.
    assert_eq!(ra[..5], rb[..5], "clocks do not depend on the parameters");
    for i in 5..8 {
        assert_ne!(ra[i], rb[i], "random part {i} follows the parameters");
    }
    // The wall clock reads the fixed instant, 2000-01-01T00:00:00Z.
    assert_eq!(
        ra[1],
        format!("{}.000000000", pack_runtime::FIXED_WALL_CLOCK_SECS)
    );
}

// ---------------------------------------------------------------------------
// Text budgets.

/// Events with target `pack`, as `message` plus the other fields, captured
/// on the current thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

impl Captured {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

struct Visitor<'a>(&'a mut String);

impl tracing::field::Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.push_str(&format!("{value:?}"));
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!(" {}={value}", field.name()));
    }
}

impl tracing::Subscriber for Captured {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target() == "pack" {
            let mut line = String::new();
            event.record(&mut Visitor(&mut line));
            self.0.lock().unwrap().push(line);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn capture<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
    let captured = Captured::default();
    let r = tracing::subscriber::with_default(captured.clone(), f);
    (r, captured.lines())
}

/// C0 and C1 controls, DEL, bidi embeddings, overrides, isolates and marks,
/// line and paragraph separators: what must never reach a log line raw.
fn has_raw_control(s: &str) -> bool {
    s.chars().any(|c| {
        c.is_control()
            || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
    })
}

#[test]
fn a_flood_of_empty_lines_costs_a_bounded_number_of_log_lines() {
    let limits = Limits {
        call_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let max_lines = limits.max_log_lines;
    let rt = runtime_with(limits);
    let p = pack(&rt, "text-bomb");
    let (result, lines) = capture(|| p.build("empty-lines", &Map::new(), host()));
    let err = result.unwrap_err();
    assert!(matches!(err, CallError::Timeout { .. }), "{err}");
    // At most the line budget, plus the one summary of what was dropped.
    assert!(lines.len() <= max_lines + 1, "{} log lines", lines.len());
    let summary = lines.last().unwrap();
    assert!(
        summary.contains("was dropped") && summary.contains("dropped_lines="),
        "{summary}"
    );
    assert_still_serving(&rt);
}

#[test]
fn control_characters_never_reach_a_log_line_or_an_error_raw() {
    let rt = runtime();
    let p = pack(&rt, "text-bomb");
    let (result, lines) = capture(|| p.build("control-chars", &Map::new(), host()));
    let err = result.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, CallError::Failed(_)), "{text}");
    assert!(!has_raw_control(&text), "{text:?}");
    assert!(
        text.contains(r"first\nINFO comfyui_mcp: forged record\r\u{1b}[2J\u{1b}]0;title\u{7}\u{202e}desrever\u{85}end"),
        "{text}"
    );
    // host::log, stdout and stderr: three lines, each one record, escaped.
    let forged: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("forged record"))
        .collect();
    assert_eq!(forged.len(), 3, "{lines:#?}");
    for line in lines {
        assert!(!has_raw_control(&line), "{line:?}");
    }
}

#[test]
fn a_huge_failed_message_is_capped_with_a_count_of_what_was_cut() {
    let rt = runtime();
    let p = pack(&rt, "text-bomb");
    let err = p.build("huge-failed", &Map::new(), host()).unwrap_err();
    let text = err.to_string();
    let max = Limits::default().max_error_bytes;
    assert!(text.len() < max + 200, "{} bytes", text.len());
    let cut = (8 << 20) - max;
    assert!(
        text.ends_with(&format!("... ({cut} more bytes cut)")),
        "{}",
        &text[text.len() - 80..]
    );
}

#[test]
fn a_huge_unknown_template_id_is_capped() {
    let rt = runtime();
    let p = pack(&rt, "text-bomb");
    let err = p.build("huge-unknown", &Map::new(), host()).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, CallError::UnknownTemplate { .. }),
        "{}",
        &text[..200]
    );
    assert!(
        text.len() < Limits::default().max_error_bytes + 400,
        "{} bytes",
        text.len()
    );
    assert!(text.contains("more bytes cut"), "{}", &text[..200]);
}

#[test]
fn a_huge_field_error_list_is_capped_with_a_count_of_what_was_cut() {
    let rt = runtime();
    let p = pack(&rt, "text-bomb");
    let err = p
        .build("huge-field-errors", &Map::new(), host())
        .unwrap_err();
    let CallError::InvalidParams(errors) = &err else {
        panic!("{err}");
    };
    let max = Limits::default().max_field_errors;
    assert_eq!(errors.len(), max + 1, "kept entries plus the note");
    assert_eq!(errors[0].param, "p0");
    assert_eq!(errors[0].message, r"bad value 0\n", "escaped");
    let note = &errors[max];
    assert!(
        note.message
            .starts_with(&format!("and {} more errors cut", 100_000 - max)),
        "{}",
        note.message
    );
    assert!(err.to_string().len() < 8 << 10);
}

// ---------------------------------------------------------------------------
// Trap messages.

#[test]
fn a_trap_says_wasm_trap_once_and_includes_what_the_pack_wrote() {
    let rt = runtime();
    let p = pack(&rt, "panicker");
    let template = p.templates()[0].id.clone();
    let err = p.build(&template, &Map::new(), host()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, CallError::Trap { .. }), "{text}");
    assert_eq!(text.matches("wasm trap").count(), 1, "{text}");
    assert!(
        text.contains("the pack wrote: ") && text.contains("deliberate panic"),
        "{text}"
    );
}
