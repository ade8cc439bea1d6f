//! Checksums inside safetensors files: every file pixc writes records the SHA-256 of its
//! own bytes in `__metadata__`, and every load checks it.
//!
//! A checksum cannot be part of the bytes it covers, so the digest is taken over the whole
//! file with the checksum's own 64 hex digits written as `0`s. Keeping it in the file (not
//! in the run's `state.json`) makes a checkpoint checkable on its own: a `best.safetensors`
//! copied out of its run folder, or shipped in a model folder without a `state.json`, still
//! carries it. Covering the header as well as the tensor data also guards the shapes, the
//! offsets and the metadata pixc reads back (`step`, the optimizer's `t`).
//!
//! Sealing and checking are one SHA-256 pass over the file's bytes each; the checksum is
//! found by its key in the JSON header, whose length the placeholder fixes.

use sha2::{Digest, Sha256};
use std::ops::Range;

/// The `__metadata__` key of the checksum.
pub const KEY: &str = "pixc_sha256";

/// The value written before sealing; the digest is taken with these bytes in place.
pub const PLACEHOLDER: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What checking a file found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// The recorded checksum matches the bytes.
    Verified,
    /// The file records no checksum (written before pixc recorded them, or by another tool).
    Absent,
}

/// Lowercase hex of a digest.
fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The JSON header of safetensors bytes, as a byte range of the file.
fn header(bytes: &[u8]) -> Option<Range<usize>> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let end = 8usize.checked_add(usize::try_from(n).ok()?)?;
    (end <= bytes.len()).then_some(8..end)
}

/// Where the checksum's hex digits sit in the file, if the header records one.
fn value_range(bytes: &[u8]) -> Result<Option<Range<usize>>, String> {
    let Some(h) = header(bytes) else {
        return Ok(None);
    };
    let pattern = format!("\"{KEY}\":\"");
    let head = &bytes[h.clone()];
    let mut found = head
        .windows(pattern.len())
        .enumerate()
        .filter(|(_, w)| *w == pattern.as_bytes())
        .map(|(i, _)| i);
    let Some(at) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err(format!("the header records `{KEY}` twice"));
    }
    let start = h.start + at + pattern.len();
    let end = start + PLACEHOLDER.len();
    let ok = bytes.get(start..end).is_some_and(|v| {
        v.iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    }) && bytes.get(end) == Some(&b'"')
        && end < h.end;
    if !ok {
        return Err(format!(
            "the checksum `{KEY}` in the header is not 64 hex digits"
        ));
    }
    Ok(Some(start..end))
}

/// Writes the checksum into safetensors bytes serialised with `KEY` = `PLACEHOLDER` in
/// their metadata. Returns the checksum.
pub fn seal(bytes: &mut [u8]) -> Result<String, String> {
    let r = value_range(bytes)?.ok_or_else(|| format!("no `{KEY}` placeholder to seal"))?;
    if &bytes[r.clone()] != PLACEHOLDER.as_bytes() {
        return Err(format!("`{KEY}` is already sealed"));
    }
    let sum = hex(&Sha256::digest(&*bytes));
    bytes[r].copy_from_slice(sum.as_bytes());
    Ok(sum)
}

/// Checks the checksum of safetensors bytes. `Err` says how the bytes differ from what
/// was written.
pub fn check(bytes: &[u8]) -> Result<Check, String> {
    let Some(r) = value_range(bytes)? else {
        return Ok(Check::Absent);
    };
    let mut h = Sha256::new();
    h.update(&bytes[..r.start]);
    h.update(PLACEHOLDER.as_bytes());
    h.update(&bytes[r.end..]);
    let got = hex(&h.finalize());
    let want = std::str::from_utf8(&bytes[r]).unwrap_or_default();
    if got == want {
        Ok(Check::Verified)
    } else {
        Err(format!(
            "its SHA-256 is {}…, but pixc recorded {}… when it wrote the file",
            &got[..12],
            &want[..want.len().min(12)]
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed() -> Vec<u8> {
        let data = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let view =
            safetensors::tensor::TensorView::new(safetensors::tensor::Dtype::F32, vec![2], &data)
                .unwrap();
        let meta = std::collections::HashMap::from([(KEY.to_string(), PLACEHOLDER.to_string())]);
        let mut b = safetensors::tensor::serialize([("x", view)], Some(meta)).unwrap();
        seal(&mut b).unwrap();
        b
    }

    #[test]
    fn every_byte_is_covered() {
        let b = sealed();
        assert_eq!(check(&b), Ok(Check::Verified));
        let r = value_range(&b).unwrap().unwrap();
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x01;
            // A flip in the key's name leaves a file without a checksum (loaded with a
            // note); every other byte is hashed, or breaks the header that locates it.
            if (r.start - KEY.len() - 3..r.start - 3).contains(&i) {
                continue;
            }
            let parses = safetensors::SafeTensors::deserialize(&c).is_ok();
            assert!(
                check(&c).is_err() || !parses,
                "flipping byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn files_without_a_checksum_are_absent_not_errors() {
        let view = safetensors::tensor::TensorView::new(
            safetensors::tensor::Dtype::F32,
            vec![1],
            &[0u8; 4],
        )
        .unwrap();
        let b = safetensors::tensor::serialize([("x", view)], None).unwrap();
        assert_eq!(check(&b), Ok(Check::Absent));
        assert_eq!(check(b"garbage"), Ok(Check::Absent));
    }
}
