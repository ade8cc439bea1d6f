//! Where a training run lives: the default run folder `runs/<model>` (made unique for a
//! new run), `pixc train --resume RUN`, where the run folder stands in for the spec, and
//! the lock that lets one `pixc train` at a time write a run folder.

use crate::usage::usage;
use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock file of a run folder. The lock is the OS's advisory file lock on it
/// (`File::try_lock`), not the file's existence, so it is released when the training
/// ends however it ends (a crash or `kill -9` included) and a stale file blocks nothing.
/// Its text says who holds it, for the error message of the next one.
pub const LOCK_FILE: &str = "train.lock";

/// Held by the `pixc train` writing a run folder, for as long as it lives.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the lock of `run` (an existing folder), or says which process holds it.
    /// Two trainings writing one folder would interleave their checkpoints and metrics.
    pub fn acquire(run: &Path) -> Result<RunLock> {
        let path = run.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another process".to_string()
                } else {
                    format!("another process ({holder})")
                };
                bail!(
                    "{} is being trained by {who}; two trainings must not write one run folder. Wait for it to end, stop it (Ctrl-C or `kill PID`: it saves and exits), or give another --out",
                    run.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        // Who holds it, for the message above; a failure here loses nothing.
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let _ = file.set_len(0).and_then(|()| {
            write!(
                file,
                "pixc train, pid {}, since {}",
                std::process::id(),
                crate::util::utc_timestamp(since)
            )
        });
        Ok(RunLock { _file: file })
    }
}

/// Whether a `pixc train` holds the lock of `run` now.
pub fn is_locked(run: &Path) -> bool {
    match File::open(run.join(LOCK_FILE)) {
        Ok(f) => matches!(f.try_lock(), Err(TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

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
    fn one_lock_holder_at_a_time_and_released_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path();
        assert!(!is_locked(run));
        let lock = RunLock::acquire(run).unwrap();
        assert!(is_locked(run));
        // A second holder (here, a second open file of this process) is refused, and told
        // who holds it.
        let e = RunLock::acquire(run).unwrap_err().to_string();
        assert!(
            e.contains("being trained by another process (pixc train, pid"),
            "{e}"
        );
        drop(lock);
        assert!(!is_locked(run));
        // The file stays; it does not block a new holder.
        assert!(run.join(LOCK_FILE).is_file());
        RunLock::acquire(run).unwrap();
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
