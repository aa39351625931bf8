//! `train-worker`: see the library.
fn main() {}
