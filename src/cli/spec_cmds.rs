//! `pixc check`, `pixc graph` and `pixc fmt`: the spec-only commands.

use crate::ir::dump;
use crate::spec::{self, Syntax};
use anyhow::{Context, Result};
use std::path::Path;

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
    let out = spec::fmt::format(&text, from, target).map_err(|d| crate::SpecError {
        rendered: crate::diag::render(&name, &text, &d),
        diagnostics: d,
    })?;
    if check {
        if target != from {
            anyhow::bail!("--check compares a file with its own syntax; drop --to");
        }
        if out == text {
            return Ok(0);
        }
        eprintln!("{name}: not in canonical form (run `pixc fmt {name} --write`)");
        return Ok(1);
    }
    if write {
        if target != from {
            anyhow::bail!("--write rewrites a file in its own syntax; drop --to");
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
    print!("{}", spec::schema::schema_text());
    Ok(0)
}
