//! Datasets for training and evaluating PixelRNN models: MNIST (static and dynamic
//! binarization, 256-level), Fashion-MNIST, CIFAR-10 (binary format) and folders of PNGs,
//! all loaded into one in-memory layout (`u8` values in `0..levels`, N x C x H x W).
//!
//! Everything here returns [`DataError`] on bad or missing input instead of panicking, and
//! each error says what is wrong and how to get or fix the data, because the usual reader of
//! these messages is someone running `pixc train` who has not yet put the data in place.
//!
//! Protocol choices (documented once here, repeated in each [`Dataset::protocol`]):
//! * MNIST / Fashion-MNIST: the first 50,000 training images are `train`, the last 10,000
//!   training images are `valid`, the 10,000 `t10k` images are `test`.
//! * Binarized (static): every pixel is sampled once as Bernoulli(v/255) with
//!   [`BINARIZE_SEED`] (see [`binarize_static`] for the exact rule and order), and the
//!   result is cached on disk (see the `cache` module docs for the file format). For the
//!   vendored MNIST, the SHA-256 of the binarized bytes (one per pixel, train then valid
//!   then test) is `3aed3d9990740086b6e28eaac3def2490b6b21b1f021b60538e63f590d6f5d27`.
//! * Binarized (dynamic): like static, plus [`Dataset::train_gray`] with the gray training
//!   images for the trainer to re-binarize every epoch with [`binarize_dynamic`].
//! * CIFAR-10: batches 1-5 are the training file order; its last 5,000 records are
//!   `valid`, the rest `train`; `test_batch.bin` is `test`.
//! * PNG folder: files sorted by name, 80% / 10% / 10% train / valid / test.

mod binarize;
mod cache;
mod cifar;
mod idx;
mod mnist;
pub(crate) mod pngdir;
mod source;

use std::fmt;
use std::path::{Path, PathBuf};

pub use binarize::{binarize_dynamic, binarize_static, BINARIZE_SEED};
pub use source::{DataSource, SOURCE_NAMES};

/// Everything that can go wrong while finding, checking and decoding data.
///
/// Messages are full sentences meant for the command line: what is wrong, which file, and
/// what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The dataset name given on the command line is not one we know.
    #[error("unknown dataset `{name}`{}; valid datasets are: {valid}", did_you_mean(.suggestion))]
    UnknownSource {
        name: String,
        suggestion: Option<String>,
        valid: String,
    },
    /// A dataset name that needs an argument (e.g. `png:<dir>`) was given without one.
    #[error("dataset `{name}` needs a folder: write it as `{usage}`{hint}")]
    MissingArgument {
        name: String,
        usage: String,
        /// Extra advice appended to the message (may be empty).
        hint: String,
    },
    /// A folder or file the dataset needs is not there.
    #[error("{what} not found at {}: {hint}", .path.display())]
    NotFound {
        what: String,
        path: PathBuf,
        hint: String,
    },
    /// Reading a file or folder failed for a reason other than it being absent.
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A vendored file does not have the SHA-256 recorded for it.
    #[error(
        "{} is corrupt: its SHA-256 is {actual} but {} expects {expected}; \
         restore the file from the repository (git checkout -- {}) or re-download it",
        .path.display(), .sums_file.display(), .path.display()
    )]
    Corrupt {
        path: PathBuf,
        sums_file: PathBuf,
        expected: String,
        actual: String,
    },
    /// The checksum list does not mention a file we need, or cannot be parsed.
    #[error("checksum list {}: {reason}", .sums_file.display())]
    BadChecksumList { sums_file: PathBuf, reason: String },
    /// A data file exists but its contents are not in the expected format.
    #[error("{} is not a valid {format} file: {reason}", .path.display())]
    BadFormat {
        path: PathBuf,
        format: String,
        reason: String,
    },
    /// Images in a PNG folder disagree in size, or disagree with the model's input.
    #[error("{} is {found} but {expected_from} is {expected}; {advice}", .path.display())]
    SizeMismatch {
        path: PathBuf,
        found: String,
        expected: String,
        /// What set the expectation, e.g. "the first image (a.png)".
        expected_from: String,
        /// What to do about it.
        advice: String,
    },
    /// A dataset that would have no images (or too few to split).
    #[error("{}: {reason}", .path.display())]
    TooFewImages { path: PathBuf, reason: String },
}

fn did_you_mean(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}

impl DataError {
    /// Helper for `std::io::Error`s: a missing file becomes [`DataError::NotFound`] with the
    /// given hint, anything else [`DataError::Io`].
    fn io(path: &Path, what: &str, hint: &str, e: std::io::Error) -> DataError {
        if e.kind() == std::io::ErrorKind::NotFound {
            DataError::NotFound {
                what: what.to_string(),
                path: path.to_path_buf(),
                hint: hint.to_string(),
            }
        } else {
            DataError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    }
}

/// One split of a dataset: `n` images as `u8` values in `0..levels`, layout
/// N x C x H x W, row-major (the C, H, W come from the owning [`Dataset`]).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Split {
    pub images: Vec<u8>,
    pub n: usize,
    /// One class label per image (`0..classes` of the owning [`Dataset`]), for data sets
    /// that have them (MNIST, Fashion-MNIST, CIFAR-10); `None` otherwise.
    pub labels: Option<Vec<u16>>,
}

impl Split {
    /// The `i`-th image (C x H x W values), given the per-image size `c*h*w`.
    /// Returns `None` past the end instead of panicking.
    pub fn image(&self, i: usize, image_size: usize) -> Option<&[u8]> {
        let start = i.checked_mul(image_size)?;
        self.images.get(start..start.checked_add(image_size)?)
    }

    /// Images 0, `stride`, 2 `stride`, ... (with their labels), at most `limit`: an even
    /// slice of the split, where a prefix would not be one (MNIST's test set is ordered,
    /// its first 5,000 images being the cleaner ones). `stride` is at least 1.
    pub fn every(&self, image_size: usize, stride: usize, limit: Option<usize>) -> Split {
        let n = self.n.div_ceil(stride).min(limit.unwrap_or(usize::MAX));
        let picked = || (0..self.n).step_by(stride).take(n);
        let mut images = Vec::with_capacity(n * image_size);
        for i in picked() {
            images.extend_from_slice(&self.images[i * image_size..(i + 1) * image_size]);
        }
        let labels = self
            .labels
            .as_ref()
            .map(|l| picked().map(|i| l[i]).collect());
        Split { images, n, labels }
    }
}

/// How reports name `Split::every`'s slice: ` (every 20th)`, nothing for every image.
pub fn every_note(stride: usize) -> String {
    match stride {
        1 => String::new(),
        k => format!(" (every {k}th)"),
    }
}

// A derived Debug would print tens of megabytes when an `assert_eq!` fails.
impl fmt::Debug for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Split")
            .field("n", &self.n)
            .field("bytes", &self.images.len())
            .finish()
    }
}

/// A loaded dataset with its three splits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// Short description including the variant, e.g.
    /// `mnist-binarized (static, seed 0x5EEDB1A220160001)`.
    pub name: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Number of distinct pixel values: 2 for binary data, 256 for 8-bit data.
    pub levels: usize,
    pub train: Split,
    pub valid: Split,
    pub test: Split,
    /// Human-readable description of how the data was made and split, for run logs.
    pub protocol: String,
    /// Only for [`DataSource::MnistBinarizedDynamic`]: the training images as 256-level gray
    /// values (same images and order as `train`). The trainer re-binarizes them every epoch
    /// with [`binarize_dynamic`]; `train` still holds the static binarization so code that
    /// ignores this field trains on valid binary data. `valid` and `test` stay static so that
    /// evaluation numbers are comparable across runs. `None` for every other source.
    pub train_gray: Option<Split>,
    /// The classes the splits' labels name; 0 when the data set has no labels.
    pub classes: usize,
}

impl Dataset {
    /// Values per image: `channels * height * width`.
    pub fn image_size(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// Where to look for data and where to cache derived data. `Default` means: use the
/// environment variables and built-in locations described on each field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Folder with the MNIST `.gz` files and `SHA256SUMS.gz`. Default: env
    /// `PIXC_MNIST_DIR`, else the copy vendored in the repository (`data/mnist`).
    pub mnist_dir: Option<PathBuf>,
    /// Folder for the cached static binarizations. Default: env `PIXC_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/pixc`, else `~/.cache/pixc`. If it cannot be created or written,
    /// loading proceeds without a cache.
    pub cache_dir: Option<PathBuf>,
    /// Expected (channels, height, width) of PNG-folder images; a mismatch is an error.
    pub png_size: Option<(usize, usize, usize)>,
}

/// The folder MNIST is read from under `opts` (see [`LoadOptions::mnist_dir`]).
pub fn resolve_mnist_dir(opts: &LoadOptions) -> PathBuf {
    if let Some(d) = &opts.mnist_dir {
        return d.clone();
    }
    if let Some(d) = env_path("PIXC_MNIST_DIR") {
        return d;
    }
    crate::util::source_path("data/mnist")
}

/// The folder Fashion-MNIST is read from: env `PIXC_FASHION_DIR`, else where the Debian
/// package `dataset-fashion-mnist` installs it when it is installed, else where
/// `scripts/setup.sh` unpacks that package without root (`data-cache/fashion-mnist`).
pub fn resolve_fashion_dir() -> PathBuf {
    if let Some(d) = env_path("PIXC_FASHION_DIR") {
        return d;
    }
    let system = PathBuf::from(mnist::FASHION_DEFAULT_DIR);
    let unpacked = PathBuf::from(mnist::FASHION_SETUP_DIR);
    if !mnist::files_present(&system, mnist::Family::Fashion)
        && mnist::files_present(&unpacked, mnist::Family::Fashion)
    {
        return unpacked;
    }
    system
}

/// The cache folder under `opts` (see [`LoadOptions::cache_dir`]); `None` when no location
/// can be determined (no `HOME`), in which case nothing is cached.
pub fn resolve_cache_dir(opts: &LoadOptions) -> Option<PathBuf> {
    if let Some(d) = &opts.cache_dir {
        return Some(d.clone());
    }
    if let Some(d) = env_path("PIXC_CACHE_DIR") {
        return Some(d);
    }
    if let Some(d) = env_path("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
        return Some(d.join("pixc"));
    }
    env_path("HOME").map(|h| h.join(".cache").join("pixc"))
}

/// An environment variable as a path, treating unset and empty the same.
fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Loads (and, for binarized sources, caches) a dataset.
pub fn load(src: &DataSource, opts: &LoadOptions) -> Result<Dataset, DataError> {
    match src {
        DataSource::MnistBinarized => {
            mnist::load(mnist::Family::Mnist, mnist::Variant::Static, opts)
        }
        DataSource::MnistBinarizedDynamic => {
            mnist::load(mnist::Family::Mnist, mnist::Variant::Dynamic, opts)
        }
        DataSource::Mnist256 => mnist::load(mnist::Family::Mnist, mnist::Variant::Gray, opts),
        DataSource::FashionMnist256 => {
            mnist::load(mnist::Family::Fashion, mnist::Variant::Gray, opts)
        }
        DataSource::FashionMnistBinarized => {
            mnist::load(mnist::Family::Fashion, mnist::Variant::Static, opts)
        }
        DataSource::Cifar10(dir) => cifar::load(dir),
        DataSource::PngFolder(dir) => pngdir::load(dir, opts.png_size),
    }
}

/// For `pixc doctor`: every dataset pixc knows by name, with the folder it would be read
/// from if its files are present there, or `None` if they are missing. This only checks
/// that the files exist; checksums and formats are verified by [`load`].
///
/// `cifar10` is listed with the folder from env `PIXC_CIFAR10_DIR` when that is set and
/// holds the six batch files; PNG folders are user data and not listed.
/// The environment variable naming the CIFAR-10 folder (for messages).
pub fn cifar_env_dir() -> &'static str {
    cifar::ENV_DIR
}

pub fn find_datasets(opts: &LoadOptions) -> Vec<(String, Option<PathBuf>)> {
    let mnist_dir = resolve_mnist_dir(opts);
    let mnist = mnist::files_present(&mnist_dir, mnist::Family::Mnist).then_some(mnist_dir);
    let fashion_dir = resolve_fashion_dir();
    let fashion = mnist::files_present(&fashion_dir, mnist::Family::Fashion).then_some(fashion_dir);
    let cifar = env_path(cifar::ENV_DIR).filter(|d| cifar::files_present(d));
    vec![
        (DataSource::MnistBinarized.name(), mnist.clone()),
        (DataSource::MnistBinarizedDynamic.name(), mnist.clone()),
        (DataSource::Mnist256.name(), mnist),
        (DataSource::FashionMnist256.name(), fashion.clone()),
        (DataSource::FashionMnistBinarized.name(), fashion),
        ("cifar10".to_string(), cifar),
    ]
}

/// The strided subsample `x[::f, ::f]` of every image of every split, in place: the
/// small model of a multi-scale spec is trained and scored on it (`train.subsample`).
pub fn subsample(ds: &mut Dataset, f: usize) {
    let (c, h, w) = (ds.channels, ds.height, ds.width);
    let (hs, ws) = (h.div_ceil(f), w.div_ceil(f));
    let shrink = |sp: &mut Split| {
        let mut out = Vec::with_capacity(sp.n * c * hs * ws);
        for i in 0..sp.n {
            let img = &sp.images[i * c * h * w..(i + 1) * c * h * w];
            for ch in 0..c {
                for r in (0..h).step_by(f) {
                    for col in (0..w).step_by(f) {
                        out.push(img[(ch * h + r) * w + col]);
                    }
                }
            }
        }
        sp.images = out;
    };
    shrink(&mut ds.train);
    shrink(&mut ds.valid);
    shrink(&mut ds.test);
    if let Some(g) = ds.train_gray.as_mut() {
        shrink(g);
    }
    ds.height = hs;
    ds.width = ws;
    ds.name = format!("{} (every {f}th row and column)", ds.name);
}
