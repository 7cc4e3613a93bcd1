//! Every command: what it does, what it takes, what it needs, and what runs it. `help`
//! reads this list; the dispatcher finds a command here, checks its permissions, and
//! runs it with its arguments parsed once into its typed request (`args.rs`).

use std::future::Future;
use std::pin::Pin;

use arqon_protocol::Permission;

#[cfg(test)]
use arqon_protocol::CommandReply;

#[cfg(test)]
use super::args::Reader;
pub(crate) use super::args::{Arg, arg};
use super::{Call, Outcome, casil, channels, history, overview, rooms, system, tenants};

/// What runs a command; `handler!` makes one of an async function taking the command's
/// typed request.
pub(crate) struct Handler {
    pub(crate) run: for<'a> fn(&'a Call<'a>) -> Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>,
    /// Parses the arguments alone, so a test can hold each parser to its schema.
    #[cfg(test)]
    pub(crate) parse: fn(&Reader<'_>) -> Result<(), CommandReply>,
}

/// One command.
pub(crate) struct Spec {
    pub(crate) name: &'static str,
    pub(crate) family: Family,
    pub(crate) description: &'static str,
    pub(crate) access: Access,
    pub(crate) arguments: &'static [Arg],
    pub(crate) example: &'static str,
    pub(crate) handler: Handler,
}

/// Who may run a command.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Access {
    /// Any client.
    Anyone,
    /// A client whose token grants the permission.
    Needs(Permission),
    /// The fleet-wide (system) authority only (ADR 015): the refusal everyone else gets,
    /// tenant admins included.
    System(&'static str),
}

/// The commands of one kind: `help`'s categories, and how their refusals are worded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    System,
    Channel,
    Room,
    Casil,
    Store,
    Webhook,
    Cron,
    Omega,
}

impl Family {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Family::System => "system",
            Family::Channel => "channel",
            Family::Room => "room",
            Family::Casil => "casil",
            Family::Store => "store",
            Family::Webhook => "webhook",
            Family::Cron => "cron",
            Family::Omega => "omega",
        }
    }

    /// Whether a refusal reads `Validation error: <detail>` (the built-ins' and the
    /// original's `op.*` convention) or is the bare detail, as the store, cron and Omega
    /// pages give their errors (the operators service words them so too).
    pub(crate) fn prefixes(self) -> bool {
        !matches!(self, Family::Store | Family::Cron | Family::Omega)
    }
}

pub(crate) const ROOM: Arg = arg("room", true, "room name");
pub(crate) const CHANNEL: Arg = arg("channel", true, "channel name");
pub(crate) const COMMAND: Arg = arg("command", false, "the command to describe");
pub(crate) const TOKEN: Arg = arg("token", true, "a new JWT for the same tenant and subject");
pub(crate) const NAME: Arg = arg(
    "name",
    false,
    "the channel's name, when `channel` is not given",
);
pub(crate) const CREATE_CHANNEL: Arg = arg("channel", true, "channel name (or `name`)");
pub(crate) const DESCRIPTION: Arg = arg("description", false, "a description (at most 1024 bytes)");
pub(crate) const FORCE: Arg = arg(
    "force",
    false,
    "admins only: delete even with members, who are removed",
);
pub(crate) const SINCE_ID: Arg = arg(
    "since_id",
    false,
    "id of the last message seen: the ones after it are delivered first",
);
pub(crate) const SINCE_OFFSET: Arg = arg(
    "since_offset",
    false,
    "offset of the last message seen (with epoch)",
);
pub(crate) const EPOCH: Arg = arg("epoch", false, "the history epoch of since_offset");
pub(crate) const AFTER: Arg = arg(
    "after",
    false,
    "the `next_after` of the previous page: list the channels after this name",
);
pub(crate) const LIST_LIMIT: Arg = arg(
    "limit",
    false,
    "at most this many (default 100, at most 1000; a page also stops at 512 KiB)",
);
pub(crate) const HISTORY_LIMIT: Arg = arg(
    "limit",
    false,
    "at most this many (default 50, at most 1000)",
);
pub(crate) const SINCE: Arg = arg(
    "since",
    false,
    "ISO 8601: messages stored at or after it (else the last ones)",
);
pub(crate) const UNTIL: Arg = arg("until", false, "ISO 8601: messages stored before it");

pub(crate) const COMMANDS: &[Spec] = &[
    Spec {
        name: "ping",
        family: Family::System,
        description: "Checks the connection; answers with the time the command took to reach the dispatcher",
        access: Access::Anyone,
        arguments: &[],
        example: r#"{"type":"command","command":"ping"}"#,
        handler: handler!(system::ping),
    },
    Spec {
        name: "status",
        family: Family::System,
        description: "The bus as the dispatcher sees it: uptime, version, connected clients, rooms, channels, messages",
        access: Access::Anyone,
        arguments: &[],
        example: r#"{"type":"command","command":"status"}"#,
        handler: handler!(system::status),
    },
    Spec {
        name: "overview",
        family: Family::System,
        description: "What the admin console's overview shows: the tenant's connections, rooms, channels and stored messages, the CASIL mode and version, the live edges (the system authority: each edge's report and every tenant's connections)",
        access: Access::Anyone,
        arguments: &[],
        example: r#"{"type":"command","command":"overview"}"#,
        handler: handler!(overview::overview),
    },
    Spec {
        name: "list_tenants",
        family: Family::System,
        description: "Every tenant with state on the bus (channels, a history stream, webhook rules, cron jobs, connections) by name, with what it has, a page at a time",
        access: Access::System(
            "Only the system authority can list tenants: a tenant sees only itself",
        ),
        arguments: &[tenants::AFTER_TENANT, tenants::TENANTS_LIMIT],
        example: r#"{"type":"command","command":"list_tenants","args":{"limit":100}}"#,
        handler: handler!(tenants::list_tenants),
    },
    Spec {
        name: "help",
        family: Family::System,
        description: "Every command, or one with its arguments and the permission it needs",
        access: Access::Anyone,
        arguments: &[COMMAND],
        example: r#"{"type":"command","command":"help","args":{"command":"history"}}"#,
        handler: handler!(system::help),
    },
    Spec {
        name: "refresh",
        family: Family::System,
        description: "Replaces the connection's token before it expires (answered by the edge)",
        access: Access::Anyone,
        arguments: &[TOKEN],
        example: r#"{"type":"command","command":"refresh","args":{"token":"<jwt>"}}"#,
        handler: handler!(system::refresh),
    },
    Spec {
        name: "create_channel",
        family: Family::Channel,
        description: "Creates a channel (and its room, if new)",
        access: Access::Needs(Permission::ChannelManagement),
        arguments: &[ROOM, CREATE_CHANNEL, DESCRIPTION],
        example: r#"{"type":"command","command":"create_channel","args":{"room":"science","channel":"general"}}"#,
        handler: handler!(channels::create),
    },
    Spec {
        name: "delete_channel",
        family: Family::Channel,
        description: "Deletes a channel and its history; refused while it has members unless an admin forces it",
        access: Access::Needs(Permission::ChannelManagement),
        arguments: &[ROOM, CHANNEL, FORCE],
        example: r#"{"type":"command","command":"delete_channel","args":{"room":"science","channel":"general"}}"#,
        handler: handler!(channels::delete),
    },
    Spec {
        name: "join_channel",
        family: Family::Channel,
        description: "Joins a channel, creating it on demand; with since_id (or since_offset and epoch), recovers the messages missed",
        access: Access::Needs(Permission::ChannelAccess),
        arguments: &[ROOM, CHANNEL, SINCE_ID, SINCE_OFFSET, EPOCH],
        example: r#"{"type":"command","command":"join_channel","args":{"room":"science","channel":"general"}}"#,
        handler: handler!(channels::join),
    },
    Spec {
        name: "leave_channel",
        family: Family::Channel,
        description: "Leaves a channel",
        access: Access::Needs(Permission::ChannelAccess),
        arguments: &[ROOM, CHANNEL],
        example: r#"{"type":"command","command":"leave_channel","args":{"room":"science","channel":"general"}}"#,
        handler: handler!(channels::leave),
    },
    Spec {
        name: "list_channels",
        family: Family::Room,
        description: "The channels of a room by name, with their member counts, a page at a time",
        access: Access::Needs(Permission::ChannelView),
        arguments: &[ROOM, AFTER, LIST_LIMIT],
        example: r#"{"type":"command","command":"list_channels","args":{"room":"science"}}"#,
        handler: handler!(channels::list),
    },
    Spec {
        name: "list_rooms",
        family: Family::Room,
        description: "The tenant's rooms by name, with their channel counts, a page at a time",
        access: Access::Needs(Permission::ChannelView),
        arguments: &[rooms::AFTER_ROOM, rooms::ROOMS_LIMIT],
        example: r#"{"type":"command","command":"list_rooms","args":{"limit":100}}"#,
        handler: handler!(rooms::list_rooms),
    },
    Spec {
        name: "channel_info",
        family: Family::Channel,
        description: "A channel's members, creation, last activity and message count",
        access: Access::Needs(Permission::ChannelView),
        arguments: &[ROOM, CHANNEL],
        example: r#"{"type":"command","command":"channel_info","args":{"room":"science","channel":"general"}}"#,
        handler: handler!(channels::info),
    },
    Spec {
        name: "history",
        family: Family::Channel,
        description: "A channel's stored messages, oldest first, with their offsets",
        access: Access::Needs(Permission::ChannelView),
        arguments: &[ROOM, CHANNEL, HISTORY_LIMIT, SINCE, UNTIL],
        example: r#"{"type":"command","command":"history","args":{"room":"science","channel":"general","limit":20}}"#,
        handler: handler!(history::history),
    },
    Spec {
        name: "op.casil.get",
        family: Family::Casil,
        description: "The live CASIL policy, with its version",
        access: Access::Anyone,
        arguments: &[],
        example: r#"{"type":"command","command":"op.casil.get"}"#,
        handler: handler!(casil::get),
    },
    Spec {
        name: "op.casil.reload",
        family: Family::Casil,
        description: "Changes the live CASIL policy on every policy replica; the arguments are the settings to change (as op.casil.get names them), the rest is kept",
        access: Access::System(
            "Only the system authority can reload the CASIL policy: it applies to every tenant (use the service token, e.g. arqon policy reload)",
        ),
        arguments: casil::SETTINGS,
        example: r#"{"type":"command","command":"op.casil.reload","args":{"mode":"enforce","block_on_probable_secret":true}}"#,
        handler: handler!(casil::reload),
    },
    Spec {
        name: "op.casil.validate",
        family: Family::Casil,
        description: "Checks a draft without applying it: the arguments of op.casil.reload, every problem listed, or the policy a reload would make live",
        access: Access::System(
            "Only the system authority can validate CASIL drafts: only it reloads the policy (use the service token, e.g. arqon policy)",
        ),
        arguments: casil::SETTINGS,
        example: r#"{"type":"command","command":"op.casil.validate","args":{"mode":"enforce"}}"#,
        handler: handler!(casil::validate),
    },
    Spec {
        name: "op.casil.history",
        family: Family::Casil,
        description: "The CASIL policy's versions the bus still keeps (16 at most), newest first, with who stored each and when",
        access: Access::Anyone,
        arguments: &[],
        example: r#"{"type":"command","command":"op.casil.history"}"#,
        handler: handler!(casil::history),
    },
];

/// Every command: the built-ins, then the operators' (`op.*`).
pub(crate) fn all() -> impl Iterator<Item = &'static Spec> {
    COMMANDS.iter().chain(super::ops::specs())
}

pub(crate) fn find(name: &str) -> Option<&'static Spec> {
    all().find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::history::{DEFAULT_LIMIT, MAX_LIMIT};
    use std::collections::{BTreeSet, HashSet};

    #[test]
    fn names_are_unique_and_examples_name_their_command() {
        let mut seen = HashSet::new();
        for spec in all() {
            assert!(seen.insert(spec.name), "{}", spec.name);
            let example: serde_json::Value = serde_json::from_str(spec.example).unwrap();
            assert_eq!(example["command"], spec.name);
        }
        assert!(find("nope").is_none());
        // The help text states the limits the command applies.
        let history = find("history").unwrap();
        let limit = history
            .arguments
            .iter()
            .find(|a| a.name == "limit")
            .unwrap();
        let stated = format!("default {DEFAULT_LIMIT}, at most {MAX_LIMIT}");
        assert!(limit.description.contains(&stated), "{}", limit.description);
    }

    /// Each command's parser reads what its entry lists (so `help` tells the truth), and
    /// accepts its example.
    #[test]
    fn every_parser_reads_the_arguments_its_entry_lists() {
        // Answered by the edge; passed whole to the policy service.
        let unread = ["refresh", "op.casil.reload", "op.casil.validate"];
        for spec in all() {
            let example: serde_json::Value = serde_json::from_str(spec.example).unwrap();
            let args = example["args"].as_object().cloned().unwrap_or_default();
            let reader = Reader::new(&args, spec.family);
            assert!((spec.handler.parse)(&reader).is_ok(), "{}", spec.name);
            let read: BTreeSet<&str> = reader.read().into_iter().collect();
            let listed: BTreeSet<&str> = spec.arguments.iter().map(|a| a.name).collect();
            if unread.contains(&spec.name) {
                assert!(read.is_empty(), "{}", spec.name);
            } else {
                assert_eq!(read, listed, "{}", spec.name);
            }
        }
    }
}
