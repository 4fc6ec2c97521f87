//! Which checkpoint a graph loads.
//!
//! Rule: a checkpoint the caller names is used as given when the host knows no models
//! (offline), and must be one of the installed ones otherwise. Without a name, the first
//! installed checkpoint is used; with none installed the build fails with a message that
//! says how to fix it. The host's list order is kept, so the choice is deterministic.

use crate::comfyui::workflow::types::{BuildError, FieldError};
use crate::params::CHECKPOINT;

/// Picks the checkpoint for a build from the caller's request and the installed models.
pub fn choose(requested: Option<&str>, installed: &[String]) -> Result<String, BuildError> {
    match requested {
        Some(name) if installed.is_empty() || installed.iter().any(|m| m == name) => {
            Ok(name.to_string())
        }
        Some(name) => Err(BuildError::InvalidParams(vec![FieldError {
            param: CHECKPOINT.name.to_string(),
            message: format!(
                "checkpoint `{name}` is not installed in ComfyUI; installed checkpoints: {}",
                installed.join(", ")
            ),
        }])),
        None => installed.first().cloned().ok_or_else(|| {
            BuildError::Failed(
                "no checkpoint installed in ComfyUI (models/checkpoints is empty); \
                 install one or pass `checkpoint`"
                    .to_string(),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn first_installed_is_the_default() {
        let got = choose(None, &models(&["b.safetensors", "a.safetensors"]));
        assert!(matches!(got, Ok(ref n) if n == "b.safetensors"), "{got:?}");
    }

    #[test]
    fn none_installed_and_none_requested_fails_with_a_fix() {
        match choose(None, &[]) {
            Err(BuildError::Failed(msg)) => {
                assert!(msg.contains("models/checkpoints is empty"), "{msg}");
                assert!(msg.contains("pass `checkpoint`"), "{msg}");
            }
            other => panic!("expected failed, got {other:?}"),
        }
    }

    #[test]
    fn requested_and_installed_is_used() {
        let got = choose(Some("a.ckpt"), &models(&["b.ckpt", "a.ckpt"]));
        assert!(matches!(got, Ok(ref n) if n == "a.ckpt"), "{got:?}");
    }

    #[test]
    fn requested_is_trusted_when_the_host_knows_no_models() {
        let got = choose(Some("x.safetensors"), &[]);
        assert!(matches!(got, Ok(ref n) if n == "x.safetensors"), "{got:?}");
    }

    #[test]
    fn requested_but_not_installed_lists_the_installed_ones() {
        match choose(Some("missing.ckpt"), &models(&["a.ckpt", "b.ckpt"])) {
            Err(BuildError::InvalidParams(errors)) => {
                assert_eq!(errors.len(), 1);
                assert_eq!(errors[0].param, "checkpoint");
                assert!(
                    errors[0].message.contains("missing.ckpt"),
                    "{}",
                    errors[0].message
                );
                assert!(
                    errors[0].message.contains("a.ckpt, b.ckpt"),
                    "{}",
                    errors[0].message
                );
            }
            other => panic!("expected invalid-params, got {other:?}"),
        }
    }
}
