//! Reading gzipped IDX files (the MNIST / Fashion-MNIST container format) and checking them
//! against a `sha256sum`-style checksum list, with typed errors for every way a file can be
//! missing, corrupt, truncated or simply not IDX.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};

use super::DataError;

/// Reads a whole file, mapping "not found" to [`DataError::NotFound`] with `hint`.
pub(crate) fn read_file(path: &Path, what: &str, hint: &str) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::io(path, what, hint, e))
}

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lower-case hex, as `sha256sum` prints it.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses `sha256sum` output (`<64 hex>  <name>` or `<64 hex> *<name>` per line) into
/// name -> lower-case hex. Blank lines and `#` comments are skipped.
pub(crate) fn parse_checksums(
    sums_file: &Path,
    text: &[u8],
) -> Result<HashMap<String, String>, DataError> {
    let bad = |reason: String| DataError::BadChecksumList {
        sums_file: sums_file.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(text).map_err(|_| bad("not UTF-8 text".into()))?;
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (hash, name) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad(format!("line {} is not `<sha256>  <file>`", i + 1)))?;
        let name = name.trim_start();
        let name = name.strip_prefix('*').unwrap_or(name);
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) || name.is_empty() {
            return Err(bad(format!("line {} is not `<sha256>  <file>`", i + 1)));
        }
        out.insert(name.to_string(), hash.to_ascii_lowercase());
    }
    Ok(out)
}

/// Checks that `actual` (the lower-case hex SHA-256 of `path`'s contents) is what the
/// checksum list `sums` (read from `sums_file`) records for `path`'s file name.
pub(crate) fn verify(
    path: &Path,
    actual: &str,
    sums: &HashMap<String, String>,
    sums_file: &Path,
) -> Result<(), DataError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let expected = sums.get(&name).ok_or_else(|| DataError::BadChecksumList {
        sums_file: sums_file.to_path_buf(),
        reason: format!("it has no entry for {name}; restore the list from the repository"),
    })?;
    if actual != expected {
        return Err(DataError::Corrupt {
            path: path.to_path_buf(),
            sums_file: sums_file.to_path_buf(),
            expected: expected.clone(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// Decompresses gzip data read from `path`, refusing to produce more than `limit` bytes
/// (a damaged or hostile file must not exhaust memory).
pub(crate) fn gunzip(path: &Path, gz: &[u8], limit: usize) -> Result<Vec<u8>, DataError> {
    let mut out = Vec::new();
    GzDecoder::new(gz)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DataError::BadFormat {
            path: path.to_path_buf(),
            format: "gzip".into(),
            reason: format!("{e} (the file is damaged or not gzip-compressed; re-download it)"),
        })?;
    if out.len() > limit {
        return Err(DataError::BadFormat {
            path: path.to_path_buf(),
            format: "gzip".into(),
            reason: format!(
                "it decompresses to more than {limit} bytes, too large for this dataset"
            ),
        });
    }
    Ok(out)
}

const IDX_UBYTE: u8 = 0x08;

fn bad_idx(path: &Path, reason: String) -> DataError {
    DataError::BadFormat {
        path: path.to_path_buf(),
        format: "IDX".into(),
        reason,
    }
}

/// Parses the IDX header of `raw` and checks that the payload has exactly the size the
/// header promises. Returns the dimensions and the payload offset.
fn parse_header(
    path: &Path,
    raw: &[u8],
    ndims: u8,
    what: &str,
) -> Result<(Vec<usize>, usize), DataError> {
    let header_len = 4 + 4 * usize::from(ndims);
    if raw.len() < header_len {
        return Err(bad_idx(
            path,
            format!(
                "it is only {} bytes, shorter than the {header_len}-byte header (truncated?)",
                raw.len()
            ),
        ));
    }
    let magic = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let want = u32::from(IDX_UBYTE) << 8 | u32::from(ndims);
    if magic != want {
        return Err(bad_idx(
            path,
            format!("magic number is 0x{magic:08x}, expected 0x{want:08x} ({what})"),
        ));
    }
    let dims: Vec<usize> = raw[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let payload = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad_idx(path, format!("dimensions {dims:?} are absurdly large")))?;
    let have = raw.len() - header_len;
    if have < payload {
        return Err(bad_idx(
            path,
            format!("dimensions {dims:?} need {payload} data bytes but only {have} are present (truncated file)"),
        ));
    }
    if have > payload {
        return Err(bad_idx(
            path,
            format!("dimensions {dims:?} need {payload} data bytes but {have} are present (trailing garbage)"),
        ));
    }
    Ok((dims, header_len))
}

/// Parses an IDX image file (magic 0x00000803: unsigned bytes, 3 dimensions), checks its
/// shape against `expect` = (count, rows, cols) and returns the pixels: image after image,
/// each in raster order.
pub(crate) fn parse_images(
    path: &Path,
    raw: Vec<u8>,
    expect: (usize, usize, usize),
) -> Result<Vec<u8>, DataError> {
    let (dims, offset) = parse_header(path, &raw, 3, "unsigned-byte images")?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    if (rows, cols) != (expect.1, expect.2) {
        return Err(bad_idx(
            path,
            format!(
                "images are {rows}x{cols}, expected {}x{}",
                expect.1, expect.2
            ),
        ));
    }
    if n != expect.0 {
        return Err(bad_idx(
            path,
            format!("it holds {n} images, expected {}", expect.0),
        ));
    }
    // Drop the header in place rather than copying tens of megabytes.
    let mut pixels = raw;
    pixels.drain(..offset);
    Ok(pixels)
}

/// Parses an IDX label file (magic 0x00000801) and checks there are `count` labels, each
/// below `classes`. Labels are not used for density modelling, but a label file that does
/// not match its image file means the download is mixed up.
pub(crate) fn parse_labels(
    path: &Path,
    raw: &[u8],
    count: usize,
    classes: u8,
) -> Result<Vec<u8>, DataError> {
    let (dims, offset) = parse_header(path, raw, 1, "unsigned-byte labels")?;
    if dims[0] != count {
        return Err(bad_idx(
            path,
            format!("it holds {} labels, expected {count}", dims[0]),
        ));
    }
    if let Some(i) = raw[offset..].iter().position(|&l| l >= classes) {
        return Err(bad_idx(
            path,
            format!("label {} is {}, expected 0..{classes}", i, raw[offset + i]),
        ));
    }
    Ok(raw[offset..offset + count].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx_images(n: u32, r: u32, c: u32, extra: i64) -> Vec<u8> {
        let mut v = vec![0, 0, 8, 3];
        for d in [n, r, c] {
            v.extend_from_slice(&d.to_be_bytes());
        }
        let len = (n * r * c) as i64 + extra;
        v.extend((0..len).map(|i| i as u8));
        v
    }

    #[test]
    fn images_ok() {
        let p = Path::new("x");
        let px = parse_images(p, idx_images(2, 3, 4, 0), (2, 3, 4)).unwrap();
        assert_eq!(px, (0..24).collect::<Vec<u8>>());
    }

    #[test]
    fn images_bad() {
        let p = Path::new("x");
        let msg = |r: Result<Vec<u8>, DataError>| r.unwrap_err().to_string();
        assert!(msg(parse_images(p, idx_images(2, 3, 4, -1), (2, 3, 4))).contains("truncated"));
        assert!(msg(parse_images(p, idx_images(2, 3, 4, 5), (2, 3, 4))).contains("trailing"));
        assert!(msg(parse_images(p, idx_images(2, 3, 4, 0), (2, 28, 28))).contains("3x4"));
        assert!(msg(parse_images(p, idx_images(2, 3, 4, 0), (5, 3, 4))).contains("holds 2"));
        assert!(msg(parse_images(p, vec![1, 2, 3], (2, 3, 4))).contains("header"));
        let mut labels = idx_images(2, 3, 4, 0);
        labels[3] = 1;
        assert!(msg(parse_images(p, labels, (2, 3, 4))).contains("magic"));
        // Absurd dimensions must not overflow or allocate.
        let huge = idx_images(0, 0, 0, 0)
            .iter()
            .enumerate()
            .map(|(i, &b)| if i >= 4 { 0xff } else { b })
            .collect();
        assert!(parse_images(p, huge, (2, 3, 4)).is_err());
    }

    #[test]
    fn labels() {
        let p = Path::new("x");
        let mut raw = vec![0, 0, 8, 1, 0, 0, 0, 3, 0, 9, 1];
        assert!(parse_labels(p, &raw, 3, 10).is_ok());
        assert!(parse_labels(p, &raw, 4, 10).is_err());
        raw[10] = 10;
        assert!(parse_labels(p, &raw, 3, 10).is_err());
    }

    #[test]
    fn checksums() {
        let f = Path::new("SUMS");
        let h = "a".repeat(64);
        let m = parse_checksums(f, format!("{h}  one.gz\n{h} *two.gz\n\n").as_bytes()).unwrap();
        assert_eq!(m["one.gz"], h);
        assert_eq!(m["two.gz"], h);
        assert!(parse_checksums(f, b"nonsense\n").is_err());
        assert!(verify(Path::new("d/one.gz"), &h, &m, f).is_ok());
        let e = verify(Path::new("d/one.gz"), &hex(&sha256(b"x")), &m, f).unwrap_err();
        assert!(matches!(e, DataError::Corrupt { .. }), "{e}");
        assert!(verify(Path::new("d/three.gz"), &h, &m, f).is_err());
    }

    #[test]
    fn gunzip_limits() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&[7u8; 1000]).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(gunzip(Path::new("x"), &gz, 1000).unwrap().len(), 1000);
        assert!(gunzip(Path::new("x"), &gz, 999).is_err());
        assert!(gunzip(Path::new("x"), b"not gzip at all", 1000).is_err());
        assert!(gunzip(Path::new("x"), &gz[..gz.len() / 2], 1000).is_err());
    }
}
