//! The cached sampler's engine: the per-pixel loops over the plan's nodes, with ring
//! buffers for the rows later nodes read, split over threads by sample.

use super::{CachedModel, Diag, Gate, Kernel, LowResMap, Mat};
use crate::backend::simd::{gated, lstm};
use crate::ir::head::draw_scaled;
use anyhow::{bail, Result};

/// `y[lo..hi] += x · m[.., lo..hi]` for one sample (`y` has `hi - lo` entries).
///
/// Each `y[o]` adds its terms in input order, one rounding each, as a plain loop would;
/// exact zeros in `x` (ReLU outputs, binary pixels) are skipped, which leaves every sum as
/// it is. The inputs go four at a time so each `y[o]` is loaded and stored once per four
/// terms instead of once per term (the loop was load/store bound).
#[inline(always)]
pub(super) fn matacc_one(y: &mut [f32], x: &[f32], m: &Mat, lo: usize, hi: usize) {
    let row = |i: usize| &m.w[i * m.cols + lo..i * m.cols + hi];
    let mut nz = x
        .iter()
        .enumerate()
        .take(m.rows)
        .filter(|(_, &v)| v != 0.0)
        .map(|(i, &v)| (v, row(i)));
    loop {
        match (nz.next(), nz.next(), nz.next(), nz.next()) {
            (Some((a, wa)), Some((b, wb)), Some((c, wc)), Some((d, wd))) => {
                for ((((yo, &pa), &pb), &pc), &pd) in y.iter_mut().zip(wa).zip(wb).zip(wc).zip(wd) {
                    let mut acc = *yo;
                    acc += a * pa;
                    acc += b * pb;
                    acc += c * pc;
                    acc += d * pd;
                    *yo = acc;
                }
            }
            (first, second, third, _) => {
                for (v, w) in [first, second, third].into_iter().flatten() {
                    for (yo, &wo) in y.iter_mut().zip(w) {
                        *yo += v * wo;
                    }
                }
                return;
            }
        }
    }
}

/// Starts each sample's input-to-state gates (`[nb][gates]`) at the bias, plus its class
/// vector for a conditional model (`class`: `[classes][gates]`), before the conv adds in.
fn start_gates(g: &mut [f32], bias: &[f32], class: Option<&[f32]>, labels: &[u16], nb: usize) {
    let gates = bias.len();
    for b in 0..nb {
        let gb = &mut g[b * gates..(b + 1) * gates];
        gb.copy_from_slice(bias);
        if let (Some(cl), Some(&y)) = (class, labels.get(b)) {
            let y = y as usize;
            for (x, &v) in gb.iter_mut().zip(&cl[y * gates..(y + 1) * gates]) {
                *x += v;
            }
        }
    }
}

/// Batched `matacc_one`: `x` is `[nb][m.rows]`, `y` is `[nb][hi - lo]`.
///
/// Four samples at a time share each weight row: for every block of 16 (then 8) outputs
/// the four samples' sums stay in registers across all inputs, so a weight is loaded once
/// for four multiply-adds instead of once per sample with `y` loaded and stored around it.
/// Sixteen outputs make eight independent chains of adds, enough to hide an add's latency
/// (eight outputs, four chains, waited on it). Every `y[o]` still adds its terms in input
/// order with one rounding each; zero inputs are added (as +-0, which leaves a sum's value
/// as it is) instead of skipped.
#[inline(always)]
fn matacc(y: &mut [f32], x: &[f32], m: &Mat, lo: usize, hi: usize, nb: usize) {
    const S: usize = 4;
    let ys = hi - lo;
    let rows = m.rows;
    let mut b = 0;
    while b + S <= nb && ys >= 8 {
        let xs = &x[b * rows..(b + S) * rows];
        let yb = &mut y[b * ys..(b + S) * ys];
        let mut o = 0;
        while o + 16 <= ys {
            matacc_block::<S, 16>(yb, xs, m, lo + o, o, ys);
            o += 16;
        }
        if o + 8 <= ys {
            matacc_block::<S, 8>(yb, xs, m, lo + o, o, ys);
            o += 8;
        }
        if o < ys {
            // The last outputs of these samples, one sample at a time.
            for k in 0..S {
                let (yb, xb) = (
                    &mut y[(b + k) * ys..(b + k + 1) * ys],
                    &xs[k * rows..(k + 1) * rows],
                );
                for (i, &xv) in xb.iter().enumerate() {
                    let row = &m.w[i * m.cols + lo..i * m.cols + hi];
                    for (yq, &wq) in yb[o..].iter_mut().zip(&row[o..]) {
                        *yq += xv * wq;
                    }
                }
            }
        }
        b += S;
    }
    for b in b..nb {
        matacc_one(
            &mut y[b * ys..(b + 1) * ys],
            &x[b * rows..(b + 1) * rows],
            m,
            lo,
            hi,
        );
    }
}

/// `matacc`'s register tile: outputs `o..o + O` (weight columns `col..col + O`) of `S`
/// samples (`y` is `[S][ys]`, `xs` is `[S][m.rows]`).
#[inline(always)]
fn matacc_block<const S: usize, const O: usize>(
    y: &mut [f32],
    xs: &[f32],
    m: &Mat,
    col: usize,
    o: usize,
    ys: usize,
) {
    let rows = m.rows;
    let mut acc = [[0f32; O]; S];
    for (k, a) in acc.iter_mut().enumerate() {
        a.copy_from_slice(&y[k * ys + o..k * ys + o + O]);
    }
    for i in 0..rows {
        let w: &[f32; O] = m.w[i * m.cols + col..i * m.cols + col + O]
            .try_into()
            .expect("O weights");
        for (k, a) in acc.iter_mut().enumerate() {
            let xv = xs[k * rows + i];
            for l in 0..O {
                a[l] += xv * w[l];
            }
        }
    }
    for (k, a) in acc.iter().enumerate() {
        y[k * ys + o..k * ys + o + O].copy_from_slice(a);
    }
}

impl CachedModel {
    /// Samples `n` images. `u` holds one uniform per sub-pixel (N x C x H x W), `keep`
    /// fixes given sub-pixels (values and mask, N x C x H x W). Returns the images and,
    /// when `record`, the raw logits used for every drawn sub-pixel (laid out like the
    /// model's logits, N x C*L x H x W; NaN where nothing was drawn). Fails if `u` or
    /// `keep` do not hold `n` images.
    #[allow(clippy::too_many_arguments)]
    pub fn sample_with(
        &self,
        n: usize,
        u: &[f32],
        temperature: f64,
        keep: Option<(&[u8], &[bool])>,
        labels: Option<&[u16]>,
        record: bool,
        threads: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(Vec<u8>, Option<Vec<f32>>)> {
        let size = self.channels * self.height * self.width;
        let lsize = self.channels * self.per * self.height * self.width;
        if u.len() != n * size {
            bail!(
                "{} uniforms given for {n} images of {size} sub-pixels",
                u.len()
            );
        }
        if let Some((v, m)) = keep {
            if v.len() != n * size || m.len() != n * size {
                bail!("the given sub-pixels do not hold {n} images of {size} sub-pixels");
            }
        }
        if let Some(l) = labels {
            if l.len() != n {
                bail!("{} labels given for {n} images", l.len());
            }
        }
        if n == 0 {
            return Ok((Vec::new(), record.then(Vec::new)));
        }
        let threads = threads.clamp(1, n.max(1));
        let chunk = n.div_ceil(threads);
        let ranges: Vec<(usize, usize)> = (0..threads)
            .map(|t| (t * chunk, ((t + 1) * chunk).min(n)))
            .filter(|(a, b)| a < b)
            .collect();
        let run = |(a, b): (usize, usize), prog: &mut dyn FnMut(usize, usize)| {
            let nb = b - a;
            let k = keep.map(|(v, m)| (&v[a * size..b * size], &m[a * size..b * size]));
            let y = labels.map_or(&[][..], |l| &l[a..b]);
            let mut eng = Engine::new(self, nb, record, y);
            eng.run(&u[a * size..b * size], temperature, k, prog);
            (eng.img, eng.rec)
        };
        let parts = crate::util::fan_out(
            ranges,
            |r| run(r, &mut progress),
            |r| run(r, &mut |_, _| {}),
        );
        let mut img = Vec::with_capacity(n * size);
        let mut rec = if record {
            Some(Vec::with_capacity(n * lsize))
        } else {
            None
        };
        for (i, r) in parts {
            img.extend_from_slice(&i);
            if let (Some(all), Some(r)) = (rec.as_mut(), r) {
                all.extend_from_slice(&r);
            }
        }
        Ok((img, rec))
    }
}

/// A ring buffer of `rows` rows of a feature map: per position `[nb][channels]`.
struct Ring {
    rows: usize,
    width: usize,
    stride: usize,
    data: Vec<f32>,
}

impl Ring {
    fn new(rows: usize, width: usize, stride: usize) -> Ring {
        Ring {
            rows,
            width,
            stride,
            data: vec![0.0; rows * width * stride],
        }
    }
    #[inline]
    fn off(&self, r: usize, c: usize) -> usize {
        ((r % self.rows) * self.width + c) * self.stride
    }
    #[inline]
    fn at(&self, r: usize, c: usize) -> &[f32] {
        let o = self.off(r, c);
        &self.data[o..o + self.stride]
    }
    #[inline]
    fn at_mut(&mut self, r: usize, c: usize) -> &mut [f32] {
        let o = self.off(r, c);
        &mut self.data[o..o + self.stride]
    }
}

/// Recurrent state of one node.
enum State {
    None,
    Row {
        h: Ring,
        c: Ring,
    },
    Diag {
        hl: Ring,
        cl: Ring,
        hr: Ring,
        cr: Ring,
        /// The right-to-left half of the input-to-state map, rows r-1 and r.
        isr: Ring,
        /// Rows whose right-to-left states are computed.
        r2l_rows: usize,
    },
    /// A vertical stack: rows computed so far (whole rows at a time).
    Rows {
        done: usize,
    },
}

/// The caches of one batch of samples.
struct Engine<'a> {
    m: &'a CachedModel,
    nb: usize,
    outs: Vec<Ring>,
    states: Vec<State>,
    /// Scratch buffers: gates / is (nb x 8h), h and c (nb x h), a projection (nb x C).
    s_gates: Vec<f32>,
    s_is: Vec<f32>,
    s_h: Vec<f32>,
    s_c: Vec<f32>,
    s_proj: Vec<f32>,
    /// Logits of the sub-pixel being drawn: nb x per.
    logits: Vec<f32>,
    img: Vec<u8>,
    rec: Option<Vec<f32>>,
    /// A conditional model's label of each sample (empty for an unconditional one).
    labels: &'a [u16],
}

impl<'a> Engine<'a> {
    fn new(m: &'a CachedModel, nb: usize, record: bool, labels: &'a [u16]) -> Engine<'a> {
        let w = m.width;
        let mut outs = Vec::with_capacity(m.nodes.len());
        let mut states = Vec::with_capacity(m.nodes.len());
        let mut max_ch = 1;
        let mut max_h = 1;
        for (i, node) in m.nodes.iter().enumerate() {
            max_ch = max_ch.max(node.channels);
            let stride = if i == m.output { 0 } else { nb * node.channels };
            outs.push(Ring::new(node.rows, w, stride));
            states.push(match &node.kernel {
                Kernel::RowLstm { h, .. } => {
                    max_h = max_h.max(*h);
                    State::Row {
                        h: Ring::new(2, w, nb * h),
                        c: Ring::new(2, w, nb * h),
                    }
                }
                Kernel::Gate(gt) => {
                    max_h = max_h.max(gt.h);
                    if gt.rowwise {
                        State::Rows { done: 0 }
                    } else {
                        State::None
                    }
                }
                Kernel::Diag(d) => {
                    max_h = max_h.max(d.h);
                    let s = nb * d.h;
                    State::Diag {
                        hl: Ring::new(2, w, s),
                        cl: Ring::new(2, w, s),
                        hr: Ring::new(2, w, s),
                        cr: Ring::new(2, w, s),
                        isr: Ring::new(2, w, 4 * s),
                        r2l_rows: 0,
                    }
                }
                _ => State::None,
            });
        }
        let size = m.channels * m.height * m.width;
        Engine {
            m,
            nb,
            outs,
            states,
            s_gates: vec![0.0; nb * 8 * max_h],
            s_is: vec![0.0; nb * 8 * max_h],
            s_h: vec![0.0; nb * max_h],
            s_c: vec![0.0; nb * max_h],
            s_proj: vec![0.0; nb * max_ch],
            logits: vec![0.0; nb * m.per],
            img: vec![0; nb * size],
            rec: if record {
                Some(vec![f32::NAN; nb * m.channels * m.per * m.height * m.width])
            } else {
                None
            },
            labels,
        }
    }

    fn run(
        &mut self,
        u: &[f32],
        temperature: f64,
        keep: Option<(&[u8], &[bool])>,
        progress: &mut dyn FnMut(usize, usize),
    ) {
        let m = self.m;
        let (c_n, h_n, w_n) = (m.channels, m.height, m.width);
        if let Some((vals, _)) = keep {
            self.img.copy_from_slice(vals);
        }
        // A low-res model's map, from the given low-res pixels, for the whole draw.
        for (i, node) in m.nodes.iter().enumerate() {
            if let Kernel::LowRes(lr) = &node.kernel {
                low_res_map(m, lr, self.nb, &self.img, &mut self.outs[i]);
            }
        }
        let total = h_n * w_n * c_n;
        let idx = |b: usize, ch: usize, r: usize, c: usize| ((b * c_n + ch) * h_n + r) * w_n + c;
        for r in 0..h_n {
            for c in 0..w_n {
                let mut last = None;
                for ch in 0..c_n {
                    progress((r * w_n + c) * c_n + ch, total);
                    if let Some((_, mask)) = keep {
                        if (0..self.nb).all(|b| mask[idx(b, ch, r, c)]) {
                            continue;
                        }
                    }
                    self.pixel(r, c, Some(ch));
                    last = Some(ch);
                    let per = m.per;
                    for b in 0..self.nb {
                        let i = idx(b, ch, r, c);
                        let lg = &self.logits[b * per..(b + 1) * per];
                        if let Some(rec) = self.rec.as_mut() {
                            for (l, &v) in lg.iter().enumerate() {
                                rec[((b * c_n * per + ch * per + l) * h_n + r) * w_n + c] = v;
                            }
                        }
                        if let Some((_, mask)) = keep {
                            if mask[i] {
                                continue;
                            }
                        }
                        self.img[i] = draw_scaled(lg, m.head, temperature, u[i]);
                    }
                }
                // Cached values at p must see every colour they depend on: recompute if the
                // colour drawn last feeds any (never in a model with mask A first), then
                // store the finished pixel in the input's cache.
                match last {
                    Some(ch) if !m.stale[ch] => self.input_at(r, c),
                    _ => self.pixel(r, c, None),
                }
            }
        }
    }

    /// Refreshes the input's cache at (r, c) from the image.
    fn input_at(&mut self, r: usize, c: usize) {
        for (i, node) in self.m.nodes.iter().enumerate() {
            if matches!(node.kernel, Kernel::Input) {
                write_input(self.m, self.nb, &self.img, &mut self.outs[i], r, c);
            }
        }
    }

    /// Computes every node's output at (r, c); the head only when `head_ch` is given
    /// (its logits for that colour go to `self.logits`). Compiled a second time for AVX2
    /// and used where the CPU has it: LLVM then runs the multiply-add loops 8 lanes wide.
    /// The sums keep their order and no multiply-add is fused, so both builds give the same
    /// bits (the LSTM and gated units, `simd`'s, give the same bits with and without AVX2),
    /// and samples for a seed do not depend on the CPU.
    fn pixel(&mut self, r: usize, c: usize, head_ch: Option<usize>) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2")]
            unsafe fn wide(e: &mut Engine<'_>, r: usize, c: usize, head_ch: Option<usize>) {
                e.pixel_body(r, c, head_ch)
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has the feature `wide` is compiled for.
                unsafe { wide(self, r, c, head_ch) };
                return;
            }
        }
        self.pixel_body(r, c, head_ch)
    }

    #[inline(always)]
    fn pixel_body(&mut self, r: usize, c: usize, head_ch: Option<usize>) {
        let m = self.m;
        let nb = self.nb;
        let w_n = m.width;
        for (i, node) in m.nodes.iter().enumerate() {
            let (before, after) = self.outs.split_at_mut(i);
            let out = &mut after[0];
            match &node.kernel {
                Kernel::Input => write_input(m, nb, &self.img, out, r, c),
                Kernel::LowRes(_) => {}
                Kernel::Conv { taps, bias } => {
                    let (lo, hi, y): (usize, usize, &mut [f32]) = if i == m.output {
                        match head_ch {
                            Some(ch) => (ch * m.per, (ch + 1) * m.per, &mut self.logits[..]),
                            None => continue,
                        }
                    } else {
                        (0, node.channels, out.at_mut(r, c))
                    };
                    let ys = hi - lo;
                    for b in 0..nb {
                        y[b * ys..(b + 1) * ys].copy_from_slice(&bias[lo..hi]);
                    }
                    let x = &before[node.inputs[0]];
                    for (dy, dx, mat) in taps {
                        let rr = r as isize + dy;
                        let cc = c as isize + dx;
                        if rr < 0 || cc < 0 || cc >= w_n as isize {
                            continue;
                        }
                        matacc(y, x.at(rr as usize, cc as usize), mat, lo, hi, nb);
                    }
                }
                Kernel::Gate(gt) => {
                    let cols = match &mut self.states[i] {
                        // A vertical stack: all of row r when the row starts.
                        State::Rows { done } if *done > r => continue,
                        State::Rows { done } => {
                            *done = r + 1;
                            0..w_n
                        }
                        _ => c..c + 1,
                    };
                    for cc in cols {
                        gate_at(
                            gt,
                            &node.inputs,
                            before,
                            out,
                            (r, cc),
                            nb,
                            w_n,
                            &mut self.s_gates,
                            self.labels,
                        );
                    }
                }
                Kernel::Relu => {
                    let x = before[node.inputs[0]].at(r, c);
                    for (yo, &xv) in out.at_mut(r, c).iter_mut().zip(x) {
                        *yo = xv.max(0.0);
                    }
                }
                Kernel::Add => {
                    let y = out.at_mut(r, c);
                    y.copy_from_slice(before[node.inputs[0]].at(r, c));
                    for &j in &node.inputs[1..] {
                        for (yo, &xv) in y.iter_mut().zip(before[j].at(r, c)) {
                            *yo += xv;
                        }
                    }
                }
                Kernel::SkipSum { projs } => {
                    let co = node.channels;
                    let y = out.at_mut(r, c);
                    y.copy_from_slice(before[node.inputs[0]].at(r, c));
                    for (k, (mat, bias)) in projs.iter().enumerate() {
                        let p = &mut self.s_proj[..nb * co];
                        for b in 0..nb {
                            p[b * co..(b + 1) * co].copy_from_slice(bias);
                        }
                        matacc(p, before[node.inputs[k + 1]].at(r, c), mat, 0, co, nb);
                        for (yo, &pv) in y.iter_mut().zip(p.iter()) {
                            *yo += pv;
                        }
                    }
                }
                Kernel::RowLstm {
                    h,
                    taps,
                    bias,
                    class,
                    low_res,
                    ss,
                    h0,
                    c0,
                } => {
                    let h = *h;
                    let State::Row { h: hs, c: cs } = &mut self.states[i] else {
                        unreachable!("row lstm state")
                    };
                    let g = &mut self.s_gates[..nb * 4 * h];
                    start_gates(g, bias, class.as_deref(), self.labels, nb);
                    if let (Some(lm), Some(&j)) = (low_res, node.inputs.last()) {
                        matacc(g, before[j].at(r, c), lm, 0, 4 * h, nb);
                    }
                    let x = &before[node.inputs[0]];
                    for (dx, mat) in taps {
                        let cc = c as isize + dx;
                        if cc < 0 || cc >= w_n as isize {
                            continue;
                        }
                        matacc(g, x.at(r, cc as usize), mat, 0, 4 * h, nb);
                    }
                    for (t, mat) in ss.iter().enumerate() {
                        let cc = c as isize + t as isize - 1;
                        if cc < 0 || cc >= w_n as isize {
                            continue;
                        }
                        let cc = cc as usize;
                        if r == 0 {
                            for b in 0..nb {
                                matacc_one(
                                    &mut g[b * 4 * h..(b + 1) * 4 * h],
                                    &h0[cc * h..(cc + 1) * h],
                                    mat,
                                    0,
                                    4 * h,
                                );
                            }
                        } else {
                            matacc(g, hs.at(r - 1, cc), mat, 0, 4 * h, nb);
                        }
                    }
                    let (hn, cn) = (&mut self.s_h[..nb * h], &mut self.s_c[..nb * h]);
                    for b in 0..nb {
                        let cp = if r == 0 {
                            &c0[c * h..(c + 1) * h]
                        } else {
                            &cs.at(r - 1, c)[b * h..(b + 1) * h]
                        };
                        lstm(
                            &g[b * 4 * h..(b + 1) * 4 * h],
                            cp,
                            &mut hn[b * h..(b + 1) * h],
                            &mut cn[b * h..(b + 1) * h],
                        );
                    }
                    hs.at_mut(r, c).copy_from_slice(hn);
                    cs.at_mut(r, c).copy_from_slice(cn);
                    out.at_mut(r, c).copy_from_slice(hn);
                }
                Kernel::Diag(d) => {
                    let h = d.h;
                    let State::Diag {
                        hl,
                        cl,
                        hr,
                        cr,
                        isr,
                        r2l_rows,
                    } = &mut self.states[i]
                    else {
                        unreachable!("diag state")
                    };
                    if r >= 1 && *r2l_rows < r {
                        // Full context: the image (slot 1), complete at row r-1.
                        let image = d.ix.as_ref().map(|m| (&before[node.inputs[1]], m));
                        right_to_left_row(
                            d,
                            r - 1,
                            nb,
                            w_n,
                            hr,
                            cr,
                            isr,
                            image,
                            &mut self.s_gates,
                            &mut self.s_h,
                            &mut self.s_c,
                        );
                        *r2l_rows = r;
                    }
                    // Input-to-state at p, both directions.
                    let is = &mut self.s_is[..nb * 8 * h];
                    start_gates(is, &d.bias, d.class.as_deref(), self.labels, nb);
                    if let (Some(lm), Some(&j)) = (&d.low_res, node.inputs.last()) {
                        matacc(is, before[j].at(r, c), lm, 0, 8 * h, nb);
                    }
                    matacc(is, before[node.inputs[0]].at(r, c), &d.is, 0, 8 * h, nb);
                    {
                        let dst = isr.at_mut(r, c);
                        for b in 0..nb {
                            dst[b * 4 * h..(b + 1) * 4 * h]
                                .copy_from_slice(&is[b * 8 * h + 4 * h..(b + 1) * 8 * h]);
                        }
                    }
                    // Left-to-right: reads (r-1, c) and (r, c-1).
                    let g = &mut self.s_gates[..nb * 4 * h];
                    for b in 0..nb {
                        g[b * 4 * h..(b + 1) * 4 * h]
                            .copy_from_slice(&is[b * 8 * h..b * 8 * h + 4 * h]);
                    }
                    if r >= 1 {
                        matacc(g, hl.at(r - 1, c), &d.ss[0][0], 0, 4 * h, nb);
                    }
                    if c == 0 {
                        let e = &d.edge_h[0][r * h..(r + 1) * h];
                        for b in 0..nb {
                            matacc_one(
                                &mut g[b * 4 * h..(b + 1) * 4 * h],
                                e,
                                &d.ss[0][1],
                                0,
                                4 * h,
                            );
                        }
                    } else {
                        matacc(g, hl.at(r, c - 1), &d.ss[0][1], 0, 4 * h, nb);
                    }
                    let (hn, cn) = (&mut self.s_h[..nb * h], &mut self.s_c[..nb * h]);
                    for b in 0..nb {
                        let cp = if c == 0 {
                            &d.edge_c[0][r * h..(r + 1) * h]
                        } else {
                            &cl.at(r, c - 1)[b * h..(b + 1) * h]
                        };
                        lstm(
                            &g[b * 4 * h..(b + 1) * 4 * h],
                            cp,
                            &mut hn[b * h..(b + 1) * h],
                            &mut cn[b * h..(b + 1) * h],
                        );
                    }
                    hl.at_mut(r, c).copy_from_slice(hn);
                    cl.at_mut(r, c).copy_from_slice(cn);
                    let y = out.at_mut(r, c);
                    y.copy_from_slice(hn);
                    // The right-to-left output, shifted down one row.
                    if r >= 1 {
                        for (yo, &v) in y.iter_mut().zip(hr.at(r - 1, c)) {
                            *yo += v;
                        }
                    }
                }
            }
        }
    }
}

/// A gated conv's output at `(r, c)`: bias and class vector, the masked conv's taps over
/// slot 0, the link from slot 1 at the pixel, then `tanh(a) * sigmoid(b)`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gate_at(
    gt: &Gate,
    inputs: &[usize],
    before: &[Ring],
    out: &mut Ring,
    (r, c): (usize, usize),
    nb: usize,
    w_n: usize,
    s_gates: &mut [f32],
    labels: &[u16],
) {
    let (h, h2) = (gt.h, 2 * gt.h);
    let g = &mut s_gates[..nb * h2];
    start_gates(g, &gt.bias, gt.class.as_deref(), labels, nb);
    if let (Some(lm), Some(&j)) = (&gt.low_res, inputs.last()) {
        matacc(g, before[j].at(r, c), lm, 0, h2, nb);
    }
    let x = &before[inputs[0]];
    for (dy, dx, mat) in &gt.taps {
        let rr = r as isize + dy;
        let cc = c as isize + dx;
        if rr < 0 || cc < 0 || cc >= w_n as isize {
            continue;
        }
        matacc(g, x.at(rr as usize, cc as usize), mat, 0, h2, nb);
    }
    if let Some(l) = &gt.link {
        matacc(g, before[inputs[1]].at(r, c), l, 0, h2, nb);
    }
    let y = out.at_mut(r, c);
    for b in 0..nb {
        gated(&g[b * h2..(b + 1) * h2], &mut y[b * h..(b + 1) * h]);
    }
}

/// A low-res model's whole map (`Op::LowRes`) for every sample, from the image's given
/// low-res pixels: the transposed conv (kernel 3f, stride f, padding f) of the subsample,
/// scattered tap by tap. `out` holds every row.
fn low_res_map(m: &CachedModel, lr: &LowResMap, nb: usize, img: &[u8], out: &mut Ring) {
    let scale = (m.levels as f32 - 1.0).max(1.0);
    let (h_n, w_n, f, maps) = (m.height, m.width, lr.factor, lr.maps);
    let k = 3 * f;
    for r in 0..h_n {
        for c in 0..w_n {
            let y = out.at_mut(r, c);
            for b in 0..nb {
                y[b * maps..(b + 1) * maps].copy_from_slice(&lr.bias);
            }
        }
    }
    for b in 0..nb {
        for ci in 0..lr.cin {
            for ly in 0..h_n / f {
                for lx in 0..w_n / f {
                    let v = img[((b * lr.cin + ci) * h_n + ly * f) * w_n + lx * f] as f32 / scale;
                    if v == 0.0 {
                        continue;
                    }
                    // Output row y = ly*f - f + ky for kernel row ky.
                    for ky in 0..k {
                        let Some(y) = (ly * f + ky).checked_sub(f).filter(|&y| y < h_n) else {
                            continue;
                        };
                        for kx in 0..k {
                            let Some(x) = (lx * f + kx).checked_sub(f).filter(|&x| x < w_n) else {
                                continue;
                            };
                            let dst = &mut out.at_mut(y, x)[b * maps..(b + 1) * maps];
                            for (o, d) in dst.iter_mut().enumerate() {
                                *d += v * lr.w[((ci * maps + o) * k + ky) * k + kx];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The model input at (r, c): raw values / (levels - 1).
fn write_input(m: &CachedModel, nb: usize, img: &[u8], out: &mut Ring, r: usize, c: usize) {
    let scale = (m.levels as f32 - 1.0).max(1.0);
    let (ch_n, h_n, w_n) = (m.channels, m.height, m.width);
    let y = out.at_mut(r, c);
    for b in 0..nb {
        for ch in 0..ch_n {
            y[b * ch_n + ch] = img[((b * ch_n + ch) * h_n + r) * w_n + c] as f32 / scale;
        }
    }
}

/// The right-to-left states of row `q` (complete in the input), right to left: the state
/// at (q, c) reads (q-1, c) and (q, c+1); left of the mirrored column 0 is the padding edge.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn right_to_left_row(
    d: &Diag,
    q: usize,
    nb: usize,
    w_n: usize,
    hr: &mut Ring,
    cr: &mut Ring,
    isr: &Ring,
    image: Option<(&Ring, &Mat)>,
    s_gates: &mut [f32],
    s_h: &mut [f32],
    s_c: &mut [f32],
) {
    let h = d.h;
    for c in (0..w_n).rev() {
        let g = &mut s_gates[..nb * 4 * h];
        g.copy_from_slice(isr.at(q, c));
        if let Some((im, ix)) = image {
            matacc(g, im.at(q, c), ix, 0, 4 * h, nb);
        }
        if q >= 1 {
            matacc(g, hr.at(q - 1, c), &d.ss[1][0], 0, 4 * h, nb);
        }
        let edge = c == w_n - 1;
        if edge {
            let e = &d.edge_h[1][q * h..(q + 1) * h];
            for b in 0..nb {
                matacc_one(&mut g[b * 4 * h..(b + 1) * 4 * h], e, &d.ss[1][1], 0, 4 * h);
            }
        } else {
            matacc(g, hr.at(q, c + 1), &d.ss[1][1], 0, 4 * h, nb);
        }
        let (hn, cn) = (&mut s_h[..nb * h], &mut s_c[..nb * h]);
        for b in 0..nb {
            let cp = if edge {
                &d.edge_c[1][q * h..(q + 1) * h]
            } else {
                &cr.at(q, c + 1)[b * h..(b + 1) * h]
            };
            lstm(
                &g[b * 4 * h..(b + 1) * 4 * h],
                cp,
                &mut hn[b * h..(b + 1) * h],
                &mut cn[b * h..(b + 1) * h],
            );
        }
        hr.at_mut(q, c).copy_from_slice(hn);
        cr.at_mut(q, c).copy_from_slice(cn);
    }
}
