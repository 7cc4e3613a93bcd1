//! The shared state the dispatcher reads and writes, all of it in the bus (JetStream KV
//! and streams, or their embedded equivalents), so any replica can answer any command.

pub(crate) mod expiry;
pub(crate) mod history;
mod presence;
pub(crate) mod registry;
mod views;
mod webhook_tenants;

pub(crate) use history::History;
pub use history::HistoryConfig;
pub(crate) use presence::Presence;
pub(crate) use registry::{ChannelRecord, Created, LookupError, Origin, Registry};
pub(crate) use views::Views;
pub(crate) use webhook_tenants::WebhookTenants;
