//! What a stopped or failed training says: which checkpoint is kept, and how to go on.
//!
//! These messages are read at the worst moment, so each names the step of the checkpoint
//! that is really on disk (`RunState::saved_step`; 0 means none was saved yet) and gives a
//! command that works as printed.

use super::checkpoint::RunState;
use crate::util::{WriteError, WritePhase};
use std::path::Path;

/// The command that continues the run in `out`. The run's own `spec.yaml` holds the
/// effective `train:` section (overrides applied), so it resumes exactly this run;
/// `--minutes` is not in it and is repeated.
pub fn resume_command(out: &Path, minutes: Option<f64>) -> String {
    let mut c = format!(
        "pixc train {} --out {} --resume",
        crate::shell::quote(&out.join("spec.yaml")),
        crate::shell::quote(out)
    );
    if let Some(m) = minutes {
        c.push_str(&format!(" --minutes {m}"));
    }
    c
}

/// The command that starts the run in `out` again (nothing was saved, so the folder can
/// be reused).
fn restart_command(out: &Path, minutes: Option<f64>) -> String {
    let mut c = format!(
        "pixc train {} --out {}",
        crate::shell::quote(&out.join("spec.yaml")),
        crate::shell::quote(out)
    );
    if let Some(m) = minutes {
        c.push_str(&format!(" --minutes {m}"));
    }
    c
}

/// "the checkpoint of step N in RUN (last.safetensors ...)" for the checkpoint `state`
/// describes.
fn kept(out: &Path, state: &RunState) -> String {
    let mut s = format!(
        "the checkpoint of step {} in {} (last.safetensors, last.optim.safetensors",
        state.saved_step,
        out.display()
    );
    if state.best_valid.is_some() && state.best_step <= state.saved_step {
        s.push_str(&format!("; best.safetensors is step {}", state.best_step));
    }
    s.push(')');
    s
}

/// The error of a non-finite training loss at `step`.
pub fn nan_stop(
    loss: f64,
    step: u64,
    out: &Path,
    state: &RunState,
    valid_every: u64,
    clip: Option<f64>,
    minutes: Option<f64>,
) -> String {
    let head = format!("the training loss became {loss} at step {step}; stopping");
    let fix = match clip {
        None => "Try a lower learning rate (--lr) or gradient clipping (`clip:` in the spec)",
        Some(_) => "Try a lower learning rate (--lr)",
    };
    if state.saved_step == 0 {
        format!(
            "{head}. No checkpoint was saved yet: the first is written at the first validation (step {valid_every}), so {} holds none. {fix}, and validate earlier (--valid-every N) to keep a good checkpoint sooner; start again with: {} --lr LR",
            out.display(),
            restart_command(out, minutes)
        )
    } else {
        format!(
            "{head}. The last good checkpoint is kept: {}. {fix}; continue from it with: {} --lr LR",
            kept(out, state),
            resume_command(out, minutes)
        )
    }
}

/// The error of a checkpoint save at `step` that failed. `before` is the run's state
/// before the save (what is on disk when nothing was replaced).
pub fn save_failed(
    e: &anyhow::Error,
    step: u64,
    out: &Path,
    before: &RunState,
    minutes: Option<f64>,
) -> String {
    let head = format!("cannot save the checkpoint of step {step}: {e:#}");
    let hint = match e.downcast_ref::<WriteError>().map(|w| w.source.kind()) {
        Some(std::io::ErrorKind::StorageFull) => "free some disk space",
        Some(std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem) => {
            "make the folder writable"
        }
        _ => "fix the cause",
    };
    if let Some(w) = e.downcast_ref::<WriteError>() {
        if w.phase == WritePhase::Replacing {
            let names: Vec<String> = w.replaced.iter().map(|p| p.display().to_string()).collect();
            return format!(
                "{head}. {} already hold step {step}, the other files an earlier step: run `pixc fsck {}` to see which files are intact",
                names.join(", "),
                out.display()
            );
        }
    }
    if before.saved_step == 0 {
        format!(
            "{head}. No earlier checkpoint was saved, so nothing is lost but the training; {hint}, then start again with: {}",
            restart_command(out, minutes)
        )
    } else {
        format!(
            "{head}. Nothing was replaced: {} is intact; {hint}, then continue with: {}",
            kept(out, before),
            resume_command(out, minutes)
        )
    }
}

/// The error of a write after the checkpoint of `state.saved_step` was saved.
pub fn append_failed(
    e: &anyhow::Error,
    file: &Path,
    out: &Path,
    state: &RunState,
    minutes: Option<f64>,
) -> String {
    format!(
        "cannot write {} at step {}: {e:#}. The checkpoint was saved before it: {} is intact; continue with: {}",
        file.display(),
        state.step,
        kept(out, state),
        resume_command(out, minutes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn failure(phase: WritePhase, replaced: Vec<PathBuf>) -> anyhow::Error {
        anyhow::Error::new(WriteError {
            path: PathBuf::from("run/last.safetensors"),
            phase,
            replaced,
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        })
    }

    #[test]
    fn a_failed_save_says_what_is_on_disk() {
        let out = Path::new("run");
        let mut before = RunState::new("k");
        // Nothing saved before: nothing to resume from.
        let m = save_failed(&failure(WritePhase::Writing, vec![]), 2, out, &before, None);
        assert!(
            m.contains("run/last.safetensors") && m.contains("step 2"),
            "{m}"
        );
        assert!(
            m.contains("free some disk space") && !m.contains("--resume"),
            "{m}"
        );
        // An earlier checkpoint: it is named, with the command that continues from it.
        before.saved_step = 4;
        before.best_step = 2;
        before.best_valid = Some(1.0);
        let m = save_failed(&failure(WritePhase::Writing, vec![]), 6, out, &before, None);
        assert!(
            m.contains("checkpoint of step 4") && m.contains("is step 2"),
            "{m}"
        );
        assert!(
            m.ends_with("pixc train run/spec.yaml --out run --resume"),
            "{m}"
        );
        // Some files already replaced: no claim that the old checkpoint is intact.
        let replaced = vec![PathBuf::from("run/last.optim.safetensors")];
        let m = save_failed(
            &failure(WritePhase::Replacing, replaced),
            6,
            out,
            &before,
            None,
        );
        assert!(
            m.contains("last.optim.safetensors") && m.contains("pixc fsck run"),
            "{m}"
        );
        assert!(!m.contains("intact;"), "{m}");
    }
}
