//! Empty: the `[build-dependencies]` in Cargo.toml exist only to unify host-side features.
fn main() {}
