//! The application layer: each `pixc` command as a library function that takes options
//! and returns a report. `cli` parses arguments, calls these, and prints or writes JSON;
//! nothing here prints a result.
//!
//! | command | function |
//! | --- | --- |
//! | `export --onnx`, `eval --onnx`, `verify` | `deploy::{export_target, eval_onnx_data, verify}` |
//! | `sample`, `complete`, `plot` | `sample::{sample, complete, plot_run}` |
//! | `bench`, `bench-one`, `bench --inference` | `bench::{bench, bench_one, bench_inference}` |
//! | `doctor` | `doctor::doctor` |
//! | `runs` | `runs::list_runs` (and `runs::record_eval`, which `eval` calls) |
//! | `train`, `eval` | `crate::train::{train, eval}` (the training stage is its own module) |

pub mod bench;
pub mod deploy;
pub mod doctor;
pub mod runs;
pub mod sample;
