//! Gatehouse key hierarchy (work in progress).
