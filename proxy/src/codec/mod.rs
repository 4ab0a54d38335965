//! Bytes in, bytes out, no I/O: record batches (decode, re-encode,
//! compression), the JSON span scanner that finds protected fields, and
//! finding a record's data subject.

pub mod json;
pub mod records;
pub(crate) mod subject;
