//! Shared scaffolding for the test packs under `test-packs/`.
//!
//! It generates the guest bindings of `comfyui:workflow/workflow-pack` once, with a
//! public `export!` macro, so each test pack is only its own `Guest` impl:
//!
//! ```ignore
//! struct Pack;
//! impl test_pack_support::Guest for Pack { /* info, list, build */ }
//! test_pack_support::export!(Pack);
//! ```
//!
//! It also offers small builders for template metadata and for tiny graphs made of
//! stock ComfyUI core nodes (`EmptyImage` -> `SaveImage`, mask gradient). Invariant:
//! every graph built here passes ComfyUI 0.3.75's validation (input names, types, bounds).

wit_bindgen::generate!({
    path: "../../../wit/v1",
    world: "workflow-pack",
    pub_export_macro: true,
    default_bindings_module: "test_pack_support",
});

pub use comfyui::workflow::host;
pub use comfyui::workflow::types::{
    Alias, BuildError, PackInfo, Param, ParamSpec, TemplateInfo, Value, ValueKind,
};
pub use exports::comfyui::workflow::templates::Guest;

/// This crate's pack identity: `pack_info!()` uses the calling crate's Cargo name,
/// version and description; `pack_info!("name")` overrides the name.
#[macro_export]
macro_rules! pack_info {
    () => {
        $crate::pack_info!(env!("CARGO_PKG_NAME"))
    };
    ($name:expr) => {
        $crate::pack_info(
            $name,
            env!("CARGO_PKG_VERSION"),
            env!("CARGO_PKG_DESCRIPTION"),
        )
    };
}

/// Defines `struct Pack`, its `Guest` impl and its export from two functions:
/// `list: fn() -> Vec<TemplateInfo>` and `build: fn(String, Vec<Param>) -> Result<String,
/// BuildError>`. `info` is `pack_info!()`, or `pack_info!(name)` with `name: "..."` first.
#[macro_export]
macro_rules! pack {
    ($(name: $name:expr,)? list: $list:expr, build: $build:expr $(,)?) => {
        struct Pack;

        impl $crate::Guest for Pack {
            fn info() -> $crate::PackInfo {
                $crate::pack_info!($($name)?)
            }

            fn list() -> ::std::vec::Vec<$crate::TemplateInfo> {
                ($list)()
            }

            fn build(
                id: ::std::string::String,
                params: ::std::vec::Vec<$crate::Param>,
            ) -> ::std::result::Result<::std::string::String, $crate::BuildError> {
                ($build)(id, params)
            }
        }

        $crate::export!(Pack);
    };
}

/// A pack of one template with only the `prompt` parameter ([`prompt_template`]):
/// `build` answers `unknown-template` for any other id, else calls `build(params)`.
#[macro_export]
macro_rules! single_template_pack {
    ($(name: $name:expr,)? template: ($id:expr, $title:expr, $description:expr), build: $build:expr $(,)?) => {
        $crate::pack! {
            $(name: $name,)?
            list: || vec![$crate::prompt_template($id, $title, $description)],
            build: |id: ::std::string::String,
                    params: ::std::vec::Vec<$crate::Param>|
             -> ::std::result::Result<::std::string::String, $crate::BuildError> {
                $crate::expect_id(&id, $id)?;
                ($build)(params)
            },
        }
    };
}

/// `Ok` when `id` is `wanted`, else `unknown-template` naming `id`.
pub fn expect_id(id: &str, wanted: &str) -> Result<(), BuildError> {
    if id == wanted {
        Ok(())
    } else {
        Err(BuildError::UnknownTemplate(id.to_string()))
    }
}

/// `build` of a pack that must never serve (the host refuses it at load): every id is
/// unknown.
pub fn unknown_template(id: String, _params: Vec<Param>) -> Result<String, BuildError> {
    Err(BuildError::UnknownTemplate(id))
}

/// `count` templates made by `make(0)`, `make(1)`, ...
pub fn numbered_templates(count: usize, make: impl Fn(usize) -> TemplateInfo) -> Vec<TemplateInfo> {
    (0..count).map(make).collect()
}

/// The text `name` from `params`, or "" when absent or not text.
pub fn text_value<'a>(params: &'a [Param], name: &str) -> &'a str {
    params
        .iter()
        .find(|p| p.name == name)
        .and_then(|p| match &p.value {
            Value::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .unwrap_or("")
}

/// Allocates 1 MiB blocks, writes to every 4 KiB page of each and keeps them all, until
/// allocation fails (the guest aborts: a trap). `black_box` keeps every write.
pub fn hog_memory() -> ! {
    const BLOCK: usize = 1 << 20;
    const PAGE: usize = 4096;
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; BLOCK];
        for (i, byte) in block.iter_mut().step_by(PAGE).enumerate() {
            *byte = (i as u8) | 1;
        }
        hoard.push(std::hint::black_box(block));
        std::hint::black_box(&hoard);
    }
}

/// Pack identity from a name, version and description.
pub fn pack_info(name: &str, version: &str, description: &str) -> PackInfo {
    PackInfo {
        name: name.to_string(),
        version: version.to_string(),
        description: description.to_string(),
    }
}

/// A 64x64 template in category `test`, tagged `test`.
pub fn template(id: &str, name: &str, description: &str, params: Vec<ParamSpec>) -> TemplateInfo {
    TemplateInfo {
        id: id.to_string(),
        name: name.to_string(),
        description: description.to_string(),
        category: "test".to_string(),
        tags: vec!["test".to_string()],
        default_width: 64,
        default_height: 64,
        params,
    }
}

/// A template (as [`template`]) whose only parameter is [`prompt_param`].
pub fn prompt_template(id: &str, name: &str, description: &str) -> TemplateInfo {
    template(id, name, description, vec![prompt_param()])
}

/// The pack body of the `clash` packs: pack name `<crate>-pack`, one template `item-icon`
/// (the id of a game-assets template) whose `build` returns EmptyImage (`color`) ->
/// SaveImage, prefix `comfyui-mcp/<crate>-item-icon`.
#[macro_export]
macro_rules! item_icon_clash_pack {
    ($title:expr, $color:expr, $description:expr $(,)?) => {
        $crate::single_template_pack! {
            name: concat!(env!("CARGO_PKG_NAME"), "-pack"),
            template: ("item-icon", $title, $description),
            build: |_params| {
                let prefix = concat!("comfyui-mcp/", env!("CARGO_PKG_NAME"), "-item-icon");
                Ok($crate::solid_color_graph(64, 64, $color, prefix))
            },
        }
    };
}

/// An optional text `prompt` defaulting to "" (so building with defaults works).
pub fn prompt_param() -> ParamSpec {
    ParamSpec {
        name: "prompt".to_string(),
        kind: ValueKind::Text,
        description: "Ignored by this test template.".to_string(),
        required: false,
        default: Some(Value::Text(String::new())),
        minimum: None,
        maximum: None,
        multiple_of: None,
        choices: Vec::new(),
        aliases: Vec::new(),
    }
}

/// An optional integer parameter with inclusive bounds.
pub fn int_param(name: &str, description: &str, default: i64, min: i64, max: i64) -> ParamSpec {
    ParamSpec {
        name: name.to_string(),
        kind: ValueKind::Integer,
        description: description.to_string(),
        required: false,
        default: Some(Value::Integer(default)),
        minimum: Some(min as f64),
        maximum: Some(max as f64),
        multiple_of: None,
        choices: Vec::new(),
        aliases: Vec::new(),
    }
}

/// The integer `name` from `params` clamped to `min..=max`, or `default` when absent
/// or not an integer (test packs trust the host's checks but must never panic).
pub fn int_value(params: &[Param], name: &str, default: i64, min: i64, max: i64) -> i64 {
    params
        .iter()
        .find(|p| p.name == name)
        .and_then(|p| match p.value {
            Value::Integer(i) => Some(i),
            _ => None,
        })
        .unwrap_or(default)
        .clamp(min, max)
}

/// `s` as a JSON string literal (quotes included).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Graph: `"1"` EmptyImage (`width` x `height`, one image, RGB `color`) -> `"2"` SaveImage.
pub fn solid_color_graph(width: i64, height: i64, color: i64, filename_prefix: &str) -> String {
    format!(
        concat!(
            r#"{{"1":{{"class_type":"EmptyImage","inputs":{{"width":{},"height":{},"batch_size":1,"color":{}}}}},"#,
            r#""2":{{"class_type":"SaveImage","inputs":{{"images":["1",0],"filename_prefix":{}}}}}}}"#
        ),
        width,
        height,
        color,
        json_string(filename_prefix)
    )
}

/// Graph: `"1"` SolidMask (white) -> `"2"` FeatherMask (fade over the whole width from
/// the left) -> `"3"` MaskToImage -> `"4"` SaveImage: a black-to-white horizontal ramp.
pub fn gradient_graph(width: i64, height: i64, filename_prefix: &str) -> String {
    format!(
        concat!(
            r#"{{"1":{{"class_type":"SolidMask","inputs":{{"value":1.0,"width":{w},"height":{h}}}}},"#,
            r#""2":{{"class_type":"FeatherMask","inputs":{{"mask":["1",0],"left":{w},"top":0,"right":0,"bottom":0}}}},"#,
            r#""3":{{"class_type":"MaskToImage","inputs":{{"mask":["2",0]}}}},"#,
            r#""4":{{"class_type":"SaveImage","inputs":{{"images":["3",0],"filename_prefix":{p}}}}}}}"#
        ),
        w = width,
        h = height,
        p = json_string(filename_prefix)
    )
}

/// The `solid-color` template shared by the `mini` packs: width, height and color.
pub fn solid_color_template(description: &str) -> TemplateInfo {
    template(
        "solid-color",
        "Solid Color",
        description,
        vec![
            prompt_param(),
            int_param("width", "Image width in pixels.", 64, 8, 1024),
            int_param("height", "Image height in pixels.", 64, 8, 1024),
            int_param(
                "color",
                "Fill colour as 0xRRGGBB.",
                0x33_66_cc,
                0,
                0xff_ff_ff,
            ),
        ],
    )
}

/// Builds the `solid-color` graph from its parameters.
pub fn solid_color_build(params: &[Param]) -> String {
    solid_color_graph(
        int_value(params, "width", 64, 8, 1024),
        int_value(params, "height", 64, 8, 1024),
        int_value(params, "color", 0x33_66_cc, 0, 0xff_ff_ff),
        "comfyui-mcp/solid-color",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\nd"), r#""a\"b\\c\u000ad""#);
    }

    #[test]
    fn solid_color_graph_is_the_expected_json() {
        assert_eq!(
            solid_color_graph(64, 32, 255, "p/q"),
            r#"{"1":{"class_type":"EmptyImage","inputs":{"width":64,"height":32,"batch_size":1,"color":255}},"2":{"class_type":"SaveImage","inputs":{"images":["1",0],"filename_prefix":"p/q"}}}"#
        );
    }

    #[test]
    fn gradient_graph_links_in_order() {
        let g = gradient_graph(64, 64, "g");
        assert!(
            g.contains(r#""2":{"class_type":"FeatherMask","inputs":{"mask":["1",0],"left":64,"#),
            "{g}"
        );
        assert!(g.ends_with(r#""4":{"class_type":"SaveImage","inputs":{"images":["3",0],"filename_prefix":"g"}}}"#), "{g}");
    }

    /// Every node's class exists in the catalog bundled with the host, its inputs are
    /// exactly the required ones, and every link points at an output of the right type.
    fn check_against_catalog(graph: &str) {
        use serde_json::Value as Json;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../host/comfyui/data/object_info.json");
        let catalog: Json =
            serde_json::from_str(&std::fs::read_to_string(path).expect("catalog")).expect("json");
        let graph: Json = serde_json::from_str(graph).expect("graph is JSON");
        let nodes = graph.as_object().expect("object");
        for (id, node) in nodes {
            let class = node["class_type"].as_str().expect("class_type");
            let required = catalog[class]["input"]["required"]
                .as_object()
                .expect(class);
            let inputs = node["inputs"].as_object().expect("inputs");
            let mut names: Vec<&String> = inputs.keys().collect();
            let mut wanted: Vec<&String> = required.keys().collect();
            names.sort();
            wanted.sort();
            assert_eq!(names, wanted, "node {id} ({class})");
            for (name, value) in inputs {
                if let Some(link) = value.as_array() {
                    let from = &nodes[link[0].as_str().expect("id")]["class_type"];
                    let output = &catalog[from.as_str().expect("class")]["output"]
                        [link[1].as_u64().expect("index") as usize];
                    assert_eq!(output, &required[name][0], "node {id}.{name}");
                }
            }
        }
        assert!(nodes.values().any(|n| n["class_type"] == "SaveImage"));
    }

    #[test]
    fn graphs_use_stock_nodes_correctly() {
        check_against_catalog(&solid_color_graph(64, 64, 0, "a"));
        check_against_catalog(&gradient_graph(64, 64, "b"));
    }

    #[test]
    fn int_values_are_clamped_and_defaulted() {
        let params = vec![
            Param {
                name: "width".to_string(),
                value: Value::Integer(5000),
            },
            Param {
                name: "height".to_string(),
                value: Value::Text("x".to_string()),
            },
        ];
        assert_eq!(int_value(&params, "width", 64, 8, 1024), 1024);
        assert_eq!(int_value(&params, "height", 64, 8, 1024), 64);
        assert_eq!(int_value(&params, "color", 7, 0, 10), 7);
    }
}
