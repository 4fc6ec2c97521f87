//! Test pack `template-cap`: exactly 256 valid templates, the host's default cap
//! (`MetadataLimits::DEFAULT.max_templates_per_pack`; a host test keeps the two equal).
//! It loads with the defaults and is refused with a cap of 255; the load benchmark
//! measures it.

use test_pack_support::{
    BuildError, Guest, PackInfo, Param, TemplateInfo, int_param, int_value, pack_info,
    prompt_param, solid_color_graph, template,
};

/// Templates offered: the default cap.
const TEMPLATES: usize = 256;

struct Pack;

impl Guest for Pack {
    fn info() -> PackInfo {
        pack_info!()
    }

    fn list() -> Vec<TemplateInfo> {
        (0..TEMPLATES)
            .map(|i| {
                template(
                    &format!("cap-{i:03}"),
                    &format!("Template {i}"),
                    "A flat colour image; one of many identical templates.",
                    vec![
                        prompt_param(),
                        int_param("color", "RGB colour as an integer.", 0, 0, 0xFF_FFFF),
                    ],
                )
            })
            .collect()
    }

    fn build(id: String, params: Vec<Param>) -> Result<String, BuildError> {
        if !id.starts_with("cap-") {
            return Err(BuildError::UnknownTemplate(id));
        }
        let color = int_value(&params, "color", 0, 0, 0xFF_FFFF);
        Ok(solid_color_graph(64, 64, color, &id))
    }
}

test_pack_support::export!(Pack);
