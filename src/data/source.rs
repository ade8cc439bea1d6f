//! Dataset names as written on the command line (`mnist-binarized`, `cifar10:<dir>`, ...):
//! parsing them into a [`DataSource`], printing them back, and "did you mean" suggestions.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::{cifar, env_path, DataError};

/// Which dataset to load. See the module docs of [`crate::data`] for each one's protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum DataSource {
    /// MNIST with a static binarization (the PixelRNN paper's protocol). The default.
    #[default]
    MnistBinarized,
    /// MNIST binarized statically for valid/test, with the gray training images kept so the
    /// trainer can re-binarize them every epoch (see [`super::Dataset::train_gray`]).
    MnistBinarizedDynamic,
    /// MNIST with its original 256 gray levels.
    Mnist256,
    /// Fashion-MNIST with 256 gray levels (Debian package `dataset-fashion-mnist`).
    FashionMnist256,
    /// Fashion-MNIST with the same static binarization as MNIST.
    FashionMnistBinarized,
    /// CIFAR-10, binary version: a folder with `data_batch_1.bin` .. `data_batch_5.bin` and
    /// `test_batch.bin`.
    Cifar10(PathBuf),
    /// A folder of PNG images (user data).
    PngFolder(PathBuf),
}

/// Every accepted name, in the order they are listed in error messages.
pub const SOURCE_NAMES: &[&str] = &[
    "mnist-binarized",
    "mnist-binarized-dynamic",
    "mnist-256",
    "fashion-mnist-256",
    "fashion-mnist-binarized",
    "cifar10:<dir>",
    "png:<dir>",
];

impl DataSource {
    /// Parses a command-line dataset name. `cifar10` without a folder uses env
    /// `PIXC_CIFAR10_DIR` if it is set.
    pub fn parse(s: &str) -> Result<DataSource, DataError> {
        let s = s.trim();
        match s {
            "mnist-binarized" => return Ok(DataSource::MnistBinarized),
            "mnist-binarized-dynamic" => return Ok(DataSource::MnistBinarizedDynamic),
            "mnist-256" => return Ok(DataSource::Mnist256),
            "fashion-mnist-256" => return Ok(DataSource::FashionMnist256),
            "fashion-mnist-binarized" => return Ok(DataSource::FashionMnistBinarized),
            "cifar10" => {
                return match env_path(cifar::ENV_DIR) {
                    Some(d) => Ok(DataSource::Cifar10(d)),
                    None => Err(DataError::MissingArgument {
                        name: s.to_string(),
                        usage: "cifar10:<dir>".to_string(),
                        hint: format!(", or set {} to that folder", cifar::ENV_DIR),
                    }),
                }
            }
            "png" => {
                return Err(DataError::MissingArgument {
                    name: s.to_string(),
                    usage: "png:<dir>".to_string(),
                    hint: String::new(),
                })
            }
            _ => {}
        }
        if let Some((kind, arg)) = s.split_once(':') {
            let make: Option<fn(PathBuf) -> DataSource> = match kind {
                "cifar10" => Some(DataSource::Cifar10),
                "png" => Some(DataSource::PngFolder),
                _ => None,
            };
            if let Some(make) = make {
                if arg.is_empty() {
                    return Err(DataError::MissingArgument {
                        name: s.to_string(),
                        usage: format!("{kind}:<dir>"),
                        hint: String::new(),
                    });
                }
                return Ok(make(PathBuf::from(arg)));
            }
        }
        Err(DataError::UnknownSource {
            name: s.to_string(),
            suggestion: suggest(s),
            valid: SOURCE_NAMES.join(", "),
        })
    }

    /// The canonical name; `DataSource::parse(&src.name())` gives `src` back.
    pub fn name(&self) -> String {
        match self {
            DataSource::MnistBinarized => "mnist-binarized".into(),
            DataSource::MnistBinarizedDynamic => "mnist-binarized-dynamic".into(),
            DataSource::Mnist256 => "mnist-256".into(),
            DataSource::FashionMnist256 => "fashion-mnist-256".into(),
            DataSource::FashionMnistBinarized => "fashion-mnist-binarized".into(),
            DataSource::Cifar10(d) => format!("cifar10:{}", d.display()),
            DataSource::PngFolder(d) => format!("png:{}", d.display()),
        }
    }
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for DataSource {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DataSource::parse(s)
    }
}

/// The closest valid name to a mistyped one, if any is close enough to be a likely typo.
/// For `kind:<arg>` inputs only the part before the colon is compared, and the suggestion
/// keeps the user's argument (`cifar:/x` -> `cifar10:/x`).
fn suggest(input: &str) -> Option<String> {
    let lower = input.to_ascii_lowercase();
    let (head, arg) = match lower.split_once(':') {
        Some((h, _)) => (h.to_string(), input.split_once(':').map(|(_, a)| a)),
        None => (lower.clone(), None),
    };
    let render = |cand: &str| -> String {
        match cand.split_once(':') {
            Some((k, placeholder)) => format!("{k}:{}", arg.unwrap_or(placeholder)),
            None => cand.to_string(),
        }
    };
    let heads = SOURCE_NAMES
        .iter()
        .map(|c| (*c, c.split_once(':').map_or(*c, |(k, _)| k)));

    // A case-only difference, or an unambiguous-enough prefix ("mnist", "fashion"):
    // the first name in list order wins, which puts the default first.
    for (cand, h) in heads.clone() {
        if h == head || (head.len() >= 3 && h.starts_with(head.as_str())) {
            return Some(render(cand));
        }
    }
    // Otherwise a small edit distance, scaled with the length so short inputs like "foo"
    // do not match everything.
    let limit = (head.chars().count() / 3).max(1);
    heads
        .map(|(cand, h)| (edit_distance(&head, h), cand))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, cand)| render(cand))
}

/// Levenshtein distance over chars (two-row dynamic programme).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("mnist-binarised").as_deref(),
            Some("mnist-binarized")
        );
        assert_eq!(suggest("MNIST-256").as_deref(), Some("mnist-256"));
        assert_eq!(suggest("mnist").as_deref(), Some("mnist-binarized"));
        assert_eq!(suggest("cifar:/x").as_deref(), Some("cifar10:/x"));
        assert_eq!(suggest("cifar").as_deref(), Some("cifar10:<dir>"));
        assert_eq!(suggest("imagenet"), None);
        assert_eq!(suggest("foo"), None);
    }
}
