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
    if sel.stride == 0 {
        bail!("the stride must be at least 1");
    }
    let (spec, model) = checkpoint::load_spec(dir)?;
    let dev = torch::resolve_device(device)?;
    torch::set_threads(None);
    let (tm, step, path) = checkpoint::load_best(dir, &model, dev)?;
    let tcfg = spec.train.clone().unwrap_or_default();
    let ds = load_data(&tcfg, None, mnist_dir.clone(), &model)?;
    let pick = |ds: &data::Dataset| -> Split {
        let sp = match split {
            EvalSplit::Valid => &ds.valid,
            EvalSplit::Test => &ds.test,
        };
        select(sp, ds.image_size(), sel)
    };
    let im = model.graph().image;
    let (images, binarization) = match sel.rebinarize {
        None if im.levels == 2 => (pick(&ds), "static".to_string()),
        None => (pick(&ds), "none".to_string()),
        Some(seed) => {
            let gray_src = gray_source(&DataSource::parse(&tcfg.data)?)?;
            let opts = LoadOptions {
                mnist_dir,
                ..Default::default()
            };
            let gray = pick(&data::load(&gray_src, &opts)?);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let split = Split {
                images: data::binarize_dynamic(&gray.images, &mut rng),
                n: gray.n,
                labels: gray.labels,
            };
            (split, format!("dynamic (seed {seed})"))
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
    let mean = per_image.iter().sum::<f64>() / n as f64;
    let var = per_image.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
    let in_unit = |nats| torch::report_nll(nats, im.levels, im.scored_dims());
    Ok(EvalReport {
        nll: in_unit(mean),
        unit: torch::nll_unit(im.levels).into(),
        nats_per_image: mean,
        std_error: in_unit((var / n as f64).sqrt()),
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
        data: format!("{} ({})", ds.name, ds.protocol),
    })
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

/// Images 0, stride, 2 stride, ... of `sp` (with their labels), at most `sel.limit`.
fn select(sp: &Split, size: usize, sel: &EvalSelection) -> Split {
    let n =
        sp.n.div_ceil(sel.stride)
            .min(sel.limit.unwrap_or(usize::MAX));
    let picked = || (0..sp.n).step_by(sel.stride).take(n);
    let mut images = Vec::with_capacity(n * size);
    for i in picked() {
        images.extend_from_slice(&sp.images[i * size..(i + 1) * size]);
    }
    let labels = sp.labels.as_ref().map(|l| picked().map(|i| l[i]).collect());
    Split { images, n, labels }
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
