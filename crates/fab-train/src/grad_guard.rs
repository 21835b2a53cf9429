//! fab-jax's dynamic gradient ignore-and-clip rule as checkpointable state: skip a step whose gradient norm
//! exceeds `ignore_factor ×` the running median of the last `window` norms, clip the others at `clip_factor ×` it.
//!
//! fab-jax (`fabjax/utils/optimize.py`, `dynamic_update_ignore_and_grad_norm_clip`, with the factors of its
//! `training/default.yaml`: window 100, ignore 10×, clip 2×) computes the median of the window *before* adding
//! the current norm, always clips (skipped steps included, though they are discarded), and records every norm,
//! skipped ones too, so a run of large gradients raises the median and is eventually accepted. Non-finite norms
//! are skipped. Two differences, both deliberate:
//! - fab-jax's window starts as 97 zeros and three 1e30s, so its median is 0, and every step is skipped, until
//!   about `window / 2` real norms have come in. Here the rule is inactive (steps applied unclipped) until
//!   `min_history` norms are known, and the median is over the recorded norms only.
//! - Non-finite norms are not recorded (fab-jax's `nanmedian` ignores NaN but would keep an infinity).

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// The rule's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradGuardConfig {
    /// Norms in the running window (fab-jax: 100).
    pub window: usize,
    /// Skip a step whose norm exceeds this multiple of the median (fab-jax: 10); `inf` never skips, so the rule
    /// only clips. Skipping can starve the flow of exactly the points it must learn: on the funnel, buffer points
    /// in the flow's far tails give huge gradients, the guard skipped a quarter of all steps, and the same points
    /// came back (their weights stay large) — clipping them instead trained stably (`configs/fabjax_funnel.ron`).
    #[serde(with = "factor_or_inf")]
    pub ignore_factor: f64,
    /// Clip the norm of an applied step to this multiple of the median (fab-jax: 2).
    pub clip_factor: f64,
    /// Norms to collect before the rule acts (steps before are applied unclipped); at least 1.
    pub min_history: usize,
}

impl Default for GradGuardConfig {
    /// fab-jax's factors, active after 10 norms.
    fn default() -> Self {
        Self { window: 100, ignore_factor: 10.0, clip_factor: 2.0, min_history: 10 }
    }
}

/// `ignore_factor` on disk: a number, or `inf` written as the string `"inf"`, because checkpoints and reports
/// hold the config as JSON, which has no infinity (serde_json would write `null` and could not read it back).
/// Reads a number (RON's `inf` included) or the strings `"inf"` / `"infinity"`.
mod factor_or_inf {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        if *x == f64::INFINITY { s.serialize_str("inf") } else { s.serialize_f64(*x) }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrWord {
        Number(f64),
        Word(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match NumberOrWord::deserialize(d)? {
            NumberOrWord::Number(x) => Ok(x),
            NumberOrWord::Word(w) if matches!(w.as_str(), "inf" | "infinity") => Ok(f64::INFINITY),
            NumberOrWord::Word(w) => Err(D::Error::custom(format!("expected a number or \"inf\", got \"{w}\""))),
        }
    }
}

/// A refused [`GradGuardConfig`]: the field and the reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid gradient guard: `{field}` {reason}")]
pub struct GradGuardError {
    /// The offending field.
    pub field: &'static str,
    /// Why it was refused.
    pub reason: String,
}

impl GradGuardConfig {
    /// Checks that the window and factors make sense (clip at most ignore, both positive).
    pub fn check(&self) -> Result<(), GradGuardError> {
        let refuse = |field, reason: String| Err(GradGuardError { field, reason });
        if self.window == 0 {
            return refuse("window", "must be at least 1".into());
        }
        if !(self.min_history >= 1 && self.min_history <= self.window) {
            return refuse(
                "min_history",
                format!("must lie in [1, window = {}], got {}", self.window, self.min_history),
            );
        }
        if !(self.clip_factor.is_finite() && self.clip_factor > 0.0) {
            return refuse("clip_factor", format!("must be positive and finite, got {}", self.clip_factor));
        }
        // `inf` is allowed (never skip); NaN fails the comparison.
        if self.ignore_factor.is_nan() || self.ignore_factor < self.clip_factor {
            return refuse(
                "ignore_factor",
                format!(
                    "must be at least clip_factor = {} (inf: never skip), got {}",
                    self.clip_factor, self.ignore_factor
                ),
            );
        }
        Ok(())
    }
}

/// What to do with one gradient.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GuardDecision {
    /// Apply the gradient multiplied by `scale` ∈ (0, 1] (1: not clipped).
    Apply {
        /// Factor to multiply the gradient by.
        scale: f64,
    },
    /// Discard the step (optimizer state untouched).
    Skip,
}

/// The running window and counters; serialise it into checkpoints so a resumed run decides identically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradGuard {
    config: GradGuardConfig,
    norms: VecDeque<f64>,
    n_skipped: u64,
    n_clipped: u64,
}

impl GradGuard {
    /// An empty window.
    pub fn new(config: GradGuardConfig) -> Result<Self, GradGuardError> {
        config.check()?;
        Ok(Self { config, norms: VecDeque::with_capacity(config.window), n_skipped: 0, n_clipped: 0 })
    }

    /// The parameters.
    pub fn config(&self) -> &GradGuardConfig {
        &self.config
    }
    /// Steps skipped so far (non-finite norms included).
    pub fn n_skipped(&self) -> u64 {
        self.n_skipped
    }
    /// Steps applied with a scale below 1.
    pub fn n_clipped(&self) -> u64 {
        self.n_clipped
    }

    /// Median of the recorded norms (mean of the two middle ones for an even count); `None` when empty.
    pub fn median(&self) -> Option<f64> {
        median(self.norms.iter().copied())
    }

    /// Decides on a gradient of global norm `grad_norm` from the window as it stands, then records the norm
    /// (if finite), dropping the oldest beyond `window`.
    pub fn decide(&mut self, grad_norm: f64) -> GuardDecision {
        let decision = self.decision_for(grad_norm);
        match decision {
            GuardDecision::Skip => self.n_skipped += 1,
            GuardDecision::Apply { scale } if scale < 1.0 => self.n_clipped += 1,
            GuardDecision::Apply { .. } => {}
        }
        if grad_norm.is_finite() {
            if self.norms.len() == self.config.window {
                self.norms.pop_front();
            }
            self.norms.push_back(grad_norm);
        }
        decision
    }

    /// [`GradGuard::decide`] without recording.
    fn decision_for(&self, grad_norm: f64) -> GuardDecision {
        if !grad_norm.is_finite() {
            return GuardDecision::Skip;
        }
        if self.norms.len() < self.config.min_history {
            return GuardDecision::Apply { scale: 1.0 };
        }
        let median = self.median().expect("min_history ≥ 1 norms recorded");
        if grad_norm > self.config.ignore_factor * median {
            return GuardDecision::Skip;
        }
        let max_norm = self.config.clip_factor * median;
        let scale = if grad_norm > max_norm { max_norm / grad_norm } else { 1.0 };
        GuardDecision::Apply { scale }
    }
}

/// Median of finite values (mean of the two middle ones for an even count); `None` when empty.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[m] } else { 0.5 * (v[m - 1] + v[m]) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(window: usize, min_history: usize) -> GradGuard {
        GradGuard::new(GradGuardConfig { window, min_history, ..GradGuardConfig::default() }).unwrap()
    }

    #[test]
    fn inactive_until_min_history_norms_are_known() {
        let mut g = guard(100, 3);
        assert_eq!(g.decide(1.0), GuardDecision::Apply { scale: 1.0 });
        assert_eq!(g.decide(1000.0), GuardDecision::Apply { scale: 1.0 }, "only one norm known");
        assert_eq!(g.decide(1.0), GuardDecision::Apply { scale: 1.0 });
        // Window {1, 1000, 1}: median 1.
        assert_eq!(g.decide(10.5), GuardDecision::Skip);
        assert_eq!(g.n_skipped(), 1);
    }

    #[test]
    fn skips_above_ten_medians_clips_above_two_and_passes_the_rest() {
        let mut g = guard(5, 1);
        for n in [1.0, 2.0, 3.0, 4.0, 5.0] {
            g.decide(n);
        }
        assert_eq!(g.median(), Some(3.0));
        // Each check runs on a clone, so every one sees the window {1, …, 5} with median 3.
        assert_eq!(g.clone().decide(30.5), GuardDecision::Skip);
        assert_eq!(g.clone().decide(30.0), GuardDecision::Apply { scale: 6.0 / 30.0 }, "10× is not above 10×");
        assert_eq!(g.clone().decide(6.0), GuardDecision::Apply { scale: 1.0 }, "2× is not clipped");
        let GuardDecision::Apply { scale } = g.clone().decide(12.0) else { panic!("applied") };
        assert!((scale * 12.0 - 6.0).abs() < 1e-15, "clipped to 2 medians");
        assert_eq!(g.clone().decide(f64::NAN), GuardDecision::Skip);
        assert_eq!(g.clone().decide(f64::INFINITY), GuardDecision::Skip);
    }

    #[test]
    fn the_window_slides_and_records_skipped_norms_too() {
        let mut g = guard(3, 1);
        for n in [1.0, 1.0, 1.0] {
            g.decide(n);
        }
        // A jump to 100 is skipped twice; once two of the three recorded norms are 100 the median is 100.
        assert_eq!(g.decide(100.0), GuardDecision::Skip);
        assert_eq!(g.decide(100.0), GuardDecision::Skip);
        assert_eq!(g.median(), Some(100.0), "window {{1, 100, 100}}");
        assert_eq!(g.decide(100.0), GuardDecision::Apply { scale: 1.0 });
        assert_eq!((g.n_skipped(), g.n_clipped()), (2, 0));
        // Non-finite norms are not recorded.
        g.decide(f64::NAN);
        assert_eq!(g.median(), Some(100.0));
        assert_eq!(g.n_skipped(), 3);
    }

    #[test]
    fn an_infinite_ignore_factor_clips_but_never_skips() {
        let config: GradGuardConfig =
            ron::from_str("(window: 5, ignore_factor: inf, clip_factor: 2.0, min_history: 1)").unwrap();
        assert_eq!(config.ignore_factor, f64::INFINITY);
        let mut g = GradGuard::new(config).unwrap();
        for n in [1.0, 1.0, 1.0] {
            g.decide(n);
        }
        assert_eq!(g.decide(1e300), GuardDecision::Apply { scale: 2.0 / 1e300 }, "clipped to two medians");
        assert_eq!(g.decide(f64::NAN), GuardDecision::Skip, "a non-finite norm is still skipped");
        assert_eq!((g.n_skipped(), g.n_clipped()), (1, 1));
        // JSON (checkpoints, reports) has no infinity: it round-trips as the string "inf".
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains(r#""ignore_factor":"inf""#), "{json}");
        assert_eq!(serde_json::from_str::<GradGuardConfig>(&json).unwrap(), config);
        let finite = GradGuardConfig::default();
        assert_eq!(serde_json::from_str::<GradGuardConfig>(&serde_json::to_string(&finite).unwrap()).unwrap(), finite);
        assert!(
            ron::from_str::<GradGuardConfig>(r#"(window: 5, ignore_factor: "big", clip_factor: 2.0, min_history: 1)"#)
                .is_err()
        );
        let nan = GradGuardConfig { ignore_factor: f64::NAN, ..GradGuardConfig::default() };
        assert_eq!(GradGuard::new(nan).unwrap_err().field, "ignore_factor");
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), Some(2.5));
        assert_eq!(median(std::iter::empty()), None);
    }

    #[test]
    fn a_restored_guard_decides_like_the_original() {
        let mut g = guard(10, 2);
        let norms: Vec<f64> =
            (0..40).map(|i| 1.0 + ((i * 7919) % 13) as f64 * if i % 9 == 0 { 5.0 } else { 0.1 }).collect();
        for n in &norms[..20] {
            g.decide(*n);
        }
        let mut restored: GradGuard = ron::from_str(&ron::to_string(&g).unwrap()).unwrap();
        assert_eq!(restored, g);
        for n in &norms[20..] {
            assert_eq!(restored.decide(*n), g.decide(*n));
        }
        assert!(g.n_skipped() > 0 && g.n_clipped() > 0, "the sequence exercises both branches");
    }

    #[test]
    fn invalid_configurations_name_the_field() {
        let bad = |c: GradGuardConfig| GradGuard::new(c).unwrap_err().field;
        let d = GradGuardConfig::default();
        assert_eq!(bad(GradGuardConfig { window: 0, ..d }), "window");
        assert_eq!(bad(GradGuardConfig { min_history: 0, ..d }), "min_history");
        assert_eq!(bad(GradGuardConfig { min_history: 101, ..d }), "min_history");
        assert_eq!(bad(GradGuardConfig { clip_factor: 0.0, ..d }), "clip_factor");
        assert_eq!(bad(GradGuardConfig { ignore_factor: 1.0, ..d }), "ignore_factor");
    }
}
