//! Bytes in, bytes out, no I/O: record batches (decode, re-encode,
//! compression) and the JSON span scanner that finds protected fields.

pub mod json;
pub mod records;
