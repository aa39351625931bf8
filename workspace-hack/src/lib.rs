//! Feature unification for the workspace's shared dependencies.
//!
//! Cargo resolves features per command: `cargo test --workspace` turns on the union of what
//! every member and dev-dependency asks for, while `cargo build -p predict` (or
//! `cargo lambda watch --package predict`) turns on only what `predict` asks for. Each
//! difference recompiles the crate and everything above it, and near the bottom of the
//! graph (serde, hyper, getrandom under ring) that is the whole AWS SDK stack. This crate
//! has no code: its manifest asks for the union once, and every member depends on it.
