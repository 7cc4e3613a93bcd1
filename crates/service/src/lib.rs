//! What every ArqonBus service has in common, whichever it is: its settings are clap
//! flags, each with an `ARQONBUS_*` variable, whose defaults are written once
//! ([`settings`]).
//!
//! This crate owns that shape, not what any service does: it must not depend on a
//! service, and it does no I/O of its own.

pub mod settings;
