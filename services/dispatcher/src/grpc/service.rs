//! The handlers of `arqon.dispatcher.v1.Bus`.

use std::sync::Arc;

use tonic::{Code, Request, Response, Status};
use tracing::{Span, field, instrument, warn};

use arqon_proto::dispatcher::v1 as pb;
use arqon_proto::model::{Member, RoomDelivery};
use arqon_proto::policy::v1::InspectRequest;
use arqon_protocol::{
    ChannelName, Envelope, ErrorCode, MessageType, SERVER_SENDER, TenantId, Timestamp,
};

use super::request::{ChannelRef, HistoryQuery, Publish, RoomRef};
use super::status::{self, invalid, lookup};
use crate::Context;
use crate::commands::channels::{LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT};
use crate::state::history::{HISTORY_OFF, NO_ROOM, StoreError};
use crate::state::{ChannelRecord, Views};
use arqon_bus::BusError;
use arqon_proto::grpc::{refusal, to_status};

/// `created_by` of a channel that a Publish created.
pub(super) const CREATED_BY: &str = "server";

pub(super) struct BusApi {
    pub(super) context: Arc<Context>,
}

impl BusApi {
    fn views(&self) -> Views<'_> {
        Views::from(self.context.as_ref())
    }
}

fn record_tenant(tenant: &TenantId) {
    Span::current().record("tenant", tenant.as_str());
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    Timestamp::from(t).to_rfc3339()
}

fn channel(
    name: &str,
    record: ChannelRecord,
    member_count: u64,
    last: Option<chrono::DateTime<chrono::Utc>>,
) -> pb::Channel {
    pb::Channel {
        name: name.to_owned(),
        description: record.description,
        created_by: record.created_by,
        created_at: record.created_at,
        member_count,
        last_activity: last.map(rfc3339),
    }
}

fn members(members: Vec<Member>) -> Vec<pb::Member> {
    members
        .into_iter()
        .map(|m| pb::Member {
            client_id: m.client_id.as_str().to_owned(),
            subject: m.subject,
        })
        .collect()
}

/// `envelope` as CASIL lets it through the policy service (redacted, perhaps), or the
/// refusal: blocked (`PERMISSION_DENIED` with CASIL's reason as the error code), or no
/// policy service to ask (`FAILED_PRECONDITION`, `FEATURE_DISABLED`).
async fn inspected(
    context: &Context,
    tenant: &TenantId,
    envelope: Envelope,
) -> Result<Envelope, Status> {
    let Some(policy) = &context.policy else {
        return Err(refusal(
            ErrorCode::FeatureDisabled,
            "Publish needs the policy service (ARQONBUS_POLICY_URL): its messages pass CASIL as clients' do",
        ));
    };
    let answer = policy
        .inspect(InspectRequest {
            tenant: tenant.to_string(),
            envelope_json: envelope.to_json(),
            origin: "grpc".to_owned(),
        })
        .await
        .map_err(|e| {
            if e.refusal().is_none() {
                warn!(error = %e, "CASIL inspection of a Publish failed");
            }
            to_status(&e)
        })?;
    if answer.envelope_json.is_empty() {
        let code = answer
            .reason
            .parse()
            .unwrap_or(ErrorCode::CasilInternalError);
        // Blocked, whatever CASIL's reason (an internal error blocks in enforce mode too).
        return Err(status::status(
            Code::PermissionDenied,
            code,
            format!("CASIL blocked the message ({})", answer.reason),
        ));
    }
    Envelope::from_server_json(&answer.envelope_json).map_err(|e| {
        refusal(
            ErrorCode::CasilInternalError,
            format!(
                "the inspected message is unreadable: {}",
                e.reasons().join("; ")
            ),
        )
    })
}

#[tonic::async_trait]
impl pb::bus_server::Bus for BusApi {
    #[instrument(name = "grpc.Publish", skip_all, fields(tenant = field::Empty))]
    async fn publish(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let Publish {
            target: ChannelRef { tenant, topic },
            payload,
            metadata,
        } = request.into_inner().try_into()?;
        record_tenant(&tenant);
        let context = &self.context;
        // The same envelope and delivery `route` makes of a client's message, from the
        // server and excluding nobody; it passes CASIL as a client's message does.
        let mut envelope = Envelope::new(MessageType::Message);
        envelope.room = Some(topic.room.to_string());
        envelope.channel = Some(topic.channel.to_string());
        envelope.sender = Some(SERVER_SENDER.to_owned());
        envelope.payload = payload;
        envelope.metadata = metadata;
        let envelope = inspected(context, &tenant, envelope).await?;
        let delivery = RoomDelivery::of(&envelope).encode();
        // Refused before the channel is created for it.
        let max = context.bus.max_payload();
        if delivery.len() > max {
            let too_large = BusError::PayloadTooLarge {
                size: delivery.len(),
                max,
            };
            return Err(status::bus("publish", &too_large));
        }
        context
            .registry
            .claim(&tenant, &topic, CREATED_BY)
            .await
            .map_err(|e| status::bus("publish", &e))?;
        // Answered once the history has stored it (when history is on).
        let confirmation = context
            .history
            .publish(
                &context.bus,
                &tenant,
                &topic,
                arqon_bus::Headers::current_trace_context(),
                delivery,
            )
            .await
            .map_err(|e| match e {
                StoreError::NoRoom(_) => {
                    context.metrics.history_full.inc();
                    refusal(ErrorCode::QuotaExceeded, NO_ROOM)
                }
                StoreError::Bus(e) => {
                    context.metrics.publish_errors.inc();
                    status::bus("publish", &e)
                }
            })?;
        if let Some(confirmation) = confirmation
            && let Err(e) = confirmation.stored().await
        {
            context.metrics.publish_errors.inc();
            warn!(error = %e, "a published message was not confirmed stored");
            return Err(refusal(
                ErrorCode::Timeout,
                "The bus did not confirm that the message was stored; it may have been delivered. Retry only if a duplicate is acceptable.",
            ));
        }
        context.metrics.routed.inc();
        Ok(Response::new(pb::PublishResponse {
            message_id: envelope.id.as_str().to_owned(),
        }))
    }

    #[instrument(name = "grpc.ListChannels", skip_all, fields(tenant = field::Empty))]
    async fn list_channels(
        &self,
        request: Request<pb::ListChannelsRequest>,
    ) -> Result<Response<pb::ListChannelsResponse>, Status> {
        let request = request.into_inner();
        let (after, limit) = (request.after.clone(), request.limit);
        let RoomRef { tenant, room } = request.try_into()?;
        record_tenant(&tenant);
        let limit = match limit {
            0 => LIST_DEFAULT_LIMIT,
            n if n as usize <= LIST_MAX_LIMIT => n as usize,
            _ => {
                return Err(invalid(
                    ErrorCode::ValidationError,
                    format!("'limit' must be from 1 to {LIST_MAX_LIMIT} (0: {LIST_DEFAULT_LIMIT})"),
                ));
            }
        };
        let after = match after.as_deref() {
            None | Some("") => None,
            Some(after) => Some(ChannelName::parse(after).map_err(|e| {
                invalid(
                    ErrorCode::ValidationError,
                    format!("'after' must be a channel name from a previous page ({e})"),
                )
            })?),
        };
        let page = self
            .views()
            .room_page(&tenant, &room, after.as_ref(), limit)
            .await
            .map_err(|e| lookup("list channels", e))?;
        let channels = page
            .channels
            .into_iter()
            .map(|s| {
                channel(
                    s.topic.channel.as_str(),
                    s.record,
                    s.member_count,
                    s.last_activity,
                )
            })
            .collect();
        Ok(Response::new(pb::ListChannelsResponse {
            channels,
            complete: page.more_after.is_none(),
            next_after: page
                .more_after
                .map(|name| name.as_str().to_owned())
                .unwrap_or_default(),
            total: page.total as u64,
        }))
    }

    #[instrument(name = "grpc.ChannelInfo", skip_all, fields(tenant = field::Empty))]
    async fn channel_info(
        &self,
        request: Request<pb::ChannelInfoRequest>,
    ) -> Result<Response<pb::ChannelInfoResponse>, Status> {
        let ChannelRef { tenant, topic } = request.into_inner().try_into()?;
        record_tenant(&tenant);
        let detail = self
            .views()
            .channel(&tenant, &topic, self.context.max_members_listed)
            .await
            .map_err(|e| lookup("read channel info", e))?;
        Ok(Response::new(pb::ChannelInfoResponse {
            channel: Some(channel(
                topic.channel.as_str(),
                detail.record,
                detail.members.total,
                detail.last_activity,
            )),
            members: members(detail.members.members),
            message_count: detail.message_count,
            members_complete: detail.members.complete,
        }))
    }

    #[instrument(name = "grpc.Presence", skip_all, fields(tenant = field::Empty))]
    async fn presence(
        &self,
        request: Request<pb::PresenceRequest>,
    ) -> Result<Response<pb::PresenceResponse>, Status> {
        let ChannelRef { tenant, topic } = request.into_inner().try_into()?;
        record_tenant(&tenant);
        let context = &self.context;
        context
            .registry
            .existing(&tenant, &topic)
            .await
            .map_err(|e| lookup("read presence", e))?;
        let found = context
            .presence
            .members(&tenant, &topic, context.max_members_listed)
            .await
            .map_err(|e| status::bus("read presence", &e))?;
        Ok(Response::new(pb::PresenceResponse {
            members: members(found.members),
            member_count: found.total,
            members_complete: found.complete,
        }))
    }

    #[instrument(name = "grpc.History", skip_all, fields(tenant = field::Empty))]
    async fn history(
        &self,
        request: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        let HistoryQuery {
            target: ChannelRef { tenant, topic },
            limit,
            since,
            until,
        } = request.into_inner().try_into()?;
        record_tenant(&tenant);
        let context = &self.context;
        if !context.history.enabled() {
            return Err(refusal(ErrorCode::FeatureDisabled, HISTORY_OFF));
        }
        context
            .registry
            .existing(&tenant, &topic)
            .await
            .map_err(|e| lookup("read history", e))?;
        // Empty while the tenant has no stream: it has stored nothing yet.
        let epoch = context
            .history
            .epoch(&tenant)
            .await
            .map_err(|e| status::bus("read history", &e))?
            .unwrap_or_default();
        let stored = context
            .history
            .read(&tenant, &topic, since, until, limit)
            .await
            .map_err(|e| status::bus("read history", &e))?;
        let messages = stored
            .into_iter()
            .map(|s| pb::StoredMessage {
                offset: s.offset,
                stored_at: rfc3339(s.stored_at),
                // As the room's members received it.
                envelope_json: s.frame,
            })
            .collect();
        Ok(Response::new(pb::HistoryResponse { epoch, messages }))
    }
}
