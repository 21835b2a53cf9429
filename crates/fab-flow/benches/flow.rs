//! Criterion benchmarks of the flow (written in a later commit).
fn main() {}
