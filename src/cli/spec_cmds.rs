//! `pixc check`, `pixc graph` and `pixc fmt`: the spec-only commands.

use crate::front::{self, Syntax};
use crate::ir::dump;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// `pixc check PATH...`: one spec file prints its table (or IR, or JSON) as always;
/// several files or a folder print one line per spec. With --json, an invalid spec's
/// diagnostics are JSON objects (one a line) on stdout. Exit 2 when any spec is invalid.
pub fn check_many(paths: &[PathBuf], json: bool, ir: bool) -> Result<i32> {
    let specs = spec_paths(paths)?;
    let one = paths.len() == 1 && !paths[0].is_dir();
    if one && !json {
        return check(&specs[0], json, ir);
    }
    let mut invalid = 0;
    for path in &specs {
        let name = path.display().to_string();
        match crate::compile_file(path) {
            Ok((_, model, _)) if one => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&dump::check_json(&model))?
                );
            }
            Ok((_, model, _)) => {
                let (model_name, params) = (&model.graph().name, model.shapes().total_params());
                if json {
                    let line = serde_json::json!({"reason": "checked", "file": name, "model": model_name, "parameters": params});
                    println!("{line}");
                } else {
                    println!("ok  {name}  (model {model_name}, {params} parameters)");
                }
            }
            Err(e) => {
                invalid += 1;
                if json {
                    for d in spec_error_json(&name, path, &e) {
                        println!("{d}");
                    }
                } else {
                    eprint!("{}", e.rendered);
                }
            }
        }
    }
    if !one && !json {
        let n = specs.len();
        eprintln!(
            "{n} spec{}: {} valid, {invalid} invalid",
            if n == 1 { "" } else { "s" },
            n - invalid
        );
    }
    Ok(if invalid > 0 { 2 } else { 0 })
}

/// The diagnostics of a spec that failed as JSON; an error without a location (an
/// unreadable file) is one object with its message and no line.
fn spec_error_json(name: &str, path: &Path, e: &crate::SpecError) -> Vec<serde_json::Value> {
    if e.diagnostics.is_empty() {
        return vec![serde_json::json!({
            "reason": "diagnostic",
            "severity": "error",
            "file": name,
            "line": null,
            "column": null,
            "message": e.rendered.trim_end(),
            "help": null,
        })];
    }
    let bytes = std::fs::read(path).unwrap_or_default();
    crate::diag::to_json(name, &String::from_utf8_lossy(&bytes), &e.diagnostics)
}

/// The spec files named by `paths`: files as given, folders searched for `.yaml`, `.yml`
/// and `.pixc` specs (as `pixc snapshot` does).
fn spec_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut specs = Vec::new();
    for p in paths {
        let found =
            crate::snapshot::spec_files(p).with_context(|| format!("reading {}", p.display()))?;
        if found.is_empty() {
            anyhow::bail!(crate::usage::usage(format!(
                "{}: no .yaml, .yml or .pixc specs here",
                p.display()
            )));
        }
        specs.extend(found);
    }
    Ok(specs)
}

/// `pixc fmt PATH...`: one file as `fmt`; several files or a folder only with --check,
/// which reports each file not in canonical form (exit 1) or invalid (exit 2).
pub fn fmt_many(paths: &[PathBuf], to: Option<&str>, check: bool, write: bool) -> Result<i32> {
    if paths.len() == 1 && !paths[0].is_dir() {
        return fmt(&paths[0], to, check, write);
    }
    if !check {
        anyhow::bail!(crate::usage::usage(
            "several specs (or a folder) only with --check; convert or rewrite one file at a time"
        ));
    }
    let mut code = 0;
    for path in spec_paths(paths)? {
        let c = match fmt(&path, to, true, false) {
            Ok(c) => c,
            Err(e) => match e.downcast_ref::<crate::SpecError>() {
                Some(se) => {
                    eprint!("{}", se.rendered);
                    2
                }
                None => return Err(e),
            },
        };
        code = code.max(c);
    }
    Ok(code)
}

pub fn check(path: &Path, json: bool, ir: bool) -> Result<i32> {
    let (_, model, _) = crate::compile_file(path)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&dump::check_json(&model))?
        );
    } else if ir {
        print!("{}", dump::ir_text(&model));
    } else {
        print!("{}", dump::check_table(&model));
    }
    Ok(0)
}

pub fn graph(path: &Path) -> Result<i32> {
    let (_, model, _) = crate::compile_file(path)?;
    print!("{}", dump::dot(&model));
    Ok(0)
}

pub fn fmt(path: &Path, to: Option<&str>, check: bool, write: bool) -> Result<i32> {
    let name = path.display().to_string();
    let (_, _, text) = crate::compile_file(path)?;
    let from = Syntax::from_path(&name);
    let target = match to {
        Some("dsl") => Syntax::Dsl,
        Some(_) => Syntax::Yaml,
        None => from,
    };
    let out = front::fmt::format(&text, from, target).map_err(|d| crate::SpecError {
        rendered: crate::diag::render(&name, &text, &d),
        diagnostics: d,
    })?;
    if check {
        if target != from {
            anyhow::bail!(crate::usage::usage(
                "--check compares a file with its own syntax; drop --to"
            ));
        }
        if out == text {
            return Ok(0);
        }
        eprintln!("{name}: not in canonical form (run `pixc fmt {name} --write`)");
        return Ok(1);
    }
    if write {
        if target != from {
            anyhow::bail!(crate::usage::usage(
                "--write rewrites a file in its own syntax; drop --to"
            ));
        }
        crate::util::write_atomic(path, out.as_bytes())
            .with_context(|| format!("writing {name}"))?;
        return Ok(0);
    }
    print!("{out}");
    Ok(0)
}

/// `pixc schema`: the JSON Schema of the YAML spec, generated from the builder's tables.
pub fn schema() -> Result<i32> {
    print!("{}", front::schema::schema_text());
    Ok(0)
}

/// `pixc snapshot`: writes or compares the snapshot of each spec given (or found under a
/// folder). Exit 0 when all match (new ones written), 1 when one differs (its diff printed
/// and a `.snap.new` left for review), 2 when a spec is invalid (its diagnostics printed,
/// as by `pixc check`).
pub fn snapshot(paths: &[std::path::PathBuf], accept: bool, dir: Option<&Path>) -> Result<i32> {
    use crate::snapshot::{self as snap, Compared};
    let mut specs = Vec::new();
    for p in paths {
        let found = snap::spec_files(p).with_context(|| format!("reading {}", p.display()))?;
        if found.is_empty() {
            anyhow::bail!("{}: no .yaml, .yml or .pixc specs here", p.display());
        }
        specs.extend(found);
    }
    let (mut differ, mut invalid, mut same, mut written) = (0, 0, 0, 0);
    for spec_path in &specs {
        let name = spec_path.display().to_string();
        let model = match crate::compile_file(spec_path) {
            Ok((_, model, _)) => model,
            Err(e) => {
                eprint!("{}", e.rendered);
                invalid += 1;
                continue;
            }
        };
        let body = snap::body(&model);
        let path = snap::snap_path(spec_path, dir);
        let pending = snap::pending_path(&path);
        let shown = path.display();
        let old = match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {shown}")),
        };
        let text = snap::file_text(&snap::header(&name), &body);
        let write = |to: &Path| -> Result<()> {
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            crate::util::write_atomic(to, text.as_bytes())
                .with_context(|| format!("writing {}", to.display()))
        };
        match snap::compare(old.as_deref(), &body, &name) {
            Compared::Same => {
                same += 1;
                let _ = std::fs::remove_file(&pending);
            }
            Compared::New => {
                write(&path)?;
                let _ = std::fs::remove_file(&pending);
                println!("{name}: new snapshot written to {shown}");
                written += 1;
            }
            Compared::Differs(diff) => {
                print!("{diff}");
                if accept {
                    write(&path)?;
                    let _ = std::fs::remove_file(&pending);
                    println!("{name}: snapshot {shown} updated");
                    written += 1;
                } else {
                    write(&pending)?;
                    println!(
                        "{name}: differs from {shown} (review, then rerun with --accept; or `cargo insta review`)"
                    );
                    differ += 1;
                }
            }
        }
    }
    let n = specs.len();
    let plural = if n == 1 { "" } else { "s" };
    eprintln!(
        "{n} spec{plural}: {same} unchanged, {written} written, {differ} differ, {invalid} invalid"
    );
    Ok(if invalid > 0 {
        2
    } else if differ > 0 {
        1
    } else {
        0
    })
}
