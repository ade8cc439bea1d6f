//! Spec snapshots (`pixc snapshot`, and pixc's own `tests/spec_snapshots.rs`): what a spec
//! compiles to, pinned in insta's `.snap` format and compared with a unified diff.
//!
//! The body is the `pixc check` table (layers, shapes, parameter counts, causality verdict,
//! receptive field) followed by the IR dump (`pixc check --ir`). Both `pixc snapshot` and the
//! test suite take it from `body`, so there is one format. Files are insta's: a `---` header
//! of `key: value` lines, `---`, then the body, so `cargo insta review` and
//! `insta::Snapshot::from_file` read them too.

use crate::ir::dump::{check_table, ir_text};
use crate::ir::validate::Model;
use std::path::{Path, PathBuf};

/// What a snapshot pins about a compiled spec.
pub fn body(model: &Model) -> String {
    let mut s = String::from("# pixc check\n");
    s.push_str(check_table(model).trim_end());
    s.push_str("\n\n# pixc check --ir\n");
    s.push_str(ir_text(model).trim_end());
    s.push('\n');
    s
}

/// The header fields of a snapshot of `spec` (a path as the user wrote it).
pub fn header(spec: &str) -> Vec<(&'static str, String)> {
    vec![
        ("source", "pixc snapshot".to_string()),
        (
            "description",
            format!("what {spec} compiles to: the check table, then the IR"),
        ),
        (
            "expression",
            format!("pixc check {spec}; pixc check --ir {spec}"),
        ),
        ("input_file", spec.to_string()),
    ]
}

/// A YAML scalar for the header: plain when safe, else double-quoted (JSON escapes are
/// valid YAML double-quoted escapes).
fn header_value(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.' | '/' | '@'))
        && !v.starts_with([' ', '-'])
        && !v.ends_with(' ');
    if plain {
        v.to_string()
    } else {
        serde_json::to_string(v).expect("a JSON string")
    }
}

/// A whole `.snap` file.
pub fn file_text(header: &[(&str, String)], body: &str) -> String {
    let mut s = String::from("---\n");
    for (k, v) in header {
        s.push_str(&format!("{k}: {}\n", header_value(v)));
    }
    s.push_str("---\n");
    s.push_str(body.trim_end_matches('\n'));
    s.push('\n');
    s
}

/// The body of a `.snap` file's text (after the header), as insta reads it; None if the
/// text has no header.
pub fn body_of(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("---\n")?;
    let end = rest
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .find(|&i| rest[i..].starts_with("---\n") || &rest[i..] == "---")?;
    Some(
        rest[end..]
            .strip_prefix("---")
            .unwrap_or("")
            .trim_start_matches('\n'),
    )
}

/// Where the snapshot of `spec` lives: `DIR/snapshots/NAME.snap` beside the spec, or
/// `dir/NAME.snap` when a folder is given.
pub fn snap_path(spec: &Path, dir: Option<&Path>) -> PathBuf {
    let name = format!(
        "{}.snap",
        spec.file_name()
            .map_or_else(|| "spec".into(), |n| n.to_string_lossy().into_owned())
    );
    match dir {
        Some(d) => d.join(name),
        None => spec
            .parent()
            .unwrap_or(Path::new(""))
            .join("snapshots")
            .join(name),
    }
}

/// The pending file next to a snapshot (insta's name, which `cargo insta review` finds).
pub fn pending_path(snap: &Path) -> PathBuf {
    let mut s = snap.as_os_str().to_owned();
    s.push(".new");
    PathBuf::from(s)
}

/// How a spec compares with its snapshot.
#[derive(Debug, PartialEq, Eq)]
pub enum Compared {
    /// No snapshot yet.
    New,
    Same,
    /// Differs: the unified diff, old -> new.
    Differs(String),
}

/// Compares a body with the snapshot file text (None: no file). Trailing newlines do not
/// count, as in insta.
pub fn compare(old_file: Option<&str>, body: &str, name: &str) -> Compared {
    let Some(old_file) = old_file else {
        return Compared::New;
    };
    let old = body_of(old_file).unwrap_or(old_file).trim_end_matches('\n');
    let new = body.trim_end_matches('\n');
    if old == new {
        return Compared::Same;
    }
    let (old, new) = (format!("{old}\n"), format!("{new}\n"));
    let diff = similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{name} (snapshot)"), &format!("{name} (now)"))
        .to_string();
    Compared::Differs(diff)
}

/// The spec files to snapshot under `path`: the file itself, or every `.yaml`, `.yml`
/// and `.pixc` file below a folder (not in `snapshots` or hidden folders), sorted.
pub fn spec_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut todo = vec![path.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            let name = name.unwrap_or_default();
            if p.is_dir() {
                if name != "snapshots" && !name.starts_with('.') {
                    todo.push(p);
                }
            } else if name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".pixc") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_text_round_trips_through_body_of() {
        let h = header("specs/a b.yaml");
        let t = file_text(&h, "line 1\n---\nline 3\n\n");
        assert!(t.starts_with("---\nsource: pixc snapshot\n"));
        assert_eq!(body_of(&t), Some("line 1\n---\nline 3\n"));
        assert_eq!(
            compare(Some(&t), "line 1\n---\nline 3", "x"),
            Compared::Same
        );
        match compare(Some(&t), "line 1\n---\nline 4\n", "x") {
            Compared::Differs(d) => assert!(d.contains("-line 3\n+line 4\n"), "{d}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(compare(None, "x", "x"), Compared::New);
    }
}
