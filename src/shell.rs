//! Paths in the commands pixc suggests (`next: pixc eval RUN`, `--resume` hints), quoted
//! for a POSIX shell when they hold anything beyond plain path characters, so a
//! suggestion can be pasted as printed.

use std::path::Path;

/// `p` as one shell word: unchanged when it is made of letters, digits and `_-./:=+,@%`,
/// else in single quotes (a `'` inside written `'\''`).
pub fn quote(p: &Path) -> String {
    let s = p.display().to_string();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=+,@%".contains(c));
    if plain {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_that_need_it_are_quoted() {
        assert_eq!(quote(Path::new("runs/tiny-2")), "runs/tiny-2");
        assert_eq!(quote(Path::new("my runs/a")), "'my runs/a'");
        assert_eq!(quote(Path::new("it's")), r"'it'\''s'");
        assert_eq!(quote(Path::new("")), "''");
    }
}
