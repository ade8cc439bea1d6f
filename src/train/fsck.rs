//! `pixc fsck`: checks every file of a run folder, a model folder or one checkpoint, and
//! says for each whether it is intact and consistent with the others.
//!
//! A run folder (`pixc train --out`) has `state.json`; a model folder (shipped, or copied
//! out of a run) has `spec.yaml` and `best.safetensors` without it. Each safetensors file
//! is checked against its own checksum (`crate::integrity`), against the spec's parameter
//! names and shapes, and against the steps `state.json` records.

use super::checkpoint::RunState;
use crate::ir::validate::Model;
use crate::weights::Weights;
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// How one file fared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Intact (checksum verified, where the format has one) and consistent.
    Ok,
    /// Readable and consistent, but written before pixc recorded checksums.
    NoChecksum,
    /// Not a file pixc checks (images, ONNX files, leftovers).
    Unchecked,
    /// Damaged, inconsistent or missing.
    Error,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NoChecksum => "no-checksum",
            Status::Unchecked => "unchecked",
            Status::Error => "error",
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct FileReport {
    /// Path relative to the target folder.
    pub file: String,
    pub status: Status,
    pub detail: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct FsckReport {
    pub target: String,
    /// "run folder", "model folder" or "file".
    pub kind: String,
    pub files: Vec<FileReport>,
    /// No file has status `error`.
    pub ok: bool,
}

impl std::fmt::Display for FsckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "fsck {} ({})", self.target, self.kind)?;
        let w = self.files.iter().map(|r| r.file.len()).max().unwrap_or(0);
        for r in &self.files {
            writeln!(f, "  {:<11} {:<w$}  {}", r.status.label(), r.file, r.detail)?;
        }
        let bad = self
            .files
            .iter()
            .filter(|r| r.status == Status::Error)
            .count();
        if bad == 0 {
            write!(f, "all {} files intact", self.files.len())
        } else {
            write!(
                f,
                "{bad} of {} files damaged, inconsistent or missing",
                self.files.len()
            )
        }
    }
}

fn entry(file: &str, status: Status, detail: impl Into<String>) -> FileReport {
    FileReport {
        file: file.to_string(),
        status,
        detail: detail.into(),
    }
}

/// Every file under `dir`, relative, sorted.
fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for e in std::fs::read_dir(dir.join(&rel))? {
            let e = e?;
            let r = rel.join(e.file_name());
            if e.file_type()?.is_dir() {
                todo.push(r);
            } else {
                out.push(r);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Checks one safetensors file: checksum and parse, then its fit to the spec and state.json.
fn check_safetensors(
    path: &Path,
    name: &str,
    model: Option<&Model>,
    state: Option<&RunState>,
) -> FileReport {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return entry(name, Status::Error, format!("cannot read it: {e}")),
    };
    let (w, meta) = match Weights::from_safetensors(&bytes, name) {
        Ok(v) => v,
        Err(e) => return entry(name, Status::Error, e.to_string()),
    };
    let sealed = Weights::has_checksum(&meta);
    let step: Option<u64> = meta.get("step").and_then(|s| s.parse().ok());
    let optimizer = meta.get("kind").map(String::as_str) == Some("optimizer")
        || name.ends_with(".optim.safetensors");
    let mut what = format!(
        "{} of step {}, {} values",
        if optimizer {
            "optimizer state"
        } else {
            "weights"
        },
        step.map_or("?".to_string(), |s| s.to_string()),
        w.numel()
    );
    let problem = consistency(name, &w, &meta, step, optimizer, model, state);
    if let Some(p) = problem {
        return entry(name, Status::Error, format!("{what}: {p}"));
    }
    if sealed {
        what.push_str("; SHA-256 verified");
        entry(name, Status::Ok, what)
    } else {
        what.push_str("; no checksum (written before pixc recorded them)");
        entry(name, Status::NoChecksum, what)
    }
}

/// What makes a readable checkpoint unusable in its folder, if anything.
fn consistency(
    name: &str,
    w: &Weights,
    meta: &HashMap<String, String>,
    step: Option<u64>,
    optimizer: bool,
    model: Option<&Model>,
    state: Option<&RunState>,
) -> Option<String> {
    let file = Path::new(name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if optimizer {
        if let Some(m) = model {
            for id in m.graph().nodes() {
                for p in m.shapes().params(id) {
                    let key = crate::weights::param_key(id.index(), &p.name);
                    for k in [format!("m.{key}"), format!("v.{key}")] {
                        match w.tensors.get(&k) {
                            None => return Some(format!("`{k}` is missing")),
                            Some(t) if t.data.len() != p.numel() => {
                                return Some(format!(
                                    "`{k}` has {} values, the spec's parameter {}",
                                    t.data.len(),
                                    p.numel()
                                ))
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        if let (Some(s), "last.optim.safetensors") = (state, file.as_str()) {
            if step != Some(s.saved_step) {
                return Some(format!(
                    "state.json says the checkpoint is step {}",
                    s.saved_step
                ));
            }
            let t: Option<u64> = meta.get("t").and_then(|t| t.parse().ok());
            if t.is_some_and(|t| t != s.optimizer_t) {
                return Some(format!(
                    "its optimizer step count t is {}, state.json says {}",
                    t.unwrap_or(0),
                    s.optimizer_t
                ));
            }
        }
        return None;
    }
    if let Some(m) = model {
        if let Err(reason) = w.check_against(m) {
            return Some(format!("does not match spec.yaml: {reason}"));
        }
    }
    match (state, file.as_str()) {
        (Some(s), "last.safetensors") if step != Some(s.saved_step) => Some(format!(
            "state.json says the checkpoint is step {}",
            s.saved_step
        )),
        (Some(s), "best.safetensors") if s.best_valid.is_some() && step != Some(s.best_step) => {
            Some(format!("state.json says the best step is {}", s.best_step))
        }
        _ => None,
    }
}

/// Checks a run folder, a model folder or one `.safetensors` file.
pub fn fsck(target: &Path) -> Result<FsckReport> {
    if target.is_file() {
        if target.extension().and_then(|e| e.to_str()) != Some("safetensors") {
            bail!(
                "{} is not a .safetensors file: give a run folder, a model folder or a checkpoint",
                target.display()
            );
        }
        let name = target.display().to_string();
        let r = check_safetensors(target, &name, None, None);
        return Ok(FsckReport {
            target: name,
            kind: "file".into(),
            ok: r.status != Status::Error,
            files: vec![r],
        });
    }
    if !target.is_dir() {
        bail!(
            "{} does not exist: give a run folder, a model folder or a checkpoint",
            target.display()
        );
    }
    let files = list(target)?;
    let has = |n: &str| files.iter().any(|f| f == Path::new(n));
    if !has("spec.yaml")
        && !files
            .iter()
            .any(|f| f.to_string_lossy().ends_with(".safetensors"))
    {
        bail!(
            "{} holds no spec.yaml and no checkpoint: is it a pixc run folder (made by `pixc train --out DIR`) or model folder?",
            target.display()
        );
    }
    let mut out = Vec::new();
    let model = if has("spec.yaml") {
        match crate::compile_file(&target.join("spec.yaml")) {
            Ok((_, m, _)) => {
                out.push(entry(
                    "spec.yaml",
                    Status::Ok,
                    format!(
                        "model {}, {} parameters",
                        m.graph().name,
                        m.shapes().total_params()
                    ),
                ));
                Some(m)
            }
            Err(e) => {
                let first = e.rendered.lines().next().unwrap_or("").to_string();
                out.push(entry(
                    "spec.yaml",
                    Status::Error,
                    format!("does not compile: {first}"),
                ));
                None
            }
        }
    } else {
        out.push(entry(
            "spec.yaml",
            Status::Error,
            "missing: without it no checkpoint here can be loaded",
        ));
        None
    };
    let run = has("state.json");
    let state = if run {
        match std::fs::read(target.join("state.json"))
            .map_err(anyhow::Error::from)
            .and_then(|b| Ok(serde_json::from_slice::<RunState>(&b)?))
        {
            Ok(s) => {
                out.push(entry(
                    "state.json",
                    Status::Ok,
                    format!(
                        "step {}, checkpoint of step {}, best step {}",
                        s.step, s.saved_step, s.best_step
                    ),
                ));
                Some(s)
            }
            Err(e) => {
                out.push(entry(
                    "state.json",
                    Status::Error,
                    format!("unreadable: {e}"),
                ));
                None
            }
        }
    } else {
        None
    };
    let needed: &[&str] = if run {
        &[
            "last.safetensors",
            "last.optim.safetensors",
            "best.safetensors",
        ]
    } else {
        &["best.safetensors"]
    };
    for n in needed {
        if !has(n) {
            let why = if run {
                "missing: state.json refers to it"
            } else {
                "missing: eval, export and sample load it"
            };
            out.push(entry(n, Status::Error, why));
        }
    }
    // A multi-scale folder: its small model's part is a folder of its own, checked so.
    let multiscale = model.as_ref().is_some_and(|m| m.small().is_some());
    if multiscale {
        if target.join("small").is_dir() {
            let sub = fsck(&target.join("small"))?;
            for mut r in sub.files {
                r.file = format!("small/{}", r.file);
                out.push(r);
            }
        } else {
            out.push(entry(
                "small/",
                Status::Error,
                "missing: the multi-scale model's small model lives there",
            ));
        }
    }
    for rel in &files {
        if multiscale && rel.starts_with("small") {
            continue;
        }
        let name = rel.to_string_lossy().into_owned();
        let base = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == "spec.yaml" || name == "state.json" {
            continue;
        }
        let path = target.join(rel);
        let r = if base.starts_with('.') && base.ends_with(".tmp") {
            entry(
                &name,
                Status::Unchecked,
                "a temp file left by an interrupted write; safe to delete",
            )
        } else if base.ends_with(".safetensors") {
            check_safetensors(&path, &name, model.as_ref(), state.as_ref())
        } else if name == "metrics.jsonl" {
            check_metrics(&path, &name)
        } else if base == super::run_dir::LOCK_FILE {
            let folder = path.parent().unwrap_or(target);
            let detail = if super::run_dir::is_locked(folder) {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                format!(
                    "held by {}: a training is writing this folder now, so its files may change while they are checked",
                    holder.trim()
                )
            } else {
                "not held: no training is writing this folder".to_string()
            };
            entry(&name, Status::Unchecked, &detail)
        } else {
            entry(
                &name,
                Status::Unchecked,
                "pixc records no checksum for this kind of file",
            )
        };
        out.push(r);
    }
    Ok(FsckReport {
        target: target.display().to_string(),
        kind: if run { "run folder" } else { "model folder" }.into(),
        ok: out.iter().all(|r| r.status != Status::Error),
        files: out,
    })
}

/// `metrics.jsonl`: one JSON object per line.
fn check_metrics(path: &Path, name: &str) -> FileReport {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return entry(name, Status::Error, format!("cannot read it: {e}")),
    };
    for (i, line) in text.lines().enumerate() {
        if serde_json::from_str::<serde_json::Value>(line).is_err() {
            return entry(
                name,
                Status::Error,
                format!("line {} is not JSON (a write cut short?)", i + 1),
            );
        }
    }
    entry(
        name,
        Status::Ok,
        format!("{} validation records", text.lines().count()),
    )
}
