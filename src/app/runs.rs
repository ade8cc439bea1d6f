//! `pixc runs [DIR]`: the runs under a folder side by side (model, steps, best validation
//! NLL, test NLL when scored, wall time, status), read from each run's own files; and the
//! record `pixc eval` leaves of a full-split score (`eval_valid.json`, `eval_test.json`).

use crate::train::{checkpoint::RunState, EvalReport};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// One run folder as `pixc runs` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunRow {
    pub run: String,
    pub model: Option<String>,
    pub step: Option<u64>,
    /// Best validation NLL in `unit` (as the run's metrics.jsonl last recorded it; a
    /// multi-scale run: of the whole image, its two parts' best together).
    #[serde(rename = "best_valid_nll")]
    pub best_valid: Option<f64>,
    /// Test NLL in `unit`, when `pixc eval --split test` scored the whole split.
    #[serde(rename = "test_nll")]
    pub test: Option<f64>,
    pub unit: Option<String>,
    pub wall_seconds: Option<f64>,
    /// `running` (a `pixc train` holds the folder's lock now), `done` (the spec's steps
    /// reached), `stopped` (fewer), `ended` (no step limit in the spec: time or epochs),
    /// `no checkpoint`, or `unreadable`.
    pub status: String,
}

/// The file a full-split score of `split` is kept in.
pub fn eval_record_path(run: &Path, split: &str) -> PathBuf {
    run.join(format!("eval_{split}.json"))
}

/// Keeps `r` (a score of a whole split) in the run folder for `pixc runs`.
pub fn record_eval(run: &Path, r: &EvalReport) -> Result<()> {
    let path = eval_record_path(run, &r.split);
    let text = serde_json::to_string(r)?;
    crate::util::write_atomic(&path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The run folders directly under `dir` (those with a spec.yaml), sorted by name.
pub fn list_runs(dir: &Path) -> Result<Vec<RunRow>> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "cannot read {}: give the folder your runs are in (default `runs`)",
            dir.display()
        )
    })?;
    let mut runs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("spec.yaml").is_file())
        .collect();
    runs.sort();
    Ok(runs.iter().map(|r| row(r)).collect())
}

fn row(run: &Path) -> RunRow {
    let spec = crate::train::checkpoint::load_spec(run).ok();
    let state: Option<RunState> = std::fs::read_to_string(run.join("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    // The last metrics record holds the best validation NLL in the reported unit.
    let last: Option<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        });
    let test: Option<EvalRecord> = std::fs::read_to_string(eval_record_path(run, "test"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let mut status = match (&spec, &state) {
        _ if crate::train::run_dir::is_locked(run) => "running".to_string(),
        (None, _) => "unreadable".to_string(),
        (Some(_), None) => "no checkpoint".to_string(),
        (Some((s, _)), Some(st)) => match s.train.as_ref().and_then(|t| t.steps) {
            Some(max) if st.step >= max => "done".into(),
            Some(_) => "stopped".into(),
            None => "ended".into(),
        },
    };
    let mut best_valid = last.as_ref().and_then(|v| v["best_valid_nll"].as_f64());
    let mut wall_seconds = state.as_ref().map(|s| s.wall_seconds);
    // A multi-scale run: the whole image's figures, both parts together (as `pixc eval`
    // reports it), once both have a validation; the wall time of both.
    if let Some((_, m)) = &spec {
        if let Some(small) = m.small() {
            let part = row(&run.join("small"));
            let (d_small, d_rest) = (small.graph().image.dims(), m.graph().image.scored_dims());
            best_valid = match (
                part.best_valid,
                best_valid,
                last.as_ref().and_then(|v| v["unit"].as_str()),
            ) {
                // Nats per image add; bits per sub-pixel average over the sub-pixels.
                (Some(a), Some(b), Some("nats/image")) => Some(a + b),
                (Some(a), Some(b), Some(_)) => {
                    Some((a * d_small as f64 + b * d_rest as f64) / (d_small + d_rest) as f64)
                }
                _ => None,
            };
            wall_seconds = match (part.wall_seconds, wall_seconds) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            // Its first part trains in small/, under that folder's lock.
            if part.status == "running" {
                status = part.status;
            }
        }
    }
    RunRow {
        run: run.display().to_string(),
        model: spec.as_ref().map(|(_, m)| m.graph().name.clone()),
        step: state.as_ref().map(|s| s.step),
        best_valid,
        test: test.as_ref().map(|t| t.nll),
        unit: last
            .as_ref()
            .and_then(|v| v["unit"].as_str().map(String::from))
            .or_else(|| test.as_ref().map(|t| t.unit.clone())),
        wall_seconds,
        status,
    }
}

/// What `pixc runs` reads back of an `eval_test.json`.
#[derive(serde::Deserialize)]
struct EvalRecord {
    nll: f64,
    unit: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::run_dir::RunLock;

    #[test]
    fn a_run_is_running_while_its_lock_is_held_or_its_small_parts_is() {
        let tmp = tempfile::tempdir().unwrap();
        let (one, multi) = (tmp.path().join("one"), tmp.path().join("multi"));
        std::fs::create_dir_all(&one).unwrap();
        std::fs::create_dir_all(multi.join("small")).unwrap();
        std::fs::copy("examples/tiny.yaml", one.join("spec.yaml")).unwrap();
        std::fs::copy(
            "specs/diag_bilstm_7_mnist_multiscale.yaml",
            multi.join("spec.yaml"),
        )
        .unwrap();
        let status = || -> Vec<String> {
            let rows = list_runs(tmp.path()).unwrap();
            rows.into_iter().map(|r| r.status).collect()
        };
        assert_eq!(status(), ["no checkpoint", "no checkpoint"]);
        let a = RunLock::acquire(&one).unwrap();
        let b = RunLock::acquire(&multi.join("small")).unwrap();
        // Sorted by name: multi, one.
        assert_eq!(status(), ["running", "running"]);
        drop((a, b));
        assert_eq!(status(), ["no checkpoint", "no checkpoint"]);
    }
}
