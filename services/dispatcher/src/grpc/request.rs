//! Requests as the handlers see them: every generated request is converted here, once,
//! into validated domain types, or refused with INVALID_ARGUMENT and the protocol's text.

use chrono::{DateTime, Utc};
use tonic::Status;

use arqon_proto::dispatcher::v1 as pb;
use arqon_protocol::{
    ChannelName, ErrorCode, JsonObject, JsonObjectError, NameError, RoomName, TenantId, Timestamp,
    Topic,
};

use super::status::invalid;
use crate::state::history::{DEFAULT_LIMIT, MAX_LIMIT};

/// One channel of one tenant.
#[derive(Debug)]
pub(super) struct ChannelRef {
    pub(super) tenant: TenantId,
    pub(super) topic: Topic,
}

/// One room of one tenant.
#[derive(Debug)]
pub(super) struct RoomRef {
    pub(super) tenant: TenantId,
    pub(super) room: RoomName,
}

#[derive(Debug)]
pub(super) struct Publish {
    pub(super) target: ChannelRef,
    pub(super) payload: JsonObject,
    pub(super) metadata: JsonObject,
}

#[derive(Debug)]
pub(super) struct HistoryQuery {
    pub(super) target: ChannelRef,
    pub(super) limit: usize,
    pub(super) since: Option<DateTime<Utc>>,
    pub(super) until: Option<DateTime<Utc>>,
}

/// Every name problem at once, in the protocol's words.
fn names(errors: impl IntoIterator<Item = Option<NameError>>) -> Status {
    let text: Vec<String> = errors
        .into_iter()
        .flatten()
        .map(|e| e.to_string())
        .collect();
    invalid(ErrorCode::ValidationError, text.join("; "))
}

fn channel_ref(tenant: &str, room: &str, channel: &str) -> Result<ChannelRef, Status> {
    match (
        TenantId::parse(tenant),
        RoomName::parse(room),
        ChannelName::parse(channel),
    ) {
        (Ok(tenant), Ok(room), Ok(channel)) => Ok(ChannelRef {
            tenant,
            topic: Topic::new(room, channel),
        }),
        (tenant, room, channel) => Err(names([tenant.err(), room.err(), channel.err()])),
    }
}

fn room_ref(tenant: &str, room: &str) -> Result<RoomRef, Status> {
    match (TenantId::parse(tenant), RoomName::parse(room)) {
        (Ok(tenant), Ok(room)) => Ok(RoomRef { tenant, room }),
        (tenant, room) => Err(names([tenant.err(), room.err()])),
    }
}

fn json_object(field: &str, bytes: &[u8]) -> Result<JsonObject, Status> {
    if bytes.is_empty() {
        return Err(invalid(
            ErrorCode::ValidationError,
            format!("'{field}' is required: a JSON object"),
        ));
    }
    JsonObject::parse_bytes(bytes).map_err(|e| {
        let message = match e {
            JsonObjectError::Json(e) => format!("'{field}' is not valid JSON: {e}"),
            JsonObjectError::NotAnObject(_) => format!("'{field}' must be a JSON object"),
        };
        invalid(ErrorCode::ValidationError, message)
    })
}

fn timestamp(field: &str, text: Option<&str>) -> Result<Option<DateTime<Utc>>, Status> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => Timestamp::parse(text).map(|t| Some(t.to_utc())).map_err(|_| {
            invalid(
                ErrorCode::InvalidTimestamp,
                format!("Invalid '{field}' timestamp format: use RFC 3339, e.g. 2026-02-18T12:00:00Z"),
            )
        }),
    }
}

impl TryFrom<pb::PublishRequest> for Publish {
    type Error = Status;

    fn try_from(request: pb::PublishRequest) -> Result<Self, Status> {
        let target = channel_ref(&request.tenant, &request.room, &request.channel)?;
        let payload = json_object("payload_json", &request.payload_json)?;
        let metadata = match &request.metadata_json {
            Some(bytes) => json_object("metadata_json", bytes)?,
            None => JsonObject::empty(),
        };
        Ok(Self {
            target,
            payload,
            metadata,
        })
    }
}

impl TryFrom<pb::ListChannelsRequest> for RoomRef {
    type Error = Status;

    fn try_from(request: pb::ListChannelsRequest) -> Result<Self, Status> {
        room_ref(&request.tenant, &request.room)
    }
}

impl TryFrom<pb::ChannelInfoRequest> for ChannelRef {
    type Error = Status;

    fn try_from(request: pb::ChannelInfoRequest) -> Result<Self, Status> {
        channel_ref(&request.tenant, &request.room, &request.channel)
    }
}

impl TryFrom<pb::PresenceRequest> for ChannelRef {
    type Error = Status;

    fn try_from(request: pb::PresenceRequest) -> Result<Self, Status> {
        channel_ref(&request.tenant, &request.room, &request.channel)
    }
}

impl TryFrom<pb::HistoryRequest> for HistoryQuery {
    type Error = Status;

    fn try_from(request: pb::HistoryRequest) -> Result<Self, Status> {
        let target = channel_ref(&request.tenant, &request.room, &request.channel)?;
        let limit = match usize::try_from(request.limit) {
            Ok(0) => DEFAULT_LIMIT,
            Ok(n) if n <= MAX_LIMIT => n,
            _ => {
                return Err(invalid(
                    ErrorCode::ValidationError,
                    format!("'limit' must be from 1 to {MAX_LIMIT} (0 means {DEFAULT_LIMIT})"),
                ));
            }
        };
        let since = timestamp("since", request.since.as_deref())?;
        let until = timestamp("until", request.until.as_deref())?;
        if let (Some(since), Some(until)) = (since, until)
            && until < since
        {
            return Err(invalid(
                ErrorCode::ValidationError,
                "'until' must not be before 'since'",
            ));
        }
        Ok(Self {
            target,
            limit,
            since,
            until,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arqon_proto::grpc::ERROR_CODE_METADATA;
    use bytes::Bytes;
    use tonic::Code;

    fn publish(tenant: &str, room: &str, payload: &'static str) -> pb::PublishRequest {
        pb::PublishRequest {
            tenant: tenant.into(),
            room: room.into(),
            channel: "general".into(),
            payload_json: Bytes::from_static(payload.as_bytes()),
            metadata_json: None,
        }
    }

    #[test]
    fn names_are_refused_with_the_protocols_text() {
        let status = Publish::try_from(publish("a.b", "r*", "{}")).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with("Invalid tenant name 'a.b'"),
            "{}",
            status.message()
        );
        assert!(
            status.message().contains("; Invalid room name 'r*'"),
            "{}",
            status.message()
        );
        let ok = Publish::try_from(publish("t-1", "science", r#"{"a":1}"#)).unwrap();
        assert_eq!(ok.target.topic.to_string(), "science:general");
        assert!(ok.metadata.is_empty());
    }

    #[test]
    fn payload_and_metadata_must_be_objects() {
        for (payload, expected) in [
            ("", "'payload_json' is required: a JSON object"),
            ("[1]", "'payload_json' must be a JSON object"),
            ("42", "'payload_json' must be a JSON object"),
        ] {
            let status = Publish::try_from(publish("t", "r", payload)).unwrap_err();
            assert_eq!(
                (status.code(), status.message()),
                (Code::InvalidArgument, expected)
            );
        }
        let status = Publish::try_from(publish("t", "r", "{nope")).unwrap_err();
        assert!(
            status
                .message()
                .starts_with("'payload_json' is not valid JSON"),
            "{}",
            status.message()
        );
        let mut request = publish("t", "r", "{}");
        request.metadata_json = Some(Bytes::from_static(b"\"x\""));
        let status = Publish::try_from(request).unwrap_err();
        assert_eq!(status.message(), "'metadata_json' must be a JSON object");
    }

    fn history(
        limit: u32,
        since: Option<&str>,
        until: Option<&str>,
    ) -> Result<HistoryQuery, Status> {
        HistoryQuery::try_from(pb::HistoryRequest {
            tenant: "t".into(),
            room: "r".into(),
            channel: "c".into(),
            limit,
            since: since.map(Into::into),
            until: until.map(Into::into),
        })
    }

    #[test]
    fn history_limits_and_timestamps() {
        assert_eq!(history(0, None, None).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(history(1000, None, None).unwrap().limit, 1000);
        assert_eq!(
            history(1001, None, None).unwrap_err().code(),
            Code::InvalidArgument
        );
        let query = history(5, Some("2026-01-01T00:00:00Z"), Some("")).unwrap();
        assert!(query.since.is_some() && query.until.is_none());
        let status = history(5, Some("yesterday"), None).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.metadata().get(ERROR_CODE_METADATA).unwrap(),
            ErrorCode::InvalidTimestamp.as_str()
        );
        let status = history(
            5,
            Some("2026-01-02T00:00:00Z"),
            Some("2026-01-01T00:00:00Z"),
        )
        .unwrap_err();
        assert_eq!(status.message(), "'until' must not be before 'since'");
    }
}
