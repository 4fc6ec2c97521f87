//! Validation of what a pack says about itself (`info` and `list`), and the
//! caps on it.
//!
//! Invariants, checked once at load before a pack can serve:
//! * counts first: a pack offering more templates than
//!   [`MetadataLimits::max_templates_per_pack`], or more metadata text in total
//!   than [`MetadataLimits::max_metadata_bytes`], is refused before any of its
//!   strings is looked at one by one, so a metadata bomb costs one pass;
//! * every string (names, versions, descriptions, categories, tags, choices,
//!   aliases, text defaults and examples) is within its byte cap and free of control characters, line
//!   breaks and bidirectional overrides, so a pack cannot forge log lines or
//!   terminal escapes through listings, logs or error messages;
//! * template ids are unique and use the tool-name alphabet (see [`valid_id`]);
//! * every parameter spec is coherent ([`params::validate_specs`]).
//!
//! All problems found are reported together, each naming what is wrong, the
//! limit, and the setting that raises it. Identifiers quoted in messages are
//! escaped and shortened, so the messages themselves are safe to print.

use crate::params::{self, SpecProblem};
use crate::spec::{PackInfo, TemplateInfo};

/// Longest template id, in bytes. Ids become MCP tool names (at most 64
/// characters in common clients), so this is a naming rule, not a budget.
pub const MAX_ID_BYTES: usize = 64;

/// Caps on a pack's file and self-description, and on the text a caller may
/// pass to a template. Plain data; [`MetadataLimits::DEFAULT`] holds the
/// defaults (also the CLI defaults). Each field is named after its setting:
/// `max_templates_per_pack` is `--max-templates-per-pack` and
/// `COMFYUI_MCP_MAX_TEMPLATES_PER_PACK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataLimits {
    /// Largest pack file, in bytes, checked before reading (default 64 MiB).
    pub max_pack_file_bytes: u64,
    /// Templates one pack may offer (default 256).
    pub max_templates_per_pack: usize,
    /// Parameters one template may declare (default 64).
    pub max_params_per_template: usize,
    /// Bytes of a pack name or version, template name or category (default 200).
    pub max_name_bytes: usize,
    /// Bytes of one description, of the pack, a template or a parameter (default 4 KiB).
    pub max_description_bytes: usize,
    /// Entries of one list: a template's tags, a parameter's choices, aliases or examples (default 256).
    pub max_list_items: usize,
    /// Bytes of one tag, choice, or alias name or target (default 200).
    pub max_item_bytes: usize,
    /// Bytes of all metadata text of one pack together (default 1 MiB).
    pub max_metadata_bytes: usize,
    /// Bytes of one text parameter a caller passes, checked before the pack is called (default 64 KiB).
    pub max_text_param_bytes: usize,
}

impl MetadataLimits {
    /// The defaults, written once.
    pub const DEFAULT: MetadataLimits = MetadataLimits {
        max_pack_file_bytes: 64 << 20,
        max_templates_per_pack: 256,
        max_params_per_template: 64,
        max_name_bytes: 200,
        max_description_bytes: 4 << 10,
        max_list_items: 256,
        max_item_bytes: 200,
        max_metadata_bytes: 1 << 20,
        max_text_param_bytes: 64 << 10,
    };
}

impl Default for MetadataLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How a setting named `field` is raised: `max_x (--max-x or COMFYUI_MCP_MAX_X)`.
pub fn setting_hint(field: &str) -> String {
    format!(
        "{field} (--{} or COMFYUI_MCP_{})",
        field.replace('_', "-"),
        field.to_ascii_uppercase()
    )
}

/// `s` made safe to quote in a message: escaped and at most 64 characters.
pub(crate) fn quote(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_debug).collect();
    if s.chars().nth(64).is_some() {
        out.push('…');
    }
    out
}

/// Characters refused in metadata text: C0 and C1 controls (line breaks and
/// tabs included), DEL, and the bidirectional embeddings, overrides and
/// isolates that reorder what a terminal shows.
pub fn forbidden_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// One thing wrong with a pack's metadata.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetadataProblem {
    /// The pack declares an empty name.
    #[error("the pack declares an empty name")]
    EmptyName,
    /// The pack offers no template.
    #[error("the pack offers no templates")]
    NoTemplates,
    /// More templates than allowed.
    #[error(
        "the pack offers {count} templates, over the limit of {limit}; raise it with {}",
        setting_hint("max_templates_per_pack")
    )]
    TooManyTemplates {
        /// Templates offered.
        count: usize,
        /// The limit in force.
        limit: usize,
    },
    /// More metadata text than allowed.
    #[error(
        "the pack's metadata text totals {bytes} bytes, over the limit of {limit} bytes; raise it with {}",
        setting_hint("max_metadata_bytes")
    )]
    TooMuchMetadata {
        /// Total bytes.
        bytes: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A template declares more parameters than allowed.
    #[error(
        "template `{template}` declares {count} parameters, over the limit of {limit}; raise it with {}",
        setting_hint("max_params_per_template")
    )]
    TooManyParams {
        /// The template id.
        template: String,
        /// Parameters declared.
        count: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A list (tags, choices, aliases) has more entries than allowed.
    #[error(
        "{field} has {count} entries, over the limit of {limit}; raise it with {}",
        setting_hint("max_list_items")
    )]
    TooManyItems {
        /// Which list.
        field: String,
        /// Entries.
        count: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A string is longer than its cap.
    #[error("{field} is {bytes} bytes, over the limit of {limit} bytes; raise it with {}", setting_hint(.setting))]
    TooLong {
        /// Which string.
        field: String,
        /// Its length.
        bytes: usize,
        /// The limit in force.
        limit: usize,
        /// The setting that raises the limit.
        setting: &'static str,
    },
    /// A string holds a control character or a bidirectional override.
    #[error(
        "{field} contains the control character U+{code:04X} at byte {at}; metadata text must be printable on one line (no line breaks, tabs, escapes or direction overrides)"
    )]
    ControlCharacter {
        /// Which string.
        field: String,
        /// The character's code point.
        code: u32,
        /// Its byte offset.
        at: usize,
    },
    /// A template id outside the tool-name alphabet.
    #[error(
        "template id `{id}` must be 1-{MAX_ID_BYTES} characters of a-z, 0-9, `-` or `_`, starting with a letter or digit"
    )]
    BadTemplateId {
        /// The id, escaped.
        id: String,
    },
    /// Two templates share an id.
    #[error("template id `{id}` appears twice")]
    DuplicateTemplateId {
        /// The id.
        id: String,
    },
    /// A parameter spec is incoherent.
    #[error("template `{template}`: {problem}")]
    Spec {
        /// The template id (escaped).
        template: String,
        /// What is wrong.
        problem: SpecProblem,
    },
}

/// Everything wrong with a pack's metadata (never empty).
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataError(pub Vec<MetadataProblem>);

impl std::error::Error for MetadataError {}

/// Problems listed in full in the message; the rest are counted.
const SHOWN_PROBLEMS: usize = 16;

impl std::fmt::Display for MetadataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.0.iter().take(SHOWN_PROBLEMS).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        if self.0.len() > SHOWN_PROBLEMS {
            write!(f, "; and {} more problems", self.0.len() - SHOWN_PROBLEMS)?;
        }
        Ok(())
    }
}

/// Template ids become MCP tool names, so they are kept to a safe alphabet.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Bytes of all metadata text together (ids, names, descriptions, lists,
/// text defaults and examples).
fn total_bytes(info: &PackInfo, templates: &[TemplateInfo]) -> usize {
    let mut total = info.name.len() + info.version.len() + info.description.len();
    for t in templates {
        total += t.id.len() + t.name.len() + t.description.len() + t.category.len();
        total += t.tags.iter().map(String::len).sum::<usize>();
        for p in &t.params {
            total += p.name.len() + p.description.len();
            total += p.choices.iter().map(String::len).sum::<usize>();
            total += p
                .aliases
                .iter()
                .map(|a| a.name.len() + a.target.len())
                .sum::<usize>();
            if let Some(crate::spec::ParamValue::Text(d)) = &p.default {
                total += d.len();
            }
            total += p
                .examples
                .iter()
                .map(|e| match e {
                    crate::spec::ParamValue::Text(t) => t.len(),
                    _ => 0,
                })
                .sum::<usize>();
        }
    }
    total
}

struct Checker<'l> {
    limits: &'l MetadataLimits,
    problems: Vec<MetadataProblem>,
}

impl Checker<'_> {
    fn text(&mut self, field: impl Fn() -> String, s: &str, limit: usize, setting: &'static str) {
        if s.len() > limit {
            self.problems.push(MetadataProblem::TooLong {
                field: field(),
                bytes: s.len(),
                limit,
                setting,
            });
            return;
        }
        if let Some((at, c)) = s.char_indices().find(|&(_, c)| forbidden_char(c)) {
            self.problems.push(MetadataProblem::ControlCharacter {
                field: field(),
                code: u32::from(c),
                at,
            });
        }
    }

    fn name(&mut self, field: impl Fn() -> String, s: &str) {
        self.text(field, s, self.limits.max_name_bytes, "max_name_bytes");
    }

    fn description(&mut self, field: impl Fn() -> String, s: &str) {
        let limit = self.limits.max_description_bytes;
        self.text(field, s, limit, "max_description_bytes");
    }

    fn list<'a>(&mut self, field: &str, items: impl ExactSizeIterator<Item = &'a str>) {
        if items.len() > self.limits.max_list_items {
            self.problems.push(MetadataProblem::TooManyItems {
                field: field.to_owned(),
                count: items.len(),
                limit: self.limits.max_list_items,
            });
            return;
        }
        let limit = self.limits.max_item_bytes;
        for (i, item) in items.enumerate() {
            self.text(
                || format!("{field} #{}", i + 1),
                item,
                limit,
                "max_item_bytes",
            );
        }
    }
}

/// Checks a pack's identity and templates against `limits` and for coherence.
pub fn validate_metadata(
    info: &PackInfo,
    templates: &[TemplateInfo],
    limits: &MetadataLimits,
) -> Result<(), MetadataError> {
    let fail = |p| Err(MetadataError(vec![p]));
    if templates.len() > limits.max_templates_per_pack {
        return fail(MetadataProblem::TooManyTemplates {
            count: templates.len(),
            limit: limits.max_templates_per_pack,
        });
    }
    let bytes = total_bytes(info, templates);
    if bytes > limits.max_metadata_bytes {
        return fail(MetadataProblem::TooMuchMetadata {
            bytes,
            limit: limits.max_metadata_bytes,
        });
    }
    let mut c = Checker {
        limits,
        problems: Vec::new(),
    };
    if info.name.trim().is_empty() {
        c.problems.push(MetadataProblem::EmptyName);
    }
    c.name(|| "the pack name".into(), &info.name);
    c.name(|| "the pack version".into(), &info.version);
    c.description(|| "the pack description".into(), &info.description);
    if templates.is_empty() {
        c.problems.push(MetadataProblem::NoTemplates);
    }
    let mut seen = std::collections::HashSet::new();
    for t in templates {
        let id = quote(&t.id);
        if !valid_id(&t.id) {
            c.problems
                .push(MetadataProblem::BadTemplateId { id: id.clone() });
        } else if !seen.insert(t.id.as_str()) {
            c.problems
                .push(MetadataProblem::DuplicateTemplateId { id: id.clone() });
        }
        c.name(|| format!("template `{id}` name"), &t.name);
        c.description(|| format!("template `{id}` description"), &t.description);
        c.name(|| format!("template `{id}` category"), &t.category);
        c.list(
            &format!("template `{id}` tags"),
            t.tags.iter().map(String::as_str),
        );
        if t.params.len() > limits.max_params_per_template {
            c.problems.push(MetadataProblem::TooManyParams {
                template: id,
                count: t.params.len(),
                limit: limits.max_params_per_template,
            });
            continue;
        }
        for p in &t.params {
            let pname = quote(&p.name);
            c.description(
                || format!("template `{id}` parameter `{pname}` description"),
                &p.description,
            );
            c.list(
                &format!("template `{id}` parameter `{pname}` choices"),
                p.choices.iter().map(String::as_str),
            );
            c.list(
                &format!("template `{id}` parameter `{pname}` alias names"),
                p.aliases.iter().map(|a| a.name.as_str()),
            );
            c.list(
                &format!("template `{id}` parameter `{pname}` alias targets"),
                p.aliases.iter().map(|a| a.target.as_str()),
            );
            if p.examples.len() > limits.max_list_items {
                c.problems.push(MetadataProblem::TooManyItems {
                    field: format!("template `{id}` parameter `{pname}` examples"),
                    count: p.examples.len(),
                    limit: limits.max_list_items,
                });
            } else {
                for (i, example) in p.examples.iter().enumerate() {
                    if let crate::spec::ParamValue::Text(e) = example {
                        let limit = limits.max_text_param_bytes;
                        c.text(
                            || format!("template `{id}` parameter `{pname}` example #{}", i + 1),
                            e,
                            limit,
                            "max_text_param_bytes",
                        );
                    }
                }
            }
            if let Some(crate::spec::ParamValue::Text(d)) = &p.default {
                let limit = limits.max_text_param_bytes;
                c.text(
                    || format!("template `{id}` parameter `{pname}` default"),
                    d,
                    limit,
                    "max_text_param_bytes",
                );
            }
        }
        for problem in params::validate_specs(&t.params) {
            c.problems.push(MetadataProblem::Spec {
                template: id.clone(),
                problem,
            });
        }
    }
    if c.problems.is_empty() {
        Ok(())
    } else {
        Err(MetadataError(c.problems))
    }
}
