//! Helpers shared by integration tests.

use std::path::{Path, PathBuf};

/// Shrinks a shipped spec to 7x7 with small widths and at most 2 repeats.
#[allow(dead_code)]
pub fn shrink(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let l = line.trim_start();
        let indent = &line[..line.len() - l.len()];
        let new = if l.starts_with("input:") {
            let ch = if l.contains("channels: 3") { 3 } else { 1 };
            let lv = if l.contains("levels: 2}") || l.contains("levels: 2,") {
                2
            } else {
                256
            };
            // A class-conditional spec keeps its classes. A low-res spec keeps its input
            // (factor 2) at 8 x 8: its small model, if any, is then 4 x 4.
            let classes = l
                .split("classes: ")
                .nth(1)
                .map(|c| format!(", classes: {}", c.split([',', '}']).next().unwrap_or("")))
                .unwrap_or_default();
            let (side, low_res) = if l.contains("low_res") {
                (8, ", low_res: 2")
            } else {
                (7, "")
            };
            format!("input: {{channels: {ch}, height: {side}, width: {side}, levels: {lv}{classes}{low_res}}}")
        } else if l.starts_with("h:") {
            "h: 12".into()
        } else if l.starts_with("out_maps:") {
            "out_maps: 12".into()
        } else if l.starts_with("count:") {
            "count: 2".into()
        } else if l.starts_with("- conv: {out: 32,") {
            l.replace("out: 32", "out: 12")
        } else {
            l.to_string()
        };
        out.push_str(indent);
        out.push_str(&new);
        out.push('\n');
    }
    out
}

/// The repository root.
#[allow(dead_code)]
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every valid spec shipped: `specs/*.yaml` and `examples/*.{yaml,pixc}` but the leaky ones.
#[allow(dead_code)]
pub fn shipped() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for dir in ["specs", "examples"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            if matches!(ext, "yaml" | "pixc") && !name.starts_with("leaky_") {
                v.push(p);
            }
        }
    }
    v.sort();
    assert!(v.len() >= 22, "only {} specs found", v.len());
    v
}

/// A one-layer Diagonal BiLSTM on real MNIST, small enough to train in seconds.
#[allow(dead_code)]
pub const TINY: &str = "model: tiny28
params:
  h: 2
input: {channels: 1, height: 28, width: 28, levels: 2}
layers:
  - conv: {out: 2*h, kernel: 7, mask: A}
  - residual:
      skip: true
      body:
        - diag_bilstm: {hidden: h}
        - conv: {out: 2*h, kernel: 1, mask: B}
  - skip_sum
  - relu
  - head: bernoulli
train: {optimizer: adam, lr: 0.01, batch: 4, steps: 4, clip: 1.0, seed: 3, data: mnist-binarized, valid_every: 2}
";

/// libtorch's thread count is process-wide and each training run sets it, so a run
/// started by another test would change it under a run that must be bit-for-bit: the
/// tests here take turns.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[allow(dead_code)]
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The weights with the LSTMs' learned initial states (`h0`, `c0`) set to nonzero values
/// in [-0.5, 0.5), as training makes them; how many were set. At their zero
/// initialisation the Diagonal BiLSTM's states left of the image and the Row LSTM's first
/// row see only zeros, and a bug there would be checked against nothing.
#[allow(dead_code)]
pub fn set_initial_states(w: &mut pixc::weights::Weights, seed: u32) -> usize {
    let mut k = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut set = 0;
    for (name, t) in w.tensors.iter_mut() {
        if name.ends_with(".h0") || name.ends_with(".c0") {
            for v in t.data.iter_mut() {
                k = k.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                *v = ((k >> 16) % 2000) as f32 / 2000.0 - 0.5;
            }
            set += 1;
        }
    }
    set
}
