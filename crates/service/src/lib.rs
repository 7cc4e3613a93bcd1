//! What every ArqonBus service has in common, whichever it is: its settings are clap
//! flags, each with an `ARQONBUS_*` variable, whose defaults are written once
//! ([`settings`]); and it has one shape ([`Service`]): built from its settings, run until
//! the process's shutdown token, with its gRPC APIs, HTTP routes and readiness.
//!
//! This crate owns that shape, not what any service does: it must not depend on a
//! service, and it does no I/O of its own.

mod service;
pub mod settings;

pub use service::{Process, Readiness, RoutesBuilder, Service};
