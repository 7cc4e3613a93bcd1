//! The ArqonBus wire protocol, shared by every service, the SDK and the CLI.
//!
//! This crate owns what a client and the services agree on: the client JSON envelope
//! (fields, identifiers, timestamps, message types, validation and its error messages),
//! the flat error envelope and the one list of error codes, what makes an error fit to
//! show a client ([`UserFacingError`]), the identity a connection
//! carries, and the NATS subject names with the safe-token rules that keep tenants apart.
//!
//! It does no I/O and needs no runtime: decoding and encoding are pure functions, so the
//! edge, the policy engine and the dispatcher apply exactly the same rules.

mod envelope;
mod error_code;
mod id;
mod identity;
mod json;
mod names;
mod replies;
pub mod subject;
mod time;
mod user_facing;

pub use envelope::{
    DecodeError, Envelope, MessageType, PROTOCOL_VERSION, SERVER_OWNED_METADATA, Status,
};
pub use error_code::ErrorCode;
pub use id::{ClientId, EdgeId, IdError, MessageId};
pub use identity::{Identity, Permission, Role, SYSTEM_SCOPE};
pub use json::{JsonObject, JsonObjectError, NotAnObject, ObjectWriter};
pub use names::{ChannelName, NameError, RoomName, TenantId, Topic};
pub use replies::{CommandReply, SERVER_SENDER, WELCOME_TEXT, fill_recovery_slot, recovery_slot};
pub use time::{Timestamp, TimestampError};
pub use user_facing::{Failed, UserFacingError};
