//! Built-in commands. Each returns a [`CommandReply`] (and, for joins and leaves, the
//! membership change the edge applies).

mod args;
mod channels;
mod system;

use arqon_proto::model::{Inbound, MembershipChange};
use arqon_protocol::{CommandReply, ErrorCode};

use crate::Context;

/// The result of one command.
pub(crate) struct Outcome {
    pub(crate) reply: CommandReply,
    pub(crate) membership: Option<MembershipChange>,
}

impl From<CommandReply> for Outcome {
    fn from(reply: CommandReply) -> Self {
        Self {
            reply,
            membership: None,
        }
    }
}

pub(crate) fn execute(context: &Context, inbound: &Inbound) -> Outcome {
    let Some(name) = inbound.envelope.command.as_deref() else {
        return CommandReply::error(ErrorCode::MissingCommand, "Command name is required").into();
    };
    match name {
        "ping" => system::ping(context, inbound).into(),
        "join_channel" => channels::join(inbound),
        "leave_channel" => channels::leave(inbound),
        other => CommandReply::error(
            ErrorCode::UnknownCommand,
            format!("Unknown command: {other}"),
        )
        .into(),
    }
}
