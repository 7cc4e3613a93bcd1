//! When the owner of a rule or job that is not `persistent` is gone: its edge said so
//! (`arqon.clients.gone.<tenant>`), or its edge stopped renewing its liveness key (it
//! crashed; `arqon_edges`). Components clean up what such owners had.

use std::collections::HashSet;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use arqon_bus::{Bus, BusError, KvStore};
use arqon_proto::layout;
use arqon_protocol::{ClientId, EdgeId, subject};

/// Disconnect notices buffered per listener; a listener that falls further behind
/// catches up with its next sweep of the live edges.
const BUFFER: usize = 4096;

/// Disconnect notices, and the edges that are alive.
#[derive(Debug, Clone)]
pub struct Owners {
    gone: broadcast::Sender<ClientId>,
    edges: KvStore,
}

impl Owners {
    /// Listens for disconnect notices until `shutdown`.
    pub async fn start(
        bus: &Bus,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Self, BusError> {
        // The same settings as the edges use (`arqon_edge::cluster`).
        let edges = bus.key_value(layout::edges()).await?;
        let mut notices = bus.subscribe(subject::CLIENTS_GONE_ALL).await?;
        let (gone, _) = broadcast::channel(BUFFER);
        let sender = gone.clone();
        tasks.spawn(async move {
            while let Some(message) = notices.next_until(&shutdown).await {
                match std::str::from_utf8(&message.payload)
                    .ok()
                    .and_then(ClientId::parse)
                {
                    // Nobody listening is fine: nothing to clean up.
                    Some(client) => drop(sender.send(client)),
                    None => debug!(subject = %message.subject, "unreadable disconnect notice"),
                }
            }
        });
        Ok(Self { gone, edges })
    }

    /// Every client that disconnects from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ClientId> {
        self.gone.subscribe()
    }

    /// The edges renewing their liveness key. A client whose edge is not among them is
    /// gone, whatever notice was missed.
    pub async fn live_edges(&self) -> Result<HashSet<EdgeId>, BusError> {
        let keys = self.edges.keys().await?;
        Ok(keys.into_iter().filter_map(|k| EdgeId::parse(&k)).collect())
    }

    /// Whether `client`'s edge is alive, per [`Owners::live_edges`]'s answer `live`.
    pub fn is_connected_somewhere(live: &HashSet<EdgeId>, client: &ClientId) -> bool {
        live.contains(&client.edge())
    }
}

/// Logs a sweep that could not read the live edges (it is retried next period).
pub fn sweep_failed(error: &BusError) {
    warn!(%error, "cannot read the live edges; owners are checked again next period");
}
