//! Gatehouse audit trail (work in progress).
