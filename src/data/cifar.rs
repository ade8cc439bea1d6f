//! CIFAR-10 in its "binary version" (`data_batch_1.bin` .. `data_batch_5.bin`,
//! `test_batch.bin`): records of 1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B,
//! each a 32x32 raster), which is already the C x H x W layout pixc uses.
//!
//! pixc cannot download CIFAR-10 (it runs offline), so every "missing" error explains where
//! to get it and where to put it.

use std::path::Path;

use super::{idx, DataError, Dataset, Split};

/// Environment variable naming the CIFAR-10 folder, for the bare name `cifar10`.
pub(crate) const ENV_DIR: &str = "PIXC_CIFAR10_DIR";
/// airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck.
const CLASSES: usize = 10;

const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
const TEST_FILE: &str = "test_batch.bin";
const SIDE: usize = 32;
const CHANNELS: usize = 3;
const IMAGE: usize = CHANNELS * SIDE * SIDE;
const RECORD: usize = 1 + IMAGE;
/// Size of the validation split cut from the end of the training batches (45k/5k).
const N_VALID: usize = 5_000;

fn hint() -> String {
    format!(
        "pixc cannot download CIFAR-10. Get the \"CIFAR-10 binary version\" \
         (cifar-10-binary.tar.gz) from https://www.cs.toronto.edu/~kriz/cifar.html, unpack it, \
         and pass the folder holding {} and {TEST_FILE} as `cifar10:<folder>` \
         (or set {ENV_DIR} and use `cifar10`)",
        TRAIN_FILES.join(", ")
    )
}

/// Whether all six batch files exist in `dir` (for `pixc doctor`; nothing is verified).
pub(crate) fn files_present(dir: &Path) -> bool {
    TRAIN_FILES
        .iter()
        .chain(std::iter::once(&TEST_FILE))
        .all(|f| dir.join(f).is_file())
}

/// Appends the pixels of every record in `path` to `out` and its label (the record's first
/// byte) to `labels`; returns the record count.
fn read_batch(path: &Path, out: &mut Vec<u8>, labels: &mut Vec<u16>) -> Result<usize, DataError> {
    let bytes = idx::read_file(path, "CIFAR-10 batch file", &hint())?;
    if bytes.len() % RECORD != 0 {
        return Err(DataError::BadFormat {
            path: path.to_path_buf(),
            format: "CIFAR-10 binary batch".into(),
            reason: format!(
                "its size, {} bytes, is not a multiple of the {RECORD}-byte record \
                 (1 label byte + 3072 pixel bytes); the file is truncated, or it is the \
                 Python/Matlab version or CIFAR-100 rather than the CIFAR-10 binary version",
                bytes.len()
            ),
        });
    }
    out.reserve(bytes.len() / RECORD * IMAGE);
    for (i, record) in bytes.chunks_exact(RECORD).enumerate() {
        if record[0] as usize >= CLASSES {
            return Err(DataError::BadFormat {
                path: path.to_path_buf(),
                format: "CIFAR-10 binary batch".into(),
                reason: format!(
                    "record {i} has label {}, but CIFAR-10 labels are 0..9",
                    record[0]
                ),
            });
        }
        labels.push(u16::from(record[0]));
        out.extend_from_slice(&record[1..]);
    }
    Ok(bytes.len() / RECORD)
}

/// Loads CIFAR-10 from `dir`. Train is batches 1-5 in order minus their last 5,000 records,
/// which are the validation split (the standard 45k/5k split). Files with fewer records are
/// accepted (useful for tests and subsets): with fewer than 10,000 training records the
/// validation split is the last tenth instead, at least one image.
pub(crate) fn load(dir: &Path) -> Result<Dataset, DataError> {
    if !dir.is_dir() {
        return Err(DataError::NotFound {
            what: "CIFAR-10 folder".into(),
            path: dir.to_path_buf(),
            hint: hint(),
        });
    }
    let (mut train, mut train_labels) = (Vec::new(), Vec::new());
    let mut n_all = 0;
    for f in TRAIN_FILES {
        n_all += read_batch(&dir.join(f), &mut train, &mut train_labels)?;
    }
    let (mut test, mut test_labels) = (Vec::new(), Vec::new());
    let n_test = read_batch(&dir.join(TEST_FILE), &mut test, &mut test_labels)?;
    if n_all < 2 {
        return Err(DataError::TooFewImages {
            path: dir.to_path_buf(),
            reason: format!(
                "the training batches hold {n_all} images; at least 2 are needed to have both a \
                 train and a validation split"
            ),
        });
    }
    if n_test == 0 {
        return Err(DataError::TooFewImages {
            path: dir.join(TEST_FILE),
            reason: "the test batch holds no images".into(),
        });
    }
    let n_valid = N_VALID.min((n_all / 10).max(1));
    let n_train = n_all - n_valid;
    let valid = train.split_off(n_train * IMAGE);
    let valid_labels = train_labels.split_off(n_train);
    Ok(Dataset {
        classes: CLASSES,
        name: "cifar10".into(),
        channels: CHANNELS,
        height: SIDE,
        width: SIDE,
        levels: 256,
        train: Split {
            images: train,
            n: n_train,
            labels: Some(train_labels),
        },
        valid: Split {
            images: valid,
            n: n_valid,
            labels: Some(valid_labels),
        },
        test: Split {
            images: test,
            n: n_test,
            labels: Some(test_labels),
        },
        protocol: format!(
            "CIFAR-10 binary version from {}, 256 levels, RGB planes; split {n_train} train \
             (data_batch_1..5 in order, minus the last {n_valid}) / {n_valid} valid (the last \
             {n_valid} training records) / {n_test} test (test_batch); labels 0-9 (used by class-conditional models)",
            dir.display()
        ),
        train_gray: None,
    })
}
