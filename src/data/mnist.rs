//! MNIST and Fashion-MNIST: locating the gzipped IDX files, verifying them, decoding them,
//! applying the static binarization (through the cache) and cutting the 50k/10k/10k split.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::binarize::{binarize_into, static_rng, BINARIZE_SEED};
use super::cache::{self, CacheKey};
use super::idx::{self, hex, sha256};
use super::{resolve_cache_dir, resolve_fashion_dir, resolve_mnist_dir};
use super::{DataError, Dataset, LoadOptions, Split};

/// Where the Debian package `dataset-fashion-mnist` installs the files.
pub(crate) const FASHION_DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// Where `scripts/setup.sh` unpacks that package's files without installing it.
pub(crate) const FASHION_SETUP_DIR: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/data-cache/fashion-mnist");

const TRAIN_IMAGES: &str = "train-images-idx3-ubyte.gz";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte.gz";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte.gz";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte.gz";
const FILES: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];
/// SHA-256 of each `.gz` file, `sha256sum` format; only shipped with the vendored MNIST.
const SUMS: &str = "SHA256SUMS.gz";

const SIDE: usize = 28;
/// Digits 0-9; the ten Fashion-MNIST garment classes.
const CLASSES: usize = 10;
const PIXELS: usize = SIDE * SIDE;
const N_TRAIN_FILE: usize = 60_000;
const N_TEST: usize = 10_000;
/// The last 10,000 training images are the validation split (the usual PixelRNN protocol).
const N_TRAIN: usize = 50_000;
const N_VALID: usize = N_TRAIN_FILE - N_TRAIN;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    Mnist,
    Fashion,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Variant {
    /// Static binarization for all splits.
    Static,
    /// Static binarization plus the gray training images in `train_gray`.
    Dynamic,
    /// The original 256 gray levels.
    Gray,
}

impl Family {
    fn title(self) -> &'static str {
        match self {
            Family::Mnist => "MNIST",
            Family::Fashion => "Fashion-MNIST",
        }
    }

    /// Dataset-name stem and cache-file stem.
    fn stem(self) -> &'static str {
        match self {
            Family::Mnist => "mnist",
            Family::Fashion => "fashion-mnist",
        }
    }

    fn dir(self, opts: &LoadOptions) -> PathBuf {
        match self {
            Family::Mnist => resolve_mnist_dir(opts),
            Family::Fashion => resolve_fashion_dir(),
        }
    }

    /// How to get the files, for "not found" errors.
    fn hint(self) -> String {
        match self {
            Family::Mnist => format!(
                "pixc ships MNIST in data/mnist of its repository; restore that folder \
                 (git checkout -- data/mnist) or set PIXC_MNIST_DIR to a folder holding {}",
                FILES
                    .iter()
                    .chain(std::iter::once(&SUMS))
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Family::Fashion => format!(
                "run `scripts/setup.sh` (it unpacks the Debian package into {FASHION_SETUP_DIR} without root), \
                 install it with `apt-get install dataset-fashion-mnist` (files go to {FASHION_DEFAULT_DIR}), \
                 or set PIXC_FASHION_DIR to a folder holding {}",
                FILES.join(", ")
            ),
        }
    }

    fn checksummed(self) -> bool {
        self == Family::Mnist
    }
}

/// Whether all files `load` needs exist in `dir` (for `pixc doctor`; nothing is verified).
pub(crate) fn files_present(dir: &Path, family: Family) -> bool {
    FILES.iter().all(|f| dir.join(f).is_file())
        && (!family.checksummed() || dir.join(SUMS).is_file())
}

/// Loads `family` as `variant` with the 50k/10k/10k split.
pub(crate) fn load(
    family: Family,
    variant: Variant,
    opts: &LoadOptions,
) -> Result<Dataset, DataError> {
    let dir = family.dir(opts);
    let what = format!("{} folder", family.title());
    if !dir.is_dir() {
        return Err(DataError::NotFound {
            what,
            path: dir,
            hint: family.hint(),
        });
    }

    // Read and hash all four files up front: checksums are cheap next to decompression, and
    // a corrupt file should be reported before any work is done.
    let mut gz: Vec<Vec<u8>> = Vec::with_capacity(FILES.len());
    let mut hashes: Vec<[u8; 32]> = Vec::with_capacity(FILES.len());
    for f in FILES {
        let bytes = idx::read_file(
            &dir.join(f),
            &format!("{} file {f}", family.title()),
            &family.hint(),
        )?;
        hashes.push(sha256(&bytes));
        gz.push(bytes);
    }
    if family.checksummed() {
        let sums_file = dir.join(SUMS);
        let text = idx::read_file(&sums_file, "MNIST checksum list", &family.hint())?;
        let sums = idx::parse_checksums(&sums_file, &text)?;
        for (f, h) in FILES.iter().zip(&hashes) {
            idx::verify(&dir.join(f), &hex(h), &sums, &sums_file)?;
        }
    }

    // Labels first: they are tiny, so a mixed-up download is reported before the images
    // are decompressed.
    let labels = decode_labels(&dir, &gz)?;
    let key = CacheKey {
        kind: family.stem(),
        seed: BINARIZE_SEED,
        dims: (1, SIDE, SIDE),
        counts: (N_TRAIN, N_VALID, N_TEST),
        source: source_digest(family, &hashes[0], &hashes[2]),
    };
    let cache_dir = resolve_cache_dir(opts);

    let seed = format!("0x{BINARIZE_SEED:016X}");
    let split_text = format!(
        "split {N_TRAIN} train (training images 0-{}) / {N_VALID} valid (training images {}-{}) / \
         {N_TEST} test (t10k)",
        N_TRAIN - 1,
        N_TRAIN,
        N_TRAIN_FILE - 1
    );
    let static_text = format!(
        "static binarization: each pixel sampled once as Bernoulli(v/255) with ChaCha8 seed {seed}, \
         training file then t10k file, raster order"
    );
    let title = family.title();
    let stem = family.stem();

    // The static binary values (training file ++ test file), from the cache when it has a
    // trustworthy entry, else sampled from the gray values and cached.
    let binarized = |gray: Option<&(Vec<u8>, Vec<u8>)>| -> Result<Vec<u8>, DataError> {
        if let Some(b) = cache_dir.as_deref().and_then(|d| cache::read(d, &key)) {
            return Ok(b);
        }
        let decoded;
        let (train_all, test) = match gray {
            Some(g) => g,
            None => {
                decoded = decode(&dir, &gz)?;
                &decoded
            }
        };
        let mut rng = static_rng();
        let mut b = Vec::with_capacity(train_all.len() + test.len());
        binarize_into(train_all, &mut rng, &mut b);
        binarize_into(test, &mut rng, &mut b);
        if let Some(d) = &cache_dir {
            // A cache we cannot write is simply not used (read-only home, full disk, ...).
            let _ = cache::write(d, &key, &b);
        }
        Ok(b)
    };

    match variant {
        Variant::Gray => {
            let (train_all, test) = decode(&dir, &gz)?;
            Ok(assemble(
                format!("{stem}-256"),
                256,
                (train_all, test),
                &labels,
                format!("{title}, 256 gray levels as stored; {split_text}"),
                None,
            ))
        }
        Variant::Static => {
            let (train_all, test) = split_test(binarized(None)?);
            Ok(assemble(
                format!("{stem}-binarized (static, seed {seed})"),
                2,
                (train_all, test),
                &labels,
                format!("{title}, {static_text}; {split_text}"),
                None,
            ))
        }
        Variant::Dynamic => {
            let gray = decode(&dir, &gz)?;
            let (train_all, test) = split_test(binarized(Some(&gray))?);
            let mut gray_train = gray.0;
            gray_train.truncate(N_TRAIN * PIXELS);
            Ok(assemble(
                format!("{stem}-binarized-dynamic (train re-binarized per epoch; valid/test static, seed {seed})"),
                2,
                (train_all, test),
                &labels,
                format!(
                    "{title}, dynamic binarization: the train split is re-sampled as Bernoulli(v/255) every \
                     epoch from train_gray (train holds the static sample); valid and test use the \
                     {static_text}; {split_text}"
                ),
                Some(Split {
                    images: gray_train,
                    n: N_TRAIN,
                    labels: None,
                }),
            ))
        }
    }
}

/// Splits training-file ++ test-file values at the file boundary.
fn split_test(mut all: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    let test = all.split_off(N_TRAIN_FILE * PIXELS);
    (all, test)
}

/// Identifies the inputs of a static binarization for the cache: the family and the SHA-256
/// of both image files (labels do not affect the images).
fn source_digest(family: Family, train_images: &[u8; 32], test_images: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"pixc static binarization v1\0");
    h.update(family.stem().as_bytes());
    h.update([0]);
    h.update(train_images);
    h.update(test_images);
    h.finalize().into()
}

/// Decompresses and validates the two label files; returns the labels of the training file
/// and of the test file.
fn decode_labels(dir: &Path, gz: &[Vec<u8>]) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    let limit = |n: usize| 2 * (8 + n) + (1 << 20);
    let path = |i: usize| dir.join(FILES[i]);
    let train = idx::gunzip(&path(1), &gz[1], limit(N_TRAIN_FILE))?;
    let train = idx::parse_labels(&path(1), &train, N_TRAIN_FILE, CLASSES as u8)?;
    let test = idx::gunzip(&path(3), &gz[3], limit(N_TEST))?;
    let test = idx::parse_labels(&path(3), &test, N_TEST, CLASSES as u8)?;
    Ok((train, test))
}

/// Decompresses and validates the two image files (of the four in `FILES` order); returns
/// the gray pixels of the training file and of the test file.
fn decode(dir: &Path, gz: &[Vec<u8>]) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    // Generous limits: a file with the wrong image count should reach the IDX parser and get
    // its precise message, but a runaway stream must not eat memory.
    let limit = |n: usize, per: usize| 2 * (16 + n * per) + (1 << 20);
    let path = |i: usize| dir.join(FILES[i]);
    let train_raw = idx::gunzip(&path(0), &gz[0], limit(N_TRAIN_FILE, PIXELS))?;
    let train = idx::parse_images(&path(0), train_raw, (N_TRAIN_FILE, SIDE, SIDE))?;
    let test_raw = idx::gunzip(&path(2), &gz[2], limit(N_TEST, PIXELS))?;
    let test = idx::parse_images(&path(2), test_raw, (N_TEST, SIDE, SIDE))?;
    Ok((train, test))
}

/// Cuts the training file into train/valid and wraps everything in a [`Dataset`].
fn assemble(
    name: String,
    levels: usize,
    (mut train_all, test): (Vec<u8>, Vec<u8>),
    (train_labels, test_labels): &(Vec<u8>, Vec<u8>),
    protocol: String,
    train_gray: Option<Split>,
) -> Dataset {
    let valid = train_all.split_off(N_TRAIN * PIXELS);
    let wide = |l: &[u8]| Some(l.iter().map(|&y| u16::from(y)).collect::<Vec<u16>>());
    Dataset {
        name,
        channels: 1,
        height: SIDE,
        width: SIDE,
        levels,
        train: Split {
            images: train_all,
            n: N_TRAIN,
            labels: wide(&train_labels[..N_TRAIN]),
        },
        valid: Split {
            images: valid,
            n: N_VALID,
            labels: wide(&train_labels[N_TRAIN..]),
        },
        test: Split {
            images: test,
            n: N_TEST,
            labels: wide(test_labels),
        },
        protocol,
        train_gray,
        classes: CLASSES,
    }
}
