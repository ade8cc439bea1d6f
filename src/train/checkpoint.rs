//! Run-folder checkpoints: atomic writes, consistency checks, clear errors on corruption.

use super::optim::Optimizer;
use crate::backend::torch::TorchModel;
use crate::front::ast::Spec;
use crate::ir::validate::Model;
use crate::util::write_files_atomic;
use crate::weights::{Tensor as WTensor, Weights};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::Device;

/// `state.json`: where a run stands. Written last, after the files it refers to.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RunState {
    pub pixc_version: String,
    pub spec_sha256: String,
    pub step: u64,
    /// The step of the checkpoint on disk (`last.safetensors`).
    pub saved_step: u64,
    pub best_valid: Option<f64>,
    pub best_step: u64,
    pub wall_seconds: f64,
    pub optimizer_t: u64,
    #[serde(skip)]
    pub wall_at_last_save: f64,
}

impl RunState {
    /// `key`: what must stay the same for the run to be resumed (see `train::resume_key`).
    pub fn new(key: &str) -> RunState {
        RunState {
            pixc_version: env!("CARGO_PKG_VERSION").into(),
            spec_sha256: sha256(key),
            step: 0,
            saved_step: 0,
            best_valid: None,
            best_step: 0,
            wall_seconds: 0.0,
            optimizer_t: 0,
            wall_at_last_save: 0.0,
        }
    }
}

pub fn sha256(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn meta(step: u64, kind: &str) -> HashMap<String, String> {
    HashMap::from([
        ("step".to_string(), step.to_string()),
        ("kind".to_string(), kind.to_string()),
        (
            "pixc_version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ])
}

/// Saves weights, optimizer state and (last) state.json; copies the weights to
/// best.safetensors when `best`. Every file is written in full before any is replaced
/// (`util::write_files_atomic`), so a failed save (a full disk) leaves the previous
/// checkpoint whole; `state` changes only when the save succeeded. Each safetensors file
/// carries its SHA-256 (`crate::integrity`): one pass over its bytes.
pub fn save(
    dir: &Path,
    tm: &TorchModel,
    opt: &Optimizer,
    state: &mut RunState,
    best: bool,
) -> Result<()> {
    let w = tm.to_weights();
    let wbytes = w.to_safetensors(Some(meta(state.step, "weights")));
    let names = tm.parameter_names();
    let mut ot = BTreeMap::new();
    for (name, t) in opt.state(&names) {
        ot.insert(
            name,
            WTensor {
                shape: t.size().iter().map(|&d| d as usize).collect(),
                data: crate::backend::torch::to_vec_f32(&t),
            },
        );
    }
    let mut om = meta(state.step, "optimizer");
    om.insert("t".into(), opt.t.to_string());
    let obytes = Weights { tensors: ot }.to_safetensors(Some(om));
    let mut next = state.clone();
    next.saved_step = state.step;
    next.optimizer_t = opt.t;
    let js = serde_json::to_vec_pretty(&next)?;
    let (op, lp, bp, sp) = (
        dir.join("last.optim.safetensors"),
        dir.join("last.safetensors"),
        dir.join("best.safetensors"),
        dir.join("state.json"),
    );
    let mut files: Vec<(&Path, &[u8])> = vec![(&op, &obytes), (&lp, &wbytes)];
    if best {
        files.push((&bp, &wbytes));
    }
    files.push((&sp, &js));
    write_files_atomic(&files)?;
    *state = next;
    Ok(())
}

/// Loads a safetensors file pixc wrote, checking its checksum; a file from before pixc
/// recorded checksums loads with a one-line note.
pub fn load_checked_file(path: &Path) -> Result<(Weights, HashMap<String, String>)> {
    let (w, meta) = Weights::load(path)?;
    if !Weights::has_checksum(&meta) {
        eprintln!(
            "note: {} records no checksum (written before pixc recorded them); loaded without an integrity check",
            path.display()
        );
    }
    Ok((w, meta))
}

/// Why `dir` is not a run folder that has `file`, and what to give instead.
fn not_a_run(dir: &Path, file: &str) -> String {
    let d = dir.display();
    let ext = dir.extension().and_then(|e| e.to_str()).unwrap_or("");
    if dir.is_file() {
        let instead = match ext {
            "yaml" | "yml" | "pixc" => " (a spec is trained first: `pixc train SPEC --out DIR`)",
            "onnx" => " (an ONNX model is scored with `pixc eval --onnx FILE`)",
            _ => "",
        };
        format!(
            "{d} is a file, not a run folder: give the folder `pixc train --out DIR` made{instead}"
        )
    } else if !dir.exists() {
        format!("{d} does not exist: give a run folder made by `pixc train --out DIR` (`pixc runs` lists them)")
    } else {
        format!("{d} has no {file}: is it a pixc run folder (made by `pixc train --out DIR`)?")
    }
}

fn read_state(dir: &Path) -> Result<RunState> {
    let p = dir.join("state.json");
    let bytes = std::fs::read(&p).with_context(|| not_a_run(dir, "state.json"))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is corrupt", p.display()))
}

/// Reads and compiles the run's own spec copy.
pub fn load_spec(dir: &Path) -> Result<(Spec, Model)> {
    let p = dir.join("spec.yaml");
    if !p.exists() {
        bail!(not_a_run(dir, "spec.yaml"));
    }
    let (spec, model, _) = crate::compile_file(&p)?;
    Ok((spec, model))
}

fn load_weights_checked(
    path: &Path,
    model: &Model,
    want_step: Option<u64>,
) -> Result<(Weights, u64)> {
    if !path.exists() {
        bail!("{} is missing: the run has no checkpoint yet (train at least until the first validation)", path.display());
    }
    let (w, meta) = load_checked_file(path)?;
    w.check_against(model).map_err(|reason| {
        anyhow::anyhow!("{} does not match the run's spec: {reason}", path.display())
    })?;
    let step: u64 = meta.get("step").and_then(|s| s.parse().ok()).unwrap_or(0);
    if let Some(s) = want_step {
        if s != step {
            bail!(
                "{} is from step {step} but state.json says {s}: the run folder is inconsistent",
                path.display()
            );
        }
    }
    Ok((w, step))
}

/// Loads the last checkpoint to resume: model, state and optimizer.
pub fn load_last(
    dir: &Path,
    model: &Model,
    device: Device,
) -> Result<(TorchModel, RunState, Optimizer)> {
    let state = read_state(dir)?;
    let (w, _) =
        load_weights_checked(&dir.join("last.safetensors"), model, Some(state.saved_step))?;
    let tm = TorchModel::new(model, &w, device)?;
    let op = dir.join("last.optim.safetensors");
    let (ow, om) = load_checked_file(&op)?;
    // The weights and the optimizer state must be of one save: `save` replaces them one
    // after the other, and a resume from a mixed pair would not be the run it claims.
    let ostep: Option<u64> = om.get("step").and_then(|s| s.parse().ok());
    if ostep.is_some_and(|s| s != state.saved_step) {
        bail!(
            "{} is from step {} but state.json and last.safetensors say {}: the run folder is inconsistent (`pixc fsck {}` checks each file)",
            op.display(),
            ostep.unwrap_or(0),
            state.saved_step,
            dir.display()
        );
    }
    let spec = dir.join("spec.yaml");
    let text = std::fs::read_to_string(&spec)
        .with_context(|| format!("cannot read {}", spec.display()))?;
    let (s, _) = load_spec(dir)?;
    let t = s.train.unwrap_or_default();
    let mut opt = Optimizer::new(t.optimizer, t.lr, &tm.parameters());
    opt.t = om
        .get("t")
        .and_then(|s| s.parse().ok())
        .unwrap_or(state.optimizer_t);
    for (name, (m, v)) in tm.parameter_names().iter().zip(opt.moments()) {
        for (prefix, mut dst) in [("m", m), ("v", v)] {
            let key = format!("{prefix}.{name}");
            let src = ow.tensors.get(&key).ok_or_else(|| {
                anyhow::anyhow!("{} lacks `{key}`: corrupt optimizer state", op.display())
            })?;
            let t = tch::Tensor::from_slice(&src.data)
                .reshape(dst.size())
                .to_device(device);
            tch::no_grad(|| dst.copy_(&t));
        }
    }
    let mut state = state;
    state.step = state.saved_step;
    let _ = text;
    Ok((tm, state, opt))
}

/// Loads the best checkpoint for evaluation / export / sampling.
pub fn load_best(dir: &Path, model: &Model, device: Device) -> Result<(TorchModel, u64, PathBuf)> {
    let p = dir.join("best.safetensors");
    let (w, step) = load_weights_checked(&p, model, None)?;
    Ok((TorchModel::new(model, &w, device)?, step, p))
}

/// Best weights without building a torch model (for ONNX export).
pub fn best_weights(dir: &Path, model: &Model) -> Result<(Weights, u64)> {
    load_weights_checked(&dir.join("best.safetensors"), model, None)
}

/// `metrics.jsonl`, appended one line per validation.
pub struct Metrics {
    file: std::fs::File,
}

impl Metrics {
    pub fn open(dir: &Path) -> Result<Metrics> {
        let p = dir.join("metrics.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .with_context(|| format!("cannot write {}", p.display()))?;
        Ok(Metrics { file })
    }
    pub fn append(&mut self, v: &serde_json::Value) -> Result<()> {
        writeln!(self.file, "{v}")?;
        self.file.flush()?;
        Ok(())
    }
}
