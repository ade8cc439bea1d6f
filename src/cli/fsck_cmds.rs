//! `pixc fsck`: the integrity check of a run folder, a model folder or one checkpoint.

use crate::train::fsck;
use anyhow::Result;
use std::path::Path;

/// Prints one line per file (or one JSON object with `--json`); exit 1 when any file is
/// damaged, inconsistent or missing.
pub fn fsck(target: &Path, json: bool) -> Result<i32> {
    let r = fsck::fsck(target)?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("{r}");
    }
    Ok(if r.ok { 0 } else { 1 })
}
