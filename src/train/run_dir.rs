//! Where a training run lives: the default run folder `runs/<model>` (made unique for a
//! new run), and `pixc train --resume RUN`, where the run folder stands in for the spec.

use crate::usage::usage;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Folder the default run folders go in.
pub const RUNS: &str = "runs";

/// The spec to compile and the run folder implied by what `pixc train` was given: a spec
/// file, or (with `resume`) a run folder, whose `spec.yaml` is then the spec and which is
/// the run folder unless `out` names another.
pub fn locate(
    spec_or_run: &Path,
    out: Option<&Path>,
    resume: bool,
) -> Result<(PathBuf, Option<PathBuf>)> {
    if !spec_or_run.is_dir() {
        return Ok((spec_or_run.to_path_buf(), out.map(Path::to_path_buf)));
    }
    let d = spec_or_run.display();
    let spec = spec_or_run.join("spec.yaml");
    if !spec.is_file() {
        return Err(usage(format!(
            "{d} is a folder without spec.yaml, so neither a spec nor a run folder; give a spec file (.yaml or .pixc)"
        )));
    }
    if !resume {
        return Err(usage(format!(
            "{d} is a run folder; continue it with `pixc train --resume {d}`, or give a spec file to start a new run"
        )));
    }
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| spec_or_run.to_path_buf());
    Ok((spec, Some(out)))
}

/// The default run folder of model `name` under `runs`: `runs/<name>` when resuming;
/// for a new run the first of `runs/<name>`, `runs/<name>-2`, `runs/<name>-3`, ... that
/// does not exist yet, so an earlier run is never touched.
pub fn default_out(runs: &Path, name: &str, resume: bool) -> PathBuf {
    let base = runs.join(name);
    if resume || !base.exists() {
        return base;
    }
    (2u64..)
        .map(|i| runs.join(format!("{name}-{i}")))
        .find(|p| !p.exists())
        .unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_run_never_reuses_a_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let runs = tmp.path();
        assert_eq!(default_out(runs, "m", false), runs.join("m"));
        std::fs::create_dir_all(runs.join("m")).unwrap();
        assert_eq!(default_out(runs, "m", false), runs.join("m-2"));
        assert_eq!(default_out(runs, "m", true), runs.join("m"));
        std::fs::create_dir_all(runs.join("m-2")).unwrap();
        assert_eq!(default_out(runs, "m", false), runs.join("m-3"));
    }

    #[test]
    fn a_run_folder_stands_in_for_the_spec_only_when_resuming() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("r");
        std::fs::create_dir_all(&run).unwrap();
        // No spec.yaml: neither a spec nor a run.
        let e = locate(&run, None, true).unwrap_err();
        assert!(crate::usage::is_usage(&e) && e.to_string().contains("without spec.yaml"));
        std::fs::write(run.join("spec.yaml"), "model: m\n").unwrap();
        let e = locate(&run, None, false).unwrap_err();
        assert!(e.to_string().contains("--resume"), "{e}");
        let (spec, out) = locate(&run, None, true).unwrap();
        assert_eq!((spec, out), (run.join("spec.yaml"), Some(run.clone())));
    }
}
