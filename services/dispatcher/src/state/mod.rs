//! The shared state the dispatcher reads and writes, all of it in the bus (JetStream KV
//! and streams, or their embedded equivalents), so any replica can answer any command.

pub(crate) mod history;
mod presence;
mod registry;
mod views;

pub(crate) use history::History;
pub use history::HistoryConfig;
pub(crate) use presence::Presence;
pub(crate) use registry::{ChannelRecord, LookupError, Registry};
pub(crate) use views::Views;

use arqon_bus::{Bus, Storage};

/// Where the registry and the history keep their data: on disk with a NATS server, in
/// memory on the embedded bus.
fn storage(bus: &Bus) -> Storage {
    if bus.backend() == "nats" {
        Storage::File
    } else {
        Storage::Memory
    }
}
