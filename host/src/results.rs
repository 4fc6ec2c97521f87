//! The local file of an image of one of our jobs, as `comfyui://images/<prompt_id>/<file>`
//! names it: used to serve the image and to take it back as a later job's input.

use std::path::PathBuf;

use crate::error::AppError;
use crate::farm::Farm;

/// The local file of image `filename` of job `prompt_id` (one submitted through this server).
pub async fn image_path(farm: &Farm, prompt_id: &str, filename: &str) -> Result<PathBuf, AppError> {
    let job = farm
        .status(prompt_id)
        .await?
        .ok_or_else(|| AppError::UnknownJob(prompt_id.to_owned()))?;
    job.files
        .iter()
        .find(|f| f.filename == filename)
        .map(|f| f.path.clone())
        .ok_or_else(|| AppError::UnknownImage {
            prompt_id: prompt_id.to_owned(),
            filename: filename.to_owned(),
            available: job.files.iter().map(|f| f.filename.clone()).collect(),
        })
}
