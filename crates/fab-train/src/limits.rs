//! Bounds on config values that cannot be meant: the memory a config needs against the machine's, counts that only cost time, names.
//!
//! Pure functions over plain values, so [`crate::config::TrainConfig::check`] can refuse a config before any work
//! (and before any allocation sized by the config) instead of dying on an allocation hours later.

use crate::config::ConfigError;

/// Largest dimension of a preset flow or a built-in target with a free dimension.
pub const MAX_DIM: usize = 100_000;
/// Largest number of layers (coupling blocks) of a preset flow or an SNF.
pub const MAX_LAYERS: usize = 10_000;
/// Largest hidden width of a conditioner network.
pub const MAX_WIDTH: usize = 1 << 20;
/// Largest learning rate: Adam moves every parameter by about `lr` per step, so beyond this nothing can be learnt.
pub const MAX_LR: f64 = 10.0;
/// Largest number of MCMC steps per transition (leapfrog steps, Metropolis steps, SNF MC steps).
pub const MAX_MCMC_STEPS: usize = 10_000;
/// Largest number of intermediate AIS distributions.
pub const MAX_N_INTERMEDIATE: usize = 10_000;
/// Largest number of gradient steps per AIS batch with the replay buffer.
pub const MAX_N_UPDATES: usize = 10_000;

fn refuse(field: &str, reason: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError { field: field.to_string(), reason: reason.into() })
}

/// A run name becomes a directory name and a line of every report: no control characters (newlines, tabs, escapes).
pub fn check_name(name: &str) -> Result<(), ConfigError> {
    match name.chars().find(|c| c.is_control()) {
        Some(c) => refuse("name", format!("must not contain control characters (found {c:?})")),
        None => Ok(()),
    }
}

/// A learning rate above [`MAX_LR`] cannot be meant.
pub fn check_lr(field: &str, lr: f64) -> Result<(), ConfigError> {
    if lr > MAX_LR {
        refuse(field, format!("must be at most {MAX_LR} (got {lr}): no flow can be trained at that rate"))
    } else {
        Ok(())
    }
}

/// `value ≤ max` for a count that only costs time (or memory per unit); the message says the bound.
pub fn check_at_most(field: &str, value: usize, max: usize) -> Result<(), ConfigError> {
    if value > max { refuse(field, format!("must be at most {max} (got {value})")) } else { Ok(()) }
}

/// A preset flow's shape: `1 ≤ n_layers ≤ MAX_LAYERS`, `dim ≤ MAX_DIM`, `width ≤ MAX_WIDTH`; checked before the
/// layer list is built, since building it allocates per layer and per coordinate.
pub fn check_flow_preset(layers_field: &str, dim: usize, n_layers: usize, width: usize) -> Result<(), ConfigError> {
    check_at_most("flow.dim", dim, MAX_DIM)?;
    if n_layers == 0 {
        refuse(layers_field, "must be at least 1: a flow without coupling layers cannot learn")?;
    }
    check_at_most(layers_field, n_layers, MAX_LAYERS)?;
    check_at_most("flow.width", width, MAX_WIDTH)
}

/// What a config makes fab hold in memory at once, in plain numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryNeeds {
    /// Dimension.
    pub dim: usize,
    /// Trainable parameters of the flow (and SNF).
    pub n_params: usize,
    /// Layers of the flow that hold activations for the gradient.
    pub n_layers: usize,
    /// Sum of the hidden widths of one conditioner (the activations a point leaves per layer).
    pub hidden_per_layer: usize,
    /// Points per iteration.
    pub batch_size: usize,
    /// Periodic evaluation samples.
    pub n_samples: usize,
    /// Final evaluation samples.
    pub n_samples_final: usize,
    /// Exact target samples of an evaluation.
    pub n_target_samples: usize,
    /// `groups × size` of the expectation error.
    pub expectation_points: usize,
    /// Replay buffer capacity (0 without a buffer).
    pub buffer_capacity: usize,
}

const F64: u64 = 8;

fn mul(a: usize, b: usize) -> u64 {
    (a as u64).saturating_mul(b as u64)
}

impl MemoryNeeds {
    /// Bytes per point of a pass with gradient: the point, its log densities and every layer's activations.
    fn bytes_per_training_point(&self) -> u64 {
        let per_layer = (self.hidden_per_layer as u64).saturating_add(mul(3, self.dim));
        F64.saturating_mul(
            mul(6, self.dim).saturating_add(8).saturating_add(per_layer.saturating_mul(self.n_layers as u64)),
        )
    }

    /// Bytes per point of a pass without gradient (sampling, evaluation, AIS): the point, a few copies of it
    /// (HMC position, momentum, gradient) and its densities. Layer activations are left out: flows evaluate in
    /// chunks of `fab_flow::CHUNK_ROWS` rows, so they do not grow with the sample count.
    fn bytes_per_sampling_point(&self) -> u64 {
        F64.saturating_mul(mul(6, self.dim).saturating_add(8))
    }

    /// The phase that needs the most memory, as `(field that sets it, bytes)`: a lower estimate (fab needs at
    /// least this much), so a refusal is certain to be right.
    pub fn estimate_peak_bytes(&self) -> (&'static str, u64) {
        let fixed = F64.saturating_mul(mul(5, self.n_params));
        let buffer = F64.saturating_mul(mul(self.buffer_capacity, self.dim.saturating_add(3)));
        let train = self.bytes_per_training_point().saturating_mul(self.batch_size as u64);
        let sampling = |n: usize| self.bytes_per_sampling_point().saturating_mul(n as u64);
        // Training holds the batch's activations and the whole buffer; the larger of the two is the one to lower.
        let training_field = if buffer > train { "method.buffer.capacity" } else { "batch_size" };
        let phases = [
            (training_field, train.saturating_add(buffer)),
            ("eval.n_samples", sampling(self.n_samples)),
            ("eval.n_samples_final", sampling(self.n_samples_final)),
            ("eval.n_target_samples", sampling(self.n_target_samples)),
            ("eval.expectation_groups", sampling(self.expectation_points)),
        ];
        let (field, bytes) = phases.into_iter().max_by_key(|(_, b)| *b).expect("phases is not empty");
        (field, bytes.saturating_add(fixed))
    }
}

/// `MemAvailable` of `/proc/meminfo` in bytes (Linux); `None` elsewhere or when unreadable (then nothing is checked).
pub fn available_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

/// The `MemAvailable:  N kB` line of a `/proc/meminfo` text, in bytes.
pub fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// Refuses a config whose estimated peak memory exceeds `available` bytes, naming the field that sets the peak.
pub fn check_memory(needs: &MemoryNeeds, available: Option<u64>) -> Result<(), ConfigError> {
    let Some(available) = available else { return Ok(()) };
    let (field, bytes) = needs.estimate_peak_bytes();
    if bytes > available {
        refuse(
            field,
            format!(
                "this config needs at least {} of memory, the machine has {} available: lower `{field}`",
                human_bytes(bytes),
                human_bytes(available)
            ),
        )
    } else {
        Ok(())
    }
}

/// `1.5 GiB`-style sizes for messages.
fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if b as f64 >= 1024.0f64.powi(6) {
        format!("{:.1} EiB", b as f64 / 1024.0f64.powi(6))
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mog() -> MemoryNeeds {
        MemoryNeeds {
            dim: 2,
            n_params: 2000,
            n_layers: 20,
            hidden_per_layer: 40,
            batch_size: 100,
            n_samples: 1000,
            n_samples_final: 100_000,
            n_target_samples: 10_000,
            expectation_points: 100_000,
            buffer_capacity: 0,
        }
    }

    #[test]
    fn names_with_control_characters_are_refused() {
        assert!(check_name("mog_fab_2021").is_ok());
        assert!(check_name("ünïcode run").is_ok());
        let e = check_name("a\nb").unwrap_err();
        assert_eq!(e.field, "name");
        assert!(check_name("tab\there").is_err());
        assert!(check_name("esc\u{1b}[31m").is_err());
    }

    #[test]
    fn learning_rates_above_the_bound_are_refused() {
        assert!(check_lr("optimizer.lr", 5e-4).is_ok());
        assert!(check_lr("optimizer.lr", MAX_LR).is_ok());
        assert!(check_lr("optimizer.lr", 1e10).unwrap_err().reason.contains("at most 10"));
    }

    #[test]
    fn a_flow_needs_at_least_one_layer() {
        assert!(check_flow_preset("flow.n_blocks", 2, 10, 40).is_ok());
        assert_eq!(check_flow_preset("flow.n_blocks", 2, 0, 40).unwrap_err().field, "flow.n_blocks");
        assert_eq!(check_flow_preset("flow.n_blocks", 2, 1 << 40, 40).unwrap_err().field, "flow.n_blocks");
        assert_eq!(check_flow_preset("flow.n_layers", 1 << 40, 4, 40).unwrap_err().field, "flow.dim");
    }

    #[test]
    fn the_paper_mog_fits_and_a_huge_final_sample_count_does_not() {
        // 2021 MoG: the 10⁵ final samples dominate; a few tens of MB at most.
        let (field, bytes) = mog().estimate_peak_bytes();
        assert!(bytes < 200 << 20, "{field}: {bytes}");
        assert!(check_memory(&mog(), Some(1 << 30)).is_ok());
        let huge = MemoryNeeds { n_samples_final: 1 << 40, ..mog() };
        let e = check_memory(&huge, Some(16 << 30)).unwrap_err();
        assert_eq!(e.field, "eval.n_samples_final");
        assert!(e.reason.contains("16.0 GiB available"), "{}", e.reason);
        let e = check_memory(&MemoryNeeds { batch_size: usize::MAX, ..mog() }, Some(16 << 30)).unwrap_err();
        assert_eq!(e.field, "batch_size");
        let e = check_memory(&MemoryNeeds { buffer_capacity: 1 << 40, ..mog() }, Some(16 << 30)).unwrap_err();
        assert_eq!(e.field, "method.buffer.capacity");
        let e = check_memory(&MemoryNeeds { expectation_points: 1 << 40, ..mog() }, Some(16 << 30)).unwrap_err();
        assert_eq!(e.field, "eval.expectation_groups");
        // Without a reading of the machine's memory nothing is refused.
        assert!(check_memory(&huge, None).is_ok());
    }

    #[test]
    fn mem_available_is_read_in_bytes() {
        let text = "MemTotal:       24000000 kB\nMemFree:         6000000 kB\nMemAvailable:   21481520 kB\n";
        assert_eq!(parse_mem_available(text), Some(21_481_520 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 5 kB\n"), None);
    }
}
