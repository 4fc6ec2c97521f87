//! Images crossing the sandbox for post-processing, and the checks on them.
//!
//! A 2.x pack that sets `template-info.postprocess` exports
//! `comfyui:workflow/postprocessor`; the host calls it once per output image
//! ([`crate::Pack::postprocess_resolved`]) under the same per-call limits as
//! `build`, in a fresh store, with the same deterministic WASI.
//!
//! The image types and their check are the `rgba` crate's, shared with the job pipeline.
//!
//! Invariants, enforced by [`check_image`] (of `rgba`, the one place):
//! * an image handed to a pack and an image a pack returns both have
//!   `width, height >= 1`, at most [`crate::Limits::max_postprocess_pixels`]
//!   pixels, and exactly `width * height * 4` bytes of RGBA8 (row-major, no
//!   padding); an input over the cap is refused before any pack runs;
//! * a pack's steps are capped at [`crate::Limits::max_postprocess_steps`]
//!   (the rest are counted in one extra step) and each name and detail is
//!   escaped and capped at [`crate::Limits::max_error_bytes`] (`pack.rs`).

pub use rgba::{ImageFault, PostprocessStep, Postprocessed, RgbaImage, check_image};
