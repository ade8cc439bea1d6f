//! User data: every `*.png` in one folder (not recursive), decoded with the `png` crate to
//! 8-bit planes and split 80/10/10 into train/valid/test in file-name order. A folder with
//! no `.png` of its own but subfolders that have them is a labelled data set: each
//! subfolder is a class (labels 0, 1, ... in subfolder-name order), and each class is split
//! on its own (in file-name order, images 8 and 9 of every 10 going to valid and test), so
//! every split has every class.
//!
//! Decoding rules: palette and low-bit-depth images are expanded, 16-bit samples keep their
//! high byte, alpha is dropped (pixc models opaque images). The dataset has 1 channel if
//! every file is grayscale (by PNG colour type), else 3, with gray files replicated to RGB.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use png::{ColorType, Transformations};

use super::{DataError, Dataset, Split};

const ADVICE_SIZE: &str =
    "all images must have the same size (resize them, or move the odd ones out of the folder)";
/// What sets the size and channels the caller asks for (`load`'s `want`): the model's
/// input, from its spec.
const MODEL_INPUT: &str = "the model's input (the spec's `input`)";

/// One decoded file, still in its own channel count.
pub(crate) struct Decoded {
    pub path: PathBuf,
    pub gray: bool,
    /// Planes in C x H x W order: 1 plane if `gray`, else 3.
    pub planes: Vec<u8>,
}

fn bad_png(path: &Path, reason: String) -> DataError {
    DataError::BadFormat {
        path: path.to_path_buf(),
        format: "PNG".into(),
        reason,
    }
}

/// The `*.png` files of `dir` (extension matched case-insensitively), sorted by file name so
/// the split does not depend on the file system's listing order.
fn list_pngs(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let hint = "pass the folder holding your .png images as `png:<folder>`";
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, "PNG folder", hint, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let path = entry.path();
        let is_png = path
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("png"));
        if is_png && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Decodes `path` to 8-bit planes (the one PNG decoder of pixc: data folders and
/// `pixc complete --image`), first checking its size against `want` = (height, width,
/// where the expectation came from, what to do about another size) so that an odd file is
/// reported before it is decoded. Returns the image and its height and width.
pub(crate) fn decode(
    path: &Path,
    want: Option<(usize, usize, &str, &str)>,
) -> Result<(Decoded, usize, usize), DataError> {
    let file = File::open(path).map_err(|e| DataError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(Transformations::normalize_to_color8());
    let mut reader = decoder
        .read_info()
        .map_err(|e| bad_png(path, e.to_string()))?;
    let (w, h) = {
        let info = reader.info();
        (info.width as usize, info.height as usize)
    };
    if let Some((eh, ew, from, advice)) = want {
        if (h, w) != (eh, ew) {
            return Err(DataError::SizeMismatch {
                path: path.to_path_buf(),
                found: format!("{w}x{h} pixels"),
                expected: format!("{ew}x{eh} pixels"),
                expected_from: from.to_string(),
                advice: advice.to_string(),
            });
        }
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| bad_png(path, format!("{w}x{h} pixels is too large to decode")))?;
    let mut buf = vec![0u8; size];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| bad_png(path, e.to_string()))?;
    let samples = match frame.color_type {
        ColorType::Grayscale => 1,
        ColorType::GrayscaleAlpha => 2,
        ColorType::Rgb => 3,
        ColorType::Rgba => 4,
        // Unreachable with EXPAND, but a clear error beats trusting that.
        ColorType::Indexed => return Err(bad_png(path, "palette image was not expanded".into())),
    };
    if frame.bit_depth != png::BitDepth::Eight {
        return Err(bad_png(
            path,
            format!("decoded to {:?} bits, expected 8", frame.bit_depth),
        ));
    }
    let gray = samples <= 2;
    let channels = if gray { 1 } else { 3 };
    // Interleaved rows -> planes, dropping alpha.
    let mut planes = vec![0u8; channels * h * w];
    for (y, row) in buf.chunks(frame.line_size).take(h).enumerate() {
        for (x, px) in row.chunks_exact(samples).take(w).enumerate() {
            for (c, &v) in px.iter().take(channels).enumerate() {
                planes[(c * h + y) * w + x] = v;
            }
        }
    }
    Ok((
        Decoded {
            path: path.to_path_buf(),
            gray,
            planes,
        },
        h,
        w,
    ))
}

/// Loads the folder; `want` is an optional required (channels, height, width).
pub(crate) fn load(dir: &Path, want: Option<(usize, usize, usize)>) -> Result<Dataset, DataError> {
    if let Some((c, _, _)) = want {
        if c != 1 && c != 3 {
            return Err(DataError::SizeMismatch {
                path: dir.to_path_buf(),
                found: "a PNG folder (1 or 3 channels)".into(),
                expected: format!("{c} channels"),
                expected_from: MODEL_INPUT.into(),
                advice: "PNG folders give 1 channel (all grayscale) or 3 (RGB)".into(),
            });
        }
    }
    let mut files = list_pngs(dir)?;
    let mut labels: Option<Vec<u16>> = None;
    let mut class_names = Vec::new();
    if files.is_empty() {
        for (k, (name, class_files)) in list_classes(dir)?.into_iter().enumerate() {
            let l = labels.get_or_insert_with(Vec::new);
            l.extend(std::iter::repeat_n(k as u16, class_files.len()));
            files.extend(class_files);
            class_names.push(name);
        }
    }
    if files.len() < 3 {
        return Err(DataError::TooFewImages {
            path: dir.to_path_buf(),
            reason: format!(
                "found {} .png file(s); a PNG folder needs at least 3 images (for train, valid \
                 and test splits) of the same size",
                files.len()
            ),
        });
    }

    let mut images = Vec::with_capacity(files.len());
    // (height, width, what set them, what to do about an image of another size).
    let mut shape: Option<(usize, usize, String, String)> = want.map(|(_, h, w)| {
        let advice =
            format!("resize the images to {w}x{h}, or change the spec's `input` to fit them");
        (h, w, MODEL_INPUT.to_string(), advice)
    });
    for path in &files {
        let expect = shape
            .as_ref()
            .map(|(h, w, from, advice)| (*h, *w, from.as_str(), advice.as_str()));
        let (img, h, w) = decode(path, expect)?;
        if shape.is_none() {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            shape = Some((
                h,
                w,
                format!("the first image ({name})"),
                ADVICE_SIZE.into(),
            ));
        }
        images.push(img);
    }
    let (height, width) = match &shape {
        Some((h, w, _, _)) => (*h, *w),
        None => (0, 0),
    };

    let all_gray = images.iter().all(|i| i.gray);
    let channels = if all_gray { 1 } else { 3 };
    if let Some((c, _, _)) = want {
        if c != channels {
            let odd = if c == 1 {
                images.iter().find(|i| !i.gray)
            } else {
                images.first()
            };
            let odd_path = odd.map_or_else(|| dir.to_path_buf(), |i| i.path.clone());
            let (found, advice) = if c == 1 {
                (
                    "a colour image",
                    "convert the images to grayscale, or give the spec `channels: 3` in `input`",
                )
            } else {
                (
                    "grayscale, like every image in the folder",
                    "give the spec `channels: 1` in `input`, or convert the images to RGB",
                )
            };
            return Err(DataError::SizeMismatch {
                path: odd_path,
                found: found.into(),
                expected: format!("{c} channel(s)"),
                expected_from: MODEL_INPUT.into(),
                advice: advice.into(),
            });
        }
    }

    let plane = height * width;
    let mut pixels = Vec::with_capacity(images.len() * channels * plane);
    for img in &images {
        if img.gray && channels == 3 {
            for _ in 0..3 {
                pixels.extend_from_slice(&img.planes);
            }
        } else {
            pixels.extend_from_slice(&img.planes);
        }
    }

    let n = images.len();
    let per = channels * plane;
    if let Some(labels) = labels {
        return labelled(dir, (channels, height, width), pixels, labels, class_names);
    }
    let k = (n / 10).max(1);
    let n_train = n - 2 * k;
    let mut valid = pixels.split_off(n_train * per);
    let test = valid.split_off(k * per);
    Ok(Dataset {
        classes: 0,
        name: format!("png:{}", dir.display()),
        channels,
        height,
        width,
        levels: 256,
        train: Split {
            images: pixels,
            n: n_train,
            labels: None,
        },
        valid: Split {
            images: valid,
            n: k,
            labels: None,
        },
        test: Split {
            images: test,
            n: k,
            labels: None,
        },
        protocol: format!(
            "{n} PNG images from {} sorted by file name, {width}x{height} pixels, {channels} \
             channel(s), 256 levels (alpha dropped{}); split {n_train} train (first) / {k} valid / \
             {k} test (last), i.e. 80/10/10 with at least 1 image each",
            dir.display(),
            if channels == 3 && images.iter().any(|i| i.gray) {
                ", gray images replicated to RGB"
            } else {
                ""
            }
        ),
        train_gray: None,
    })
}

/// The class subfolders of `dir` that hold `.png` files, sorted by name, each with its
/// files (sorted as `list_pngs` sorts them).
fn list_classes(dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        DataError::io(
            dir,
            "PNG folder",
            "pass the folder holding your .png images as `png:<folder>`",
            e,
        )
    })?;
    let mut subdirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    let mut out = Vec::new();
    for d in subdirs {
        let files = list_pngs(&d)?;
        if !files.is_empty() {
            out.push((
                d.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                files,
            ));
        }
    }
    Ok(out)
}

/// A class-folder data set: `pixels` and `labels` in class order; each class split on its
/// own, image i of a class (file-name order) going to valid when i % 10 == 8, to test when
/// i % 10 == 9, else to train.
fn labelled(
    dir: &Path,
    (channels, height, width): (usize, usize, usize),
    pixels: Vec<u8>,
    labels: Vec<u16>,
    class_names: Vec<String>,
) -> Result<Dataset, DataError> {
    let per = channels * height * width;
    let mut splits: [Split; 3] = Default::default();
    let mut in_class = 0;
    for (i, &y) in labels.iter().enumerate() {
        if i > 0 && labels[i - 1] != y {
            in_class = 0;
        }
        let s = match in_class % 10 {
            8 => 1,
            9 => 2,
            _ => 0,
        };
        in_class += 1;
        let sp = &mut splits[s];
        sp.images.extend_from_slice(&pixels[i * per..(i + 1) * per]);
        sp.labels.get_or_insert_with(Vec::new).push(y);
        sp.n += 1;
    }
    if splits.iter().any(|s| s.n == 0) {
        return Err(DataError::TooFewImages {
            path: dir.to_path_buf(),
            reason: format!(
                "its {} class folders hold {} images in all, too few to give every split one \
                 (image 9 of every 10 of a class goes to valid, image 10 to test): add images",
                class_names.len(),
                labels.len()
            ),
        });
    }
    let [train, valid, test] = splits;
    let (nt, nv, ns) = (train.n, valid.n, test.n);
    Ok(Dataset {
        classes: class_names.len(),
        name: format!("png:{}", dir.display()),
        channels,
        height,
        width,
        levels: 256,
        protocol: format!(
            "{} PNG images from {} in {} class folders (labels in folder-name order: {}), \
             {width}x{height} pixels, {channels} channel(s), 256 levels; each class split on its \
             own in file-name order, images 9 and 10 of every 10 to valid and test: {nt} train / \
             {nv} valid / {ns} test",
            labels.len(),
            dir.display(),
            class_names.len(),
            class_names.join(", ")
        ),
        train,
        valid,
        test,
        train_gray: None,
    })
}
