//! The six templates of the pack: identity, listing metadata and prompt scaffolds.
//!
//! Everything template-specific lives in one `TemplateDef` table entry: where the latent
//! comes from (`Input`: empty, an input image, or an image plus a mask), how the decoded
//! image is saved (`Style`), and which post-processor runs on each output image (`Post`).
//! Invariant: ids are unique kebab-case and never change (callers and provenance records
//! refer to them).

use crate::comfyui::workflow::types::TemplateInfo;
use crate::params;

/// How the sampled image becomes the saved one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Sample at the requested size and save.
    Direct,
    /// Sample at up to 4x the requested size, then downscale with nearest-exact so every
    /// output pixel is one flat block (see `graph::render_scale`).
    PixelArt,
}

/// Where a template's latent comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// An empty latent of the requested size (text to image).
    Text,
    /// The VAE-encoded input image (`image-variation`).
    Image,
    /// The VAE-encoded input image with the mask as its noise mask (`inpaint`).
    Inpaint,
}

/// What the pack does to each output image (the `postprocessor` export).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Post {
    /// Nothing; the template's `postprocess` flag is off.
    None,
    /// Median-cut palette (`palette_colors`, `dither`).
    Palette,
    /// Four-copy half-offset blend, so the texture tiles.
    Seamless,
    /// Transparent background (`transparent_background`).
    Background,
}

/// One template: what it is and how it dresses the caller's prompts.
#[derive(Debug)]
pub struct TemplateDef {
    /// Stable id, e.g. `item-icon`.
    pub id: &'static str,
    /// Human-readable name.
    pub name: &'static str,
    /// What it produces and what it is good for.
    pub description: &'static str,
    /// Category for filtering.
    pub category: &'static str,
    /// Tags for filtering.
    pub tags: &'static [&'static str],
    /// Default output width.
    pub default_width: u32,
    /// Default output height.
    pub default_height: u32,
    /// Description of this template's `prompt` parameter.
    pub prompt_hint: &'static str,
    /// Typical prompts, published as the parameter's `examples`.
    pub prompt_examples: &'static [&'static str],
    /// Positive prompt with `{prompt}` standing for the caller's prompt.
    pub positive: &'static str,
    /// Built-in negative prompt; the caller's `negative_prompt` is appended.
    pub negative: &'static str,
    /// Graph variant.
    pub style: Style,
    /// Latent source.
    pub input: Input,
    /// Post-processor.
    pub post: Post,
}

/// Placeholder for the caller's prompt in `TemplateDef::positive`.
const PROMPT_SLOT: &str = "{prompt}";

/// Every template of the pack, in listing order.
pub const TEMPLATES: [TemplateDef; 6] = [
    TemplateDef {
        id: "character-portrait",
        name: "Character Portrait",
        description: "Head-and-shoulders character portraits and avatars for RPG characters and NPCs.",
        category: "characters",
        tags: &["portrait", "character", "rpg"],
        default_width: 512,
        default_height: 512,
        prompt_examples: &[
            "elf ranger with a green hood",
            "grizzled dwarf blacksmith with a braided beard",
        ],
        prompt_hint: "Character description, e.g. `elf ranger with a green hood`.",
        positive: "character portrait of {prompt}, head and shoulders, detailed face, \
                   expressive eyes, centered composition, soft studio lighting, \
                   game character art, high quality",
        negative: "blurry, low quality, deformed, bad anatomy, disfigured face, extra limbs, \
                   extra fingers, cropped head, out of frame, multiple people, text, \
                   watermark, signature",
        style: Style::Direct,
        input: Input::Text,
        post: Post::None,
    },
    TemplateDef {
        id: "item-icon",
        name: "Item Icon",
        description: "A single centred game item on a plain background, for inventories and UI; \
                      the background is made transparent by default.",
        category: "items",
        tags: &["icon", "item", "ui"],
        default_width: 512,
        default_height: 512,
        prompt_examples: &[
            "glowing blue health potion",
            "rusty iron sword with a leather grip",
        ],
        prompt_hint: "The item, e.g. `glowing blue health potion`.",
        positive: "{prompt}, single centered game item icon, plain solid background, \
                   clean silhouette, crisp edges, soft lighting, high detail, game asset",
        negative: "cluttered background, scenery, busy background, text, watermark, \
                   signature, multiple objects, cropped, out of frame, cut off, blurry, \
                   low quality, deformed",
        style: Style::Direct,
        input: Input::Text,
        post: Post::Background,
    },
    TemplateDef {
        id: "environment-texture",
        name: "Environment Texture",
        description: "Seamless tileable surface textures for terrain, walls and backgrounds; \
                      every output is blended so its opposite edges continue into each other.",
        category: "environments",
        tags: &["texture", "environment", "tileable", "seamless"],
        default_width: 1024,
        default_height: 1024,
        prompt_examples: &["mossy cobblestone", "desert sand with small pebbles"],
        prompt_hint: "The surface material, e.g. `mossy cobblestone`.",
        positive: "seamless tileable texture of {prompt}, top-down view, flat even lighting, \
                   uniform detail, repeating pattern, high resolution, game texture",
        negative: "seams, visible borders, vignette, perspective, horizon, sky, cast shadows, \
                   uneven lighting, objects, text, watermark, signature, blurry, low quality",
        style: Style::Direct,
        input: Input::Text,
        post: Post::Seamless,
    },
    TemplateDef {
        id: "pixel-art",
        name: "Pixel Art",
        description: "Retro pixel-art sprites: rendered at up to 4x, downscaled \
                      nearest-neighbour so pixels stay crisp, and reduced to a limited palette.",
        category: "sprites",
        tags: &["pixel-art", "retro", "sprite"],
        default_width: 256,
        default_height: 256,
        prompt_examples: &["knight with a red cape", "green slime monster"],
        prompt_hint: "The sprite subject, e.g. `knight with a red cape`.",
        positive: "pixel art, 16-bit sprite, {prompt}, crisp pixels, limited color palette, \
                   clean outlines, retro game style, plain background",
        negative: "blurry, smooth shading, gradients, anti-aliasing, photorealistic, \
                   3d render, noise, jpeg artifacts, text, watermark, signature",
        style: Style::PixelArt,
        input: Input::Text,
        post: Post::Palette,
    },
    TemplateDef {
        id: "image-variation",
        name: "Image Variation",
        description: "Variations of an input image (img2img): keeps its composition and \
                      colours and repaints the details; `denoise` sets how far it may drift.",
        category: "editing",
        tags: &["img2img", "variation", "edit"],
        default_width: 512,
        default_height: 512,
        prompt_examples: &[
            "the same scene at sunset",
            "hand-painted fantasy game art style",
        ],
        prompt_hint: "What the variation should show or look like, e.g. `the same castle in winter`.",
        positive: "{prompt}, high quality, detailed, game art",
        negative: "blurry, low quality, deformed, jpeg artifacts, text, watermark, signature",
        style: Style::Direct,
        input: Input::Image,
        post: Post::None,
    },
    TemplateDef {
        id: "inpaint",
        name: "Inpaint",
        description: "Repaints the masked region of an input image (white = repaint) and \
                      keeps the rest, e.g. to replace or add an object.",
        category: "editing",
        tags: &["inpaint", "edit", "mask"],
        default_width: 512,
        default_height: 512,
        prompt_examples: &["a wooden treasure chest", "a small campfire with sparks"],
        prompt_hint: "What to paint inside the mask, e.g. `a wooden treasure chest`.",
        positive: "{prompt}, seamlessly blended, matching lighting and style, high quality",
        negative: "blurry, low quality, deformed, visible seams, mismatched lighting, text, \
                   watermark, signature",
        style: Style::Direct,
        input: Input::Inpaint,
        post: Post::None,
    },
];

/// The template with this id, if the pack has it.
pub fn find(id: &str) -> Option<&'static TemplateDef> {
    TEMPLATES.iter().find(|t| t.id == id)
}

impl TemplateDef {
    /// Listing entry for the host (`template-info`).
    pub fn info(&self) -> TemplateInfo {
        TemplateInfo {
            id: self.id.to_string(),
            name: self.name.to_string(),
            description: self.description.to_string(),
            category: self.category.to_string(),
            tags: self.tags.iter().map(|t| t.to_string()).collect(),
            default_width: self.default_width,
            default_height: self.default_height,
            params: params::specs(self),
            postprocess: self.post != Post::None,
        }
    }

    /// The positive prompt sent to CLIP for the caller's (trimmed) prompt.
    pub fn positive_prompt(&self, prompt: &str) -> String {
        self.positive.replacen(PROMPT_SLOT, prompt, 1)
    }

    /// The built-in negative prompt, followed by the caller's one when not empty.
    pub fn negative_prompt(&self, extra: &str) -> String {
        if extra.is_empty() {
            self.negative.to_string()
        } else {
            format!("{}, {extra}", self.negative)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sizes_and_categories_match_the_tool_contract() {
        let got: Vec<(&str, u32, u32, &str)> = TEMPLATES
            .iter()
            .map(|t| (t.id, t.default_width, t.default_height, t.category))
            .collect();
        assert_eq!(
            got,
            [
                ("character-portrait", 512, 512, "characters"),
                ("item-icon", 512, 512, "items"),
                ("environment-texture", 1024, 1024, "environments"),
                ("pixel-art", 256, 256, "sprites"),
                ("image-variation", 512, 512, "editing"),
                ("inpaint", 512, 512, "editing"),
            ]
        );
        assert_eq!(
            find("pixel-art").map(|t| t.tags),
            Some(&["pixel-art", "retro", "sprite"][..])
        );
        assert!(find("nope").is_none());
    }

    #[test]
    fn post_processed_templates_are_flagged() {
        let flagged: Vec<(&str, bool)> = TEMPLATES
            .iter()
            .map(|t| (t.id, t.info().postprocess))
            .collect();
        assert_eq!(
            flagged,
            [
                ("character-portrait", false),
                ("item-icon", true),
                ("environment-texture", true),
                ("pixel-art", true),
                ("image-variation", false),
                ("inpaint", false),
            ]
        );
    }

    #[test]
    fn every_template_has_prompt_examples() {
        for t in &TEMPLATES {
            assert!(t.prompt_examples.len() >= 2, "{}", t.id);
            let prompt = &t.info().params[0];
            assert_eq!(prompt.name, "prompt");
            assert_eq!(prompt.examples.len(), t.prompt_examples.len(), "{}", t.id);
        }
    }

    #[test]
    fn every_positive_scaffold_has_exactly_one_prompt_slot() {
        for t in &TEMPLATES {
            assert_eq!(t.positive.matches(PROMPT_SLOT).count(), 1, "{}", t.id);
            assert!(!t.negative.contains(PROMPT_SLOT), "{}", t.id);
        }
    }

    #[test]
    fn scaffolds_wrap_the_callers_prompts() {
        let icon = find("item-icon").expect("exists");
        assert!(
            icon.positive_prompt("red gem")
                .starts_with("red gem, single centered game item icon")
        );
        assert!(icon.negative_prompt("").ends_with("deformed"));
        assert!(icon.negative_prompt("green").ends_with("deformed, green"));
        let texture = find("environment-texture").expect("exists");
        assert!(
            texture
                .positive_prompt("sand")
                .starts_with("seamless tileable texture of sand,")
        );
        let pixel = find("pixel-art").expect("exists");
        assert!(
            pixel
                .positive_prompt("cat")
                .starts_with("pixel art, 16-bit sprite, cat,")
        );
        // A `{prompt}` typed by the caller is not expanded again.
        assert!(
            pixel
                .positive_prompt("{prompt}")
                .contains("sprite, {prompt}, crisp")
        );
    }
}
