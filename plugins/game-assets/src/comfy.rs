//! Facts about stock ComfyUI that the templates rely on.
//!
//! The sampler and scheduler names are the `KSampler.sampler_name` and
//! `KSampler.scheduler` choices of ComfyUI 0.3.75's `/object_info` (the catalog bundled
//! with the host); a test checks them against that file. The aliases are friendlier
//! spellings callers use; every alias target is one of the choices.

/// `KSampler.sampler_name` choices, in ComfyUI's order.
pub const SAMPLERS: &[&str] = &[
    "euler",
    "euler_cfg_pp",
    "euler_ancestral",
    "euler_ancestral_cfg_pp",
    "heun",
    "heunpp2",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde",
    "dpmpp_sde_gpu",
    "dpmpp_2m",
    "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun",
    "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu",
    "ddpm",
    "lcm",
    "ipndm",
    "ipndm_v",
    "deis",
    "res_multistep",
    "res_multistep_cfg_pp",
    "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp",
    "gradient_estimation",
    "gradient_estimation_cfg_pp",
    "er_sde",
    "seeds_2",
    "seeds_3",
    "sa_solver",
    "sa_solver_pece",
    "ddim",
    "uni_pc",
    "uni_pc_bh2",
];

/// Friendlier sampler spellings: `(alias, choice)`.
pub const SAMPLER_ALIASES: &[(&str, &str)] = &[
    ("dpm++", "dpmpp_2m"),
    ("dpm++_sde", "dpmpp_sde"),
    ("dpm++_2m_sde", "dpmpp_2m_sde"),
    ("euler_a", "euler_ancestral"),
];

/// `KSampler.scheduler` choices, in ComfyUI's order.
pub const SCHEDULERS: &[&str] = &[
    "simple",
    "sgm_uniform",
    "karras",
    "exponential",
    "ddim_uniform",
    "beta",
    "normal",
    "linear_quadratic",
    "kl_optimal",
];

/// Folder name ComfyUI lists checkpoints under (`GET /models/checkpoints`).
pub const CHECKPOINT_FOLDER: &str = "checkpoints";
