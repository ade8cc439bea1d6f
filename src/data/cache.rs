//! On-disk cache of static binarizations, so the Bernoulli sampling over 55 million MNIST
//! pixels runs once per machine rather than once per `pixc train`.
//!
//! The cache is only ever an optimisation: every field is checked on read, and anything
//! unexpected (other version, other seed, other source files, wrong length, bad checksum)
//! makes the caller rebuild from the source files and overwrite the entry. Write failures
//! are ignored for the same reason.
//!
//! File `<cache dir>/<kind>-binarized-v1.bin` (`kind` = `mnist` or `fashion-mnist`), all
//! integers little-endian:
//!
//! | offset | size | field                                                             |
//! |-------:|-----:|-------------------------------------------------------------------|
//! |      0 |    8 | magic `PIXCBIN1`                                                  |
//! |      8 |    4 | format version, `1`                                               |
//! |     12 |    8 | binarization seed ([`super::BINARIZE_SEED`])                      |
//! |     20 |   12 | channels, height, width (`u32` each)                              |
//! |     32 |   24 | image counts of train, valid, test (`u64` each)                   |
//! |     56 |   32 | source digest: SHA-256 identifying the input files (see `mnist`)  |
//! |     88 |   32 | SHA-256 of the payload                                            |
//! |    120 |    … | payload: train, valid, test images concatenated (N x C x H x W),  |
//! |        |      | one bit per pixel, packed most-significant bit first, the last    |
//! |        |      | byte padded with zero bits                                        |
//!
//! Writes go to a temporary file in the same folder, which is then renamed over the entry,
//! so a crash or a concurrent `pixc` never leaves a half-written file under the final name.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::idx::sha256;

const MAGIC: &[u8; 8] = b"PIXCBIN1";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 120;

/// What a cache entry must match to be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CacheKey {
    /// File-name stem, e.g. `mnist`.
    pub kind: &'static str,
    pub seed: u64,
    /// (channels, height, width).
    pub dims: (usize, usize, usize),
    /// Image counts of (train, valid, test).
    pub counts: (usize, usize, usize),
    /// Identifies the source files the entry was built from.
    pub source: [u8; 32],
}

impl CacheKey {
    fn total_bits(&self) -> usize {
        let (c, h, w) = self.dims;
        (self.counts.0 + self.counts.1 + self.counts.2) * c * h * w
    }

    fn header(&self, payload_sha: &[u8; 32]) -> Vec<u8> {
        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&VERSION.to_le_bytes());
        h.extend_from_slice(&self.seed.to_le_bytes());
        for d in [self.dims.0, self.dims.1, self.dims.2] {
            h.extend_from_slice(&(d as u32).to_le_bytes());
        }
        for n in [self.counts.0, self.counts.1, self.counts.2] {
            h.extend_from_slice(&(n as u64).to_le_bytes());
        }
        h.extend_from_slice(&self.source);
        h.extend_from_slice(payload_sha);
        debug_assert_eq!(h.len(), HEADER_LEN);
        h
    }
}

/// Where the entry for `key` lives inside `dir`.
pub(crate) fn entry_path(dir: &Path, key: &CacheKey) -> PathBuf {
    dir.join(format!("{}-binarized-v{VERSION}.bin", key.kind))
}

/// The cached 0/1 values for `key`, or `None` if there is no entry or it cannot be trusted.
pub(crate) fn read(dir: &Path, key: &CacheKey) -> Option<Vec<u8>> {
    let bytes = std::fs::read(entry_path(dir, key)).ok()?;
    let total = key.total_bits();
    if bytes.len() != HEADER_LEN + total.div_ceil(8) {
        return None;
    }
    let (header, payload) = bytes.split_at(HEADER_LEN);
    let stored_sha: [u8; 32] = header[88..120].try_into().ok()?;
    // Comparing the whole header covers magic, version, seed, dims, counts and source.
    if header != key.header(&stored_sha).as_slice() || sha256(payload) != stored_sha {
        return None;
    }
    Some(unpack(payload, total))
}

/// Stores `values` (0/1, train ++ valid ++ test) for `key`. Errors are returned for
/// completeness but callers ignore them: a cache that cannot be written is just not used.
pub(crate) fn write(dir: &Path, key: &CacheKey, values: &[u8]) -> std::io::Result<()> {
    debug_assert_eq!(values.len(), key.total_bits());
    std::fs::create_dir_all(dir)?;
    let payload = pack(values);
    let header = key.header(&sha256(&payload));
    let dest = entry_path(dir, key);
    // Unique per process and per call, so concurrent writers never share a temp file.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}-binarized.{}.{}.tmp",
        key.kind,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&header)?;
        f.write_all(&payload)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Packs 0/1 values eight to a byte, most-significant bit first. Written out per byte
/// rather than as a fold because debug builds (tests) run this over 55 million values.
fn pack(values: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len().div_ceil(8));
    let mut chunks = values.chunks_exact(8);
    for c in &mut chunks {
        out.push(
            (c[0] & 1) << 7
                | (c[1] & 1) << 6
                | (c[2] & 1) << 5
                | (c[3] & 1) << 4
                | (c[4] & 1) << 3
                | (c[5] & 1) << 2
                | (c[6] & 1) << 1
                | (c[7] & 1),
        );
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        out.push(
            rest.iter()
                .enumerate()
                .fold(0u8, |acc, (i, &v)| acc | ((v & 1) << (7 - i))),
        );
    }
    out
}

/// Inverse of [`pack`] for the first `total` values. A 256-entry table keeps this fast even
/// in unoptimised debug builds, where the trainer's tests load MNIST.
fn unpack(packed: &[u8], total: usize) -> Vec<u8> {
    let mut table = [[0u8; 8]; 256];
    for (b, row) in table.iter_mut().enumerate() {
        for (i, v) in row.iter_mut().enumerate() {
            *v = ((b >> (7 - i)) & 1) as u8;
        }
    }
    let mut out = Vec::with_capacity(packed.len() * 8);
    for &b in packed {
        out.extend_from_slice(&table[usize::from(b)]);
    }
    out.truncate(total);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey {
            kind: "test",
            seed: 7,
            dims: (1, 3, 3),
            counts: (2, 1, 1),
            source: [9; 32],
        }
    }

    #[test]
    fn pack_roundtrip() {
        let v: Vec<u8> = (0..37).map(|i| ((i * 7) % 3 == 0) as u8).collect();
        assert_eq!(unpack(&pack(&v), v.len()), v);
        assert_eq!(pack(&[1, 0, 0, 0, 0, 0, 0, 1, 1]), vec![0x81, 0x80]);
    }

    #[test]
    fn unwritable_dir_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, b"x").unwrap();
        assert!(write(&not_a_dir, &key(), &[0; 36]).is_err());
        assert_eq!(read(&not_a_dir, &key()), None);
    }

    #[test]
    fn roundtrip_and_rejections() {
        let dir = tempfile::tempdir().unwrap();
        let k = key();
        let v: Vec<u8> = (0..36).map(|i| (i % 5 == 0) as u8).collect();
        assert_eq!(read(dir.path(), &k), None);
        write(dir.path(), &k, &v).unwrap();
        assert_eq!(read(dir.path(), &k).as_deref(), Some(v.as_slice()));
        // Any mismatch in the key is a miss.
        for other in [
            CacheKey {
                seed: 8,
                ..k.clone()
            },
            CacheKey {
                source: [1; 32],
                ..k.clone()
            },
            CacheKey {
                counts: (1, 2, 1),
                ..k.clone()
            },
        ] {
            assert_eq!(read(dir.path(), &other), None);
        }
        // A flipped payload bit or a truncated file is a miss.
        let p = entry_path(dir.path(), &k);
        let good = std::fs::read(&p).unwrap();
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 0x80;
        std::fs::write(&p, &bad).unwrap();
        assert_eq!(read(dir.path(), &k), None);
        std::fs::write(&p, &good[..good.len() - 1]).unwrap();
        assert_eq!(read(dir.path(), &k), None);
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
