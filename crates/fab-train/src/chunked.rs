//! The flow as a proposal that draws large samples in bounded row blocks, bit for bit one call (evaluation memory).

use fab_core::{BatchMut, BatchRef, Evaluation, LogDensity, Proposal};
use fab_flow::{CHUNK_ROWS, Flow};

/// Rows per call when evaluation draws from the flow: a multiple of the flow's own row chunk, so the flow's chunk
/// boundaries, and hence every sample, are those of one call over all rows.
pub(crate) const SAMPLE_CHUNK_ROWS: usize = 32 * CHUNK_ROWS;

/// The flow, drawing its samples [`SAMPLE_CHUNK_ROWS`] rows at a time.
///
/// A flow draws all of a call's base noise serially from the generator and then transforms it in fixed
/// [`CHUNK_ROWS`]-row chunks, so consecutive calls on one generator give, bit for bit, the samples of one call over
/// all rows: only the call's transient buffers shrink (a 10⁵-point draw of the 16-D flow held its n × dim noise,
/// the per-chunk outputs and their concatenation besides the caller's rows, ≈ 40 MB). Densities are the flow's own.
pub(crate) struct ChunkedSampling<'a>(pub(crate) &'a Flow);

impl LogDensity for ChunkedSampling<'_> {
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn log_prob(&self, x: &[f64]) -> f64 {
        self.0.log_prob(x)
    }
    fn log_prob_and_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        self.0.log_prob_and_grad(x, grad)
    }
    fn evaluation(&self) -> Evaluation {
        self.0.evaluation()
    }
    fn log_prob_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64]) {
        self.0.log_prob_batch(xs, log_p);
    }
    fn log_prob_and_grad_batch(&self, xs: BatchRef<'_>, log_p: &mut [f64], grad: BatchMut<'_>) {
        self.0.log_prob_and_grad_batch(xs, log_p, grad);
    }
}

impl Proposal for ChunkedSampling<'_> {
    fn sample_into(&self, rng: &mut dyn rand::RngCore, mut out: BatchMut<'_>, log_q: &mut [f64]) {
        let dim = self.dim();
        let rows = out.as_mut_slice().chunks_mut(SAMPLE_CHUNK_ROWS * dim);
        for (x, lq) in rows.zip(log_q.chunks_mut(SAMPLE_CHUNK_ROWS)) {
            self.0.sample_into(rng, BatchMut::new(x, dim), lq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fab_core::stream_rng;
    use fab_flow::FlowSpec;

    #[test]
    fn chunked_sampling_gives_the_bits_of_one_call() {
        let mut flow = Flow::new(&FlowSpec::mog_2021(), 3).unwrap();
        // Off the zero-initialised heads, so every layer changes the samples.
        for (i, p) in flow.params_mut().iter_mut().enumerate() {
            *p += 0.01 * ((i % 7) as f64 - 3.0);
        }
        // Two full blocks, a partial one, and a last flow chunk that is not full.
        let n = 2 * SAMPLE_CHUNK_ROWS + 3 * CHUNK_ROWS + 17;
        let (x_one, lq_one) = flow.sample(&mut stream_rng(9, 0), n);
        let (x_chunked, lq_chunked) = ChunkedSampling(&flow).sample(&mut stream_rng(9, 0), n);
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(x_one.as_slice()), bits(x_chunked.as_slice()));
        assert_eq!(bits(&lq_one), bits(&lq_chunked));
        // The generator is left where one call leaves it.
        let (mut a, mut b) = (stream_rng(9, 0), stream_rng(9, 0));
        flow.sample(&mut a, n);
        ChunkedSampling(&flow).sample(&mut b, n);
        assert_eq!(rand::RngCore::next_u64(&mut a), rand::RngCore::next_u64(&mut b));
    }
}
