//! Small shared helpers: atomic file writes (one file, or a set replaced together), the
//! scoped-thread fan-out, where the source tree's files are.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file or folder of pixc's source tree (`python/pixc_ref.py`, `specs`, `data/mnist`,
/// `.venv/bin/python`): under the folder pixc was built in when that still holds it, else
/// under the current folder. So a binary copied to another machine together with the tree
/// (a GPU box without Rust, see `scripts/gpu-check`) finds them when run from the tree's root.
pub fn source_path(rel: &str) -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    if built.exists() {
        built
    } else {
        PathBuf::from(rel)
    }
}

/// Writes `bytes` to `path` atomically (temp file in the same folder, fsync, rename), so
/// readers and crashes never see a half-written file and the previous version survives
/// until the new one is complete.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = temp_path(&dir, &file_name);
    let res = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Runs `first` on the first item on the calling thread and `rest` on each other item on
/// a scoped thread of its own; the results in item order. `first` may hold what cannot
/// cross threads (a progress callback); the calling thread works instead of waiting.
pub fn fan_out<T: Send, R: Send>(
    items: Vec<T>,
    first: impl FnOnce(T) -> R,
    rest: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let rest = &rest;
    let mut items = items.into_iter();
    let Some(head) = items.next() else {
        return Vec::new();
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = items.map(|item| scope.spawn(move || rest(item))).collect();
        let mut out = Vec::with_capacity(handles.len() + 1);
        out.push(first(head));
        out.extend(
            handles
                .into_iter()
                .map(|h| h.join().expect("worker thread")),
        );
        out
    })
}

/// Runs `f` on each item in parallel (`fan_out` with the same function for all).
pub fn on_threads<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    fan_out(items, &f, &f)
}

/// The temp file `write_atomic` and `write_files_atomic` write beside `file_name` in `dir`.
/// The process id keeps two processes writing into one folder apart.
pub fn temp_path(dir: &Path, file_name: &str) -> PathBuf {
    dir.join(format!(".{file_name}.{}.tmp", std::process::id()))
}

/// Which phase of `write_files_atomic` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WritePhase {
    /// Writing a temp file: no file was replaced, every previous version is intact.
    Writing,
    /// Renaming a complete temp file over its target: the files before it were replaced.
    Replacing,
}

/// A failed `write_files_atomic`: the file, the phase and the OS error (its `source`, so
/// `{:#}` prints it once).
#[derive(Debug, thiserror::Error)]
#[error("cannot {} {}", match phase { WritePhase::Writing => "write", WritePhase::Replacing => "replace" }, path.display())]
pub struct WriteError {
    pub path: PathBuf,
    pub phase: WritePhase,
    /// Files already replaced by new versions (non-empty only when `Replacing`).
    pub replaced: Vec<PathBuf>,
    pub source: std::io::Error,
}

/// Writes several files so that a failure while writing them (a full disk, a read-only
/// folder) replaces none: each goes to a synced temp file beside it first, and the renames,
/// in the order given, start only when every temp file is complete. A failed write removes
/// the temp files. Put the file that commits the others (a run's `state.json`) last.
pub fn write_files_atomic(files: &[(&Path, &[u8])]) -> Result<(), WriteError> {
    let mut temps: Vec<PathBuf> = Vec::with_capacity(files.len());
    let fail = |path: &Path, phase, replaced, source| WriteError {
        path: path.to_path_buf(),
        phase,
        replaced,
        source,
    };
    for (path, bytes) in files {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = temp_path(&dir, &name);
        let res = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        // A failed create leaves no file of ours behind (it may be a directory in the way).
        if res.is_ok() || tmp.is_file() {
            temps.push(tmp);
        }
        if let Err(e) = res {
            for t in &temps {
                let _ = std::fs::remove_file(t);
            }
            return Err(fail(path, WritePhase::Writing, vec![], e));
        }
    }
    for (i, ((path, _), tmp)) in files.iter().zip(&temps).enumerate() {
        if let Err(e) = std::fs::rename(tmp, path) {
            for t in &temps[i..] {
                let _ = std::fs::remove_file(t);
            }
            let replaced = files[..i].iter().map(|(p, _)| p.to_path_buf()).collect();
            return Err(fail(path, WritePhase::Replacing, replaced, e));
        }
    }
    Ok(())
}

/// `secs` after the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC` (the proleptic Gregorian
/// calendar, from the day count by the civil-from-days algorithm).
pub fn utc_timestamp(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 0000-03-01, in 400-year eras of 146,097 days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3_600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_timestamps() {
        assert_eq!(utc_timestamp(0), "1970-01-01 00:00:00 UTC");
        // A leap day, and the turn of a year.
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_timestamp(1_798_761_599), "2026-12-31 23:59:59 UTC");
        assert_eq!(utc_timestamp(1_798_761_600), "2027-01-01 00:00:00 UTC");
    }

    #[test]
    fn a_failed_write_replaces_nothing_and_leaves_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        write_files_atomic(&[(&a, b"old a"), (&b, b"old b")]).unwrap();
        // A directory where b's temp file goes makes its write fail after a's succeeded.
        std::fs::create_dir(temp_path(d.path(), "b")).unwrap();
        let e = write_files_atomic(&[(&a, b"new a"), (&b, b"new b")]).unwrap_err();
        assert_eq!(
            (e.path.as_path(), e.phase),
            (b.as_path(), WritePhase::Writing)
        );
        assert_eq!(std::fs::read(&a).unwrap(), b"old a");
        assert_eq!(std::fs::read(&b).unwrap(), b"old b");
        assert!(!temp_path(d.path(), "a").exists());
    }

    #[test]
    fn a_failed_rename_says_which_files_were_replaced() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        // A non-empty directory named b cannot be replaced by a file.
        std::fs::create_dir_all(b.join("x")).unwrap();
        let e = write_files_atomic(&[(&a, b"new a"), (&b, b"new b")]).unwrap_err();
        assert_eq!(
            (e.path.as_path(), e.phase),
            (b.as_path(), WritePhase::Replacing)
        );
        assert_eq!(e.replaced, vec![a.clone()]);
        assert_eq!(std::fs::read(&a).unwrap(), b"new a");
        assert!(!temp_path(d.path(), "b").exists());
    }
}
