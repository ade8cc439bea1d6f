//! Small shared helpers: atomic file writes, the scoped-thread fan-out.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

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
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
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
