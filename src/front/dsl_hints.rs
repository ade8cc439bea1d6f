//! Hints in the syntax of the file they are about. The builder and the IR's checks write
//! their examples in YAML (`mask: A`, `- repeat: {count: 7, body: [...]}`); for a `.pixc`
//! file each backquoted example is rewritten in the DSL (`mask=A`, `repeat 7 { ... }`), so
//! a DSL user is never told to write YAML.

use crate::diag::Diagnostic;

/// `d` with every backquoted YAML example in its message and help written in the DSL.
pub fn for_dsl(mut d: Diagnostic) -> Diagnostic {
    d.message = rewrite(&d.message);
    d.help = d.help.map(|h| rewrite(&h));
    d
}

/// Rewrites each `...` span of `text` that reads as YAML.
pub fn rewrite(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut parts = text.split('`');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    let rest: Vec<&str> = parts.collect();
    for (i, part) in rest.iter().enumerate() {
        out.push('`');
        // Odd pieces are inside backquotes (when the quote closes).
        if i % 2 == 0 && i + 1 < rest.len() {
            out.push_str(&snippet(part));
        } else {
            out.push_str(part);
        }
    }
    out
}

/// One YAML example in the DSL; anything else unchanged.
fn snippet(s: &str) -> String {
    let s = s.trim();
    let body = s.strip_prefix("- ").unwrap_or(s);
    // A section named alone (`params:`): its DSL statement.
    if let Some(key) = body.strip_suffix(':').filter(|k| !k.contains(' ')) {
        return match key {
            "params" => "param".into(),
            "layers" => "layers { ... }".into(),
            _ => key.into(),
        };
    }
    let Some((key, value)) = body.split_once(": ") else {
        return s.to_string();
    };
    let key = key.trim();
    let value = value.trim();
    if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return s.to_string();
    }
    let map = value
        .strip_prefix('{')
        .and_then(|v| v.strip_suffix('}'))
        .map(pairs);
    match (key, map) {
        ("repeat", Some(kv)) => {
            let count = kv
                .iter()
                .find(|(k, _)| k == "count")
                .map(|(_, v)| v.as_str())
                .unwrap_or("N");
            format!("repeat {count} {{ ... }}")
        }
        ("params", Some(kv)) => kv
            .iter()
            .map(|(k, v)| format!("param {k} = {v}"))
            .collect::<Vec<_>>()
            .join("; "),
        (_, Some(kv)) => {
            let items: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{key} {}", items.join(" "))
        }
        ("layers", None) => "layers { ... }".into(),
        ("head", None) => format!("head {value}"),
        ("skip", None) if value == "true" => "skip".into(),
        (_, None) => format!("{key}={}", value.replace(", ", ",")),
    }
}

/// `a: 1, b: 2` as pairs; a value holding a list stays whole.
fn pairs(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    let bytes = s.as_bytes();
    for i in 0..=bytes.len() {
        let c = bytes.get(i).copied();
        match c {
            Some(b'[') | Some(b'{') => depth += 1,
            Some(b']') | Some(b'}') => depth -= 1,
            Some(b',') | None if depth == 0 => {
                if let Some((k, v)) = s[start..i].split_once(':') {
                    out.push((k.trim().to_string(), v.trim().to_string()));
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn yaml_examples_read_as_dsl() {
        let cases = [
            (
                "the first masked layer must use `mask: A`",
                "the first masked layer must use `mask=A`",
            ),
            (
                "use `- repeat: {count: 7, body: [...]}`",
                "use `repeat 7 { ... }`",
            ),
            (
                "add `input: {channels: 1, height: 28, width: 28, levels: 2}`",
                "add `input channels=1 height=28 width=28 levels=2`",
            ),
            (
                "write `head: bernoulli` (levels 2)",
                "write `head bernoulli` (levels 2)",
            ),
            (
                "mark earlier layers with `skip: true`",
                "mark earlier layers with `skip`",
            ),
            ("`params: {h: 16}`", "`param h = 16`"),
            ("define it under `params:`", "define it under `param`"),
            ("did you mean `hidden`?", "did you mean `hidden`?"),
            ("no quotes at all", "no quotes at all"),
        ];
        for (yaml, dsl) in cases {
            assert_eq!(rewrite(yaml), dsl);
        }
    }
}
