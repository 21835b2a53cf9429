//! The prioritised replay buffer of FAB with α = 2 (ICLR 2023): AIS points kept with their weights and sampled
//! without replacement in proportion to them.
//!
//! Points are stored with their AIS log weight and the flow's log q at the time they were stored. When a point is
//! re-used after the flow changed, its weight is corrected by `(1 − α)(log q_now − log q_old)`: the samples were
//! drawn ∝ the stored weight, so only this ratio enters the loss.

use fab_core::{Batch, BatchRef};
use rand::RngCore;
use rand_distr::{Distribution, Open01};
use serde::{Deserialize, Serialize};

/// A circular store of `capacity` points of dimension `dim` with log weights and the log q at storage time.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayBuffer {
    dim: usize,
    capacity: usize,
    min_len_to_sample: usize,
    x: Vec<f64>,
    log_w: Vec<f64>,
    log_q_old: Vec<f64>,
    /// Index where the next point is written.
    next_idx: usize,
    /// Number of filled slots (≤ capacity).
    len: usize,
    /// Points refused at insertion because x, log w or log q was non-finite.
    n_dropped_non_finite: u64,
}

/// The buffer's small state, stored as JSON in checkpoints (the arrays go in binary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferScalars {
    dim: usize,
    capacity: usize,
    min_len_to_sample: usize,
    next_idx: usize,
    len: usize,
    n_dropped_non_finite: u64,
}

/// Points drawn from the buffer: positions, the log q stored with them, and their slot indices (for `adjust`).
#[derive(Debug, Clone, PartialEq)]
pub struct BufferDraw {
    /// The points, one per row.
    pub x: Batch,
    /// `log q_old` of each point.
    pub log_q_old: Vec<f64>,
    /// Slot of each point in the buffer.
    pub idx: Vec<usize>,
}

impl ReplayBuffer {
    /// An empty buffer. `min_len_to_sample` is the fill level below which `can_sample` is false.
    ///
    /// # Panics
    /// If `dim == 0`, `capacity == 0` or `min_len_to_sample > capacity` (configs are validated before this).
    pub fn new(dim: usize, capacity: usize, min_len_to_sample: usize) -> Self {
        assert!(dim > 0 && capacity > 0 && min_len_to_sample <= capacity, "invalid replay buffer shape");
        Self {
            dim,
            capacity,
            min_len_to_sample,
            x: vec![0.0; capacity * dim],
            log_w: vec![f64::NEG_INFINITY; capacity],
            log_q_old: vec![0.0; capacity],
            next_idx: 0,
            len: 0,
            n_dropped_non_finite: 0,
        }
    }

    /// Number of points stored.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Dimension of the stored points.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Maximum number of points.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    /// Whether the buffer is full enough to sample from.
    pub fn can_sample(&self) -> bool {
        self.len >= self.min_len_to_sample
    }
    /// Points refused at insertion because a value was non-finite.
    pub fn n_dropped_non_finite(&self) -> u64 {
        self.n_dropped_non_finite
    }
    /// Log weights of the filled slots.
    pub fn log_weights(&self) -> &[f64] {
        &self.log_w[..self.len]
    }

    /// The small state, for checkpoints.
    pub fn scalars(&self) -> BufferScalars {
        BufferScalars {
            dim: self.dim,
            capacity: self.capacity,
            min_len_to_sample: self.min_len_to_sample,
            next_idx: self.next_idx,
            len: self.len,
            n_dropped_non_finite: self.n_dropped_non_finite,
        }
    }

    /// The arrays (`x`, `log_w`, `log_q_old`) of the filled slots, for checkpoints, borrowed: a checkpoint is
    /// written from them without a copy. Only the filled slots: the storage is allocated zeroed, so its empty slots
    /// take no memory until filled.
    pub fn arrays(&self) -> [(&'static str, &[f64]); 3] {
        [
            ("x", &self.x[..self.len * self.dim]),
            ("log_w", &self.log_w[..self.len]),
            ("log_q_old", &self.log_q_old[..self.len]),
        ]
    }

    /// Restores the state written by [`ReplayBuffer::scalars`] and [`ReplayBuffer::arrays`]; the shape must match
    /// this buffer's (same dimension, capacity and fill threshold). The arrays hold the filled slots, or every slot
    /// (checkpoints written before [`ReplayBuffer::arrays`] left out the empty ones).
    pub fn restore(
        &mut self,
        scalars: BufferScalars,
        mut arrays: std::collections::BTreeMap<String, Vec<f64>>,
    ) -> Result<(), String> {
        let mine = self.scalars();
        if (scalars.dim, scalars.capacity, scalars.min_len_to_sample)
            != (mine.dim, mine.capacity, mine.min_len_to_sample)
        {
            return Err(format!("stored buffer shape {scalars:?} differs from the config's {mine:?}"));
        }
        let filling = scalars.len < scalars.capacity;
        if scalars.len > scalars.capacity
            || scalars.next_idx >= scalars.capacity
            || (filling && scalars.next_idx != scalars.len)
        {
            return Err(format!("inconsistent fill state {scalars:?}"));
        }
        let (len, capacity) = (scalars.len, self.capacity);
        let mut take = |name: &str, width: usize, empty: f64| -> Result<Vec<f64>, String> {
            let v = arrays.remove(name).ok_or_else(|| format!("missing array `{name}`"))?;
            slots_in_storage(v, len * width, capacity * width, empty).map_err(|n| {
                format!("array `{name}` has {n} entries, expected {} or {}", len * width, capacity * width)
            })
        };
        let x = take("x", self.dim, 0.0)?;
        let log_w = take("log_w", 1, f64::NEG_INFINITY)?;
        let log_q_old = take("log_q_old", 1, 0.0)?;
        (self.x, self.log_w, self.log_q_old) = (x, log_w, log_q_old);
        self.next_idx = scalars.next_idx;
        self.len = scalars.len;
        self.n_dropped_non_finite = scalars.n_dropped_non_finite;
        Ok(())
    }

    /// Stores the rows of `xs` with their log weights and log q, overwriting the oldest points when full.
    /// Rows with any non-finite value are dropped and counted. Returns the number stored.
    pub fn add(&mut self, xs: BatchRef<'_>, log_w: &[f64], log_q: &[f64]) -> usize {
        assert_eq!(xs.dim(), self.dim, "ReplayBuffer::add: dimension differs from the buffer's");
        assert!(xs.n_rows() == log_w.len() && log_w.len() == log_q.len(), "ReplayBuffer::add: one weight per row");
        let mut n_added = 0;
        for ((x, &lw), &lq) in xs.rows().zip(log_w).zip(log_q) {
            if !(lw.is_finite() && lq.is_finite() && x.iter().all(|v| v.is_finite())) {
                self.n_dropped_non_finite += 1;
                continue;
            }
            let i = self.next_idx;
            self.x[i * self.dim..(i + 1) * self.dim].copy_from_slice(x);
            self.log_w[i] = lw;
            self.log_q_old[i] = lq;
            self.next_idx = (i + 1) % self.capacity;
            self.len = (self.len + 1).min(self.capacity);
            n_added += 1;
        }
        n_added
    }

    /// Draws `n` distinct points with probability ∝ `exp(log w)` (sequential sampling without replacement, by the
    /// Gumbel-top-k trick), in random order. Returns `None` when fewer than `n` points have a finite weight.
    pub fn sample(&self, rng: &mut dyn RngCore, n: usize) -> Option<BufferDraw> {
        let mut keys: Vec<(f64, usize)> = (0..self.len)
            .filter(|&i| self.log_w[i].is_finite())
            .map(|i| {
                let u: f64 = Open01.sample(rng);
                (self.log_w[i] - (-u.ln()).ln(), i)
            })
            .collect();
        if keys.len() < n {
            return None;
        }
        if n == 0 {
            return Some(BufferDraw { x: Batch::zeros(0, self.dim), log_q_old: Vec::new(), idx: Vec::new() });
        }
        // Largest perturbed keys first; ties broken by index so the order is total and reproducible.
        keys.select_nth_unstable_by(n - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut idx: Vec<usize> = keys[..n].iter().map(|k| k.1).collect();
        idx.sort_unstable();
        shuffle(&mut idx, rng);
        let mut x = Batch::zeros(0, self.dim);
        for &i in &idx {
            x.push_row(&self.x[i * self.dim..(i + 1) * self.dim]);
        }
        let log_q_old = idx.iter().map(|&i| self.log_q_old[i]).collect();
        Some(BufferDraw { x, log_q_old, idx })
    }

    /// After a gradient step on drawn points: adds `log_w_adjust` to their log weights and stores the new log q.
    /// Points whose adjustment or new log q is non-finite get weight zero (`-inf`) so they are never drawn again.
    pub fn adjust(&mut self, idx: &[usize], log_w_adjust: &[f64], log_q_new: &[f64]) {
        assert!(
            idx.len() == log_w_adjust.len() && idx.len() == log_q_new.len(),
            "ReplayBuffer::adjust: lengths differ"
        );
        for ((&i, &adj), &lq) in idx.iter().zip(log_w_adjust).zip(log_q_new) {
            if adj.is_finite() && lq.is_finite() {
                self.log_w[i] += adj;
                self.log_q_old[i] = lq;
            } else {
                self.log_w[i] = f64::NEG_INFINITY;
            }
        }
    }
}

/// A stored array as full storage of `full` entries: `v` itself when it has them all, else its `filled` entries
/// followed by `empty` (zero-filled storage is allocated zeroed, so its untouched pages take no memory). The length
/// of `v` when it is neither.
fn slots_in_storage(v: Vec<f64>, filled: usize, full: usize, empty: f64) -> Result<Vec<f64>, usize> {
    if v.len() == full {
        return Ok(v);
    }
    if v.len() != filled {
        return Err(v.len());
    }
    let mut storage = vec![empty; full];
    storage[..filled].copy_from_slice(&v);
    Ok(storage)
}

/// Fisher–Yates shuffle driven by `rng`.
fn shuffle(xs: &mut [usize], rng: &mut dyn RngCore) {
    for i in (1..xs.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        xs.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fab_core::stream_rng;

    fn filled(log_w: &[f64]) -> ReplayBuffer {
        let n = log_w.len();
        let mut b = ReplayBuffer::new(1, n, 1);
        let xs: Vec<f64> = (0..n).map(|i| i as f64).collect();
        b.add(BatchRef::new(&xs, 1), log_w, &vec![0.0; n]);
        b
    }

    #[test]
    fn the_buffer_is_circular_and_drops_non_finite_points() {
        let mut b = ReplayBuffer::new(2, 3, 2);
        assert!(!b.can_sample());
        let xs = [1.0, 1.0, 2.0, 2.0, f64::NAN, 0.0, 4.0, 4.0, 5.0, 5.0];
        let n = b.add(BatchRef::new(&xs, 2), &[0.0, 1.0, 2.0, 3.0, f64::NAN], &[0.0; 5]);
        assert_eq!((n, b.len(), b.n_dropped_non_finite()), (3, 3, 2));
        assert_eq!(b.log_weights(), &[0.0, 1.0, 3.0]);
        b.add(BatchRef::new(&[9.0, 9.0], 2), &[7.0], &[0.0]);
        // The oldest slot (index 0) was overwritten.
        assert_eq!(b.log_weights(), &[7.0, 1.0, 3.0]);
        assert!(b.can_sample());
    }

    #[test]
    fn draws_are_distinct_and_follow_the_weights() {
        // Weights 1:2:3:4; drawing 1 of 4 many times gives frequencies within CLT bounds of w/Σw.
        let b = filled(&[1f64.ln(), 2f64.ln(), 3f64.ln(), 4f64.ln()]);
        let mut rng = stream_rng(5, 0);
        let n_draws = 20_000;
        let mut counts = [0usize; 4];
        for _ in 0..n_draws {
            counts[b.sample(&mut rng, 1).unwrap().idx[0]] += 1;
        }
        for (i, &c) in counts.iter().enumerate() {
            let p = (i + 1) as f64 / 10.0;
            let se = (p * (1.0 - p) / n_draws as f64).sqrt();
            assert!((c as f64 / n_draws as f64 - p).abs() < 4.0 * se, "slot {i}: {c} draws, expected p = {p}");
        }
        let d = b.sample(&mut rng, 4).unwrap();
        let mut idx = d.idx.clone();
        idx.sort_unstable();
        assert_eq!(idx, vec![0, 1, 2, 3]);
        assert_eq!(d.x.as_slice().iter().map(|&v| v as usize).collect::<Vec<_>>(), d.idx);
        assert!(b.sample(&mut rng, 5).is_none());
    }

    #[test]
    fn restore_gives_back_the_same_buffer_and_refuses_other_shapes() {
        let b = filled(&[0.5, -1.0, 2.0]);
        let arrays = b
            .arrays()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect::<std::collections::BTreeMap<_, _>>();
        let mut c = ReplayBuffer::new(1, 3, 1);
        c.restore(b.scalars(), arrays.clone()).unwrap();
        assert_eq!(c, b);
        let mut wrong = ReplayBuffer::new(1, 4, 1);
        assert!(wrong.restore(b.scalars(), arrays).unwrap_err().contains("differs"));
    }

    #[test]
    fn a_partly_filled_buffer_is_checkpointed_by_its_filled_slots_and_restored_from_either_form() {
        let mut b = ReplayBuffer::new(2, 5, 1);
        b.add(BatchRef::new(&[1.0, 2.0, 3.0, 4.0], 2), &[0.5, -1.0], &[-3.0, -4.0]);
        let arrays: std::collections::BTreeMap<String, Vec<f64>> =
            b.arrays().into_iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect();
        assert_eq!(arrays["x"], vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!((arrays["log_w"].len(), arrays["log_q_old"].len()), (2, 2));
        let mut c = ReplayBuffer::new(2, 5, 1);
        c.restore(b.scalars(), arrays.clone()).unwrap();
        assert_eq!(c, b);
        // Every slot, as checkpoints held them before.
        let full: std::collections::BTreeMap<String, Vec<f64>> =
            [("x", b.x.clone()), ("log_w", b.log_w.clone()), ("log_q_old", b.log_q_old.clone())]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        let mut d = ReplayBuffer::new(2, 5, 1);
        d.restore(b.scalars(), full).unwrap();
        assert_eq!(d, b);
        // Both go on identically.
        for buffer in [&mut c, &mut d] {
            buffer.add(BatchRef::new(&[5.0, 6.0], 2), &[2.0], &[0.0]);
        }
        assert_eq!(c, d);
        let mut short = arrays;
        short.get_mut("x").unwrap().pop();
        let err = ReplayBuffer::new(2, 5, 1).restore(b.scalars(), short).unwrap_err();
        assert_eq!(err, "array `x` has 3 entries, expected 4 or 10");
    }

    #[test]
    fn adjusting_moves_weights_and_kills_invalid_points() {
        let mut b = filled(&[0.0, 0.0, 0.0]);
        b.adjust(&[0, 2], &[1.5, f64::NAN], &[-2.0, 0.0]);
        assert_eq!(b.log_weights(), &[1.5, 0.0, f64::NEG_INFINITY]);
        let mut rng = stream_rng(1, 1);
        // Only two points have finite weight.
        assert!(b.sample(&mut rng, 3).is_none());
        assert!(b.sample(&mut rng, 2).is_some());
    }
}
