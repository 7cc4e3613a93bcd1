//! Every built-in command: what it does, what it takes, and what it needs. `help` reads
//! this list, and the dispatcher checks permissions from it.

use arqon_protocol::Permission;

/// One argument of a command.
#[derive(Debug)]
pub(crate) struct Arg {
    pub(crate) name: &'static str,
    pub(crate) required: bool,
    pub(crate) description: &'static str,
}

/// One command.
#[derive(Debug)]
pub(crate) struct Spec {
    pub(crate) name: &'static str,
    pub(crate) category: &'static str,
    pub(crate) description: &'static str,
    pub(crate) permission: Option<Permission>,
    /// The fleet-wide (system) authority only (ADR 015); the refusal everyone else gets,
    /// tenant admins included.
    pub(crate) system_only: Option<&'static str>,
    pub(crate) arguments: &'static [Arg],
    pub(crate) example: &'static str,
}

pub(crate) const fn arg(name: &'static str, required: bool, description: &'static str) -> Arg {
    Arg {
        name,
        required,
        description,
    }
}

pub(crate) const ROOM: Arg = arg("room", true, "room name");
pub(crate) const CHANNEL: Arg = arg("channel", true, "channel name");

pub(crate) const COMMANDS: &[Spec] = &[
    Spec {
        name: "ping",
        category: "system",
        description: "Checks the connection; answers with the time the command took to reach the dispatcher",
        permission: None,
        system_only: None,
        arguments: &[],
        example: r#"{"type":"command","command":"ping"}"#,
    },
    Spec {
        name: "status",
        category: "system",
        description: "The bus as the dispatcher sees it: uptime, version, connected clients, rooms, channels, messages",
        permission: None,
        system_only: None,
        arguments: &[],
        example: r#"{"type":"command","command":"status"}"#,
    },
    Spec {
        name: "help",
        category: "system",
        description: "Every command, or one with its arguments and the permission it needs",
        permission: None,
        system_only: None,
        arguments: &[arg("command", false, "the command to describe")],
        example: r#"{"type":"command","command":"help","args":{"command":"history"}}"#,
    },
    Spec {
        name: "refresh",
        category: "system",
        description: "Replaces the connection's token before it expires (answered by the edge)",
        permission: None,
        system_only: None,
        arguments: &[arg(
            "token",
            true,
            "a new JWT for the same tenant and subject",
        )],
        example: r#"{"type":"command","command":"refresh","args":{"token":"<jwt>"}}"#,
    },
    Spec {
        name: "create_channel",
        category: "channel",
        description: "Creates a channel (and its room, if new)",
        permission: Some(Permission::ChannelManagement),
        system_only: None,
        arguments: &[
            ROOM,
            arg("channel", true, "channel name (or `name`)"),
            arg("description", false, "a description (at most 1024 bytes)"),
        ],
        example: r#"{"type":"command","command":"create_channel","args":{"room":"science","channel":"general"}}"#,
    },
    Spec {
        name: "delete_channel",
        category: "channel",
        description: "Deletes a channel and its history; refused while it has members unless an admin forces it",
        permission: Some(Permission::ChannelManagement),
        system_only: None,
        arguments: &[
            ROOM,
            CHANNEL,
            arg(
                "force",
                false,
                "admins only: delete even with members, who are removed",
            ),
        ],
        example: r#"{"type":"command","command":"delete_channel","args":{"room":"science","channel":"general"}}"#,
    },
    Spec {
        name: "join_channel",
        category: "channel",
        description: "Joins a channel, creating it on demand; with since_id (or since_offset and epoch), recovers the messages missed",
        permission: Some(Permission::ChannelAccess),
        system_only: None,
        arguments: &[
            ROOM,
            CHANNEL,
            arg(
                "since_id",
                false,
                "id of the last message seen: the ones after it are delivered first",
            ),
            arg(
                "since_offset",
                false,
                "offset of the last message seen (with epoch)",
            ),
            arg("epoch", false, "the history epoch of since_offset"),
        ],
        example: r#"{"type":"command","command":"join_channel","args":{"room":"science","channel":"general"}}"#,
    },
    Spec {
        name: "leave_channel",
        category: "channel",
        description: "Leaves a channel",
        permission: Some(Permission::ChannelAccess),
        system_only: None,
        arguments: &[ROOM, CHANNEL],
        example: r#"{"type":"command","command":"leave_channel","args":{"room":"science","channel":"general"}}"#,
    },
    Spec {
        name: "list_channels",
        category: "room",
        description: "The channels of a room by name, with their member counts, a page at a time",
        permission: Some(Permission::ChannelView),
        system_only: None,
        arguments: &[
            ROOM,
            arg(
                "after",
                false,
                "the `next_after` of the previous page: list the channels after this name",
            ),
            arg(
                "limit",
                false,
                "at most this many (default 100, at most 1000; a page also stops at 512 KiB)",
            ),
        ],
        example: r#"{"type":"command","command":"list_channels","args":{"room":"science"}}"#,
    },
    Spec {
        name: "channel_info",
        category: "channel",
        description: "A channel's members, creation, last activity and message count",
        permission: Some(Permission::ChannelView),
        system_only: None,
        arguments: &[ROOM, CHANNEL],
        example: r#"{"type":"command","command":"channel_info","args":{"room":"science","channel":"general"}}"#,
    },
    Spec {
        name: "history",
        category: "channel",
        description: "A channel's stored messages, oldest first, with their offsets",
        permission: Some(Permission::ChannelView),
        system_only: None,
        arguments: &[
            ROOM,
            CHANNEL,
            arg(
                "limit",
                false,
                "at most this many (default 50, at most 1000)",
            ),
            arg(
                "since",
                false,
                "ISO 8601: messages stored at or after it (else the last ones)",
            ),
            arg("until", false, "ISO 8601: messages stored before it"),
        ],
        example: r#"{"type":"command","command":"history","args":{"room":"science","channel":"general","limit":20}}"#,
    },
    Spec {
        name: "op.casil.get",
        category: "casil",
        description: "The live CASIL policy, with its version",
        permission: None,
        system_only: None,
        arguments: &[],
        example: r#"{"type":"command","command":"op.casil.get"}"#,
    },
    Spec {
        name: "op.casil.reload",
        category: "casil",
        description: "Changes the live CASIL policy on every policy replica; the arguments are the settings to change (as op.casil.get names them), the rest is kept",
        permission: None,
        system_only: Some(
            "Only the system authority can reload the CASIL policy: it applies to every tenant (use the service token, e.g. arqon policy reload)",
        ),
        arguments: &[
            arg("mode", false, "monitor or enforce"),
            arg("enabled", false, "inspect at all"),
            arg(
                "block_on_probable_secret",
                false,
                "block (in enforce mode) payloads with a probable secret",
            ),
            arg(
                "redaction_patterns",
                false,
                "secret patterns (regexes), a string or a list",
            ),
        ],
        example: r#"{"type":"command","command":"op.casil.reload","args":{"mode":"enforce","block_on_probable_secret":true}}"#,
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
    use std::collections::HashSet;

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
}
