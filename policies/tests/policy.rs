//! The integration tests of gatehouse-policy: one binary, one module per
//! concern.

mod policy {
    pub mod common;
    mod memo;
    mod reload;
    mod scenario;
    mod shipped;
}
