//! Integration tests for `pixc::data`: the vendored MNIST (checksums, static binarization,
//! cache), error paths on corrupt or missing data, and the CIFAR-10 and PNG-folder readers
//! on small files the tests write themselves.
//!
//! MNIST is decoded only a few times (all in one test) because debug builds of pixc run the
//! per-pixel loops unoptimised.

use std::path::{Path, PathBuf};

use pixc::data::*;
use sha2::{Digest, Sha256};

fn vendored_mnist() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist"))
}

fn opts_with(mnist_dir: &Path, cache_dir: &Path) -> LoadOptions {
    LoadOptions {
        mnist_dir: Some(mnist_dir.to_path_buf()),
        cache_dir: Some(cache_dir.to_path_buf()),
        png_size: None,
    }
}

fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn check_binary_mnist(d: &Dataset) {
    assert_eq!((d.channels, d.height, d.width, d.levels), (1, 28, 28, 2));
    assert_eq!((d.train.n, d.valid.n, d.test.n), (50_000, 10_000, 10_000));
    for s in [&d.train, &d.valid, &d.test] {
        assert_eq!(s.images.len(), s.n * 784);
        // One histogram pass: every value is 0 or 1, and the fraction of ones.
        let mut hist = [0usize; 256];
        for &v in &s.images {
            hist[v as usize] += 1;
        }
        assert_eq!(hist[0] + hist[1], s.images.len(), "values must be 0/1");
        let frac = hist[1] as f64 / s.images.len() as f64;
        // MNIST's mean intensity is about 0.13.
        assert!((0.12..0.14).contains(&frac), "fraction of ones {frac}");
    }
}

/// The one test that decodes MNIST: checksums pass, the split and values are right, the
/// static binarization is the same built fresh and read from the cache, a corrupt cache is
/// rebuilt, and the dynamic variant carries the gray training images.
#[test]
fn mnist_static_binarization_is_deterministic_and_cached() {
    let cache = tempfile::tempdir().unwrap();
    let opts = opts_with(&vendored_mnist(), cache.path());

    // 1. Built from the .gz files, then written to the cache.
    let built = load(&DataSource::MnistBinarized, &opts).unwrap();
    check_binary_mnist(&built);
    assert!(built.train_gray.is_none());
    // The labels come with the images (class-conditional models read them): the first
    // training digit is a 5, the first test digit a 7, and the test set's class counts
    // are MNIST's published ones.
    assert_eq!(built.classes, 10);
    assert_eq!(built.train.labels.as_ref().unwrap()[0], 5);
    assert_eq!(built.test.labels.as_ref().unwrap()[0], 7);
    let mut counts = [0usize; 10];
    built
        .test
        .labels
        .as_ref()
        .unwrap()
        .iter()
        .for_each(|&y| counts[y as usize] += 1);
    assert_eq!(
        counts,
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    assert_eq!(built.valid.labels.as_ref().unwrap().len(), 10_000);
    assert!(
        built.name.contains(&format!("{BINARIZE_SEED:016X}")),
        "{}",
        built.name
    );
    assert!(built.protocol.contains("50000"), "{}", built.protocol);
    let files = cache_files(cache.path());
    assert_eq!(
        files.len(),
        1,
        "exactly one cache entry, no temp files: {files:?}"
    );
    let entry = files[0].clone();
    let good_bytes = std::fs::read(&entry).unwrap();
    assert_eq!(&good_bytes[..8], b"PIXCBIN1");

    // The dataset itself is pinned: anyone reproducing the protocol (rule and seed in
    // `binarize.rs`) must get these bytes, one per pixel, train then valid then test.
    let mut h = Sha256::new();
    for s in [&built.train, &built.valid, &built.test] {
        h.update(&s.images);
    }
    let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        digest,
        "3aed3d9990740086b6e28eaac3def2490b6b21b1f021b60538e63f590d6f5d27"
    );

    // 2. Read back from the cache: identical.
    let cached = load(&DataSource::MnistBinarized, &opts).unwrap();
    assert_eq!(cached, built);

    // 3. Corrupt one payload byte: the entry must be rejected, rebuilt and rewritten. The
    //    dynamic variant goes through the same static binarization.
    let mut bad = good_bytes.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x10;
    std::fs::write(&entry, &bad).unwrap();
    let dynamic = load(&DataSource::MnistBinarizedDynamic, &opts).unwrap();
    assert_eq!(std::fs::read(&entry).unwrap(), good_bytes, "cache rebuilt");
    assert_eq!(dynamic.train, built.train);
    assert_eq!(dynamic.valid, built.valid);
    assert_eq!(dynamic.test, built.test);
    assert_eq!(dynamic.levels, 2);
    let gray = dynamic
        .train_gray
        .as_ref()
        .expect("dynamic variant has train_gray");
    assert_eq!(gray.n, 50_000);
    assert_eq!(gray.images.len(), built.train.images.len());
    assert!(gray.images.iter().any(|&v| v > 1 && v < 255), "gray values");
    // Bernoulli(0) is always 0 and Bernoulli(1) always 1 (checked on the first 1000
    // images only: this loop runs unoptimised).
    let head = 1000 * 784;
    for (&g, &b) in gray.images[..head].iter().zip(&built.train.images[..head]) {
        if g == 0 {
            assert_eq!(b, 0);
        } else if g == 255 {
            assert_eq!(b, 1);
        }
    }

    // The per-epoch helper: same rule, caller's generator.
    use rand::SeedableRng;
    let sample = &gray.images[..784 * 100];
    let mut r1 = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut r2 = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let a = binarize_dynamic(sample, &mut r1);
    assert_eq!(a, binarize_dynamic(sample, &mut r2));
    assert!(a.iter().all(|&v| v <= 1));
    assert_ne!(
        a,
        binarize_dynamic(sample, &mut r1),
        "a new epoch, a new sample"
    );
}

/// Copies the vendored MNIST files into a temporary folder so a test can damage them.
fn copy_mnist() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(vendored_mnist()).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    dir
}

#[test]
fn mnist_corrupt_file_is_a_corrupt_error() {
    let dir = copy_mnist();
    let cache = tempfile::tempdir().unwrap();
    let victim = dir.path().join("t10k-images-idx3-ubyte.gz");
    let mut bytes = std::fs::read(&victim).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(&victim, &bytes).unwrap();

    let err = load(
        &DataSource::MnistBinarized,
        &opts_with(dir.path(), cache.path()),
    )
    .unwrap_err();
    match &err {
        DataError::Corrupt {
            path,
            expected,
            actual,
            ..
        } => {
            assert_eq!(path, &victim);
            assert_eq!(
                expected,
                "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be"
            );
            assert_ne!(actual, expected);
            let msg = err.to_string();
            assert!(msg.contains("t10k-images-idx3-ubyte.gz"), "{msg}");
            assert!(
                msg.contains(expected.as_str()) && msg.contains(actual.as_str()),
                "{msg}"
            );
        }
        other => panic!("expected a corrupt error, got {other:?}"),
    }
    // Nothing was cached from bad data.
    assert!(cache_files(cache.path()).is_empty());
}

/// Replaces a file in a copied MNIST folder and updates its checksum, so the damage gets
/// past the checksum and must be caught by the format checks.
fn replace_with_valid_checksum(dir: &Path, name: &str, contents: &[u8]) {
    std::fs::write(dir.join(name), contents).unwrap();
    let sums_path = dir.join("SHA256SUMS.gz");
    let sums = std::fs::read_to_string(&sums_path).unwrap();
    let hash: String = Sha256::digest(contents)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let new: String = sums
        .lines()
        .map(|l| {
            if l.ends_with(name) {
                format!("{hash}  {name}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&sums_path, new).unwrap();
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[test]
fn mnist_garbage_and_truncated_files_are_format_errors() {
    let cache = tempfile::tempdir().unwrap();

    // Not gzip at all.
    let dir = copy_mnist();
    replace_with_valid_checksum(dir.path(), "t10k-labels-idx1-ubyte.gz", b"hello, not gzip");
    let err = load(&DataSource::Mnist256, &opts_with(dir.path(), cache.path())).unwrap_err();
    assert!(matches!(err, DataError::BadFormat { .. }), "{err}");
    assert!(err.to_string().contains("gzip"), "{err}");

    // A truncated IDX file: the header promises 60000 labels, the data stops early. (Labels
    // are checked before the images are decompressed, so this stays fast.)
    let dir = copy_mnist();
    let mut idx = vec![0, 0, 8, 1];
    idx.extend_from_slice(&60_000u32.to_be_bytes());
    idx.extend_from_slice(&[3u8; 100]);
    replace_with_valid_checksum(dir.path(), "train-labels-idx1-ubyte.gz", &gzip(&idx));
    let err = load(&DataSource::Mnist256, &opts_with(dir.path(), cache.path())).unwrap_err();
    assert!(matches!(err, DataError::BadFormat { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");

    // Missing checksum list.
    let dir = copy_mnist();
    std::fs::remove_file(dir.path().join("SHA256SUMS.gz")).unwrap();
    let err = load(
        &DataSource::MnistBinarized,
        &opts_with(dir.path(), cache.path()),
    )
    .unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("SHA256SUMS.gz"), "{err}");
}

#[test]
fn mnist_missing_dir_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-mnist");
    let err = load(&DataSource::Mnist256, &opts_with(&missing, tmp.path())).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("no-such-mnist") && msg.contains("PIXC_MNIST_DIR"),
        "{msg}"
    );

    // A folder with one file missing names that file.
    let dir = copy_mnist();
    std::fs::remove_file(dir.path().join("train-labels-idx1-ubyte.gz")).unwrap();
    let err = load(&DataSource::Mnist256, &opts_with(dir.path(), tmp.path())).unwrap_err();
    assert!(
        err.to_string().contains("train-labels-idx1-ubyte.gz"),
        "{err}"
    );
}

/// Fashion-MNIST comes from `scripts/setup.sh` (or the Debian package): CI has it, so there
/// its absence is a failure; elsewhere the test says it is skipped and why.
#[test]
fn fashion_mnist_when_set_up() {
    let dir = pixc::data::resolve_fashion_dir();
    if !dir.join("t10k-images-idx3-ubyte.gz").is_file() {
        let why = format!(
            "Fashion-MNIST is not in {} (run scripts/setup.sh, which fetches it)",
            dir.display()
        );
        assert!(
            std::env::var_os("PIXC_CI").is_none(),
            "{why} (.ci/run requires it)"
        );
        eprintln!("skipping: {why}");
        return;
    }
    let d = load(&DataSource::FashionMnist256, &LoadOptions::default()).unwrap();
    assert_eq!((d.channels, d.height, d.width, d.levels), (1, 28, 28, 256));
    assert_eq!((d.train.n, d.valid.n, d.test.n), (50_000, 10_000, 10_000));
    assert_eq!(d.test.images.len(), 10_000 * 784);
    // The first test image of Fashion-MNIST is an ankle boot: a sanity check on the decode.
    assert!(d.test.images[..784].iter().any(|&v| v > 200));
}

// ---------------------------------------------------------------------------------------
// CIFAR-10

const CIFAR_TRAIN: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];

/// Record `r` of file `f`: label (f + r) % 10, pixel `i` = (f*31 + r*7 + i) % 256.
fn cifar_record(f: usize, r: usize) -> Vec<u8> {
    let mut v = vec![((f + r) % 10) as u8];
    v.extend((0..3072).map(|i| ((f * 31 + r * 7 + i) % 256) as u8));
    v
}

fn write_cifar(dir: &Path, per_file: usize, test_records: usize) {
    for (f, name) in CIFAR_TRAIN.iter().enumerate() {
        let bytes: Vec<u8> = (0..per_file).flat_map(|r| cifar_record(f, r)).collect();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let bytes: Vec<u8> = (0..test_records).flat_map(|r| cifar_record(9, r)).collect();
    std::fs::write(dir.join("test_batch.bin"), bytes).unwrap();
}

#[test]
fn cifar_reader_layout_and_split() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(dir.path(), 3, 2);
    let src = DataSource::parse(&format!("cifar10:{}", dir.path().display())).unwrap();
    let d = load(&src, &LoadOptions::default()).unwrap();
    assert_eq!((d.channels, d.height, d.width, d.levels), (3, 32, 32, 256));
    // 15 training records: fewer than 10,000, so the last tenth (1 image) is valid.
    assert_eq!((d.train.n, d.valid.n, d.test.n), (14, 1, 2));
    assert_eq!(
        d.train.images.len(),
        14 * 3072,
        "labels are not in the images"
    );
    assert_eq!(d.valid.images.len(), 3072);
    assert_eq!(d.test.images.len(), 2 * 3072);
    assert!(d.train_gray.is_none());
    // The labels, for class-conditional models: record byte 0, split like the images.
    assert_eq!(d.classes, 10);
    let want: Vec<u16> = (0..5)
        .flat_map(|f| (0..3).map(move |r| ((f + r) % 10) as u16))
        .collect();
    assert_eq!(d.train.labels.as_deref(), Some(&want[..14]));
    assert_eq!(d.valid.labels.as_deref(), Some(&want[14..]));
    assert_eq!(d.test.labels.as_deref(), Some(&[9u16, 0][..]));

    // Image k of the concatenated batches is record k % 3 of file k / 3, laid out as the
    // file's R, G, B planes: value at (c, y, x) is record byte 1 + c*1024 + y*32 + x.
    let all: Vec<(usize, usize)> = (0..5).flat_map(|f| (0..3).map(move |r| (f, r))).collect();
    for (k, &(f, r)) in all.iter().enumerate() {
        let rec = cifar_record(f, r);
        let img = if k < 14 {
            d.train.image(k, 3072).unwrap()
        } else {
            d.valid.image(k - 14, 3072).unwrap()
        };
        assert_eq!(img, &rec[1..], "image {k}");
        let (c, y, x) = (2, 5, 7);
        assert_eq!(img[(c * 32 + y) * 32 + x], rec[1 + c * 1024 + y * 32 + x]);
    }
    assert_eq!(d.test.image(1, 3072).unwrap(), &cifar_record(9, 1)[1..]);
    assert!(d.test.image(2, 3072).is_none());
}

#[test]
fn cifar_bad_size_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(dir.path(), 2, 1);
    let bad = dir.path().join("data_batch_3.bin");
    let mut bytes = std::fs::read(&bad).unwrap();
    bytes.truncate(bytes.len() - 5);
    std::fs::write(&bad, bytes).unwrap();
    let src = DataSource::Cifar10(dir.path().to_path_buf());
    let err = load(&src, &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, DataError::BadFormat { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("data_batch_3.bin") && msg.contains("3073"),
        "{msg}"
    );

    std::fs::remove_file(&bad).unwrap();
    let err = load(&src, &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("data_batch_3.bin"), "{err}");

    let missing = DataSource::Cifar10(dir.path().join("nope"));
    let err = load(&missing, &LoadOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("cannot download") && msg.contains("cifar-10-binary"),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------------------
// PNG folders

fn write_png(
    path: &Path,
    w: u32,
    h: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    data: &[u8],
) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(color);
    enc.set_depth(depth);
    let mut writer = enc.write_header().unwrap();
    writer.write_image_data(data).unwrap();
    writer.finish().unwrap();
}

/// Gray value of pixel (x, y) of test image `i`.
fn gray_px(i: usize, x: usize, y: usize) -> u8 {
    (i * 20 + y * 5 + x) as u8
}

fn png_opts() -> LoadOptions {
    LoadOptions::default()
}

/// A folder of class subfolders is a labelled data set: labels in folder-name order, each
/// class split on its own so every split has every class.
#[test]
fn png_class_folders_give_labels_and_stratified_splits() {
    let dir = tempfile::tempdir().unwrap();
    for (class, count) in [("cat", 10), ("ant", 12)] {
        let d = dir.path().join(class);
        std::fs::create_dir(&d).unwrap();
        for i in 0..count {
            let v = if class == "ant" { 10 } else { 200 };
            let px = vec![v + i as u8; 6];
            write_png(
                &d.join(format!("{i:02}.png")),
                3,
                2,
                png::ColorType::Grayscale,
                png::BitDepth::Eight,
                &px,
            );
        }
    }
    let d = load(
        &DataSource::PngFolder(dir.path().to_path_buf()),
        &png_opts(),
    )
    .unwrap();
    assert_eq!(d.classes, 2);
    // ant (label 0): 12 images, 8 and 9 to valid and test, 10 more to train; cat: 8/1/1.
    assert_eq!((d.train.n, d.valid.n, d.test.n), (18, 2, 2));
    assert_eq!(d.valid.labels.as_deref(), Some(&[0u16, 1][..]));
    assert_eq!(d.test.labels.as_deref(), Some(&[0u16, 1][..]));
    // ant's image 8 (value 18) is the first valid image; cat's image 9 (209) the last test.
    assert_eq!(d.valid.images[0], 18);
    assert_eq!(d.test.images[6], 209);
    let train = d.train.labels.as_deref().unwrap();
    assert_eq!(train.iter().filter(|&&y| y == 0).count(), 10);
    assert!(d.protocol.contains("ant, cat"), "{}", d.protocol);
}

#[test]
fn png_folder_gray() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (5usize, 4usize);
    // Written out of order; loading sorts by name. Image 3 is 16-bit (high byte kept).
    for i in (0..10).rev() {
        let path = dir.path().join(format!("img{i:02}.png"));
        let px: Vec<u8> = (0..h)
            .flat_map(|y| (0..w).map(move |x| gray_px(i, x, y)))
            .collect();
        if i == 3 {
            let wide: Vec<u8> = px.iter().flat_map(|&v| [v, 0x7f]).collect();
            write_png(
                &path,
                w as u32,
                h as u32,
                png::ColorType::Grayscale,
                png::BitDepth::Sixteen,
                &wide,
            );
        } else {
            write_png(
                &path,
                w as u32,
                h as u32,
                png::ColorType::Grayscale,
                png::BitDepth::Eight,
                &px,
            );
        }
    }
    std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();

    let d = load(
        &DataSource::PngFolder(dir.path().to_path_buf()),
        &png_opts(),
    )
    .unwrap();
    assert_eq!((d.channels, d.height, d.width, d.levels), (1, 4, 5, 256));
    assert_eq!((d.train.n, d.valid.n, d.test.n), (8, 1, 1));
    for i in 0..10 {
        let img = match i {
            0..=7 => d.train.image(i, 20),
            8 => d.valid.image(0, 20),
            _ => d.test.image(0, 20),
        }
        .unwrap();
        for y in 0..h {
            for x in 0..w {
                assert_eq!(img[y * w + x], gray_px(i, x, y), "image {i} ({x},{y})");
            }
        }
    }

    // The model's input size must match.
    let mut opts = png_opts();
    opts.png_size = Some((1, 4, 5));
    assert!(load(&DataSource::PngFolder(dir.path().to_path_buf()), &opts).is_ok());
    opts.png_size = Some((1, 28, 28));
    let err = load(&DataSource::PngFolder(dir.path().to_path_buf()), &opts).unwrap_err();
    assert!(matches!(err, DataError::SizeMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("5x4") && msg.contains("28x28"), "{msg}");
    assert!(
        msg.contains("the model's input") && msg.contains("resize the images to 28x28"),
        "{msg}"
    );
    opts.png_size = Some((3, 4, 5));
    let err = load(&DataSource::PngFolder(dir.path().to_path_buf()), &opts).unwrap_err();
    assert!(err.to_string().contains("grayscale"), "{err}");
}

#[test]
fn png_folder_mixed_color() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (3usize, 2usize);
    // a: gray, b: RGB, c: RGBA (alpha dropped), d: palette.
    write_png(
        &dir.path().join("a.png"),
        3,
        2,
        png::ColorType::Grayscale,
        png::BitDepth::Eight,
        &[10, 20, 30, 40, 50, 60],
    );
    let rgb: Vec<u8> = (0..(w * h) as u8)
        .flat_map(|p| [p, 100 + p, 200 + p])
        .collect();
    write_png(
        &dir.path().join("b.png"),
        3,
        2,
        png::ColorType::Rgb,
        png::BitDepth::Eight,
        &rgb,
    );
    let rgba: Vec<u8> = (0..(w * h) as u8)
        .flat_map(|p| [p, 100 + p, 200 + p, 7])
        .collect();
    write_png(
        &dir.path().join("c.PNG"),
        3,
        2,
        png::ColorType::Rgba,
        png::BitDepth::Eight,
        &rgba,
    );
    {
        let file = std::fs::File::create(dir.path().join("d.png")).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), 3, 2);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(vec![1, 2, 3, 4, 5, 6]);
        let mut writer = enc.write_header().unwrap();
        writer.write_image_data(&[0, 1, 0, 1, 0, 1]).unwrap();
        writer.finish().unwrap();
    }

    let d = load(
        &DataSource::PngFolder(dir.path().to_path_buf()),
        &png_opts(),
    )
    .unwrap();
    assert_eq!((d.channels, d.height, d.width), (3, 2, 3));
    // 4 images: 2 train, 1 valid, 1 test.
    assert_eq!((d.train.n, d.valid.n, d.test.n), (2, 1, 1));
    let size = 3 * 2 * 3;
    // Gray replicated into all three planes.
    let a = d.train.image(0, size).unwrap();
    for c in 0..3 {
        assert_eq!(&a[c * 6..c * 6 + 6], &[10, 20, 30, 40, 50, 60]);
    }
    // Interleaved RGB -> planes.
    let b = d.train.image(1, size).unwrap();
    assert_eq!(&b[0..6], &[0, 1, 2, 3, 4, 5]);
    assert_eq!(&b[6..12], &[100, 101, 102, 103, 104, 105]);
    assert_eq!(&b[12..18], &[200, 201, 202, 203, 204, 205]);
    assert_eq!(d.valid.image(0, size).unwrap(), b, "RGBA without its alpha");
    let pal = d.test.image(0, size).unwrap();
    assert_eq!(&pal[0..6], &[1, 4, 1, 4, 1, 4]);
    assert_eq!(&pal[12..18], &[3, 6, 3, 6, 3, 6]);

    let mut opts = png_opts();
    opts.png_size = Some((1, 2, 3));
    let err = load(&DataSource::PngFolder(dir.path().to_path_buf()), &opts).unwrap_err();
    assert!(
        err.to_string().contains("b.png"),
        "first colour file named: {err}"
    );
}

#[test]
fn png_folder_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src = DataSource::PngFolder(dir.path().to_path_buf());
    let err = load(&src, &png_opts()).unwrap_err();
    assert!(matches!(err, DataError::TooFewImages { .. }), "{err}");
    assert!(err.to_string().contains("found 0"), "{err}");

    for (name, w, h) in [
        ("a.png", 4, 4),
        ("b.png", 4, 4),
        ("c.png", 5, 4),
        ("d.png", 4, 4),
    ] {
        write_png(
            &dir.path().join(name),
            w,
            h,
            png::ColorType::Grayscale,
            png::BitDepth::Eight,
            &vec![0; (w * h) as usize],
        );
    }
    let err = load(&src, &png_opts()).unwrap_err();
    assert!(matches!(err, DataError::SizeMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("c.png")
            && msg.contains("5x4")
            && msg.contains("4x4")
            && msg.contains("a.png"),
        "{msg}"
    );

    std::fs::write(dir.path().join("c.png"), b"\x89PNG garbage").unwrap();
    let err = load(&src, &png_opts()).unwrap_err();
    assert!(matches!(err, DataError::BadFormat { .. }), "{err}");
    assert!(err.to_string().contains("c.png"), "{err}");

    let err = load(
        &DataSource::PngFolder(dir.path().join("missing")),
        &png_opts(),
    )
    .unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------
// Names

#[test]
fn source_names_parse_and_round_trip() {
    for (name, src) in [
        ("mnist-binarized", DataSource::MnistBinarized),
        ("mnist-binarized-dynamic", DataSource::MnistBinarizedDynamic),
        ("mnist-256", DataSource::Mnist256),
        ("fashion-mnist-256", DataSource::FashionMnist256),
        ("fashion-mnist-binarized", DataSource::FashionMnistBinarized),
        (
            "cifar10:/data/cifar",
            DataSource::Cifar10("/data/cifar".into()),
        ),
        ("png:my images", DataSource::PngFolder("my images".into())),
    ] {
        let parsed = DataSource::parse(name).unwrap();
        assert_eq!(parsed, src);
        assert_eq!(parsed.name(), name);
        assert_eq!(name.parse::<DataSource>().unwrap(), src);
    }
    assert_eq!(DataSource::default(), DataSource::MnistBinarized);
}

#[test]
fn unknown_names_list_valid_ones_and_suggest() {
    let err = DataSource::parse("mnist-binarised").unwrap_err();
    match &err {
        DataError::UnknownSource { suggestion, .. } => {
            assert_eq!(suggestion.as_deref(), Some("mnist-binarized"))
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("did you mean `mnist-binarized`"), "{msg}");
    for name in SOURCE_NAMES {
        assert!(msg.contains(name), "{msg} lists {name}");
    }

    let err = DataSource::parse("fashion-mnist-265").unwrap_err();
    assert!(
        err.to_string().contains("did you mean `fashion-mnist-256`"),
        "{err}"
    );
    let err = DataSource::parse("cifar:/x").unwrap_err();
    assert!(
        err.to_string().contains("did you mean `cifar10:/x`"),
        "{err}"
    );

    let err = DataSource::parse("imagenet").unwrap_err();
    assert!(!err.to_string().contains("did you mean"), "{err}");

    let err = DataSource::parse("png:").unwrap_err();
    assert!(matches!(err, DataError::MissingArgument { .. }), "{err}");
    assert!(err.to_string().contains("png:<dir>"), "{err}");
}

#[test]
fn find_datasets_reports_mnist() {
    let opts = LoadOptions {
        mnist_dir: Some(vendored_mnist()),
        ..LoadOptions::default()
    };
    let found = find_datasets(&opts);
    let get = |n: &str| {
        found
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, p)| p.clone())
    };
    assert_eq!(get("mnist-binarized"), Some(Some(vendored_mnist())));
    assert_eq!(get("mnist-256"), Some(Some(vendored_mnist())));
    assert!(get("fashion-mnist-256").is_some());
    assert!(get("cifar10").is_some());

    let opts = LoadOptions {
        mnist_dir: Some("/nonexistent/mnist".into()),
        ..LoadOptions::default()
    };
    let found = find_datasets(&opts);
    assert!(found
        .iter()
        .filter(|(n, _)| n.starts_with("mnist"))
        .all(|(_, p)| p.is_none()));
}
