//! The value rules of spec keys as plain functions, shared by the spec builder and the
//! command-line flags that override those keys, so `--batch 0` and `batch: 0` get the
//! same rule and the same message.
//!
//! Each function takes the text as written and returns the value or the message (without
//! location); the builder attaches a span, clap prints it after the flag's name and exits 2.
//! The flags that override no spec key (`--threads`, `--scale`, ...) have their rules here
//! too, so every flag's rule is in one place.

/// `what` must be a finite number above 0 (`lr`, `clip`, `--minutes`, `--temperature`).
pub fn positive_float(what: &str, s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("`{what}` must be a positive number, found `{s}`")),
    }
}

/// `what` must be an integer of at least `min` (`batch`, `steps`, `valid_every`, ...).
pub fn count(what: &str, s: &str, min: u64) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(x) if x >= min => Ok(x),
        _ => Err(format!("`{what}` must be an integer >= {min}, found `{s}`")),
    }
}

/// `what` must be an integer from `min` to `max`: for flags whose large values would only
/// exhaust memory or threads (`--threads`, `--scale`, `-n`).
pub fn count_in(what: &str, s: &str, min: u64, max: u64) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(x) if (min..=max).contains(&x) => Ok(x),
        _ => Err(format!(
            "`{what}` must be an integer from {min} to {max}, found `{s}`"
        )),
    }
}

/// Longest `--minutes` accepted: about 19 years, far below where a deadline overflows.
pub const MAX_MINUTES: f64 = 1e7;

/// `--minutes`: a positive number of minutes, at most `MAX_MINUTES`.
pub fn minutes(s: &str) -> Result<f64, String> {
    let m = positive_float("minutes", s)?;
    if m > MAX_MINUTES {
        return Err(format!(
            "`minutes` must be at most {MAX_MINUTES:e}, found `{s}`"
        ));
    }
    Ok(m)
}

/// Why `name` cannot be a model name, if it cannot. The name becomes the default run
/// folder `runs/<model>`, so it must be one path component: `.` and `..` are refused.
pub fn model_name_problem(name: &str) -> Option<&'static str> {
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if name.is_empty() || name.len() > 128 || !chars_ok {
        Some("model names use letters, digits, `_`, `-` and `.` (at most 128), e.g. `diag_bilstm_7_mnist`")
    } else if name.chars().all(|c| c == '.') {
        Some("a model name is also the run folder `runs/<model>`; a name of only dots is a path, pick a word such as `mnist_small`")
    } else {
        None
    }
}

/// The data sets a spec's `data:` (and `--data`) may name without an argument; `cifar10`
/// alone reads `PIXC_CIFAR10_DIR`. `cifar10:DIR` and `png:DIR` take a folder.
pub const DATA_SETS: &[&str] = &[
    "mnist-binarized",
    "mnist-binarized-dynamic",
    "mnist-256",
    "fashion-mnist-256",
    "fashion-mnist-binarized",
    "cifar10",
];

/// `data`: a name `pixc::data` knows (the folder of `cifar10:DIR` / `png:DIR` is checked
/// when the data is loaded). The error is (message, help).
pub fn data_set(s: &str) -> Result<String, (String, String)> {
    let known = DATA_SETS.contains(&s)
        || ["cifar10:", "png:"]
            .iter()
            .any(|p| s.strip_prefix(p).is_some_and(|dir| !dir.is_empty()));
    if known {
        return Ok(s.to_string());
    }
    let help = match crate::diag::did_you_mean(s, DATA_SETS) {
        Some(d) => format!("did you mean `{d}`?"),
        None => format!(
            "use one of `{}`, or `cifar10:DIR` / `png:DIR` for a folder",
            DATA_SETS.join("`, `")
        ),
    };
    Err((format!("unknown data set `{s}`"), help))
}

// The command line's flags. clap calls these as value parsers, so a bad value stops at
// parsing (exit 2), before any file or folder is made.

/// Most images one sampling call draws (`sample -n`, `complete`'s images x completions).
pub const MAX_SAMPLES: usize = 1024;
/// Most threads `--threads` accepts; more only oversubscribes the cores.
const MAX_THREADS: u64 = 1024;
/// Largest `--scale` (screen pixels per image pixel) and `--cols`: beyond them a grid
/// would be a picture of gigapixels.
const MAX_SCALE: u64 = 64;
const MAX_COLS: u64 = 1024;

fn usize_of(x: u64) -> usize {
    usize::try_from(x).unwrap_or(usize::MAX)
}

pub fn epochs(s: &str) -> Result<u64, String> {
    count("epochs", s, 1)
}
pub fn steps(s: &str) -> Result<u64, String> {
    count("steps", s, 1)
}
pub fn batch(s: &str) -> Result<u64, String> {
    count("batch", s, 1)
}
pub fn valid_every(s: &str) -> Result<u64, String> {
    count("valid_every", s, 1)
}
pub fn seed(s: &str) -> Result<u64, String> {
    count("seed", s, 0)
}
pub fn lr(s: &str) -> Result<f64, String> {
    positive_float("lr", s)
}
pub fn seconds(s: &str) -> Result<f64, String> {
    let x = positive_float("seconds", s)?;
    // A week of measuring is far past any benchmark; the cap keeps durations finite.
    if x > 604_800.0 {
        return Err(format!("`seconds` must be at most 604800, found `{s}`"));
    }
    Ok(x)
}
pub fn temperature(s: &str) -> Result<f64, String> {
    positive_float("temperature", s)
}
pub fn threads(s: &str) -> Result<usize, String> {
    count_in("threads", s, 1, MAX_THREADS).map(usize_of)
}
/// A count of images or items that must be at least 1 (`--limit`, `--images`, `--samples`,
/// `--from-test`, `--batch` of bench).
pub fn at_least_one(what: &'static str) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |s| count(what, s, 1).map(usize_of)
}
/// `--data`: the rule of the spec's `data:`.
pub fn data(s: &str) -> Result<String, String> {
    data_set(s).map_err(|(m, h)| format!("{m}; {h}"))
}
/// `--valid-images`: 0 means the whole split.
pub fn valid_images(s: &str) -> Result<usize, String> {
    count("valid_images", s, 0).map(usize_of)
}
/// `sample -n`: 1 to the most one call draws.
pub fn num_samples(s: &str) -> Result<usize, String> {
    count_in("num", s, 1, MAX_SAMPLES as u64).map(usize_of)
}
pub fn cols(s: &str) -> Result<usize, String> {
    count_in("cols", s, 1, MAX_COLS).map(usize_of)
}
pub fn scale(s: &str) -> Result<usize, String> {
    count_in("scale", s, 1, MAX_SCALE).map(usize_of)
}
/// `complete --keep-rows`: 0 keeps nothing (the completions are then plain samples); the
/// upper limit is the image height, checked once the run is loaded.
pub fn keep_rows(s: &str) -> Result<usize, String> {
    count("keep_rows", s, 0).map(usize_of)
}

/// An output file of format `ext` (`png`, `npy`): a name with another extension is
/// refused, not written in this format under a misleading name (`-o grid.jpg`).
fn output_file(s: &str, ext: &str, what: &str) -> Result<std::path::PathBuf, String> {
    let p = std::path::PathBuf::from(s);
    match p.extension().and_then(|e| e.to_str()) {
        Some(e) if !e.eq_ignore_ascii_case(ext) => Err(format!(
            "`{s}`: pixc writes {what} here; give a file name ending in .{ext}"
        )),
        _ => Ok(p),
    }
}
/// `-o` of `sample`, `complete` and `plot`.
pub fn png_file(s: &str) -> Result<std::path::PathBuf, String> {
    output_file(s, "png", "a PNG image")
}
/// `sample --npy`.
pub fn npy_file(s: &str) -> Result<std::path::PathBuf, String> {
    output_file(s, "npy", "a NumPy array (.npy)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_accept_and_refuse() {
        assert_eq!(positive_float("lr", "0.5"), Ok(0.5));
        for bad in ["0", "-1", "NaN", "inf", "", "1e400", "x"] {
            let e = positive_float("lr", bad).unwrap_err();
            assert_eq!(e, format!("`lr` must be a positive number, found `{bad}`"));
        }
        assert_eq!(count("batch", "16", 1), Ok(16));
        for bad in ["0", "-1", "", "NaN", "1.5", "99999999999999999999999"] {
            assert!(count("batch", bad, 1).is_err(), "{bad}");
        }
        assert_eq!(count("seed", "0", 0), Ok(0));
        assert_eq!(count_in("threads", "4", 1, 1024), Ok(4));
        assert!(count_in("threads", "1025", 1, 1024).is_err());
        assert!(minutes("1e9").is_err() && minutes("2.5") == Ok(2.5));
        assert!(model_name_problem("mnist_7.v2").is_none());
        assert!(data_set("mnist-binarized").is_ok() && data_set("png:/x").is_ok());
        let (m, h) = data_set("mnist").unwrap_err();
        assert_eq!(m, "unknown data set `mnist`");
        assert!(h.contains("mnist-"), "{h}");
        assert!(data_set("png:").is_err());
        assert!(png_file("grid.png").is_ok() && png_file("out/GRID.PNG").is_ok());
        assert!(png_file("grid").is_ok() && npy_file("x.npy").is_ok());
        let e = png_file("grid.jpg").unwrap_err();
        assert_eq!(
            e,
            "`grid.jpg`: pixc writes a PNG image here; give a file name ending in .png"
        );
        assert!(npy_file("x.png").is_err());
        for bad in ["..", ".", "a/b", "", "a b"] {
            assert!(model_name_problem(bad).is_some(), "{bad}");
        }
    }
}
