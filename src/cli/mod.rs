//! Command-line interface: argument parsing, dispatch, and error rendering at the edge.
//!
//! Exit codes: 0 success, 1 runtime failure (I/O, data, training), 2 invalid spec or usage.

mod bench_cmds;
mod deploy_cmds;
mod fsck_cmds;
mod runs_cmds;
mod sample_cmds;
mod spec_cmds;
mod train_cmds;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  pixc train specs/diag_bilstm_7_mnist.yaml --minutes 5 --out runs/mnist
  pixc eval runs/mnist --split test
  pixc doctor
  pixc check specs/diag_bilstm_7_mnist.yaml        shapes, parameters, causality proof
  pixc graph specs/pixelcnn_7_mnist.yaml --dot | dot -Tpng > g.png
  pixc fmt specs/row_lstm_7_mnist.yaml --to dsl    print the spec in the pixc DSL
  pixc snapshot specs/                             pin what each spec compiles to
";

#[derive(Parser)]
#[command(name = "pixc", version, about = "Compile, check, train and ship PixelRNN-family image models", after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Parse and validate a spec; print layers, shapes, parameters and the receptive field
    #[command(
        after_help = "Example:\n  pixc check specs/diag_bilstm_7_mnist.yaml --json | jq .parameters"
    )]
    Check {
        /// Spec files, or folders searched for .yaml, .yml and .pixc specs
        #[arg(required = true)]
        spec: Vec<PathBuf>,
        /// Machine-readable output; an invalid spec's diagnostics as JSON objects, one a line
        #[arg(long)]
        json: bool,
        /// Print the IR dump instead of the table (text only: with --json, use one or the other)
        #[arg(long, conflicts_with = "json")]
        ir: bool,
    },
    /// Print the IR graph (Graphviz DOT)
    #[command(
        after_help = "Example:\n  pixc graph specs/pixelcnn_7_mnist.yaml --dot | dot -Tsvg > model.svg"
    )]
    Graph {
        spec: PathBuf,
        /// Graphviz DOT output (the only format for now)
        #[arg(long, default_value_t = true)]
        dot: bool,
    },
    /// Convert a spec between YAML and the pixc DSL, or check it is canonical (comments are kept)
    #[command(
        after_help = "Examples:\n  pixc fmt specs/diag_bilstm_7_mnist.yaml --to dsl > m.pixc\n  pixc fmt m.pixc --check"
    )]
    Fmt {
        /// Spec file; with --check, several files or folders
        #[arg(required = true)]
        spec: Vec<PathBuf>,
        /// Output syntax (default: the input's own, i.e. canonicalise)
        #[arg(long, value_parser = ["yaml", "dsl"])]
        to: Option<String>,
        /// Exit 1 if the file is not in canonical form (prints nothing else)
        #[arg(long)]
        check: bool,
        /// Rewrite the file in place (atomically)
        #[arg(long, short = 'w', conflicts_with = "check")]
        write: bool,
    },
    /// Print the JSON Schema of the YAML spec (for editors with a YAML language server)
    #[command(
        after_help = "Example:\n  pixc schema > pixc.schema.json\n  then start a spec with: # yaml-language-server: $schema=pixc.schema.json"
    )]
    Schema,
    /// Write or compare snapshots of what specs compile to (check table, IR; insta's .snap format)
    #[command(
        after_help = "Examples:\n  pixc snapshot specs/             compare every spec with specs/snapshots/*.snap (new ones are written)\n  pixc snapshot my.yaml --accept   take the new output as the snapshot\n\nExit codes: 0 all match, 1 a snapshot differs (diff printed, .snap.new written), 2 an invalid spec."
    )]
    Snapshot {
        /// Spec files, or folders searched for .yaml, .yml and .pixc specs
        #[arg(required = true)]
        specs: Vec<PathBuf>,
        /// Update snapshots that differ
        #[arg(long)]
        accept: bool,
        /// Keep the snapshots in this folder (default: `snapshots/` beside each spec)
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Train a spec on its data set (libtorch, CPU or CUDA)
    #[command(
        after_help = "Examples:\n  pixc train specs/diag_bilstm_7_mnist.yaml --minutes 5 --out runs/mnist\n  pixc train --resume runs/mnist --minutes 5\n  pixc train specs/diag_bilstm_7_mnist.yaml --out runs/mnist --resume\n  pixc train specs/pixelcnn_7_mnist.yaml --steps 2000 --batch 32 --device cuda"
    )]
    Train {
        /// Spec file (.yaml or .pixc); with --resume, a run folder alone also works
        spec: PathBuf,
        /// auto (CUDA when available), cpu or cuda
        #[arg(long, default_value = "auto")]
        device: crate::device::Device,
        /// Train this many epochs (overrides the spec)
        #[arg(long, conflicts_with_all = ["steps", "minutes"], value_parser = crate::front::flags::epochs)]
        epochs: Option<u64>,
        /// Train this many optimizer steps in total (overrides the spec)
        #[arg(long, conflicts_with = "minutes", value_parser = crate::front::flags::steps)]
        steps: Option<u64>,
        /// Train for this many minutes of wall time
        #[arg(long, value_parser = crate::front::flags::minutes)]
        minutes: Option<f64>,
        /// Batch size (overrides the spec)
        #[arg(long, value_parser = crate::front::flags::batch)]
        batch: Option<u64>,
        /// Learning rate (overrides the spec)
        #[arg(long, value_parser = crate::front::flags::lr)]
        lr: Option<f64>,
        /// Seed for initial weights and data order (overrides the spec)
        #[arg(long, value_parser = crate::front::flags::seed)]
        seed: Option<u64>,
        /// Data set, e.g. mnist-binarized, mnist-256, fashion-mnist-256, cifar10:DIR, png:DIR
        #[arg(long, value_parser = crate::front::flags::data)]
        data: Option<String>,
        /// Run folder (default runs/<model name>, with -2, -3, ... added if it exists)
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
        /// Continue the run in --out (or the run folder given instead of a spec) from its
        /// last checkpoint
        #[arg(long)]
        resume: bool,
        /// Validate and checkpoint every N steps (overrides the spec)
        #[arg(long, value_parser = crate::front::flags::valid_every)]
        valid_every: Option<u64>,
        /// Validation images per validation (0 = the whole split)
        #[arg(long, default_value_t = 1000, value_parser = crate::front::flags::valid_images)]
        valid_images: usize,
        /// libtorch threads (default: all cores)
        #[arg(long, value_parser = crate::front::flags::threads)]
        threads: Option<usize>,
        /// Write a sample grid to RUN/samples at each validation
        #[arg(long)]
        samples: bool,
        /// One JSON object per validation and a final summary on stdout
        #[arg(long)]
        json: bool,
    },
    /// Score a run's best checkpoint on the validation or test split
    #[command(
        after_help = "Examples:\n  pixc eval runs/mnist --split test --json\n  pixc eval models/diag_bilstm_7_mnist --split test --stride 20     every 20th test image\n  pixc eval models/diag_bilstm_7_mnist --split test --binarization dynamic --seed 1\n  pixc eval --onnx runs/mnist/model.onnx --split test --device cuda"
    )]
    Eval {
        /// A run folder (scored with libtorch)
        #[arg(required_unless_present = "onnx")]
        run: Option<PathBuf>,
        /// Score an exported ONNX file through ONNX Runtime instead
        #[arg(long, conflicts_with = "run")]
        onnx: Option<PathBuf>,
        /// Data set for --onnx (default: the one named in the file's spec)
        #[arg(long)]
        data: Option<String>,
        /// Split to score: valid or test
        #[arg(long, default_value = "valid", value_parser = ["valid", "test"])]
        split: String,
        /// Score only the first N images (after --stride)
        #[arg(long, value_parser = crate::front::flags::at_least_one("limit"))]
        limit: Option<usize>,
        /// Score every K-th image: an even slice of the split (a prefix is not one: MNIST's test images are ordered)
        #[arg(long, default_value_t = 1, value_parser = crate::front::flags::at_least_one("stride"))]
        stride: usize,
        /// static: the data set's own binarization (the paper's protocol); dynamic: a fresh Bernoulli draw of the gray images (--seed), as some implementations report
        #[arg(long, default_value = "static", value_parser = ["static", "dynamic"], conflicts_with = "onnx")]
        binarization: String,
        /// A class-conditional model: score the image alone, -log of the mean of p(image | class) over the classes, comparable with unconditional models
        #[arg(long, conflicts_with = "onnx")]
        marginal: bool,
        /// Seed of the dynamic binarization (default 0)
        #[arg(long, value_parser = crate::front::flags::seed)]
        seed: Option<u64>,
        /// auto (CUDA when available), cpu or cuda
        #[arg(long, default_value = "auto")]
        device: crate::device::Device,
        /// Machine-readable output (JSON on stdout)
        #[arg(long)]
        json: bool,
    },
    /// Export a run's best checkpoint (or a spec with seeded weights) as ONNX
    #[command(
        after_help = "Examples:\n  pixc export --onnx runs/mnist                 # -> runs/mnist/model.onnx\n  pixc export --onnx specs/pixelcnn_7_mnist.yaml -o cnn.onnx --seed 1"
    )]
    Export {
        /// Run folder or spec file
        target: PathBuf,
        /// Export to ONNX (IR 10, opset 21); the only format
        #[arg(long, required = true)]
        onnx: bool,
        /// ONNX file to write (default: RUN/model.onnx, or SPEC with .onnx)
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
        /// Seed of the initial weights when exporting a spec
        #[arg(long, default_value_t = 0, value_parser = crate::front::flags::seed)]
        seed: u64,
        /// Machine-readable output (JSON on stdout)
        #[arg(long)]
        json: bool,
    },
    /// Compare libtorch and ONNX Runtime on the same images (logits and NLL)
    #[command(
        after_help = "Examples:\n  pixc verify runs/mnist\n  pixc verify specs/row_lstm_7_mnist.yaml --images 32 --json"
    )]
    Verify {
        /// Run folder or spec file
        target: PathBuf,
        /// auto (CUDA when available), cpu or cuda
        #[arg(long, default_value = "cpu")]
        device: crate::device::Device,
        /// Images to compare
        #[arg(long, default_value_t = 64, value_parser = crate::front::flags::at_least_one("images"))]
        images: usize,
        /// Seed of the images' random draw and of a spec's initial weights
        #[arg(long, default_value_t = 0, value_parser = crate::front::flags::seed)]
        seed: u64,
        /// Machine-readable output (JSON on stdout)
        #[arg(long)]
        json: bool,
    },
    /// Check every file of a run folder, a model folder or one checkpoint: SHA-256
    /// checksums, spec shapes, and the steps state.json records
    #[command(
        after_help = "Examples:\n  pixc fsck runs/mnist\n  pixc fsck runs/mnist/best.safetensors --json\n\nExit code 1 when any file is damaged, inconsistent or missing."
    )]
    Fsck {
        /// Run folder, model folder (spec.yaml + best.safetensors) or .safetensors file
        target: PathBuf,
        /// Machine-readable output (JSON on stdout)
        #[arg(long)]
        json: bool,
    },
    Sample(sample_cmds::SampleArgs),
    Complete(sample_cmds::CompleteArgs),
    Plot(sample_cmds::PlotArgs),
    /// Table of the runs in a folder: model, steps, best validation and test NLL, wall time, status
    #[command(
        after_help = "Examples:\n  pixc runs\n  pixc runs experiments/ --json\n\nThe test NLL is shown once `pixc eval RUN --split test` has scored the whole split."
    )]
    Runs {
        /// Folder holding run folders
        #[arg(default_value = "runs")]
        dir: PathBuf,
        /// One JSON array of the runs
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(
        after_help = "Examples:\n  pixc completions bash > ~/.local/share/bash-completion/completions/pixc\n  pixc completions zsh > ~/.zfunc/_pixc\n  pixc completions fish > ~/.config/fish/completions/pixc.fish"
    )]
    Completions {
        shell: clap_complete::Shell,
    },
    /// Benchmark training throughput and memory beside the eager PyTorch reference, or
    /// (--inference) ONNX export and NLL evaluation through libtorch and ONNX Runtime
    #[command(
        after_help = "Examples:\n  pixc bench                       # the three MNIST models, batch 16, all cores\n  pixc bench specs/pixelcnn_7_mnist.yaml --seconds 30 --json\n  pixc bench --rounds 5 --seconds 10     # each figure's median and range over 5 alternating rounds\n  pixc bench --inference           # export time/size of every shipped spec; libtorch vs ONNX Runtime\n  pixc bench --inference specs/row_lstm_7_mnist.yaml --batches 1,16,256\n  pixc bench --inference specs/diag_bilstm_7_mnist.yaml --rounds 7   # ratios' median and range over 7 rounds"
    )]
    Bench {
        /// Specs to measure (default: the shipped MNIST Diagonal BiLSTM, Row LSTM, PixelCNN;
        /// with --inference, also the export figures of the other shipped specs)
        specs: Vec<PathBuf>,
        /// Images per training step
        #[arg(long, default_value_t = 16, value_parser = crate::front::flags::at_least_one("batch"))]
        batch: usize,
        /// Seconds of timed training steps per model (after warm-up); with --inference,
        /// per path and round [default: 15, with --inference 1]
        #[arg(long, value_parser = crate::front::flags::seconds)]
        seconds: Option<f64>,
        /// Measure inference: ONNX export time and size, and NLL images/s through libtorch
        /// (fused and plain ops) and ONNX Runtime at each of --batches
        #[arg(long)]
        inference: bool,
        /// Batch sizes for --inference
        #[arg(long, value_delimiter = ',', default_value = "16,256", value_parser = crate::front::flags::at_least_one("batches"))]
        batches: Vec<usize>,
        /// auto (CUDA when available), cpu or cuda
        #[arg(long, default_value = "auto")]
        device: crate::device::Device,
        /// libtorch threads (default: all cores)
        #[arg(long, value_parser = crate::front::flags::threads)]
        threads: Option<usize>,
        /// Measure every spec this many times, pixc and the reference in turn (with
        /// --inference: every path in turn), and print the median and range of each figure
        /// (a shared machine's noise shows in one run); the identical-math check runs in
        /// the first round [default: 1, with --inference 3]
        #[arg(long, value_parser = crate::front::flags::at_least_one("rounds"))]
        rounds: Option<usize>,
        /// Skip the PyTorch reference
        #[arg(long)]
        no_pytorch: bool,
        /// Machine-readable output (JSON on stdout)
        #[arg(long)]
        json: bool,
    },
    /// (internal) measure one spec in this process; used by `pixc bench`
    #[command(hide = true)]
    BenchOne {
        spec: PathBuf,
        #[arg(long, default_value_t = 16, value_parser = crate::front::flags::at_least_one("batch"))]
        batch: usize,
        #[arg(long, default_value_t = 15.0, value_parser = crate::front::flags::seconds)]
        seconds: f64,
        /// auto (CUDA when available), cpu or cuda
        #[arg(long, default_value = "auto")]
        device: crate::device::Device,
        /// libtorch threads (default: all cores)
        #[arg(long, value_parser = crate::front::flags::threads)]
        threads: Option<usize>,
        /// Folder to write the initial weights, the batch and the IR JSON into (for the PyTorch reference)
        #[arg(long)]
        dump: Option<PathBuf>,
    },
    /// Show versions, devices, ONNX Runtime providers and data sets found
    #[command(
        after_help = "Examples:\n  pixc doctor\n  pixc doctor --json | jq .datasets\n\nA missing data set is listed with what makes it available (PIXC_MNIST_DIR,\nPIXC_FASHION_DIR, PIXC_CIFAR10_DIR; see the README's environment variables)."
    )]
    Doctor {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
}

/// Runs the CLI and returns the process exit code.
pub fn run() -> i32 {
    // Output piped into `head` ends quietly, as other Unix tools do, instead of a panic
    // on the first print after the pipe closed (Rust ignores SIGPIPE by default).
    // SAFETY: restores the default action of one signal before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let r = match cli.cmd {
        Cmd::Check { spec, json, ir } => spec_cmds::check_many(&spec, json, ir),
        Cmd::Graph { spec, .. } => spec_cmds::graph(&spec),
        Cmd::Fmt {
            spec,
            to,
            check,
            write,
        } => spec_cmds::fmt_many(&spec, to.as_deref(), check, write),
        Cmd::Schema => spec_cmds::schema(),
        Cmd::Snapshot { specs, accept, dir } => spec_cmds::snapshot(&specs, accept, dir.as_deref()),
        Cmd::Train {
            spec,
            device,
            epochs,
            steps,
            minutes,
            batch,
            lr,
            seed,
            data,
            out,
            resume,
            valid_every,
            valid_images,
            threads,
            samples,
            json,
        } => train_cmds::train(
            &spec,
            out,
            crate::train::TrainOptions {
                device: Some(device),
                epochs,
                steps,
                minutes,
                batch,
                lr,
                seed,
                data,
                out: PathBuf::new(),
                resume,
                threads,
                valid_images,
                valid_every,
                json,
                samples,
                mnist_dir: None,
            },
        ),
        Cmd::Eval {
            run,
            onnx,
            data,
            split,
            limit,
            stride,
            binarization,
            seed,
            marginal,
            device,
            json,
        } => match (run, onnx) {
            (_, Some(path)) => {
                deploy_cmds::eval_onnx(&path, data.as_deref(), &split, stride, limit, device, json)
            }
            (Some(run), None) => train_cmds::eval_selection(stride, limit, &binarization, seed)
                .and_then(|sel| {
                    let sel = crate::train::EvalSelection { marginal, ..sel };
                    train_cmds::eval(&run, &split, &sel, device, json)
                }),
            (None, None) => Err(anyhow::anyhow!("give a run folder or --onnx FILE")),
        },
        Cmd::Export {
            target,
            out,
            seed,
            json,
            ..
        } => deploy_cmds::export(&target, out.as_deref(), seed, json),
        Cmd::Verify {
            target,
            device,
            images,
            seed,
            json,
        } => deploy_cmds::verify(&target, device, images, seed, json),
        Cmd::Doctor { json } => train_cmds::doctor(json),
        Cmd::Fsck { target, json } => fsck_cmds::fsck(&target, json),
        Cmd::Sample(a) => sample_cmds::sample(a),
        Cmd::Complete(a) => sample_cmds::complete(a),
        Cmd::Plot(a) => sample_cmds::plot(a),
        Cmd::Runs { dir, json } => runs_cmds::list(&dir, json),
        Cmd::Completions { shell } => runs_cmds::completions(shell),
        Cmd::Bench {
            specs,
            seconds,
            inference: true,
            batches,
            rounds,
            device,
            threads,
            json,
            ..
        } => bench_cmds::bench_inference(
            specs,
            &batches,
            (seconds.unwrap_or(1.0), rounds.unwrap_or(3)),
            device,
            threads,
            json,
        ),
        Cmd::Bench {
            specs,
            batch,
            seconds,
            rounds,
            device,
            threads,
            no_pytorch,
            json,
            ..
        } => {
            let seconds = seconds.unwrap_or(15.0);
            let specs = if specs.is_empty() {
                bench_cmds::DEFAULT_SPECS
                    .iter()
                    .map(PathBuf::from)
                    .collect()
            } else {
                specs
            };
            let opts = bench_cmds::Opts {
                batch,
                seconds,
                rounds: rounds.unwrap_or(1),
                device,
                threads,
                pytorch: !no_pytorch,
                json,
            };
            bench_cmds::bench(&specs, &opts)
        }
        Cmd::BenchOne {
            spec,
            batch,
            seconds,
            device,
            threads,
            dump,
        } => bench_cmds::bench_one(&spec, batch, seconds, device, threads, dump.as_deref()),
    };
    match r {
        Ok(code) => code,
        Err(e) => report(e),
    }
}

/// The NLL in nats/image beside a figure given in `unit`, as " (75.117 nats/image)"; empty
/// when the figure is in nats/image already (binary data), so it is shown once.
fn nats_aside(unit: &str, nats_per_image: f64) -> String {
    if unit == "nats/image" {
        String::new()
    } else {
        format!(" ({nats_per_image:.3} nats/image)")
    }
}

/// Prints an error and returns its exit code: 2 for spec and usage errors, 1 otherwise.
fn report(e: anyhow::Error) -> i32 {
    if let Some(se) = e.downcast_ref::<crate::SpecError>() {
        eprint!("{}", se.rendered);
        return 2;
    }
    eprintln!("error: {e:#}");
    if crate::usage::is_usage(&e) {
        2
    } else {
        1
    }
}
