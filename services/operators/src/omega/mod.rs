//! `op.omega.*`: the Tier-Omega experimental lane, as the original had it. Admins register
//! substrates and emit events from them; anyone may list both while the lane is enabled,
//! and ask its status at any time.
//!
//! Every call but status passes the same gates, in order: the lane is enabled
//! (`FEATURE_DISABLED`), the caller is an admin for the mutations (`AUTHORIZATION_ERROR`),
//! then its arguments. The lane is global, as in the original: one set of substrates and
//! events for every tenant and replica (`lane.rs`). Its only side effect is the
//! broadcast of each event, as a `telemetry` envelope, to the lab room of the emitting
//! admin's tenant, emitter included.

mod lane;
mod settings;

use std::sync::Arc;

use serde_json::value::RawValue;
use tracing::warn;

use arqon_bus::{Bus, BusError};
use arqon_proto::model::RoomDelivery;
use arqon_proto::operators::v1 as pb;
use arqon_protocol::{Envelope, JsonObject, MessageType, Timestamp, subject};

use crate::caller::Caller;
use crate::error::{ApiError, bus_failure, disabled, forbidden, grpc_api, not_found, validation};
use crate::{OperatorsError, Shared};
use lane::{Event, Filter, Lane, RegisterError, Substrate};
use settings::LaneConfig;
pub use settings::OmegaSettings;

/// The refusal of every call but status while the lane is disabled.
const DISABLED: &str = "Tier-Omega experimental lane is disabled";
/// The sender of the lab broadcasts.
const SENDER: &str = "op-omega";
/// Events listed when the caller names no limit.
const DEFAULT_LIMIT: i64 = 50;

/// The lane's API.
#[derive(Debug, Clone)]
pub struct OmegaApi {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: LaneConfig,
    lane: Lane,
    bus: Bus,
}

/// Opens the lane's buckets, enabled or not: status counts what they hold either way.
pub(crate) async fn start(
    shared: &Shared,
    settings: &OmegaSettings,
) -> Result<OmegaApi, OperatorsError> {
    let config = LaneConfig::from(settings);
    let lane = Lane::open(&shared.bus, config.max_events, config.max_substrates).await?;
    Ok(OmegaApi {
        inner: Arc::new(Inner {
            config,
            lane,
            bus: shared.bus.clone(),
        }),
    })
}

/// `text`, trimmed; `'<name>' is required` when nothing is left.
fn required(name: &str, text: &str) -> Result<String, ApiError> {
    match text.trim() {
        "" => Err(validation(format!("'{name}' is required"))),
        text => Ok(text.to_owned()),
    }
}

/// A JSON object argument (`{}` when empty).
fn object(name: &str, json: &str) -> Result<Box<RawValue>, ApiError> {
    let json = match json.trim() {
        "" => "{}",
        json => json,
    };
    let object =
        JsonObject::parse(json).map_err(|_| validation(format!("'{name}' must be an object")))?;
    RawValue::from_string(object.as_str().to_owned())
        .map_err(|_| validation(format!("'{name}' must be an object")))
}

/// An optional filter: absent or blank matches everything.
fn filter(text: Option<String>) -> Option<String> {
    text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

/// `prefix` and 12 random hex digits.
fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 6]>()))
}

fn substrate_pb(substrate: Substrate) -> pb::Substrate {
    pb::Substrate {
        substrate_id: substrate.substrate_id,
        name: substrate.name,
        kind: substrate.kind,
        owner_client_id: substrate.owner_client_id,
        metadata_json: substrate.metadata.get().to_owned(),
        created_at: substrate.created_at,
    }
}

fn event_pb(event: Event) -> pb::OmegaEvent {
    pb::OmegaEvent {
        event_id: event.event_id,
        substrate_id: event.substrate_id,
        signal: event.signal,
        payload_json: event.payload.get().to_owned(),
        emitted_by: event.emitted_by,
        timestamp: event.timestamp,
    }
}

impl OmegaApi {
    /// The gates before any argument is read: enabled, then admin for `mutation`s (whose
    /// refusal it is).
    fn gate(&self, caller: &Caller, mutation: Option<&str>) -> Result<(), ApiError> {
        if !self.inner.config.enabled {
            return Err(disabled(DISABLED));
        }
        match mutation {
            Some(refusal) if !caller.admin => Err(forbidden(refusal)),
            _ => Ok(()),
        }
    }

    /// Sends `event` to the lab room of `caller`'s tenant. The event is kept whatever
    /// happens here, so a failure is logged, not returned.
    async fn broadcast(&self, caller: &Caller, event: &Event) {
        let lab = &self.inner.config.lab;
        let mut envelope = Envelope::new(MessageType::Telemetry);
        envelope.room = Some(lab.room.to_string());
        envelope.channel = Some(lab.channel.to_string());
        envelope.sender = Some(SENDER.to_owned());
        let payload = serde_json::to_string(event)
            .map(|event| format!(r#"{{"omega_event":{event}}}"#))
            .ok()
            .and_then(|text| JsonObject::parse(&text).ok());
        let Some(payload) = payload else {
            warn!(
                event_id = event.event_id,
                "cannot encode a Tier-Omega event for the lab"
            );
            return;
        };
        envelope.payload = payload;
        let delivery = RoomDelivery::of(&envelope);
        let room = subject::room(&caller.tenant, lab);
        if let Err(error) = self.inner.bus.publish(room, delivery.encode()).await {
            warn!(%error, event_id = event.event_id, "Tier-Omega event not broadcast to the lab");
        }
    }
}

grpc_api!(OmegaApi: pb::omega_server::Omega {
    status(OmegaStatusRequest) -> OmegaStatus,
    register_substrate(RegisterSubstrateRequest) -> Substrate,
    list_substrates(ListSubstratesRequest) -> ListSubstratesResponse,
    unregister_substrate(UnregisterSubstrateRequest) -> UnregisterSubstrateResponse,
    emit_event(EmitEventRequest) -> OmegaEvent,
    list_events(ListEventsRequest) -> ListEventsResponse,
    clear_events(ClearEventsRequest) -> ClearEventsResponse,
});

/// The calls, each checked through its gates.
impl OmegaApi {
    async fn status(&self, request: pb::OmegaStatusRequest) -> Result<pb::OmegaStatus, ApiError> {
        Caller::try_from(request.caller)?;
        let config = &self.inner.config;
        let lane = &self.inner.lane;
        let failed = |e: BusError| bus_failure("read the Tier-Omega lane", &e);
        Ok(pb::OmegaStatus {
            enabled: config.enabled,
            lab_room: config.lab.room.to_string(),
            lab_channel: config.lab.channel.to_string(),
            max_events: config.max_events as u64,
            max_substrates: config.max_substrates as u64,
            substrate_count: lane.substrate_count().await.map_err(failed)? as u64,
            event_count: lane.event_count().await.map_err(failed)? as u64,
        })
    }

    async fn register_substrate(
        &self,
        request: pb::RegisterSubstrateRequest,
    ) -> Result<pb::Substrate, ApiError> {
        let caller = Caller::try_from(request.caller)?;
        self.gate(
            &caller,
            Some("Only admin clients can register Tier-Omega substrates"),
        )?;
        let substrate = Substrate {
            substrate_id: new_id("omega_sub_"),
            name: required("name", &request.name)?,
            kind: required("kind", &request.kind)?,
            owner_client_id: caller.client_id.to_string(),
            metadata: object("metadata", &request.metadata_json)?,
            created_at: Timestamp::now().to_rfc3339(),
        };
        match self.inner.lane.register(&substrate).await {
            Ok(()) => Ok(substrate_pb(substrate)),
            Err(RegisterError::Full) => Err(validation(format!(
                "Tier-Omega substrate limit reached ({})",
                self.inner.config.max_substrates
            ))),
            Err(RegisterError::Bus(e)) => Err(bus_failure("register the Tier-Omega substrate", &e)),
        }
    }

    async fn list_substrates(
        &self,
        request: pb::ListSubstratesRequest,
    ) -> Result<pb::ListSubstratesResponse, ApiError> {
        let caller = Caller::try_from(request.caller)?;
        self.gate(&caller, None)?;
        let substrates = self
            .inner
            .lane
            .substrates()
            .await
            .map_err(|e| bus_failure("list the Tier-Omega substrates", &e))?;
        Ok(pb::ListSubstratesResponse {
            substrates: substrates.into_iter().map(substrate_pb).collect(),
        })
    }

    async fn unregister_substrate(
        &self,
        request: pb::UnregisterSubstrateRequest,
    ) -> Result<pb::UnregisterSubstrateResponse, ApiError> {
        let caller = Caller::try_from(request.caller)?;
        self.gate(
            &caller,
            Some("Only admin clients can unregister Tier-Omega substrates"),
        )?;
        let id = required("substrate_id", &request.substrate_id)?;
        match self.inner.lane.unregister(&id).await {
            Ok(Some((substrate, removed_events))) => Ok(pb::UnregisterSubstrateResponse {
                substrate_id: substrate.substrate_id,
                name: substrate.name,
                kind: substrate.kind,
                removed_events: removed_events as u64,
            }),
            Ok(None) => Err(not_found(format!("Tier-Omega substrate '{id}' not found"))),
            Err(e) => Err(bus_failure("unregister the Tier-Omega substrate", &e)),
        }
    }

    async fn emit_event(&self, request: pb::EmitEventRequest) -> Result<pb::OmegaEvent, ApiError> {
        let caller = Caller::try_from(request.caller)?;
        self.gate(
            &caller,
            Some("Only admin clients can emit Tier-Omega events"),
        )?;
        let substrate_id = required("substrate_id", &request.substrate_id)?;
        let signal = required("signal", &request.signal)?;
        let payload = object("payload", &request.payload_json)?;
        let lane = &self.inner.lane;
        let known = lane
            .substrate(&substrate_id)
            .await
            .map_err(|e| bus_failure("emit the Tier-Omega event", &e))?;
        if known.is_none() {
            return Err(validation(format!("Unknown substrate_id: {substrate_id}")));
        }
        let event = Event {
            event_id: new_id("omega_evt_"),
            substrate_id,
            signal,
            payload,
            emitted_by: caller.client_id.to_string(),
            timestamp: Timestamp::now().to_rfc3339(),
        };
        lane.emit(&event)
            .await
            .map_err(|e| bus_failure("emit the Tier-Omega event", &e))?;
        self.broadcast(&caller, &event).await;
        Ok(event_pb(event))
    }

    async fn list_events(
        &self,
        request: pb::ListEventsRequest,
    ) -> Result<pb::ListEventsResponse, ApiError> {
        let caller = Caller::try_from(request.caller)?;
        self.gate(&caller, None)?;
        let limit = request.limit.unwrap_or(DEFAULT_LIMIT);
        if limit < 1 {
            return Err(validation("'limit' must be >= 1"));
        }
        let filter = Filter {
            substrate_id: filter(request.substrate_id),
            signal: filter(request.signal),
        };
        let events = self
            .inner
            .lane
            .events(&filter, usize::try_from(limit).unwrap_or(usize::MAX))
            .await
            .map_err(|e| bus_failure("list the Tier-Omega events", &e))?;
        Ok(pb::ListEventsResponse {
            events: events.into_iter().map(event_pb).collect(),
            limit: limit.unsigned_abs(),
            substrate_id: filter.substrate_id,
            signal: filter.signal,
        })
    }

    async fn clear_events(
        &self,
        request: pb::ClearEventsRequest,
    ) -> Result<pb::ClearEventsResponse, ApiError> {
        let caller = Caller::try_from(request.caller)?;
        self.gate(
            &caller,
            Some("Only admin clients can clear Tier-Omega events"),
        )?;
        let filter = Filter {
            substrate_id: filter(request.substrate_id),
            signal: filter(request.signal),
        };
        let (removed, remaining) = self
            .inner
            .lane
            .clear(&filter)
            .await
            .map_err(|e| bus_failure("clear the Tier-Omega events", &e))?;
        Ok(pb::ClearEventsResponse {
            removed_count: removed as u64,
            remaining_count: remaining as u64,
            substrate_id: filter.substrate_id,
            signal: filter.signal,
        })
    }
}
