//! Helpers shared by integration tests.

/// Shrinks a shipped spec to 7x7 with small widths and at most 2 repeats.
#[allow(dead_code)]
pub fn shrink(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let l = line.trim_start();
        let indent = &line[..line.len() - l.len()];
        let new = if l.starts_with("input:") {
            let ch = if l.contains("channels: 3") { 3 } else { 1 };
            let lv = if ch == 3 { 256 } else { 2 };
            format!("input: {{channels: {ch}, height: 7, width: 7, levels: {lv}}}")
        } else if l.starts_with("h:") {
            "h: 12".into()
        } else if l.starts_with("out_maps:") {
            "out_maps: 12".into()
        } else if l.starts_with("count:") {
            "count: 2".into()
        } else if l.starts_with("- conv: {out: 32,") {
            l.replace("out: 32", "out: 12")
        } else {
            l.to_string()
        };
        out.push_str(indent);
        out.push_str(&new);
        out.push('\n');
    }
    out
}
