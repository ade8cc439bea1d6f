//! Static causality and receptive-field pass: which input sub-pixels each output depends on.
//!
//! For every node and every (pixel, colour group) of its output, the pass derives the exact
//! set of input (pixel, channel) positions it structurally depends on, from kernels, masks,
//! colour groups, skews, mirrors, shifts and recurrences (simulated step by step, including
//! the padding zone of the skewed map, where the state still flows). Nothing is hard-coded:
//! the Row LSTM's triangle, PixelCNN's blind spot and the one pixel the Diagonal BiLSTM
//! misses all fall out of the same rules.
//!
//! Invariant checked at every node: group g at pixel p depends only on input pixels before
//! p (raster order) and, at p itself, on channels < g. The first node that breaks it is
//! named as the leak. The libtorch tests compare these sets with gradients, position by
//! position.

use super::mask::{centre_sees, tap, Tap};
use super::shape::Shapes;
use super::{Graph, ImageSpec, Mask, NodeId, Op};

/// Per (pixel, group) a bitset over input sub-pixels `(r * W + c) * C + channel`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepMap {
    pub height: usize,
    pub width: usize,
    pub groups: usize,
    words: usize,
    data: Vec<u64>,
}

impl DepMap {
    fn new(image: &ImageSpec) -> DepMap {
        let bits = image.height * image.width * image.channels;
        let words = bits.div_ceil(64);
        DepMap {
            height: image.height,
            width: image.width,
            groups: image.groups(),
            words,
            data: vec![0; image.height * image.width * image.groups() * words],
        }
    }
    fn empty_like(&self) -> DepMap {
        DepMap {
            data: vec![0; self.data.len()],
            ..self.clone()
        }
    }
    fn idx(&self, r: usize, c: usize, g: usize) -> usize {
        ((r * self.width + c) * self.groups + g) * self.words
    }
    /// The dependency bitset of group `g` at pixel `(r, c)`.
    pub fn get(&self, r: usize, c: usize, g: usize) -> &[u64] {
        let i = self.idx(r, c, g);
        &self.data[i..i + self.words]
    }
    fn or_into(&mut self, r: usize, c: usize, g: usize, src: &[u64]) {
        let i = self.idx(r, c, g);
        for (d, s) in self.data[i..i + self.words].iter_mut().zip(src) {
            *d |= s;
        }
    }
    /// Does group `g` at `(r, c)` depend on input sub-pixel `(r2, c2, ch)`?
    #[allow(clippy::too_many_arguments)]
    pub fn depends(
        &self,
        r: usize,
        c: usize,
        g: usize,
        r2: usize,
        c2: usize,
        ch: usize,
        channels: usize,
    ) -> bool {
        let bit = (r2 * self.width + c2) * channels + ch;
        self.get(r, c, g)[bit / 64] >> (bit % 64) & 1 == 1
    }
}

fn or(dst: &mut [u64], src: &[u64]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d |= s;
    }
}

fn popcount(s: &[u64]) -> usize {
    s.iter().map(|w| w.count_ones() as usize).sum()
}

/// Highest set bit, if any.
fn highest(s: &[u64]) -> Option<usize> {
    s.iter()
        .enumerate()
        .rev()
        .find(|(_, w)| **w != 0)
        .map(|(i, w)| i * 64 + 63 - w.leading_zeros() as usize)
}

/// Where a dependency on the future was first introduced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leak {
    pub node: NodeId,
    /// The output position (row, col, colour group) that sees too much...
    pub at: (usize, usize, usize),
    /// ...and the input sub-pixel (row, col, channel) it must not see.
    pub sees: (usize, usize, usize),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Output sub-pixels (pixels x colours).
    pub sub_pixels: usize,
    /// Sub-pixels that see every earlier sub-pixel.
    pub full_context: usize,
    /// Sum over sub-pixels of context seen / allowed.
    pub seen: usize,
    pub allowed: usize,
    /// Mean over sub-pixels (with any context allowed) of seen / allowed.
    pub mean_fraction: f64,
}

#[derive(Clone, Debug)]
pub struct Causality {
    pub image: ImageSpec,
    /// Dependencies of the model output (the head's logits), per pixel and colour.
    pub output: DepMap,
    pub leak: Option<Leak>,
    pub summary: Summary,
    /// True when the image was too large to analyse exactly and `image` is a smaller proxy.
    pub proxy: bool,
}

const COLOUR: [&str; 3] = ["R", "G", "B"];

impl Causality {
    pub fn colour_name(&self, g: usize) -> &'static str {
        if self.image.groups() == 1 {
            "value"
        } else {
            COLOUR[g]
        }
    }

    /// Input sub-pixels (row, col, channel) that output (r, c, colour) depends on.
    pub fn deps(&self, r: usize, c: usize, colour: usize) -> Vec<(usize, usize, usize)> {
        let ch = self.image.channels;
        let set = self.output.get(r, c, colour.min(self.output.groups - 1));
        let mut v = Vec::new();
        for bit in 0..self.image.height * self.image.width * ch {
            if set[bit / 64] >> (bit % 64) & 1 == 1 {
                v.push((
                    bit / ch / self.image.width,
                    (bit / ch) % self.image.width,
                    bit % ch,
                ));
            }
        }
        v
    }

    /// An ASCII picture of what output (r, c, colour) sees: `#` every allowed channel of a
    /// pixel seen, `+` some, `.` none of an allowed pixel, `o` the pixel itself, ` ` future.
    pub fn field_map(&self, r: usize, c: usize, colour: usize) -> String {
        let (h, w, ch) = (self.image.height, self.image.width, self.image.channels);
        let set = self.output.get(r, c, colour);
        let mut s = String::new();
        for y in 0..h {
            for x in 0..w {
                let p = y * w + x;
                let allowed = if (y, x) < (r, c) {
                    ch
                } else if (y, x) == (r, c) {
                    colour
                } else {
                    0
                };
                let seen = (0..allowed)
                    .filter(|k| {
                        let b = p * ch + k;
                        set[b / 64] >> (b % 64) & 1 == 1
                    })
                    .count();
                let chr = if (y, x) == (r, c) && seen == allowed {
                    'o'
                } else if allowed == 0 {
                    ' '
                } else if seen == allowed {
                    '#'
                } else if seen > 0 {
                    '+'
                } else {
                    '.'
                };
                s.push(chr);
            }
            s.push('\n');
        }
        s
    }
}

/// Largest image side analysed exactly. The dependency maps grow as (H*W)^2, so larger
/// images are analysed on a proxy of this size: every op is translation-invariant with
/// kernels and recurrences that reach the whole proxy, so a leak shows up on it too.
pub const MAX_EXACT_SIDE: usize = 64;

/// Runs the pass over a graph whose shapes were inferred.
pub fn analyze(g: &Graph, shapes: &Shapes) -> Causality {
    let mut image = g.image;
    let proxy = image.height > MAX_EXACT_SIDE || image.width > MAX_EXACT_SIDE;
    if proxy {
        image.height = image.height.min(MAX_EXACT_SIDE);
        image.width = image.width.min(MAX_EXACT_SIDE);
    }
    let groups = image.groups();
    let mut maps: Vec<Option<DepMap>> = vec![None; g.len()];
    let mut leak = None;
    // How many users still need each map, so maps can be freed early on big models.
    let mut pending: Vec<usize> = g.nodes().map(|n| g.users(n)).collect();
    let output = g
        .output
        .unwrap_or_else(|| NodeId(petgraph::graph::NodeIndex::new(g.len() - 1)));
    for id in g.nodes() {
        let ins = g.inputs(id);
        let inp = |k: usize| maps[ins[k].index()].as_ref().expect("inputs come first");
        let m = match g.node(id).op {
            Op::Input => {
                let mut m = DepMap::new(&image);
                for r in 0..image.height {
                    for c in 0..image.width {
                        for ch in 0..image.channels {
                            let bit = (r * image.width + c) * image.channels + ch;
                            let i = m.idx(r, c, ch.min(groups - 1));
                            m.data[i + bit / 64] |= 1 << (bit % 64);
                        }
                    }
                }
                m
            }
            // The low-res image is given, not generated: context, so no dependency. (The
            // LSTM and gated rules below read their slots 0 and 1 only, never this last
            // slot.)
            Op::LowRes { .. } => DepMap::new(&image),
            Op::Conv { kh, kw, mask, .. } => conv(inp(0), kh, kw, mask),
            Op::Head { .. } => conv(inp(0), 1, 1, Mask::B),
            Op::GatedConv {
                kh, kw, mask, link, ..
            } => {
                // Both gate halves of a channel are one colour group (chunked masks), so
                // the product depends on what either half does.
                let mut m = conv(inp(0), kh, kw, mask);
                if link {
                    or(&mut m.data, &unmasked_1x1(inp(1)).data);
                }
                m
            }
            Op::Relu => inp(0).clone(),
            Op::Add => {
                let mut m = inp(0).clone();
                for k in 1..ins.len() {
                    or(&mut m.data, &inp(k).data);
                }
                m
            }
            Op::SkipSum => {
                let mut m = inp(0).clone();
                for k in 1..ins.len() {
                    let p = conv(inp(k), 1, 1, Mask::B);
                    or(&mut m.data, &p.data);
                }
                m
            }
            Op::RowLstm { k, .. } => row_lstm(&conv(inp(0), 1, k, Mask::B)),
            Op::DiagBiLstm {
                shift,
                full_context,
                ..
            } => {
                let is = conv(inp(0), 1, 1, Mask::B);
                let mut l = diag_direction(&is, false);
                let r = if full_context {
                    // The right-to-left gates also read the image (slot 1) through an
                    // unmasked 1x1 conv: at each pixel, every colour of that pixel.
                    let mut is_r = is.clone();
                    or(&mut is_r.data, &unmasked_1x1(inp(1)).data);
                    diag_direction(&is_r, true)
                } else {
                    diag_direction(&is, true)
                };
                for y in 0..image.height {
                    let src = if shift {
                        if y == 0 {
                            continue;
                        }
                        y - 1
                    } else {
                        y
                    };
                    for x in 0..image.width {
                        for gg in 0..groups {
                            l.or_into(y, x, gg, r.get(src, x, gg));
                        }
                    }
                }
                l
            }
        };
        // The input trivially "depends" on itself; every op after it must not.
        if leak.is_none() && id != g.input {
            leak = find_leak(&m, &image).map(|(at, sees)| Leak { node: id, at, sees });
        }
        for i in &ins {
            pending[i.index()] -= 1;
            if pending[i.index()] == 0 && *i != output {
                maps[i.index()] = None;
            }
        }
        maps[id.index()] = Some(m);
    }
    let _ = shapes;
    let out = maps[output.index()]
        .take()
        .unwrap_or_else(|| DepMap::new(&image));
    let summary = summarize(&out, &image);
    Causality {
        image,
        output: out,
        leak,
        summary,
        proxy,
    }
}

/// An unmasked 1x1 conv: every output group at a pixel sees every group of that pixel.
fn unmasked_1x1(x: &DepMap) -> DepMap {
    let mut out = x.empty_like();
    for y in 0..x.height {
        for c in 0..x.width {
            let mut all = vec![0u64; x.words];
            for g in 0..x.groups {
                or(&mut all, x.get(y, c, g));
            }
            for g in 0..x.groups {
                out.or_into(y, c, g, &all);
            }
        }
    }
    out
}

/// Masked conv dependencies, tap by tap as `mask::tap` says: a tap that sees all groups,
/// the centre the groups the mask lets through (`mask::centre_sees`), or nothing.
fn conv(x: &DepMap, kh: usize, kw: usize, mask: Mask) -> DepMap {
    let (h, w, gs) = (x.height, x.width, x.groups);
    // all[p] = union over groups; prefix[p][g] = union over groups <= g.
    let words = x.words;
    let mut all = vec![0u64; h * w * words];
    let mut prefix = vec![0u64; h * w * gs * words];
    for p in 0..h * w {
        let mut acc = vec![0u64; words];
        for g in 0..gs {
            or(&mut acc, x.get(p / w, p % w, g));
            prefix[(p * gs + g) * words..(p * gs + g + 1) * words].copy_from_slice(&acc);
        }
        all[p * words..(p + 1) * words].copy_from_slice(&acc);
    }
    let mut out = x.empty_like();
    let (ch, cw) = (kh / 2, kw / 2);
    for r in 0..h {
        for c in 0..w {
            let mut acc = vec![0u64; words];
            let mut centre = false;
            for dy in 0..kh {
                for dx in 0..kw {
                    match tap(mask, dy, dx, kh, kw) {
                        Tap::All => {}
                        Tap::Centre => {
                            centre = true;
                            continue;
                        }
                        Tap::Nothing => continue,
                    }
                    let (y, xx) = (
                        r as isize + dy as isize - ch as isize,
                        c as isize + dx as isize - cw as isize,
                    );
                    if y < 0 || xx < 0 || y >= h as isize || xx >= w as isize {
                        continue;
                    }
                    let p = y as usize * w + xx as usize;
                    or(&mut acc, &all[p * words..(p + 1) * words]);
                }
            }
            let p = r * w + c;
            for g in 0..gs {
                out.or_into(r, c, g, &acc);
                // The groups a mask lets through at the centre are a prefix 0..=gc.
                let seen = (0..gs).rev().find(|&gi| centre_sees(mask, g, gi));
                if let (true, Some(gc)) = (centre, seen) {
                    let i = (p * gs + gc) * words;
                    out.or_into(r, c, g, &prefix[i..i + words]);
                }
            }
        }
    }
    out
}

/// Row LSTM: the state of row r at column j mixes, through the unmasked 1x3 state-to-state
/// conv, every group of the row above at columns j-1..=j+1.
fn row_lstm(is: &DepMap) -> DepMap {
    let (h, w, gs, words) = (is.height, is.width, is.groups, is.words);
    let mut out = is.clone();
    let mut prev_all = vec![0u64; w * words];
    for r in 0..h {
        if r > 0 {
            for c in 0..w {
                let mut acc = vec![0u64; words];
                for cc in c.saturating_sub(1)..(c + 2).min(w) {
                    or(&mut acc, &prev_all[cc * words..(cc + 1) * words]);
                }
                for g in 0..gs {
                    out.or_into(r, c, g, &acc);
                }
            }
        }
        for c in 0..w {
            let mut acc = vec![0u64; words];
            for g in 0..gs {
                or(&mut acc, out.get(r, c, g));
            }
            prev_all[c * words..(c + 1) * words].copy_from_slice(&acc);
        }
    }
    out
}

/// One direction of the Diagonal BiLSTM, simulated on the skewed map (H rows, W+H-1
/// columns) and returned in image coordinates. `mirror` runs right-to-left (the input is
/// mirrored, processed, and mirrored back); the shift-down is applied by the caller.
fn diag_direction(is: &DepMap, mirror: bool) -> DepMap {
    let (h, w, gs, words) = (is.height, is.width, is.groups, is.words);
    let mut out = is.empty_like();
    // Union over groups of the previous skewed column's state, per row.
    let mut prev = vec![0u64; h * words];
    let mut cur = vec![0u64; h * words];
    let mut cell = vec![0u64; words];
    for k in 0..(w + h - 1) {
        for r in 0..h {
            // State-to-state: rows r-1 and r of the previous column (2-tap, top-padded).
            cell.iter_mut().for_each(|x| *x = 0);
            if k > 0 {
                or(&mut cell, &prev[r * words..(r + 1) * words]);
                if r > 0 {
                    or(&mut cell, &prev[(r - 1) * words..r * words]);
                }
            }
            let mut all = cell.clone();
            let col = k as isize - r as isize;
            if col >= 0 && (col as usize) < w {
                let c = if mirror {
                    w - 1 - col as usize
                } else {
                    col as usize
                };
                for g in 0..gs {
                    let mut s = cell.clone();
                    or(&mut s, is.get(r, c, g));
                    or(&mut all, &s);
                    out.or_into(r, c, g, &s);
                }
            }
            cur[r * words..(r + 1) * words].copy_from_slice(&all);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    out
}

/// The first (pixel, group) that depends on an input sub-pixel at or after itself.
#[allow(clippy::type_complexity)]
fn find_leak(
    m: &DepMap,
    image: &ImageSpec,
) -> Option<((usize, usize, usize), (usize, usize, usize))> {
    let ch = image.channels;
    for r in 0..m.height {
        for c in 0..m.width {
            for g in 0..m.groups {
                let limit = (r * m.width + c) * ch + g;
                if let Some(b) = highest(m.get(r, c, g)) {
                    if b >= limit {
                        let p = b / ch;
                        return Some(((r, c, g), (p / m.width, p % m.width, b % ch)));
                    }
                }
            }
        }
    }
    None
}

fn summarize(m: &DepMap, image: &ImageSpec) -> Summary {
    let ch = image.channels;
    let (mut full, mut seen_t, mut allowed_t, mut frac, mut counted) = (0, 0, 0, 0.0, 0usize);
    for r in 0..m.height {
        for c in 0..m.width {
            for g in 0..ch {
                let allowed = (r * m.width + c) * ch + g;
                let seen = popcount(m.get(r, c, g.min(m.groups - 1))).min(allowed);
                if seen == allowed {
                    full += 1;
                }
                seen_t += seen;
                allowed_t += allowed;
                if allowed > 0 {
                    frac += seen as f64 / allowed as f64;
                    counted += 1;
                }
            }
        }
    }
    Summary {
        sub_pixels: m.height * m.width * ch,
        full_context: full,
        seen: seen_t,
        allowed: allowed_t,
        mean_fraction: if counted > 0 {
            frac / counted as f64
        } else {
            1.0
        },
    }
}
