//! The `score` binary.
fn main() {}
