//! Back ends: each takes a validated `ir::validate::Model` and its `Weights` (never a raw
//! graph), and reads every parameter fact from the IR's descriptors (`ir::params_of`).
//! `torch` lowers to libtorch for training and inference; `onnx` exports ONNX files;
//! `cached` is the cached sampler, plain CPU loops that draw a pixel at a time.

pub mod cached;
pub mod onnx;
pub mod simd;
pub mod torch;
