//! Back ends: each takes a validated `ir::validate::Model` (never a raw graph).
//! `torch` lowers to libtorch for training and inference; `onnx` exports ONNX files.

pub mod onnx;
pub mod torch;
