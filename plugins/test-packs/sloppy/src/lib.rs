//! Test pack `sloppy`: it works, but everything about it will hurt users, so
//! `comfyui-mcp check` warns (and fails with `--strict`). The pack (its Cargo
//! description is empty) and its one template `sloppy` have no description; its
//! parameter `size` has no description and no bounds, and `strength` (a number) is
//! optional with no default. `build` returns a tiny valid graph.

use test_pack_support::{
    BuildError, Param, ParamSpec, TemplateInfo, ValueKind, int_param, int_value, prompt_param,
    solid_color_graph, template,
};

test_pack_support::pack! { list: list, build: build }

fn list() -> Vec<TemplateInfo> {
    let size = ParamSpec {
        description: String::new(),
        minimum: None,
        maximum: None,
        ..int_param("size", "", 64, 0, 0)
    };
    let strength = ParamSpec {
        name: "strength".to_string(),
        kind: ValueKind::Number,
        description: "How strong.".to_string(),
        default: None,
        minimum: Some(0.0),
        maximum: Some(1.0),
        ..prompt_param()
    };
    vec![template("sloppy", "Sloppy", "", vec![prompt_param(), size, strength])]
}

fn build(id: String, params: Vec<Param>) -> Result<String, BuildError> {
    test_pack_support::expect_id(&id, "sloppy")?;
    let size = int_value(&params, "size", 64, 16, 256);
    Ok(solid_color_graph(size, size, 0, "comfyui-mcp/sloppy"))
}
