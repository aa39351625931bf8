//! The distributed trainer's worker (issue 18).
#![warn(missing_docs)]
