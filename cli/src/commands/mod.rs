//! One module per subcommand: its arguments and what it runs.

pub(crate) mod audit;
pub(crate) mod broker;
pub(crate) mod config;
pub(crate) mod demo;
pub(crate) mod erase;
pub(crate) mod keys;
pub(crate) mod policy;
pub(crate) mod serve;
pub(crate) mod users;
