//! Batch scoring (skeleton).
