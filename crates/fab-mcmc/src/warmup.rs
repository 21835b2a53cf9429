//! Stan's windowed warm-up: dual averaging of the step size throughout, and the mass matrix estimated by Welford
//! (co)variances over expanding windows (75 / 25 doubling / 50 buffers), pooled over all chains.

use crate::adapt::DualAveraging;
use crate::metric::{InverseMetric, MetricForm};
use serde::{Deserialize, Serialize};

/// The buffer sizes of a windowed warm-up (Stan: 75 initial, 25 first window, 50 terminal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmupSchedule {
    /// Iterations of step-size-only adaptation before the first metric window (fast: chains find the typical set).
    pub init_buffer: usize,
    /// Length of the first metric window; each following window doubles.
    pub base_window: usize,
    /// Iterations of step-size-only adaptation after the last metric window.
    pub term_buffer: usize,
}

impl Default for WarmupSchedule {
    fn default() -> Self {
        Self { init_buffer: 75, base_window: 25, term_buffer: 50 }
    }
}

impl WarmupSchedule {
    /// The metric windows `[start, end)` of a warm-up of `n` iterations. As in Stan: when the buffers do not fit
    /// they shrink to 15 % / 75 % / 10 % of `n`; a window whose successor would overrun the terminal buffer is
    /// stretched to it; below 20 iterations there are no windows (step size only).
    pub fn windows(&self, n: usize) -> Vec<(usize, usize)> {
        if n < 20 {
            return Vec::new();
        }
        let (mut init, mut base, mut term) = (self.init_buffer, self.base_window, self.term_buffer);
        if init + base + term > n {
            init = (0.15 * n as f64) as usize;
            term = (0.1 * n as f64) as usize;
            base = n - init - term;
        }
        let last_end = n - term;
        let mut out = Vec::new();
        let (mut start, mut size) = (init, base.max(1));
        while start < last_end {
            let mut end = (start + size).min(last_end);
            // Stan checks every window but the first: stretch it if the next (twice as long) would not fit.
            if !out.is_empty() && end + 2 * size >= last_end {
                end = last_end;
            }
            out.push((start, end));
            start = end;
            size *= 2;
        }
        out
    }
}

/// Welford's running mean and (co)variance of the positions of all chains.
#[derive(Debug, Clone, PartialEq)]
pub struct Welford {
    dim: usize,
    dense: bool,
    n: f64,
    mean: Vec<f64>,
    /// Sum of squared deviations: `d` entries (diagonal) or `d × d` (dense).
    m2: Vec<f64>,
    delta: Vec<f64>,
}

impl Welford {
    /// An empty accumulator for the diagonal or the full covariance.
    pub fn new(dim: usize, form: MetricForm) -> Self {
        let dense = form == MetricForm::Dense;
        Self {
            dim,
            dense,
            n: 0.0,
            mean: vec![0.0; dim],
            m2: vec![0.0; if dense { dim * dim } else { dim }],
            delta: vec![0.0; dim],
        }
    }

    /// Adds one point.
    pub fn add(&mut self, x: &[f64]) {
        self.n += 1.0;
        for ((d, m), xi) in self.delta.iter_mut().zip(&mut self.mean).zip(x) {
            *d = xi - *m;
            *m += *d / self.n;
        }
        if self.dense {
            for ((row, xi), mi) in self.m2.chunks_exact_mut(self.dim).zip(x).zip(&self.mean) {
                let after = xi - mi;
                row.iter_mut().zip(&self.delta).for_each(|(m2, d)| *m2 += after * d);
            }
        } else {
            for ((m2, d), (xi, m)) in self.m2.iter_mut().zip(&self.delta).zip(x.iter().zip(&self.mean)) {
                *m2 += d * (xi - m);
            }
        }
    }

    /// Adds every row of a row-major batch (one row per chain).
    pub fn add_rows(&mut self, xs: &[f64]) {
        for row in xs.chunks_exact(self.dim) {
            self.add(row);
        }
    }

    /// Number of points added.
    pub fn count(&self) -> usize {
        self.n as usize
    }

    /// The regularised estimate Stan uses as inverse metric: `n/(n+5)·Σ̂ + 10⁻³·5/(n+5)·I`, with `Σ̂` the
    /// unbiased sample (co)variance. `None` below 3 points.
    pub fn regularised(&self) -> Option<InverseMetric> {
        if self.n < 3.0 {
            return None;
        }
        let n = self.n;
        let (w, shrink) = (n / (n + 5.0), 1e-3 * 5.0 / (n + 5.0));
        let cov = |m2: f64| w * m2 / (n - 1.0);
        if self.dense {
            let d = self.dim;
            let mut m: Vec<f64> = self.m2.iter().map(|&v| cov(v)).collect();
            // Symmetrise (the two triangles accumulate in different orders) and shrink toward the identity.
            for i in 0..d {
                for j in 0..i {
                    let s = 0.5 * (m[i * d + j] + m[j * d + i]);
                    m[i * d + j] = s;
                    m[j * d + i] = s;
                }
                m[i * d + i] += shrink;
            }
            Some(InverseMetric::Dense { dim: d, matrix: m })
        } else {
            Some(InverseMetric::Diagonal(self.m2.iter().map(|&v| cov(v) + shrink).collect()))
        }
    }
}

/// The state of a windowed warm-up of `n` iterations: which iteration it is at, the step-size dual averaging
/// and the Welford accumulator of the current window.
#[derive(Debug, Clone)]
pub struct WindowedAdaptation {
    windows: Vec<(usize, usize)>,
    iteration: usize,
    dual: DualAveraging,
    target_accept: f64,
    welford: Welford,
    form: MetricForm,
}

impl WindowedAdaptation {
    /// A warm-up of `n` iterations adapting a metric of `form` in dimension `dim`, dual averaging toward
    /// `target_accept` from `initial_step`.
    pub fn new(
        n: usize,
        schedule: WarmupSchedule,
        dim: usize,
        form: MetricForm,
        target_accept: f64,
        initial_step: f64,
    ) -> Self {
        Self {
            windows: schedule.windows(n),
            iteration: 0,
            dual: DualAveraging::new(initial_step, target_accept),
            target_accept,
            welford: Welford::new(dim, form),
            form,
        }
    }

    /// The metric windows of this warm-up.
    pub fn windows(&self) -> &[(usize, usize)] {
        &self.windows
    }

    /// The step size for the next transition (the dual-averaging iterate).
    pub fn step_size(&self) -> f64 {
        self.dual.log_step.exp()
    }

    /// The step size to sample with once warm-up ends (the dual-averaging average).
    pub fn final_step_size(&self) -> f64 {
        self.dual.log_step_avg.exp()
    }

    /// Records one transition: its mean acceptance statistic and the chains' new positions (row-major).
    /// Returns the new inverse metric when a window closes; the caller then sets it and calls
    /// [`WindowedAdaptation::restart_step_size`].
    pub fn observe(&mut self, accept_stat: f64, positions: &[f64]) -> Option<InverseMetric> {
        self.dual.update(accept_stat);
        let t = self.iteration;
        self.iteration += 1;
        let window = self.windows.iter().find(|(s, e)| (*s..*e).contains(&t)).copied();
        let (_, end) = window?;
        self.welford.add_rows(positions);
        if t + 1 != end {
            return None;
        }
        let metric = self.welford.regularised();
        self.welford = Welford::new(self.welford.dim, self.form);
        metric
    }

    /// Restarts dual averaging from `step_size` (Stan does this after every metric update, at `μ = log 10ε`).
    pub fn restart_step_size(&mut self, step_size: f64) {
        self.dual = DualAveraging::new(step_size, self.target_accept);
    }
}
