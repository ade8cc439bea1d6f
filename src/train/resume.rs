//! What may change when a run is resumed. The architecture and what fixes the data order
//! and the optimizer state (optimizer, batch, seed, data) must not: a change is refused
//! with the difference between the run's `spec.yaml` and the new spec shown. Step limits,
//! the learning rate, clipping and the validation interval may: each change is appended
//! to the run's `history.jsonl` and `spec.yaml` then holds the new values, so the folder
//! records how the run was trained.

use crate::front::ast::{Spec, Train};
use crate::ir::validate::Model;
use crate::usage::usage;
use anyhow::{Context, Result};
use std::path::Path;

/// One setting that changed: its key, the run's value and the new one (as spec text).
pub type Change = (&'static str, String, String);

/// Compares the run in `out` (its `spec.yaml`) with the spec it is resumed with
/// (`new_text`, canonical YAML with the effective `train:` section). Refuses a different
/// model, optimizer, batch, seed or data with a unified diff; returns the settings that
/// changed. A run without a readable spec.yaml returns no changes (the checkpoint checks
/// still apply).
pub fn compare(out: &Path, new_text: &str, model: &Model) -> Result<Vec<Change>> {
    let path = out.join("spec.yaml");
    let Ok(old_text) = std::fs::read_to_string(&path) else {
        return Ok(Vec::new());
    };
    let name = path.display().to_string();
    let Ok((old_spec, old_model, _)) = crate::compile_bytes(
        &name,
        old_text.as_bytes(),
        crate::ir::validate::Options::default(),
    ) else {
        return Ok(Vec::new());
    };
    let old_t = old_spec.train.clone().unwrap_or_default();
    let new_spec = crate::front::parse(new_text, crate::front::Syntax::Yaml)
        .map_err(|_| anyhow::anyhow!("the resumed spec does not read back"))?;
    let new_t = new_spec.train.clone().unwrap_or_default();
    let same_model = crate::ir::fingerprint::fingerprint(&old_model)
        == crate::ir::fingerprint::fingerprint(model);
    let fixed = fixed_changes(&old_t, &new_t);
    if !same_model || !fixed.is_empty() {
        let what = match (same_model, fixed.len()) {
            (false, _) => "its model differs".to_string(),
            (true, 1) => format!("its `{}` differs", fixed[0]),
            (true, _) => format!("its `{}` differ", fixed.join("`, `")),
        };
        let diff = similar::TextDiff::from_lines(old_text.as_str(), new_text)
            .unified_diff()
            .context_radius(2)
            .header(&format!("{name} (the run)"), "the spec given (now)")
            .to_string();
        return Err(usage(format!(
            "this run was trained from a different spec: {what}; resume with the run's own spec (`pixc train --resume {}`; step limits, lr, clip and valid_every may change) or start a new run\n{diff}",
            out.display()
        )));
    }
    Ok(setting_changes(&old_t, &new_t))
}

/// The settings that fix the data order and optimizer state and differ.
fn fixed_changes(a: &Train, b: &Train) -> Vec<&'static str> {
    let mut v = Vec::new();
    if a.optimizer != b.optimizer {
        v.push("optimizer");
    }
    if a.batch != b.batch {
        v.push("batch");
    }
    if a.seed != b.seed {
        v.push("seed");
    }
    if a.data != b.data {
        v.push("data");
    }
    v
}

fn opt<T: ToString>(x: Option<T>) -> String {
    x.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
}

/// The allowed settings that differ, old and new.
fn setting_changes(a: &Train, b: &Train) -> Vec<Change> {
    let mut v = Vec::new();
    let mut push = |k: &'static str, x: String, y: String| {
        if x != y {
            v.push((k, x, y));
        }
    };
    push("lr", a.lr.to_string(), b.lr.to_string());
    push("steps", opt(a.steps), opt(b.steps));
    push("epochs", opt(a.epochs), opt(b.epochs));
    push("clip", opt(a.clip), opt(b.clip));
    push(
        "valid_every",
        a.valid_every.to_string(),
        b.valid_every.to_string(),
    );
    v
}

/// Records `changes` made when resuming at `step`: one line appended to
/// `history.jsonl`, then the new spec written as the run's `spec.yaml`.
pub fn record(out: &Path, step: u64, changes: &[Change], new_spec: &Spec) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let changed: serde_json::Map<String, serde_json::Value> = changes
        .iter()
        .map(|(k, a, b)| (k.to_string(), serde_json::json!({"was": a, "now": b})))
        .collect();
    let line = serde_json::json!({"resumed_at_step": step, "changed": changed});
    let hist = out.join("history.jsonl");
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&hist)
        .with_context(|| format!("cannot write {}", hist.display()))?;
    writeln!(f, "{line}").with_context(|| format!("cannot write {}", hist.display()))?;
    let text = crate::front::fmt::to_yaml(new_spec);
    crate::util::write_atomic(&out.join("spec.yaml"), text.as_bytes())
        .with_context(|| format!("cannot write {}", out.join("spec.yaml").display()))?;
    Ok(())
}
