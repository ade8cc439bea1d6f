//! `pixc eval`: scoring a run's best checkpoint on a split, on an even slice of it, or on
//! a fresh binarization of its gray images, with the spread that makes a slice's figure
//! comparable to the whole split's.

use super::{checkpoint, evaluate_images, load_data};
use crate::backend::torch::{self, TorchModel};
use crate::data::{self, DataSource, LoadOptions, Split};
use crate::device::Device;
use anyhow::{bail, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Which split `pixc eval` scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalSplit {
    Valid,
    Test,
}

/// Which images of the split are scored, and in which binarization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalSelection {
    /// Every `stride`-th image, from the first (1 = all). An even slice, unlike a prefix:
    /// MNIST's test set is ordered, its first 5,000 images being the cleaner ones.
    pub stride: usize,
    /// At most this many images (after `stride`).
    pub limit: Option<usize>,
    /// Score a fresh Bernoulli binarization of the split's gray images, drawn with this
    /// seed, instead of the static one the model was trained and selected on.
    pub rebinarize: Option<u64>,
    /// A class-conditional model: score `-log (1/K) sum_y p(image | y)`, the likelihood of
    /// the image alone (comparable with unconditional models), instead of `p(image | label)`.
    pub marginal: bool,
}

impl Default for EvalSelection {
    fn default() -> EvalSelection {
        EvalSelection {
            stride: 1,
            limit: None,
            rebinarize: None,
            marginal: false,
        }
    }
}

impl EvalSelection {
    /// The whole split, as it is: what `pixc runs` records as the test NLL.
    pub fn is_whole_split(&self) -> bool {
        *self == EvalSelection::default()
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct EvalReport {
    pub nll: f64,
    pub unit: String,
    pub nats_per_image: f64,
    /// The standard error of `nll` (the per-image spread over the root of `images`): how
    /// far a slice's figure may fairly lie from the whole split's.
    pub std_error: f64,
    pub images: usize,
    /// 1 unless every `stride`-th image was scored.
    pub stride: usize,
    pub split: String,
    /// `static` (the data set's own binarization), `dynamic (seed S)`, or `none` (data
    /// with more than 2 levels).
    pub binarization: String,
    /// A class-conditional model: `given labels` (-log p(image | label)) or `marginal over
    /// K classes` (-log of the mean over labels); absent for an unconditional model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
    pub step: u64,
    pub checkpoint: String,
    pub data: String,
    /// A multi-scale run: its parts, the small model's (the low-res subsample) and the
    /// conditional model's (the rest given it); the figures above are their sum per image,
    /// the NLL of the whole image.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<EvalReport>,
}

/// Scores a run's best checkpoint on a split (all images unless `limit`).
pub fn eval_run(
    dir: &Path,
    split: EvalSplit,
    limit: Option<usize>,
    device: Device,
    mnist_dir: Option<PathBuf>,
) -> Result<EvalReport> {
    let sel = EvalSelection {
        limit,
        ..EvalSelection::default()
    };
    eval_run_with(dir, split, &sel, device, mnist_dir, &mut |_, _| {})
}

/// As `eval_run` with any selection, calling `progress(images done, images in all)` after
/// each batch (a full test split takes a minute on a CPU).
pub fn eval_run_with(
    dir: &Path,
    split: EvalSplit,
    sel: &EvalSelection,
    device: Device,
    mnist_dir: Option<PathBuf>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalReport> {
    let (_, model) = checkpoint::load_spec(dir)?;
    let Some(small) = model.small() else {
        return Ok(score_run(dir, split, sel, device, mnist_dir, progress)?.0);
    };
    // A multi-scale run: the small model on the subsample, the conditional model on the
    // rest given it; per image the two NLLs add up to the whole image's.
    if sel.rebinarize.is_some() || sel.marginal {
        bail!(crate::usage::usage(
            "a multi-scale run is scored on the data set's own images: --binarization dynamic and --marginal are not supported for it yet"
        ));
    }
    let small_dir = dir.join("small");
    if !small_dir.join("state.json").exists() {
        bail!(
            "{} is a multi-scale run, but its small model's run {} is missing; train it with `pixc train SPEC --resume {}`",
            dir.display(),
            small_dir.display(),
            dir.display()
        );
    }
    let (small_rep, small_nll) =
        score_run(&small_dir, split, sel, device, mnist_dir.clone(), progress)?;
    let (large_rep, large_nll) = score_run(dir, split, sel, device, mnist_dir, progress)?;
    let total: Vec<f64> = small_nll
        .iter()
        .zip(&large_nll)
        .map(|(a, b)| a + b)
        .collect();
    let im = model.graph().image;
    let (mean, se) = mean_and_error(&total);
    let in_unit = |nats| torch::report_nll(nats, im.levels, im.dims());
    debug_assert_eq!(
        small.graph().image.scored_dims() + im.scored_dims(),
        im.dims()
    );
    Ok(EvalReport {
        nll: in_unit(mean),
        nats_per_image: mean,
        std_error: in_unit(se),
        step: large_rep.step,
        checkpoint: format!("{} + {}", small_rep.checkpoint, large_rep.checkpoint),
        parts: vec![small_rep.clone(), large_rep.clone()],
        ..large_rep
    })
}

/// The mean of per-image NLLs and its standard error.
fn mean_and_error(per_image: &[f64]) -> (f64, f64) {
    let n = per_image.len();
    let mean = per_image.iter().sum::<f64>() / n.max(1) as f64;
    let var = per_image.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
    (mean, (var / n.max(1) as f64).sqrt())
}

/// One model's score of a run folder, with the per-image NLLs in nats.
fn score_run(
    dir: &Path,
    split: EvalSplit,
    sel: &EvalSelection,
    device: Device,
    mnist_dir: Option<PathBuf>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(EvalReport, Vec<f64>)> {
    if sel.stride == 0 {
        bail!("the stride must be at least 1");
    }
    let (spec, model) = checkpoint::load_spec(dir)?;
    let dev = torch::resolve_device(device)?;
    torch::set_threads(None);
    let (tm, step, path) = checkpoint::load_best(dir, &model, dev)?;
    let tcfg = spec.train.clone().unwrap_or_default();
    let ds = load_data(&tcfg, mnist_dir.clone(), &model)?;
    let pick = |ds: &data::Dataset| -> Split {
        let sp = match split {
            EvalSplit::Valid => &ds.valid,
            EvalSplit::Test => &ds.test,
        };
        sp.every(ds.image_size(), sel.stride, sel.limit)
    };
    let im = model.graph().image;
    // What was scored: the run's data set, or the gray one a dynamic binarization draws
    // from (the run's is a static binarization, which was not scored).
    let described = |ds: &data::Dataset| format!("{} ({})", ds.name, ds.protocol);
    let (images, binarization, scored) = match sel.rebinarize {
        None if im.levels == 2 => (pick(&ds), "static".to_string(), described(&ds)),
        None => (pick(&ds), "none".to_string(), described(&ds)),
        Some(seed) => {
            let gray_src = gray_source(&DataSource::parse(&tcfg.data)?)?;
            let opts = LoadOptions {
                mnist_dir,
                ..Default::default()
            };
            let gray_ds = data::load(&gray_src, &opts)?;
            let gray = pick(&gray_ds);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let split = Split {
                images: data::binarize_dynamic(&gray.images, &mut rng),
                n: gray.n,
                labels: gray.labels,
            };
            (split, format!("dynamic (seed {seed})"), described(&gray_ds))
        }
    };
    let classes = tm.classes();
    if sel.marginal && classes == 0 {
        bail!("--marginal sums over a class-conditional model's classes, but this model has none: its NLL is already the image's");
    }
    let per_image = if sel.marginal {
        marginal_images(&tm, &images, 256, progress)?
    } else {
        evaluate_images(&tm, &images, images.n, 256, progress)?
    };
    let labels = match (classes, sel.marginal) {
        (0, _) => None,
        (k, true) => Some(format!("marginal over {k} classes")),
        (_, false) => Some("given labels".to_string()),
    };
    let n = per_image.len();
    let (mean, se) = mean_and_error(&per_image);
    let in_unit = |nats| torch::report_nll(nats, im.levels, im.scored_dims());
    let report = EvalReport {
        nll: in_unit(mean),
        unit: torch::nll_unit(im.levels).into(),
        nats_per_image: mean,
        std_error: in_unit(se),
        images: n,
        stride: sel.stride,
        split: match split {
            EvalSplit::Valid => "valid".into(),
            EvalSplit::Test => "test".into(),
        },
        binarization,
        labels,
        step,
        checkpoint: path.display().to_string(),
        data: scored,
        parts: Vec::new(),
    };
    Ok((report, per_image))
}

/// Per image, `-log (1/K) sum_y p(x | y)` in nats: a class-conditional model scored as a
/// model of the image alone, one pass per class (`K` times the work of `evaluate_images`).
fn marginal_images(
    tm: &TorchModel,
    sp: &Split,
    batch: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>> {
    let k = tm.classes();
    let size = tm.dims();
    tm.apply_thread_policy();
    let mut out = Vec::with_capacity(sp.n);
    tch::no_grad(|| -> Result<()> {
        let mut i = 0;
        while i < sp.n {
            let b = batch.min(sp.n - i);
            let x = tm.images_to_tensor(&sp.images[i * size..(i + b) * size], b);
            let per_class: Vec<Tensor> = (0..k as i64)
                .map(|y| {
                    let labels = Tensor::full([b as i64], y, (Kind::Int64, tch::Device::Cpu));
                    tm.nll_labeled(&x, Some(&labels)).to_kind(Kind::Double)
                })
                .collect();
            // -log mean_y exp(-nll_y), stably.
            let nll = -(-Tensor::stack(&per_class, 1)).logsumexp([1], false) + (k as f64).ln();
            out.extend(Vec::<f64>::try_from(&nll.flatten(0, -1))?);
            i += b;
            progress(i, sp.n);
        }
        Ok(())
    })?;
    Ok(out)
}

/// The gray data set behind a binarized one, for `--binarization dynamic`.
fn gray_source(src: &DataSource) -> Result<DataSource> {
    Ok(match src {
        DataSource::MnistBinarized | DataSource::MnistBinarizedDynamic => DataSource::Mnist256,
        DataSource::FashionMnistBinarized => DataSource::FashionMnist256,
        other => bail!(
            "--binarization dynamic re-binarizes gray images, but this run's data set `{}` is not a binarized MNIST or Fashion-MNIST",
            other.name()
        ),
    })
}
