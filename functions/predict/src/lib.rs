//! predict (placeholder until its issue lands).
