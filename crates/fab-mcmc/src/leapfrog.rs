//! The leapfrog integrator on a batch of phase-space points, with a diagonal mass matrix.
//!
//! One step is `p ← p + ε/2·∇log π(x); x ← x + ε·M⁻¹p; p ← p + ε/2·∇log π(x)` (the ICLR form; the 2021 form is
//! the same map with the half kicks merged). Every step makes one batched evaluation of every component.

use crate::error::McmcError;
use crate::points::{Points, evaluate_whole_batch};
use crate::target::LinearLogDensity;
use fab_core::Batch;
use rayon::prelude::*;

/// Advances `pts` (positions) and `p` (momenta, row-major like the positions) by `n_steps` leapfrog steps,
/// row `i` with step size `step_sizes[i]`. Rows that reach a non-finite position or `log π` stop there and are
/// marked dead in `pts.alive`.
pub(crate) fn integrate(
    target: &LinearLogDensity<'_>,
    pts: &mut Points,
    p: &mut [f64],
    step_sizes: &[f64],
    n_steps: usize,
    inv_mass: &[f64],
) {
    for _ in 0..n_steps {
        if !pts.alive.iter().any(|&a| a) {
            return;
        }
        kick_and_drift(pts, p, step_sizes, inv_mass);
        pts.evaluate_alive(target);
        half_kick(pts, p, step_sizes);
    }
}

/// The momenta, step sizes and points of one chunk's trajectory, for [`integrate_in_lockstep`].
#[derive(Debug)]
pub(crate) struct Trajectory {
    /// Positions and cached densities.
    pub pts: Points,
    /// Momenta, row-major like the positions.
    pub p: Vec<f64>,
    /// Step size of each row.
    pub step_sizes: Vec<f64>,
}

/// [`integrate`] for every chunk of a state whose target has [`fab_core::Evaluation::WholeBatch`] components:
/// the chunks advance one leapfrog step at a time (kicks, drifts and the chunked components in parallel over
/// chunks), and each whole-batch component is evaluated once per step on the alive rows of all chunks, in
/// chain order. Every row follows exactly the arithmetic of [`integrate`], so the results are the same bits.
pub(crate) fn integrate_in_lockstep(
    target: &LinearLogDensity<'_>,
    trajectories: &mut [&mut Trajectory],
    n_steps: usize,
    inv_mass: &[f64],
) {
    for _ in 0..n_steps {
        if !trajectories.iter().any(|t| t.pts.alive.iter().any(|&a| a)) {
            return;
        }
        trajectories.par_iter_mut().for_each(|t| {
            kick_and_drift(&mut t.pts, &mut t.p, &t.step_sizes, inv_mass);
            t.pts.evaluate_chunked_components(target);
        });
        let mut points: Vec<&mut Points> = trajectories.iter_mut().map(|t| &mut t.pts).collect();
        evaluate_whole_batch(target, &mut points);
        trajectories.par_iter_mut().for_each(|t| {
            t.pts.finish_evaluation(target);
            half_kick(&t.pts, &mut t.p, &t.step_sizes);
        });
    }
}

/// The first half of a leapfrog step: `p ← p + ε/2·∇log π(x)`, `x ← x + ε·M⁻¹p` on the alive rows; rows whose
/// new position is not finite die.
fn kick_and_drift(pts: &mut Points, p: &mut [f64], step_sizes: &[f64], inv_mass: &[f64]) {
    let dim = pts.dim;
    half_kick(pts, p, step_sizes);
    for i in (0..pts.m).filter(|&i| pts.alive[i]) {
        let (x, pi) = (&mut pts.x[i * dim..(i + 1) * dim], &p[i * dim..(i + 1) * dim]);
        for ((xd, pd), im) in x.iter_mut().zip(pi).zip(inv_mass) {
            *xd += step_sizes[i] * im * pd;
        }
    }
    pts.kill_non_finite_positions();
}

/// `p ← p + ε/2·∇log π(x)` on the alive rows.
fn half_kick(pts: &Points, p: &mut [f64], step_sizes: &[f64]) {
    let dim = pts.dim;
    for i in (0..pts.m).filter(|&i| pts.alive[i]) {
        let h = 0.5 * step_sizes[i];
        for (pd, gd) in p[i * dim..(i + 1) * dim].iter_mut().zip(&pts.grad_pi[i * dim..(i + 1) * dim]) {
            *pd += h * gd;
        }
    }
}

/// Kinetic energy `½ Σ_d p_d² / m_d`.
pub(crate) fn kinetic_energy(p: &[f64], inv_mass: &[f64]) -> f64 {
    0.5 * p.iter().zip(inv_mass).map(|(pd, im)| pd * pd * im).sum::<f64>()
}

/// A batch of phase-space points `(x, p)` with cached densities: the leapfrog integrator exposed on its own,
/// for tests (energy conservation, reversibility) and for users building their own kernels.
#[derive(Debug, Clone)]
pub struct PhaseBatch {
    pts: Points,
    p: Vec<f64>,
}

impl PhaseBatch {
    /// Evaluates `target` (with gradients) at the rows of `x`; `p` holds the momenta.
    /// `grad_clamp` is the optional NaN-to-zero-and-clamp guard applied to `∇ log π`.
    pub fn new(
        target: &LinearLogDensity<'_>,
        x: &Batch,
        p: &Batch,
        grad_clamp: Option<f64>,
    ) -> Result<Self, McmcError> {
        if x.dim() != target.dim() || p.dim() != target.dim() {
            return Err(McmcError::PositionDimension { expected: target.dim(), got: x.dim().max(p.dim()) });
        }
        if x.n_rows() != p.n_rows() {
            return Err(McmcError::InvalidParameter {
                field: "p",
                reason: format!("{} momenta for {} positions", p.n_rows(), x.n_rows()),
            });
        }
        let mut pts = Points::empty(target, x.n_rows(), true, grad_clamp);
        pts.x.copy_from_slice(x.as_slice());
        pts.kill_non_finite_positions();
        pts.evaluate_alive(target);
        Ok(Self { pts, p: p.as_slice().to_vec() })
    }

    /// `n_steps` leapfrog steps of size `step_size` with inverse mass diagonal `inv_mass`.
    pub fn leapfrog(&mut self, target: &LinearLogDensity<'_>, step_size: f64, n_steps: usize, inv_mass: &[f64]) {
        let step_sizes = vec![step_size; self.pts.m];
        integrate(target, &mut self.pts, &mut self.p, &step_sizes, n_steps, inv_mass);
    }

    /// `p ← −p`: running the integrator again then retraces the trajectory (leapfrog is reversible).
    pub fn negate_momentum(&mut self) {
        self.p.iter_mut().for_each(|v| *v = -*v);
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.pts.m
    }
    /// True when the batch holds no points.
    pub fn is_empty(&self) -> bool {
        self.pts.m == 0
    }
    /// Position of point `i`.
    pub fn position(&self, i: usize) -> &[f64] {
        self.pts.row(i)
    }
    /// Momentum of point `i`.
    pub fn momentum(&self, i: usize) -> &[f64] {
        &self.p[i * self.pts.dim..(i + 1) * self.pts.dim]
    }
    /// `log π` at point `i`.
    pub fn log_target(&self, i: usize) -> f64 {
        self.pts.log_pi[i]
    }
    /// False once point `i` has hit a non-finite position or density.
    pub fn is_alive(&self, i: usize) -> bool {
        self.pts.alive[i]
    }
    /// Hamiltonian `H = −log π(x) + ½ pᵀM⁻¹p` of point `i`.
    pub fn hamiltonian(&self, i: usize, inv_mass: &[f64]) -> f64 {
        -self.pts.log_pi[i] + kinetic_energy(self.momentum(i), inv_mass)
    }
    /// Points evaluated so far (each evaluation covers every component).
    pub fn n_evaluated(&self) -> u64 {
        self.pts.n_evaluated
    }
}
