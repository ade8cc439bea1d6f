//! The arithmetic a model needs, counted from the IR: multiply-adds per image, from each
//! parameter descriptor (`params_of`), so a new op is counted without a line here.
//!
//! Rule: a weight applied at every pixel costs one multiply-add per weight entry and pixel.
//! A masked conv weight counts only the kernel rows the back ends convolve (`Crop`); a
//! state-to-state weight counts once per in-image state (the paper's own count; the fused
//! kernel's skewed states left of the image are extra work, not needed arithmetic).
//! Biases, initial states and element-wise ops (gates, ReLU, sums) are not counted: they
//! are a few percent at most. A training step costs about 3x the forward pass (the forward,
//! and the gradients with respect to inputs and to weights).

use super::mask::Crop;
use super::validate::Model;
use super::Role;

/// Multiply-adds of one forward pass over one image.
pub fn forward_macs(model: &Model) -> u64 {
    let g = model.graph();
    let pixels = (g.image.height * g.image.width) as u64;
    let mut macs = 0u64;
    for id in g.nodes() {
        for p in model.shapes().params(id) {
            let per_pixel: u64 = match p.role {
                Role::Weight => {
                    let (kh, kw) = (p.shape[2], p.shape[3]);
                    let rows = if p.mask.is_some() {
                        Crop::of(kh, kw).rows
                    } else {
                        kh
                    };
                    (p.shape[0] * p.shape[1] * rows * kw) as u64
                }
                Role::StateToState => p.numel() as u64,
                // An unmasked 1x1 conv at every pixel.
                Role::LowResWeight => (p.shape[0] * p.shape[1]) as u64,
                // Every output pixel reads 3 x 3 low-res pixels' taps per channel pair.
                Role::Deconv => (p.shape[0] * p.shape[1] * 9) as u64,
                // A class vector is looked up once per image and added like a bias.
                Role::Bias | Role::InitialHidden | Role::InitialCell | Role::ClassWeight => 0,
            };
            macs += per_pixel * pixels;
        }
    }
    macs
}

/// Floating-point operations of one training step per image: 3 forward passes' worth,
/// 2 FLOPs per multiply-add.
pub fn train_flops_per_image(model: &Model) -> f64 {
    6.0 * forward_macs(model) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_papers_mnist_diagonal_bilstm_counted_by_hand() {
        let text = include_str!("../../specs/diag_bilstm_7_mnist.yaml");
        let (_, m) = crate::compile_str(text, crate::front::Syntax::Yaml).unwrap();
        // Per pixel: the 7x7 mask-A conv (4 kernel rows kept) 4*7*32; per layer the 1x1
        // input-to-state 128*32, state-to-state 128*16*2 and the 1x1 conv 32*16; seven
        // 32x32 skip projections; the 32x32 output conv; the 32-input head.
        let per_pixel =
            4 * 7 * 32 + 7 * (128 * 32 + 128 * 16 * 2 + 32 * 16) + 7 * 32 * 32 + 32 * 32 + 32;
        assert_eq!(forward_macs(&m), per_pixel * 28 * 28);
        assert_eq!(
            train_flops_per_image(&m),
            6.0 * (per_pixel * 28 * 28) as f64
        );
    }
}
