//! Random-walk Metropolis: `x' = x + σ·z`, `z ~ N(0, I)`, accepted when `log u < log π(x') − log π(x)`.

use crate::error::{McmcError, check_step_size};
use crate::hmc::collect_results;
use crate::kernel::{ChainInfo, Kernel, StepInfo};
use crate::points::{Points, evaluate_whole_batch};
use crate::scratch::{copied_f64, recycle_f64, recycle_rngs, stream_rngs};
use crate::state::{ChainState, ChunkMut};
use crate::target::LinearLogDensity;
use rand::Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Random-walk Metropolis with isotropic Gaussian proposals whose standard deviation is the step size
/// (ICLR GMM: σ = 5, not tuned). It needs no gradients; if the state caches them anyway, proposals are
/// evaluated with gradients so the cache stays consistent. Invalid proposals are rejected and counted as divergent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RandomWalkMetropolis;

impl RandomWalkMetropolis {
    /// One transition of the chains of one chunk.
    fn step_chunk(
        &self,
        target: &LinearLogDensity<'_>,
        chunk: &mut ChunkMut<'_>,
        sigma: f64,
        seed: u64,
    ) -> (Vec<ChainInfo>, u64) {
        let mut proposal = propose(target, chunk, sigma, seed);
        proposal.pts.evaluate_alive(target);
        accept_or_reject(proposal, chunk)
    }
}

/// One chunk's proposals `x + σ·z` (not yet evaluated), with each chain's random stream and starting `log π`.
struct ChunkProposal {
    pts: Points,
    rngs: Vec<fab_core::StreamRng>,
    log_pi_start: Vec<f64>,
}

/// Draws the proposals of one chunk's chains; rows whose proposal is not finite die.
fn propose(target: &LinearLogDensity<'_>, chunk: &ChunkMut<'_>, sigma: f64, seed: u64) -> ChunkProposal {
    let mut pts = Points::from_chunk(target, chunk, None);
    let log_pi_start = copied_f64(&pts.log_pi);
    let (m, dim) = (pts.m, pts.dim);
    let mut rngs = stream_rngs(seed, chunk.start, m);
    for (rng, x) in rngs.iter_mut().zip(pts.x.chunks_exact_mut(dim)) {
        for xd in x {
            *xd += sigma * rng.sample::<f64, _>(StandardNormal);
        }
    }
    pts.kill_non_finite_positions();
    ChunkProposal { pts, rngs, log_pi_start }
}

/// The Metropolis test of one chunk's evaluated proposals; accepted ones are stored.
fn accept_or_reject(proposal: ChunkProposal, chunk: &mut ChunkMut<'_>) -> (Vec<ChainInfo>, u64) {
    let ChunkProposal { pts, mut rngs, log_pi_start } = proposal;
    let infos = (0..pts.m)
        .map(|i| {
            let log_u = rngs[i].random::<f64>().ln();
            if !pts.alive[i] {
                return ChainInfo::invalid(f64::NAN);
            }
            let delta_e = log_pi_start[i] - pts.log_pi[i];
            if !delta_e.is_finite() {
                return ChainInfo::invalid(delta_e);
            }
            let accepted = log_u < -delta_e;
            if accepted {
                pts.store_row(i, chunk);
            }
            ChainInfo { accepted, accept_prob: (-delta_e).exp().min(1.0), divergent: false, energy_error: delta_e }
        })
        .collect();
    recycle_f64(log_pi_start);
    recycle_rngs(rngs);
    (infos, pts.n_evaluated)
}

/// One transition of every chunk for a target with whole-batch components: proposals and acceptance in
/// parallel over chunks, each whole-batch component evaluated once on all proposals, in chain order.
fn step_chunks_in_lockstep(
    target: &LinearLogDensity<'_>,
    chunks: &mut [ChunkMut<'_>],
    sigma: f64,
    seed: u64,
) -> Vec<(Vec<ChainInfo>, u64)> {
    let mut proposals: Vec<ChunkProposal> = chunks
        .par_iter()
        .map(|c| {
            let mut proposal = propose(target, c, sigma, seed);
            proposal.pts.evaluate_chunked_components(target);
            proposal
        })
        .collect();
    let mut points: Vec<&mut Points> = proposals.iter_mut().map(|p| &mut p.pts).collect();
    evaluate_whole_batch(target, &mut points);
    chunks
        .par_iter_mut()
        .zip(proposals)
        .map(|(c, mut proposal)| {
            proposal.pts.finish_evaluation(target);
            accept_or_reject(proposal, c)
        })
        .collect()
}

impl Kernel for RandomWalkMetropolis {
    fn uses_gradient(&self) -> bool {
        false
    }

    fn step(
        &self,
        target: &LinearLogDensity<'_>,
        state: &mut ChainState,
        step_size: f64,
        seed: u64,
    ) -> Result<StepInfo, McmcError> {
        state.check_target(target)?;
        check_step_size(step_size)?;
        let mut chunks = state.chunks_mut();
        let results: Vec<(Vec<ChainInfo>, u64)> = if target.has_whole_batch_component() {
            step_chunks_in_lockstep(target, &mut chunks, step_size, seed)
        } else {
            chunks.into_par_iter().map(|mut chunk| self.step_chunk(target, &mut chunk, step_size, seed)).collect()
        };
        Ok(collect_results(results, 0))
    }
}
