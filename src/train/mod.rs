//! Training and evaluation on real data with the libtorch back end.
//!
//! A run folder holds everything needed to resume, evaluate, export and sample:
//! `spec.yaml` (canonical spec), `state.json` (step, epoch, best), `last.safetensors` +
//! `last.optim.safetensors` (weights and optimizer state), `best.safetensors` (best
//! validation weights), `metrics.jsonl` (one JSON object per validation) and `samples/`.
//! Every file is written atomically (temp + rename), state.json last, so an interrupted
//! write never loses the previous good checkpoint.

pub mod checkpoint;
pub mod eval;
pub mod fsck;
pub mod optim;
pub mod progress;
pub mod recovery;
pub mod resume;
pub mod run_dir;
pub mod schedule;
pub mod signals;

pub use eval::{eval_run, eval_run_with, EvalReport, EvalSelection, EvalSplit};

use crate::backend::torch::{self, TorchModel};
use crate::data::{self, DataSource, Dataset, LoadOptions, Split};
use crate::device::Device;
use crate::front::ast::{ScheduleKind, Spec, Train};
use crate::ir::validate::Model;
use crate::usage::usage;
use crate::weights::Weights;
use anyhow::{bail, Context, Result};
use checkpoint::RunState;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Kind;

/// Command-line overrides of the spec's `train:` section and run options.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    pub device: Option<Device>,
    pub epochs: Option<u64>,
    pub steps: Option<u64>,
    pub minutes: Option<f64>,
    pub batch: Option<u64>,
    pub lr: Option<f64>,
    pub seed: Option<u64>,
    pub data: Option<String>,
    pub out: PathBuf,
    pub resume: bool,
    pub threads: Option<usize>,
    /// Validation images per validation (the full split at the end of `pixc eval`).
    pub valid_images: usize,
    pub valid_every: Option<u64>,
    pub json: bool,
    /// Write a sample grid at each validation.
    pub samples: bool,
    pub mnist_dir: Option<PathBuf>,
}

/// What a finished (or stopped) run reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainReport {
    pub steps: u64,
    pub epochs_done: f64,
    pub seconds: f64,
    pub images_per_second: f64,
    /// Named as in metrics.jsonl, where the same figure is `best_valid_nll`.
    #[serde(rename = "best_valid_nll")]
    pub best_valid: Option<f64>,
    pub last_train: Option<f64>,
    pub unit: String,
    pub stopped_by: String,
    pub out: String,
    pub device: String,
    /// A multi-scale run: its small model's part (trained first, into `RUN/small`); the
    /// fields above are the conditional model's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub small: Option<Box<TrainReport>>,
}

pub(crate) fn load_data(
    train: &Train,
    mnist_dir: Option<PathBuf>,
    model: &Model,
) -> Result<Dataset> {
    let src = DataSource::parse(&train.data)?;
    let im = model.graph().image;
    let f = train.subsample.unwrap_or(1) as usize;
    let opts = LoadOptions {
        mnist_dir,
        png_size: Some((im.channels, im.height * f, im.width * f)),
        ..Default::default()
    };
    let mut ds = data::load(&src, &opts)?;
    if f > 1 {
        data::subsample(&mut ds, f);
    }
    check_labels(&ds, model)?;
    if (ds.channels, ds.height, ds.width, ds.levels)
        != (im.channels, im.height, im.width, im.levels)
    {
        // Only the levels differ: the spec's `levels` is the likelier fix (a PNG folder of
        // black-and-white images still has 256 levels).
        let fix = if (ds.channels, ds.height, ds.width) == (im.channels, im.height, im.width) {
            format!(
                "set `levels: {}` in the spec's `input`, or pick a `data:` with {} levels",
                ds.levels, im.levels
            )
        } else {
            "pick a matching `data:` (e.g. mnist-binarized for 1x28x28, levels 2)".to_string()
        };
        bail!(
            "data set {} has {}x{}x{} images with {} levels, but the spec models {}x{}x{} with {} levels; {fix}",
            ds.name, ds.channels, ds.height, ds.width, ds.levels, im.channels, im.height, im.width, im.levels
        );
    }
    Ok(ds)
}

/// A class-conditional model needs a data set with labels, of as many classes, each label
/// in range (the loaders check theirs; this is the trainer's own guard).
fn check_labels(ds: &Dataset, model: &Model) -> Result<()> {
    let classes = model.graph().image.classes;
    if classes == 0 {
        return Ok(());
    }
    if ds.classes == 0 {
        bail!(
            "the model is class-conditional (`classes: {classes}`), but data set {} has no labels; use one that has them (mnist-binarized, fashion-mnist-256, ...) or remove `classes`",
            ds.name
        );
    }
    if ds.classes != classes {
        bail!(
            "the model has `classes: {classes}`, but data set {} has {} classes; set `classes: {}`",
            ds.name,
            ds.classes,
            ds.classes
        );
    }
    for (what, sp) in [
        ("train", &ds.train),
        ("valid", &ds.valid),
        ("test", &ds.test),
    ] {
        let labels = sp.labels.as_deref().unwrap_or_default();
        if labels.len() != sp.n {
            bail!(
                "data set {}: the {what} split has {} labels for {} images",
                ds.name,
                labels.len(),
                sp.n
            );
        }
        if let Some(i) = labels.iter().position(|&y| y as usize >= classes) {
            bail!(
                "data set {}: {what} image {i} has label {}, out of range for `classes: {classes}` (labels are 0..{})",
                ds.name,
                labels[i],
                classes - 1
            );
        }
    }
    Ok(())
}

/// The labels of images `idx` of a split as an int64 tensor, for a conditional model
/// (`None` for an unconditional one; `check_labels` made sure they exist).
fn batch_labels(tm: &TorchModel, sp: &Split, idx: &[usize]) -> Option<tch::Tensor> {
    if tm.classes() == 0 {
        return None;
    }
    let labels = sp.labels.as_deref()?;
    let y: Vec<u16> = idx.iter().map(|&i| labels[i]).collect();
    Some(TorchModel::labels_tensor(&y))
}

/// Mean per-image NLL (nats) over the first `limit` images of a split.
pub fn evaluate(tm: &TorchModel, split: &Split, limit: usize, batch: usize) -> Result<f64> {
    evaluate_with(tm, split, limit, batch, &mut |_, _| {})
}

/// As `evaluate`, calling `progress(images done, images in all)` after each batch.
pub fn evaluate_with(
    tm: &TorchModel,
    split: &Split,
    limit: usize,
    batch: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<f64> {
    let per_image = evaluate_images(tm, split, limit, batch, progress)?;
    Ok(per_image.iter().sum::<f64>() / per_image.len() as f64)
}

/// The NLL (nats) of each of the first `limit` images of a split, in order.
pub fn evaluate_images(
    tm: &TorchModel,
    split: &Split,
    limit: usize,
    batch: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>> {
    let size = tm.dims();
    let n = split.n.min(limit);
    if n == 0 {
        bail!("the split has no images");
    }
    let mut out = Vec::with_capacity(n);
    // Training steps leave libtorch single-threaded on this thread (see `nll_grads`).
    tm.apply_thread_policy();
    tch::no_grad(|| -> Result<()> {
        let mut i = 0;
        while i < n {
            let b = batch.min(n - i);
            let x = tm.images_to_tensor(&split.images[i * size..(i + b) * size], b);
            let idx: Vec<usize> = (i..i + b).collect();
            let y = batch_labels(tm, split, &idx);
            let nll = tm
                .nll_labeled(&x, y.as_ref())
                .to_kind(Kind::Double)
                .flatten(0, -1);
            out.extend(Vec::<f64>::try_from(&nll)?);
            i += b;
            progress(i, n);
        }
        Ok(())
    })?;
    Ok(out)
}

/// Trains `model` (compiled from `spec`) as `opts` says.
pub fn train(spec: &Spec, model: &Model, opts: &TrainOptions) -> Result<TrainReport> {
    match model.small() {
        Some(small) => train_multiscale(spec, model, small, opts),
        None => train_one(spec, model, opts),
    }
}

/// A multi-scale spec: its small model (on the data set's subsample) into `RUN/small`,
/// then the conditional model into `RUN`, each a run of its own with the same options
/// (`--steps`, `--minutes` apply to each) and each resumed where it stopped. The two have
/// no parameter in common and their losses add, so training them one after the other
/// optimises the same total as training them together.
fn train_multiscale(
    spec: &Spec,
    model: &Model,
    small: &Model,
    opts: &TrainOptions,
) -> Result<TrainReport> {
    let factor = model
        .graph()
        .image
        .low_res
        .context("a multi-scale model has a low-res input")?
        .factor;
    let small_spec = spec
        .small_spec(factor)
        .context("a multi-scale spec has `small`")?;
    let small_out = opts.out.join("small");
    let started = |dir: &Path| dir.join("state.json").exists();
    if opts.resume && !started(&small_out) && !started(&opts.out) {
        bail!(usage(format!(
            "{} holds no run to resume (no state.json, nor small/state.json); start it without --resume",
            opts.out.display()
        )));
    }
    if !opts.resume && (started(&small_out) || started(&opts.out)) {
        bail!(usage(format!(
            "{} already holds a run; use --resume to continue it or choose another --out",
            opts.out.display()
        )));
    }
    let small_opts = TrainOptions {
        out: small_out.clone(),
        resume: opts.resume && started(&small_out),
        ..opts.clone()
    };
    if !opts.json {
        eprintln!(
            "multi-scale: the small model first, into {}",
            small_out.display()
        );
    }
    let first = train_one(&small_spec, small, &small_opts)?;
    if signals::exit_code(&first.stopped_by).is_some() {
        // Stopped by a signal: the conditional model waits for `--resume`.
        return Ok(first);
    }
    if !opts.json {
        eprintln!(
            "multi-scale: the conditional model, into {}",
            opts.out.display()
        );
    }
    let large_opts = TrainOptions {
        resume: opts.resume && started(&opts.out),
        ..opts.clone()
    };
    let mut rep = train_one(spec, model, &large_opts)?;
    rep.small = Some(Box::new(first));
    Ok(rep)
}

fn train_one(spec: &Spec, model: &Model, opts: &TrainOptions) -> Result<TrainReport> {
    let mut tcfg = spec.train.clone().unwrap_or_default();
    if let Some(b) = opts.batch {
        tcfg.batch = b;
    }
    if let Some(lr) = opts.lr {
        tcfg.lr = lr;
    }
    if let Some(s) = opts.seed {
        tcfg.seed = s;
    }
    if let Some(v) = opts.valid_every {
        tcfg.valid_every = v;
    }
    // Recorded in the run's spec.yaml like any override, so that `pixc eval` scores the
    // data the run was trained on and `--resume` continues on it (both read the run's
    // spec); it is part of the resume key, so another `--data` is refused on resume.
    if let Some(d) = &opts.data {
        tcfg.data = d.clone();
    }
    // The spec's own length, which a run limited by --minutes alone still plans its
    // schedule over.
    let spec_plan = (tcfg.steps, tcfg.epochs);
    if opts.steps.is_some() || opts.epochs.is_some() || opts.minutes.is_some() {
        tcfg.steps = opts.steps;
        tcfg.epochs = opts.epochs;
    }
    torch::set_threads(opts.threads);
    let device = torch::resolve_device(opts.device.unwrap_or(Device::Auto))?;
    let out = &opts.out;
    // Everything that can refuse the command is checked before the run folder is made.
    let holds_run = out.join("state.json").exists();
    if opts.resume && !holds_run {
        bail!(usage(format!(
            "{} holds no run to resume (no state.json); start it without --resume",
            out.display()
        )));
    }
    if !opts.resume && holds_run {
        bail!(usage(format!(
            "{} already holds a run; use --resume to continue it or choose another --out",
            out.display()
        )));
    }
    // A resumed run's own `train:` section (read once): its data and its schedule.
    let run_train = match opts.resume {
        true => Some(checkpoint::load_spec(out)?.0.train),
        false => None,
    };
    if let Some(run_train) = &run_train {
        // Before the data is loaded: other data would fail there with a message about
        // the data set, not about the resume (the resume key refuses it too, later).
        let trained_on = run_train
            .as_ref()
            .map(|t| t.data.clone())
            .unwrap_or_default();
        if trained_on != tcfg.data {
            bail!(usage(format!(
                "the run was trained on `{trained_on}` (its spec.yaml), and this command would continue on `{}`: resume with the run's own spec (`pixc train --resume {}`), or give `--data {trained_on}`",
                tcfg.data,
                out.display()
            )));
        }
    }
    let mut ds = load_data(&tcfg, opts.mnist_dir.clone(), model)?;
    if tcfg.batch > ds.train.n as u64 {
        bail!(usage(format!(
            "`batch` {} is more than the {} training images of {}; use a smaller --batch",
            tcfg.batch, ds.train.n, ds.name
        )));
    }
    let im = model.graph().image;
    let size = im.dims();
    let batch = tcfg.batch as usize;
    let n_train = ds.train.n;
    let per_epoch = (n_train / batch).max(1) as u64;
    let max_steps = match (tcfg.steps, tcfg.epochs) {
        (Some(s), _) => Some(s),
        (None, Some(e)) => Some(e * per_epoch),
        (None, None) if opts.minutes.is_some() => None,
        (None, None) => Some(per_epoch),
    };
    // The schedule is fixed when the run starts (its length resolved and written into
    // spec.yaml); a resumed run reads it back from there, whatever its own step limit. A
    // run given only --minutes has no step limit: its schedule spans the spec's `steps`
    // or `epochs`, so it does not depend on how fast the machine is.
    let planned = max_steps.or(match spec_plan {
        (Some(s), _) => Some(s),
        (None, Some(e)) => Some(e * per_epoch),
        (None, None) => None,
    });
    tcfg.schedule = match run_train {
        Some(run_train) => run_train.map(|t| t.schedule).unwrap_or_default(),
        None => schedule::resolve(&tcfg.schedule, per_epoch, planned)?,
    };
    let lr_schedule = schedule::for_run(&tcfg.schedule, tcfg.lr)?;
    if opts.resume {
        past_the_schedule(&lr_schedule, max_steps)?;
    }
    // Limited by time alone, a cosine run that decays to a zero rate still stops where it
    // gets there: every later step would leave the weights as they are.
    let schedule_end = (max_steps.is_none()
        && lr_schedule.kind == ScheduleKind::Cosine
        && lr_schedule.min_lr == 0.0)
        .then_some(lr_schedule.decay_steps);
    if let (Some(end), false, false) = (schedule_end, opts.resume, opts.json) {
        eprintln!(
            "note: --minutes limits this run; its cosine schedule reaches a zero rate at step {end}, where the run stops if it gets there"
        );
    }
    let max_steps = max_steps.or(schedule_end);
    let run_spec = spec_for_run(spec, &tcfg);
    let spec_text = crate::front::fmt::to_yaml(&run_spec);
    let changes = if opts.resume {
        resume::compare(out, &spec_text, model)?
    } else {
        Vec::new()
    };
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create the run folder {}", out.display()))?;
    // Held until this function returns: no second `pixc train` writes this folder.
    let _lock = run_dir::RunLock::acquire(out)?;

    // Fresh start or resume.
    let (mut tm, mut state, mut opt) = if opts.resume {
        let ck = checkpoint::load_last(out, model, device)
            .with_context(|| format!("cannot resume from {}", out.display()))?;
        if let Some(end) = schedule_end.filter(|&end| ck.1.step >= end) {
            bail!(usage(format!(
                "the run's cosine schedule reached its zero rate at step {end} and the run is at step {}: further steps would change nothing; train longer in a new run (--steps N plans its cosine over N steps)",
                ck.1.step
            )));
        }
        (ck.0, ck.1, ck.2)
    } else {
        let w = Weights::init(model, tcfg.seed);
        let tm = TorchModel::new(model, &w, device)?;
        let opt = optim::Optimizer::new(tcfg.optimizer, tcfg.lr, &tm.parameters());
        (tm, RunState::new(&resume_key(model, &tcfg)), opt)
    };
    opt.lr = tcfg.lr;
    if !opts.resume {
        crate::util::write_atomic(&out.join("spec.yaml"), spec_text.as_bytes()).with_context(
            || {
                format!(
                    "cannot write {} before step 1 (nothing was trained or saved yet)",
                    out.join("spec.yaml").display()
                )
            },
        )?;
    } else {
        let key = checkpoint::sha256(&resume_key(model, &tcfg));
        if state.spec_sha256 == checkpoint::sha256(&legacy_resume_key(model, &tcfg)) {
            // A run from before the fingerprint: same model and settings; adopt the new key.
            state.spec_sha256 = key;
        } else if state.spec_sha256 != key {
            bail!(
                "the model, optimizer, batch, seed or data differ from the run's ({}); resume with the same spec (step limits and the learning rate may change), or start a new --out",
                out.join("spec.yaml").display()
            );
        }
        resume::record(out, state.step, &changes, &run_spec)?;
    }

    let deadline = opts
        .minutes
        .map(|m| Instant::now() + std::time::Duration::from_secs_f64(m * 60.0));

    signals::install();
    let unit = torch::nll_unit(im.levels);
    let report = |nats: f64| torch::report_nll(nats, im.levels, im.scored_dims());
    let bar = progress_bar(max_steps, state.step, opts.json);
    // With the bar hidden (output not a terminal) and no JSON asked, plain lines instead.
    let mut ticker =
        (bar.is_hidden() && !opts.json).then(|| progress::Ticker::new(progress::EVERY));
    let start_step = state.step;
    let t0 = Instant::now();
    let mut images_this_run = 0u64;
    let mut last_train: Option<f64> = None;
    let mut ema: Option<f64> = None;
    let mut stopped_by = "steps".to_string();
    let mut order: Vec<usize> = Vec::new();
    let mut order_epoch = u64::MAX;
    let mut metrics = checkpoint::Metrics::open(out)?;
    let vctx = ValidContext {
        valid: &ds.valid,
        opts,
        out,
        bar: &bar,
        t0,
        levels: im.levels,
        size: im.scored_dims(),
        batch,
    };

    loop {
        if let Some(m) = max_steps {
            if state.step >= m {
                break;
            }
        }
        if let Some(d) = deadline {
            if Instant::now() >= d {
                stopped_by = "time".into();
                break;
            }
        }
        if let Some(sig) = signals::requested() {
            stopped_by = signals::stopped_by(sig).into();
            break;
        }
        let epoch = state.step / per_epoch;
        let in_epoch = (state.step % per_epoch) as usize;
        if epoch != order_epoch {
            // The order depends only on (seed, epoch): resuming mid-epoch sees the same batches.
            let mut rng =
                ChaCha8Rng::seed_from_u64(tcfg.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            order = (0..n_train).collect();
            order.shuffle(&mut rng);
            if let Some(gray) = &ds.train_gray {
                ds.train.images = data::binarize_dynamic(&gray.images, &mut rng);
            }
            order_epoch = epoch;
        }
        let idx = &order[in_epoch * batch..(in_epoch + 1) * batch];
        let mut buf = Vec::with_capacity(batch * size);
        for &i in idx {
            buf.extend_from_slice(&ds.train.images[i * size..(i + 1) * size]);
        }
        let x = tm.images_to_tensor(&buf, batch);
        let y = batch_labels(&tm, &ds.train, idx);
        // Forward and backward together (the fused CPU recurrences need both in one call);
        // a non-finite loss still stops before the optimizer touches the weights.
        let (loss, grad) = tm.nll_grads(&x, y.as_ref());
        let lv = f64::try_from(&loss)?;
        if !lv.is_finite() {
            bar.abandon();
            bail!(recovery::nan_stop(
                lv,
                state.step + 1,
                out,
                &state,
                tcfg.valid_every,
                tcfg.clip,
                opts.minutes
            ));
        }
        if let Some(c) = tcfg.clip {
            optim::clip_grad_norm(&grad, c);
        }
        opt.lr = lr_schedule.lr_at(state.step);
        opt.step(tm.flat_parameters(), &grad);
        state.step += 1;
        images_this_run += batch as u64;
        last_train = Some(lv);
        ema = Some(match ema {
            None => lv,
            Some(e) => 0.98 * e + 0.02 * lv,
        });
        let rate = images_this_run as f64 / t0.elapsed().as_secs_f64();
        bar.set_position(state.step);
        bar.set_message(format!(
            "train {:.3} {unit}  {rate:.1} img/s",
            report(ema.unwrap_or(lv))
        ));
        if ticker.as_mut().is_some_and(|t| t.due()) {
            let sps = (state.step - start_step) as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            let of = max_steps.map(|m| format!("/{m}")).unwrap_or_default();
            let eta = progress::eta(state.step, max_steps, sps, deadline)
                .map(|s| format!("  eta {}", progress::human(s)))
                .unwrap_or_default();
            eprintln!(
                "step {}{of}  train {:.4} {unit}  {rate:.1} img/s{eta}",
                state.step,
                report(ema.unwrap_or(lv))
            );
        }

        if state.step % tcfg.valid_every == 0 {
            validate_and_save(&vctx, &tm, &opt, &mut state, &mut metrics, rate, ema)?;
        }
    }
    // Final validation and checkpoint unless we just did one.
    let rate = images_this_run as f64 / t0.elapsed().as_secs_f64().max(1e-9);
    if state.saved_step != state.step {
        validate_and_save(&vctx, &tm, &opt, &mut state, &mut metrics, rate, ema)?;
    }
    bar.finish_and_clear();
    let _ = &mut tm;
    Ok(TrainReport {
        steps: state.step,
        epochs_done: state.step as f64 / per_epoch as f64,
        seconds: state.wall_seconds,
        images_per_second: rate,
        best_valid: state.best_valid.map(report),
        last_train: last_train.map(report),
        unit: unit.into(),
        stopped_by,
        out: out.display().to_string(),
        device: torch::device_name(device),
        small: None,
    })
}

/// What every validation of one run shares.
struct ValidContext<'a> {
    valid: &'a Split,
    opts: &'a TrainOptions,
    out: &'a Path,
    bar: &'a indicatif::ProgressBar,
    t0: Instant,
    levels: usize,
    size: usize,
    batch: usize,
}

fn validate_and_save(
    cx: &ValidContext<'_>,
    tm: &TorchModel,
    opt: &optim::Optimizer,
    state: &mut RunState,
    metrics: &mut checkpoint::Metrics,
    rate: f64,
    ema: Option<f64>,
) -> Result<()> {
    let ValidContext {
        valid,
        opts,
        out,
        bar,
        t0,
        levels,
        size,
        batch,
    } = *cx;
    let limit = if opts.valid_images == 0 {
        usize::MAX
    } else {
        opts.valid_images
    };
    let v = evaluate(tm, valid, limit, batch.max(64))?;
    // What is on disk until this save succeeds, for the message if it fails.
    let before = state.clone();
    state.wall_seconds += t0.elapsed().as_secs_f64() - state.wall_at_last_save;
    state.wall_at_last_save = t0.elapsed().as_secs_f64();
    let improved = state.best_valid.is_none_or(|b| v < b);
    if improved {
        state.best_valid = Some(v);
        state.best_step = state.step;
    }
    let unit = torch::nll_unit(levels);
    let rep = |x: f64| torch::report_nll(x, levels, size);
    checkpoint::save(out, tm, opt, state, improved).map_err(|e| {
        anyhow::anyhow!(recovery::save_failed(
            &e,
            state.step,
            out,
            &before,
            opts.minutes
        ))
    })?;
    let rec = serde_json::json!({
        "step": state.step,
        "wall_seconds": state.wall_seconds,
        "train_nll": ema.map(rep),
        "valid_nll": rep(v),
        "valid_images": valid.n.min(limit),
        "best_valid_nll": state.best_valid.map(rep),
        "unit": unit,
        "images_per_second": rate,
        // The rate of the step just taken (the optimizer's base rate before any step).
        "lr": opt.lr,
    });
    metrics.append(&rec).map_err(|e| {
        anyhow::anyhow!(recovery::append_failed(
            &e,
            &out.join("metrics.jsonl"),
            out,
            state,
            opts.minutes
        ))
    })?;
    if opts.samples {
        if let Err(e) = crate::sample::grid_for_run(tm, out, state.step, &valid.images) {
            bar.println(format!("warning: could not write the sample grid: {e:#}"));
        }
    }
    let line = format!(
        "step {:>7}  valid {:.4} {unit}{}  train {:.4}  {:.1} img/s",
        state.step,
        rep(v),
        if improved { " (best)" } else { "" },
        ema.map(rep).unwrap_or(f64::NAN),
        rate
    );
    if opts.json {
        println!("{rec}");
    } else if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
    Ok(())
}

fn progress_bar(max_steps: Option<u64>, start: u64, json: bool) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = match max_steps {
        Some(m) => ProgressBar::new(m),
        None => ProgressBar::new_spinner(),
    };
    if json {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style = match max_steps {
        Some(_) => ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        None => ProgressStyle::with_template("{spinner} step {pos}  {msg}  {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    };
    bar.set_style(style);
    bar.set_position(start);
    bar.reset_eta();
    bar
}

/// A resumed cosine run asked to train past the end of its schedule, which was fixed when
/// it started: at a zero `min_lr` those steps would change nothing, so that is an error
/// (a silent waste of hours otherwise); at a nonzero one, a note.
fn past_the_schedule(s: &schedule::LrSchedule, max_steps: Option<u64>) -> Result<()> {
    let (ScheduleKind::Cosine, Some(target)) = (s.kind, max_steps) else {
        return Ok(());
    };
    if target <= s.decay_steps {
        return Ok(());
    }
    let msg = format!(
        "the run's cosine schedule reaches min_lr ({}) at step {} (planned when the run started), so steps {}..{target} would train at min_lr",
        s.min_lr,
        s.decay_steps,
        s.decay_steps + 1
    );
    if s.min_lr == 0.0 {
        bail!(usage(format!(
            "{msg}, which changes nothing: resume with --steps {} at most, or train longer in a new run (--steps N plans its cosine over N steps)",
            s.decay_steps
        )));
    }
    eprintln!("note: {msg}");
    Ok(())
}

/// What must not change when a run is resumed: the architecture (its canonical, versioned
/// fingerprint, never the display text) and everything that fixes the data order and
/// optimizer state. Step limits and the learning rate may change.
fn resume_key(model: &Model, t: &Train) -> String {
    let model = crate::ir::fingerprint::fingerprint(model);
    format!("pixc-run-key v1\nmodel={model}\n{}", run_settings(t))
}

/// The resume key of runs made before the fingerprint existed: the IR dump plus the same
/// settings. Still accepted, so those runs resume; their state.json is migrated to the new
/// key at the next save.
fn legacy_resume_key(model: &Model, t: &Train) -> String {
    format!("{}\n{}", crate::ir::dump::ir_text(model), run_settings(t))
}

/// The settings that fix the data order and optimizer state.
fn run_settings(t: &Train) -> String {
    format!(
        "optimizer={} batch={} seed={} data={}",
        t.optimizer.name(),
        t.batch,
        t.seed,
        t.data
    )
}

/// The spec as it is trained: with the effective `train:` section (overrides applied).
fn spec_for_run(spec: &Spec, t: &Train) -> Spec {
    let mut s = spec.clone();
    s.train = Some(t.clone());
    s
}
