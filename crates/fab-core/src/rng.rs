//! Deterministic random streams: a seed plus a stream id gives an independent ChaCha8 generator.
//!
//! Randomness in fab is *addressed*: chain `i` at iteration `k` draws from `stream_rng(sub_seed(seed, &[k]), i)`,
//! never from a generator shared between threads. Results then do not depend on the number of threads or on
//! scheduling, and a resumed run re-derives every generator from the seed and the iteration counter.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The generator used everywhere in fab.
pub type StreamRng = ChaCha8Rng;

/// An independent generator for `(seed, stream)`. Streams of one seed never overlap (ChaCha's 64-bit stream id).
pub fn stream_rng(seed: u64, stream: u64) -> StreamRng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// SplitMix64 finaliser: a bijective mixer with good avalanche, used to derive child seeds.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A child seed for a path of tags, e.g. `sub_seed(seed, &[iteration, PHASE_AIS])`.
/// Different paths give (with overwhelming probability) unrelated seeds.
pub fn sub_seed(seed: u64, path: &[u64]) -> u64 {
    path.iter()
        .fold(splitmix64(seed), |acc, &tag| splitmix64(acc ^ splitmix64(tag.wrapping_add(0x632B_E59B_D9B4_E019))))
}

/// The exact position of a [`StreamRng`], for checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    /// The 32-byte ChaCha key.
    pub key: [u8; 32],
    /// Stream id.
    pub stream: u64,
    /// Word position, high 64 bits.
    pub word_pos_hi: u64,
    /// Word position, low 64 bits.
    pub word_pos_lo: u64,
}

impl RngState {
    /// Records where `rng` is.
    pub fn capture(rng: &StreamRng) -> Self {
        let pos = rng.get_word_pos();
        Self { key: rng.get_seed(), stream: rng.get_stream(), word_pos_hi: (pos >> 64) as u64, word_pos_lo: pos as u64 }
    }
    /// A generator that continues exactly where the captured one was.
    pub fn restore(&self) -> StreamRng {
        let mut rng = ChaCha8Rng::from_seed(self.key);
        rng.set_stream(self.stream);
        rng.set_word_pos((u128::from(self.word_pos_hi) << 64) | u128::from(self.word_pos_lo));
        rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| 0).scan(stream_rng(7, 0), |r, _: u64| Some(r.random())).collect();
        let b: Vec<u64> = (0..4).map(|_| 0).scan(stream_rng(7, 0), |r, _: u64| Some(r.random())).collect();
        let c: Vec<u64> = (0..4).map(|_| 0).scan(stream_rng(7, 1), |r, _: u64| Some(r.random())).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn sub_seeds_depend_on_every_tag() {
        assert_ne!(sub_seed(1, &[0]), sub_seed(1, &[1]));
        assert_ne!(sub_seed(1, &[0, 1]), sub_seed(1, &[1, 0]));
        assert_ne!(sub_seed(1, &[]), sub_seed(2, &[]));
        assert_eq!(sub_seed(3, &[4, 5]), sub_seed(3, &[4, 5]));
    }

    #[test]
    fn captured_state_resumes_the_same_sequence() {
        let mut rng = stream_rng(11, 3);
        for _ in 0..17 {
            let _: u32 = rng.random();
        }
        let state = RngState::capture(&rng);
        let json = serde_json::to_string(&state).unwrap();
        let mut resumed = serde_json::from_str::<RngState>(&json).unwrap().restore();
        for _ in 0..10 {
            assert_eq!(rng.random::<u64>(), resumed.random::<u64>());
        }
    }
}
