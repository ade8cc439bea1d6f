//! `pixc sample`, `pixc complete` and `pixc plot`: argument structs and thin wrappers
//! around `crate::app::sample` (where the work and the checks are).

use crate::app::sample::{self as run, CompleteOptions, SampleOptions};
use crate::device::Device;
use anyhow::Result;
use std::io::IsTerminal;
use std::path::PathBuf;

/// Draw images from a trained run (or an exported ONNX model)
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
Examples:
  pixc sample runs/mnist -n 16 -o samples.png
  pixc sample runs/mnist -n 64 --seed 3 --temperature 0.9 --npy samples.npy --pgm samples/
  pixc sample runs/mnist --reference -n 4        full forward pass per sub-pixel (slow)
  pixc sample --onnx mnist.onnx -n 4             through ONNX Runtime
  pixc sample --onnx big.onnx --low-res small.npy -n 4
                                                 a low-res model, given low-res images

Images are drawn sub-pixel by sub-pixel in raster order (R, G, B within a pixel). The default
sampler caches every layer's state and computes only what each new pixel changes (CPU); it
draws the same images as --reference for the same --seed.")]
pub struct SampleArgs {
    /// Run folder made by `pixc train --out DIR` (its best checkpoint is used)
    #[arg(required_unless_present = "onnx", conflicts_with = "onnx")]
    pub run: Option<PathBuf>,
    /// Number of images (1 to 1024)
    #[arg(short = 'n', long = "num", default_value_t = 16, value_parser = crate::front::flags::num_samples)]
    pub n: usize,
    /// Random seed: the same seed draws the same images
    #[arg(long, default_value_t = 0, value_parser = crate::front::flags::seed)]
    pub seed: u64,
    /// Softmax temperature: below 1 is more conservative, above 1 more varied
    #[arg(long, default_value_t = 1.0, value_parser = crate::front::flags::temperature)]
    pub temperature: f64,
    /// PNG grid to write
    #[arg(short = 'o', long, default_value = "samples.png", value_parser = crate::front::flags::png_file)]
    pub out: PathBuf,
    /// Also write the raw values as a NumPy file (uint8, shape [n, C, H, W])
    #[arg(long, value_name = "FILE", value_parser = crate::front::flags::npy_file)]
    pub npy: Option<PathBuf>,
    /// Also write one .pgm (grayscale) or .ppm (colour) file per image into this folder, raw values (maxval = levels - 1)
    #[arg(long, value_name = "DIR")]
    pub pgm: Option<PathBuf>,
    /// Use the reference sampler: a full forward pass per sub-pixel
    #[arg(long)]
    pub reference: bool,
    /// Sample an exported ONNX model with ONNX Runtime (reference method) instead of a run
    #[arg(long, value_name = "FILE")]
    pub onnx: Option<PathBuf>,
    /// Device for --reference and --onnx: auto, cpu or cuda (the cached sampler runs on the CPU)
    #[arg(long, default_value = "auto")]
    pub device: Device,
    /// Columns of the grid (default: square-ish)
    #[arg(long, value_parser = crate::front::flags::cols)]
    pub cols: Option<usize>,
    /// Screen pixels per image pixel in the grid, 1 to 64 (default: about 112 pixels per image)
    #[arg(long, value_parser = crate::front::flags::scale)]
    pub scale: Option<usize>,
    /// A class-conditional model: draw images of this class (without it: one grid row per class)
    #[arg(long, value_name = "K")]
    pub class: Option<u16>,
    /// A low-res model: draw the rest of these low-res images (uint8 .npy, [N, C, H/f, W/f]
    /// as `--npy` writes, or one image for all); default for a run: its small model's draws,
    /// or the test set's
    #[arg(long, value_name = "FILE")]
    pub low_res: Option<PathBuf>,
    /// Print a JSON summary on stdout
    #[arg(long)]
    pub json: bool,
}

/// Complete images: keep the top rows, sample the rest
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
Examples:
  pixc complete runs/mnist --from-test 8 --keep-rows 14 -o completions.png
  pixc complete runs/mnist --image digit.png --keep-rows 10 --samples 5
  pixc complete models/diag_bilstm_7_mnist_classes --from-test 4 --class 8

Each row of the figure shows the original, the occluded input (hidden part mid-gray, red-ish
gray for colour) and the completions. --image takes a PNG, or a PGM / PPM such as
`pixc sample --pgm` writes, with the model's channels (grayscale or RGB); another size is
resized with nearest neighbour. A class-conditional model completes each test image as its own
class, or every image as --class K.")]
pub struct CompleteArgs {
    /// Run folder made by `pixc train --out DIR`
    pub run: PathBuf,
    /// Complete the first N images of the run's test split
    #[arg(long, value_name = "N", default_value_t = 8, conflicts_with = "image", value_parser = crate::front::flags::at_least_one("from_test"))]
    pub from_test: usize,
    /// Complete this PNG, PGM or PPM instead of test images
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Rows kept from the top (default: half the image)
    #[arg(long, value_name = "ROWS", value_parser = crate::front::flags::keep_rows)]
    pub keep_rows: Option<usize>,
    /// Completions per image
    #[arg(long, default_value_t = 3, value_parser = crate::front::flags::at_least_one("samples"))]
    pub samples: usize,
    /// Random seed
    #[arg(long, default_value_t = 0, value_parser = crate::front::flags::seed)]
    pub seed: u64,
    /// Softmax temperature
    #[arg(long, default_value_t = 1.0, value_parser = crate::front::flags::temperature)]
    pub temperature: f64,
    /// PNG figure to write
    #[arg(short = 'o', long, default_value = "completions.png", value_parser = crate::front::flags::png_file)]
    pub out: PathBuf,
    /// Use the reference sampler (a full forward pass per sub-pixel)
    #[arg(long)]
    pub reference: bool,
    /// Device for --reference: auto, cpu or cuda
    #[arg(long, default_value = "auto")]
    pub device: Device,
    /// Screen pixels per image pixel, 1 to 64
    #[arg(long, value_parser = crate::front::flags::scale)]
    pub scale: Option<usize>,
    /// A class-conditional model: complete every image as class K (default: each test
    /// image's own label; needed with --image)
    #[arg(long, value_name = "K")]
    pub class: Option<u16>,
}

/// Plot training and validation NLL from a run's metrics.jsonl (several runs: overlaid)
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
Examples:
  pixc plot runs/mnist -o curves.png
  pixc plot runs/mnist runs/mnist-2 runs/cnn -o compare.png

Two panels: NLL against training steps and against wall time. Several runs are drawn in
one colour each (thick: validation, thin: training), the legend naming their folders.")]
pub struct PlotArgs {
    /// Run folders made by `pixc train`
    #[arg(required = true)]
    pub run: Vec<PathBuf>,
    /// PNG to write
    #[arg(short = 'o', long, default_value = "curves.png", value_parser = crate::front::flags::png_file)]
    pub out: PathBuf,
}

/// `pixc sample`.
pub fn sample(args: SampleArgs) -> Result<i32> {
    let opts = SampleOptions {
        n: args.n,
        seed: args.seed,
        temperature: args.temperature,
        out: args.out,
        npy: args.npy,
        pgm: args.pgm,
        reference: args.reference,
        device: args.device,
        cols: args.cols,
        scale: args.scale,
        progress: !args.json && std::io::stderr().is_terminal(),
        class: args.class,
        low_res: args.low_res,
    };
    let rep = match (&args.onnx, &args.run) {
        (Some(f), _) => run::sample_onnx_file(f, &opts)?,
        (None, Some(r)) => {
            if !opts.reference && opts.device == Device::Cuda {
                eprintln!(
                    "note: the cached sampler runs on the CPU; --device applies to --reference"
                );
            }
            run::sample_run(r, &opts)?
        }
        (None, None) => anyhow::bail!("give a run folder, or --onnx FILE"),
    };
    if args.json {
        println!("{}", serde_json::to_string(&rep)?);
    } else {
        eprintln!(
            "{} samples in {:.2} s ({} sampler, {}{})",
            rep.n,
            rep.seconds,
            rep.sampler,
            rep.device,
            rep.step
                .map(|s| format!(", checkpoint step {s}"))
                .unwrap_or_default()
        );
        for p in &rep.written {
            println!("wrote {p}");
        }
    }
    Ok(0)
}

/// `pixc complete`.
pub fn complete(args: CompleteArgs) -> Result<i32> {
    let opts = CompleteOptions {
        from_test: args.from_test,
        image: args.image,
        keep_rows: args.keep_rows,
        samples: args.samples,
        seed: args.seed,
        temperature: args.temperature,
        out: args.out,
        reference: args.reference,
        device: args.device,
        scale: args.scale,
        progress: std::io::stderr().is_terminal(),
        mnist_dir: None,
        class: args.class,
    };
    let rep = run::complete_run(&args.run, &opts)?;
    for n in &rep.notes {
        eprintln!("note: {n}");
    }
    eprintln!(
        "{} image(s) x {} completion(s), top {} rows kept, in {:.2} s",
        rep.images, rep.samples, rep.keep_rows, rep.seconds
    );
    println!("wrote {}", rep.out);
    Ok(0)
}

/// `pixc plot`.
pub fn plot(args: PlotArgs) -> Result<i32> {
    let rep = match args.run.as_slice() {
        [one] => run::plot_run(one, &args.out)?,
        many => run::plot_runs(many, &args.out)?,
    };
    for (line, why) in &rep.skipped {
        eprintln!("warning: metrics.jsonl line {line} skipped: {why}");
    }
    println!("wrote {} ({} validation points)", rep.out, rep.points);
    Ok(0)
}
