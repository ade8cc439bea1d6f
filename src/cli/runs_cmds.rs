//! `pixc runs` (a table of the runs in a folder) and `pixc completions` (shell completion
//! scripts from the clap definition).

use crate::app::runs;
use anyhow::Result;
use std::path::Path;

/// `pixc runs [DIR]`.
pub fn list(dir: &Path, json: bool) -> Result<i32> {
    let rows = runs::list_runs(dir)?;
    if json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(0);
    }
    if rows.is_empty() {
        eprintln!("no runs in {} (folders with a spec.yaml)", dir.display());
        return Ok(0);
    }
    let nll = |x: Option<f64>| x.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
    let mut table = vec![[
        "run".to_string(),
        "model".into(),
        "steps".into(),
        "best valid".into(),
        "test".into(),
        "unit".into(),
        "wall".into(),
        "status".into(),
    ]];
    for r in &rows {
        table.push([
            r.run.clone(),
            r.model.clone().unwrap_or_else(|| "-".into()),
            r.step.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            nll(r.best_valid),
            nll(r.test),
            r.unit.clone().unwrap_or_else(|| "-".into()),
            r.wall_seconds
                .map(crate::train::progress::human)
                .unwrap_or_else(|| "-".into()),
            r.status.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| {
            table
                .iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &table {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    Ok(0)
}

/// `pixc completions SHELL`: the completion script on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<i32> {
    let mut cmd = <super::Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "pixc", &mut std::io::stdout());
    Ok(0)
}
