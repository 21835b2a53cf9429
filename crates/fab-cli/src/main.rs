//! The `fab` command-line interface.

mod plot;

fn main() {}
