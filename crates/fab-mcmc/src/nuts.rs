//! The No-U-Turn Sampler as Stan runs it: trajectory doubling, multinomial sampling of the draw, the generalised
//! U-turn criterion on momentum sums (with the checks across merged subtrees), maximum tree depth, divergence.

use crate::error::{McmcError, check_step_size};
use crate::kernel::{ChainInfo, Kernel, StepInfo, TreeInfo};
use crate::metric::{InverseMetric, MetricForm, MetricOps, dot, kinetic};
use crate::points::clamp_gradient;
use crate::state::ChainState;
use crate::target::LinearLogDensity;
use fab_core::{StreamRng, stream_rng};
use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// NUTS (Hoffman & Gelman 2014, in the multinomial form of Betancourt 2017 used by Stan and nuts-rs).
///
/// Every transition draws `p ~ N(0, M)` and doubles a leapfrog trajectory in random directions until the
/// generalised U-turn criterion `p♯₋·ρ > 0 ∧ p♯₊·ρ > 0` fails (`ρ` the sum of momenta, `p♯ = M⁻¹p` at the ends),
/// on the whole trajectory, on every subtree, and across the halves of every merge (Stan ≥ 2.26), or until
/// `max_depth` doublings. The draw is chosen along the trajectory with weights `exp(−H)`: uniformly (multinomial)
/// inside subtrees, biased toward the new half at the top level. A leapfrog step whose energy error exceeds
/// `max_energy_error` (or is not finite) is a divergence: the subtree it belongs to is discarded and the tree stops.
///
/// Chains run independently (in parallel with rayon); chain `i` draws from `stream_rng(seed, i)`, so results are
/// bitwise identical for any number of threads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nuts {
    /// Maximum number of doublings; a transition uses at most `2^max_depth − 1` leapfrog steps (Stan: 10).
    pub max_depth: u32,
    /// Energy error `H − H₀` above which a leapfrog step is divergent (Stan and nuts-rs: 1000).
    pub max_energy_error: f64,
    /// The inverse mass matrix `M⁻¹`; `None` is the identity. Warm-up of a [`crate::Sampler`] adapts it.
    pub inverse_metric: Option<InverseMetric>,
    /// If set, `∇ log π` has `NaN → 0` and is clamped to `±limit` (see [`crate::clamp_gradient`]).
    pub grad_clamp: Option<f64>,
}

impl Default for Nuts {
    fn default() -> Self {
        Self { max_depth: 10, max_energy_error: 1000.0, inverse_metric: None, grad_clamp: None }
    }
}

impl Nuts {
    /// Stan's defaults: depth 10, divergence at energy error 1000, identity metric (adapted by warm-up).
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the maximum tree depth.
    pub fn with_max_depth(mut self, max_depth: u32) -> Self {
        self.max_depth = max_depth;
        self
    }
    /// Sets the inverse mass matrix.
    pub fn with_inverse_metric(mut self, metric: InverseMetric) -> Self {
        self.inverse_metric = Some(metric);
        self
    }
    /// Starts from a dense identity metric, so that warm-up adapts a dense one (small dimensions only).
    pub fn with_dense_metric(mut self, dim: usize) -> Self {
        let mut m = vec![0.0; dim * dim];
        (0..dim).for_each(|i| m[i * dim + i] = 1.0);
        self.inverse_metric = Some(InverseMetric::Dense { dim, matrix: m });
        self
    }
    /// Enables the `NaN → 0`, `±limit` gradient guard.
    pub fn with_grad_clamp(mut self, limit: f64) -> Self {
        self.grad_clamp = Some(limit);
        self
    }
    /// Sets the divergence threshold.
    pub fn with_max_energy_error(mut self, max_energy_error: f64) -> Self {
        self.max_energy_error = max_energy_error;
        self
    }

    /// Checks the settings against a dimension and factorises the metric.
    fn checked_metric(&self, dim: usize) -> Result<MetricOps, McmcError> {
        let invalid = |field, reason: String| Err(McmcError::InvalidParameter { field, reason });
        if self.max_depth == 0 || self.max_depth > 30 {
            return invalid("max_depth", format!("must lie in 1..=30, got {}", self.max_depth));
        }
        if self.max_energy_error.is_nan() || self.max_energy_error <= 0.0 {
            return invalid("max_energy_error", format!("must be positive, got {}", self.max_energy_error));
        }
        if let Some(c) = self.grad_clamp
            && (c.is_nan() || c <= 0.0)
        {
            return invalid("grad_clamp", format!("must be positive, got {c}"));
        }
        let metric = self.inverse_metric.clone().unwrap_or_else(|| InverseMetric::identity(dim));
        if metric.dim() != dim {
            return invalid(
                "inverse_metric",
                format!("has dimension {} for a density of dimension {dim}", metric.dim()),
            );
        }
        metric.factor()
    }

    /// One NUTS transition of every chain, with the per-chain tree statistics.
    pub fn transition(
        &self,
        target: &LinearLogDensity<'_>,
        state: &mut ChainState,
        step_size: f64,
        seed: u64,
    ) -> Result<(StepInfo, Vec<TreeInfo>), McmcError> {
        state.check_target(target)?;
        check_step_size(step_size)?;
        let metric = self.checked_metric(state.dim())?;
        let n_refreshed = state.ensure_gradient(target);
        let ctx = Context { target, metric: &metric, nuts: self, step_size };
        let results: Vec<(ChainInfo, TreeInfo, u64)> =
            chain_views(state).into_par_iter().map(|mut chain| ctx.transition(&mut chain, seed)).collect();
        let mut info = StepInfo { chains: Vec::with_capacity(results.len()), n_evaluated: n_refreshed };
        let mut trees = Vec::with_capacity(results.len());
        for (c, t, n) in results {
            info.chains.push(c);
            trees.push(t);
            info.n_evaluated += n;
        }
        Ok((info, trees))
    }

    /// Stan's initial step-size heuristic: from `step_size`, double (or halve) it until the acceptance
    /// probability of one leapfrog step from each chain's position, with fresh momentum, crosses 0.8
    /// (tested on the mean of `H₀ − H` over chains). Evaluates `target` once per chain per trial.
    pub fn reasonable_step_size(
        &self,
        target: &LinearLogDensity<'_>,
        state: &mut ChainState,
        step_size: f64,
        seed: u64,
    ) -> Result<f64, McmcError> {
        state.check_target(target)?;
        check_step_size(step_size)?;
        let metric = self.checked_metric(state.dim())?;
        state.ensure_gradient(target);
        let mut mean_delta = |eps: f64, trial: u64| -> f64 {
            let ctx = Context { target, metric: &metric, nuts: self, step_size: eps };
            let deltas: Vec<f64> = chain_views(state)
                .into_par_iter()
                .map(|chain| ctx.one_step_energy_change(&chain, fab_core::sub_seed(seed, &[trial])))
                .collect();
            let finite: Vec<f64> = deltas.iter().copied().map(|d| if d.is_finite() { d } else { -1e300 }).collect();
            finite.iter().sum::<f64>() / finite.len().max(1) as f64
        };
        let log_target = 0.8f64.ln();
        let mut eps = step_size;
        let first = mean_delta(eps, 0);
        let grow = first > log_target;
        for trial in 1..50 {
            let next = if grow { eps * 2.0 } else { eps / 2.0 };
            let d = mean_delta(next, trial);
            let crossed = if grow { d <= log_target } else { d > log_target };
            if crossed {
                return Ok(if grow { eps } else { next });
            }
            eps = next;
            if !(1e-10..=1e7).contains(&eps) {
                break;
            }
        }
        Ok(eps)
    }
}

impl Kernel for Nuts {
    fn uses_gradient(&self) -> bool {
        true
    }

    fn step(
        &self,
        target: &LinearLogDensity<'_>,
        state: &mut ChainState,
        step_size: f64,
        seed: u64,
    ) -> Result<StepInfo, McmcError> {
        self.transition(target, state, step_size, seed).map(|(info, _)| info)
    }

    fn step_with_trees(
        &self,
        target: &LinearLogDensity<'_>,
        state: &mut ChainState,
        step_size: f64,
        seed: u64,
    ) -> Result<(StepInfo, Vec<TreeInfo>), McmcError> {
        self.transition(target, state, step_size, seed)
    }

    fn adaptable_metric(&self) -> Option<MetricForm> {
        Some(match &self.inverse_metric {
            Some(m) if m.is_dense() => MetricForm::Dense,
            _ => MetricForm::Diagonal,
        })
    }

    fn set_inverse_metric(&mut self, metric: InverseMetric) -> Result<(), McmcError> {
        metric.factor()?;
        self.inverse_metric = Some(metric);
        Ok(())
    }

    fn initial_step_size(
        &self,
        target: &LinearLogDensity<'_>,
        state: &mut ChainState,
        step_size: f64,
        seed: u64,
    ) -> Result<f64, McmcError> {
        self.reasonable_step_size(target, state, step_size, seed)
    }
}

/// One chain of a [`ChainState`], borrowed mutably for one rayon task.
struct ChainView<'a> {
    index: usize,
    x: &'a mut [f64],
    log_f: Vec<&'a mut f64>,
    grad_f: Vec<&'a mut [f64]>,
}

/// Splits a state (which caches gradients) into per-chain views, in chain order.
fn chain_views(state: &mut ChainState) -> Vec<ChainView<'_>> {
    let dim = state.dim();
    let mut out = Vec::with_capacity(state.n_chains());
    for chunk in state.chunks_mut() {
        let start = chunk.start;
        let mut lfs: Vec<_> = chunk.log_f.into_iter().map(|lf| lf.iter_mut()).collect();
        let mut gfs: Vec<_> =
            chunk.grad_f.expect("NUTS states cache gradients").into_iter().map(|g| g.chunks_mut(dim)).collect();
        for (i, x) in chunk.x.chunks_mut(dim).enumerate() {
            out.push(ChainView {
                index: start + i,
                x,
                log_f: lfs.iter_mut().map(|it| it.next().expect("one value per chain")).collect(),
                grad_f: gfs.iter_mut().map(|it| it.next().expect("one gradient per chain")).collect(),
            });
        }
    }
    out
}

/// A point in phase space with its cached densities: position, momentum, velocity `Σp`, combined `log π` and
/// `∇ log π`, and every component's value and gradient (what a chain state stores).
#[derive(Debug, Clone)]
struct Phase {
    x: Vec<f64>,
    p: Vec<f64>,
    v: Vec<f64>,
    log_pi: f64,
    grad: Vec<f64>,
    log_f: Vec<f64>,
    grad_f: Vec<f64>,
}

impl Phase {
    fn copy_from(&mut self, other: &Phase) {
        self.x.copy_from_slice(&other.x);
        self.p.copy_from_slice(&other.p);
        self.v.copy_from_slice(&other.v);
        self.log_pi = other.log_pi;
        self.grad.copy_from_slice(&other.grad);
        self.log_f.copy_from_slice(&other.log_f);
        self.grad_f.copy_from_slice(&other.grad_f);
    }

    /// `H = −log π + ½ pᵀΣp`, `+∞` at an invalid point.
    fn hamiltonian(&self) -> f64 {
        let h = -self.log_pi + kinetic(&self.p, &self.v);
        if h.is_nan() { f64::INFINITY } else { h }
    }
}

/// The outcome of one subtree: its log total weight, momentum sum, the momenta and velocities at its two ends
/// (`beg` nearest to where it started) and its multinomial draw.
#[derive(Debug, Clone)]
struct Subtree {
    log_sum_w: f64,
    rho: Vec<f64>,
    p_beg: Vec<f64>,
    v_beg: Vec<f64>,
    p_end: Vec<f64>,
    v_end: Vec<f64>,
    draw: Phase,
}

/// The generalised U-turn criterion on a trajectory with end velocities `v_minus`, `v_plus` and momentum sum
/// `ρ = a + b`: it keeps going while both ends still move along `ρ` (`v₋·ρ > 0 ∧ v₊·ρ > 0`).
fn no_u_turn_on_sum(v_minus: &[f64], v_plus: &[f64], a: &[f64], b: &[f64]) -> bool {
    dot(v_minus, a) + dot(v_minus, b) > 0.0 && dot(v_plus, a) + dot(v_plus, b) > 0.0
}

/// `log(eᵃ + eᵇ)`.
fn log_add_exp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY { m } else { m + ((a - m).exp() + (b - m).exp()).ln() }
}

/// The buffers of one transition. They are reused by later transitions on the same thread: every buffer is
/// written before it is read, so reuse saves allocations and changes no result.
struct Workspace {
    dim: usize,
    n_components: usize,
    fwd: Phase,
    bwd: Phase,
    draw: Phase,
    rho: Vec<f64>,
    p_near: Vec<f64>,
    v_near: Vec<f64>,
    sub: Subtree,
    scratch: Vec<(Subtree, Subtree)>,
}

thread_local! {
    static WORKSPACES: std::cell::RefCell<Vec<Workspace>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What every chain's transition shares.
struct Context<'c, 't> {
    target: &'c LinearLogDensity<'t>,
    metric: &'c MetricOps,
    nuts: &'c Nuts,
    step_size: f64,
}

/// The running totals of one transition, and its chain's random stream.
struct Totals {
    rng: StreamRng,
    n_leapfrog: u32,
    sum_accept: f64,
    divergent: bool,
    n_evaluated: u64,
    h0: f64,
}

impl Context<'_, '_> {
    fn new_phase(&self) -> Phase {
        let (d, k) = (self.target.dim(), self.target.n_components());
        Phase {
            x: vec![0.0; d],
            p: vec![0.0; d],
            v: vec![0.0; d],
            log_pi: f64::NAN,
            grad: vec![0.0; d],
            log_f: vec![f64::NAN; k],
            grad_f: vec![0.0; k * d],
        }
    }

    fn new_subtree(&self) -> Subtree {
        let d = self.target.dim();
        Subtree {
            log_sum_w: f64::NEG_INFINITY,
            rho: vec![0.0; d],
            p_beg: vec![0.0; d],
            v_beg: vec![0.0; d],
            p_end: vec![0.0; d],
            v_end: vec![0.0; d],
            draw: self.new_phase(),
        }
    }

    /// Loads the chain's current point into `z` (from the cache; no evaluation), momentum not yet drawn.
    fn load_phase(&self, chain: &ChainView<'_>, z: &mut Phase) {
        let d = self.target.dim();
        z.x.copy_from_slice(chain.x);
        for (k, lf) in chain.log_f.iter().enumerate() {
            z.log_f[k] = **lf;
            z.grad_f[k * d..(k + 1) * d].copy_from_slice(chain.grad_f[k]);
        }
        self.combine(z);
    }

    /// The chain's current point as a new phase.
    fn phase_of(&self, chain: &ChainView<'_>) -> Phase {
        let mut z = self.new_phase();
        self.load_phase(chain, &mut z);
        z
    }

    /// `log π = Σ cₖ log fₖ` and `∇ log π = Σ cₖ ∇ log fₖ` (zero coefficients skipped), then the optional clamp.
    fn combine(&self, z: &mut Phase) {
        let d = self.target.dim();
        z.log_pi = self.target.combine_log(|k| z.log_f[k]);
        z.grad.fill(0.0);
        for (k, &c) in self.target.coefficients().iter().enumerate() {
            if c == 0.0 {
                continue;
            }
            for (g, s) in z.grad.iter_mut().zip(&z.grad_f[k * d..(k + 1) * d]) {
                *g += c * s;
            }
        }
        if let Some(limit) = self.nuts.grad_clamp {
            clamp_gradient(&mut z.grad, limit);
        }
    }

    /// Evaluates every component at `z.x`; a non-finite position is not evaluated and leaves `log π = NaN`.
    fn evaluate(&self, z: &mut Phase, totals: &mut Totals) {
        if !z.x.iter().all(|v| v.is_finite()) {
            z.log_pi = f64::NAN;
            return;
        }
        let d = self.target.dim();
        for (k, density) in self.target.components().iter().enumerate() {
            z.log_f[k] = density.log_prob_and_grad(&z.x, &mut z.grad_f[k * d..(k + 1) * d]);
        }
        totals.n_evaluated += 1;
        self.combine(z);
    }

    /// One leapfrog step of signed size `eps`; updates the velocity.
    fn leapfrog(&self, z: &mut Phase, eps: f64, totals: &mut Totals) {
        let half = 0.5 * eps;
        z.p.iter_mut().zip(&z.grad).for_each(|(p, g)| *p += half * g);
        self.metric.velocity(&z.p, &mut z.v);
        z.x.iter_mut().zip(&z.v).for_each(|(x, v)| *x += eps * v);
        self.evaluate(z, totals);
        z.p.iter_mut().zip(&z.grad).for_each(|(p, g)| *p += half * g);
        self.metric.velocity(&z.p, &mut z.v);
    }

    /// `H₀ − H` after one leapfrog step with fresh momentum (for the step-size heuristic).
    fn one_step_energy_change(&self, chain: &ChainView<'_>, seed: u64) -> f64 {
        let mut rng = stream_rng(seed, chain.index as u64);
        let mut z = self.phase_of(chain);
        self.metric.sample_momentum(&mut rng, &mut z.p);
        self.metric.velocity(&z.p, &mut z.v);
        let h0 = z.hamiltonian();
        let mut totals = Totals { rng, n_leapfrog: 0, sum_accept: 0.0, divergent: false, n_evaluated: 0, h0 };
        self.leapfrog(&mut z, self.step_size, &mut totals);
        h0 - z.hamiltonian()
    }

    /// Builds a subtree of `depth` from `tip` in direction `dir` (±1), moving `tip` to its far end; `scratch[d]`
    /// holds the two children of a node at depth `d + 1`. Returns false on a divergence or a U-turn inside.
    fn build_tree(
        &self,
        depth: usize,
        dir: f64,
        tip: &mut Phase,
        out: &mut Subtree,
        scratch: &mut [(Subtree, Subtree)],
        totals: &mut Totals,
    ) -> bool {
        if depth == 0 {
            self.leapfrog(tip, dir * self.step_size, totals);
            totals.n_leapfrog += 1;
            let h = tip.hamiltonian();
            let log_w = totals.h0 - h;
            let energy_error = h - totals.h0;
            if !energy_error.is_finite() || energy_error > self.nuts.max_energy_error {
                totals.divergent = true;
                return false;
            }
            totals.sum_accept += log_w.exp().min(1.0);
            out.log_sum_w = log_w;
            out.rho.copy_from_slice(&tip.p);
            out.p_beg.copy_from_slice(&tip.p);
            out.v_beg.copy_from_slice(&tip.v);
            out.p_end.copy_from_slice(&tip.p);
            out.v_end.copy_from_slice(&tip.v);
            out.draw.copy_from(tip);
            return true;
        }
        let (lower, upper) = scratch.split_at_mut(depth - 1);
        let (left, right) = &mut upper[0];
        if !self.build_tree(depth - 1, dir, tip, left, lower, totals) {
            return false;
        }
        if !self.build_tree(depth - 1, dir, tip, right, lower, totals) {
            return false;
        }
        let log_sum_w = log_add_exp(left.log_sum_w, right.log_sum_w);
        // The U-turn criterion on the merged subtree, then across its halves (Stan ≥ 2.26): each half extended
        // by the first point of the other, which catches U-turns that fall between the halves.
        let turn_free = no_u_turn_on_sum(&left.v_beg, &right.v_end, &left.rho, &right.rho)
            && no_u_turn_on_sum(&left.v_beg, &right.v_beg, &left.rho, &right.p_beg)
            && no_u_turn_on_sum(&left.v_end, &right.v_end, &right.rho, &left.p_end);
        // Multinomial sampling inside a subtree: the right half's draw with probability w_right / w_total.
        if totals.rng.random::<f64>().ln() < right.log_sum_w - log_sum_w {
            std::mem::swap(&mut out.draw, &mut right.draw);
        } else {
            std::mem::swap(&mut out.draw, &mut left.draw);
        }
        out.log_sum_w = log_sum_w;
        for ((r, a), b) in out.rho.iter_mut().zip(&left.rho).zip(&right.rho) {
            *r = a + b;
        }
        std::mem::swap(&mut out.p_beg, &mut left.p_beg);
        std::mem::swap(&mut out.v_beg, &mut left.v_beg);
        std::mem::swap(&mut out.p_end, &mut right.p_end);
        std::mem::swap(&mut out.v_end, &mut right.v_end);
        turn_free
    }

    /// One NUTS transition of one chain: `(record, tree statistics, points evaluated)`.
    fn transition(&self, chain: &mut ChainView<'_>, seed: u64) -> (ChainInfo, TreeInfo, u64) {
        let (d, k) = (self.target.dim(), self.target.n_components());
        let mut ws = WORKSPACES
            .with(|w| w.borrow_mut().pop())
            .filter(|w| w.dim == d && w.n_components == k)
            .unwrap_or_else(|| self.new_workspace());
        let out = self.transition_in(chain, seed, &mut ws);
        WORKSPACES.with(|w| w.borrow_mut().push(ws));
        out
    }

    fn new_workspace(&self) -> Workspace {
        let d = self.target.dim();
        Workspace {
            dim: d,
            n_components: self.target.n_components(),
            fwd: self.new_phase(),
            bwd: self.new_phase(),
            draw: self.new_phase(),
            rho: vec![0.0; d],
            p_near: vec![0.0; d],
            v_near: vec![0.0; d],
            sub: self.new_subtree(),
            scratch: Vec::new(),
        }
    }

    /// [`Context::transition`] with the buffers of `ws`.
    fn transition_in(&self, chain: &mut ChainView<'_>, seed: u64, ws: &mut Workspace) -> (ChainInfo, TreeInfo, u64) {
        let mut rng = stream_rng(seed, chain.index as u64);
        let Workspace { fwd, bwd, draw, rho, p_near, v_near, sub, scratch, .. } = ws;
        self.load_phase(chain, draw);
        if !draw.log_pi.is_finite() {
            // A chain parked at an invalid point cannot move (there is no finite H₀ to weigh against).
            let tree = TreeInfo { depth: 0, n_leapfrog: 0, divergent: true, energy: f64::NAN, accept_stat: 0.0 };
            return (ChainInfo::invalid(f64::NAN), tree, 0);
        }
        self.metric.sample_momentum(&mut rng, &mut draw.p);
        self.metric.velocity(&draw.p, &mut draw.v);
        let h0 = draw.hamiltonian();
        let mut totals = Totals { rng, n_leapfrog: 0, sum_accept: 0.0, divergent: false, n_evaluated: 0, h0 };
        fwd.copy_from(draw);
        bwd.copy_from(draw);
        rho.copy_from_slice(&draw.p);
        let mut moved = false;
        let mut log_sum_w = 0.0;
        let mut depth = 0usize;
        while depth < self.nuts.max_depth as usize {
            let forward = totals.rng.random::<bool>();
            let (tip, far) = if forward { (&mut *fwd, &*bwd) } else { (&mut *bwd, &*fwd) };
            let dir = if forward { 1.0 } else { -1.0 };
            p_near.copy_from_slice(&tip.p);
            v_near.copy_from_slice(&tip.v);
            while scratch.len() < depth {
                scratch.push((self.new_subtree(), self.new_subtree()));
            }
            if !self.build_tree(depth, dir, tip, sub, &mut scratch[..depth], &mut totals) {
                break;
            }
            depth += 1;
            // Biased progressive sampling at the top level: the new half wins with probability min(1, w_new/w_old).
            if sub.log_sum_w > log_sum_w || totals.rng.random::<f64>().ln() < sub.log_sum_w - log_sum_w {
                std::mem::swap(draw, &mut sub.draw);
                moved = true;
            }
            log_sum_w = log_add_exp(log_sum_w, sub.log_sum_w);
            // The old trajectory T (far end `far`, near end p/v_near) merged with the new subtree S.
            let turn_free = no_u_turn_on_sum(&far.v, &sub.v_end, rho, &sub.rho)
                && no_u_turn_on_sum(&far.v, &sub.v_beg, rho, &sub.p_beg)
                && no_u_turn_on_sum(v_near, &sub.v_end, &sub.rho, p_near);
            rho.iter_mut().zip(&sub.rho).for_each(|(r, s)| *r += s);
            if !turn_free {
                break;
            }
        }
        if moved {
            let d = self.target.dim();
            chain.x.copy_from_slice(&draw.x);
            for (k, lf) in chain.log_f.iter_mut().enumerate() {
                **lf = draw.log_f[k];
                chain.grad_f[k].copy_from_slice(&draw.grad_f[k * d..(k + 1) * d]);
            }
        }
        let energy = draw.hamiltonian();
        let accept_stat = totals.sum_accept / totals.n_leapfrog.max(1) as f64;
        let info = ChainInfo {
            accepted: moved,
            accept_prob: accept_stat,
            divergent: totals.divergent,
            energy_error: energy - h0,
        };
        let tree = TreeInfo {
            depth: depth as u32,
            n_leapfrog: totals.n_leapfrog,
            divergent: totals.divergent,
            energy,
            accept_stat,
        };
        (info, tree, totals.n_evaluated)
    }
}
