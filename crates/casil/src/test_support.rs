//! Shorthands for the tests: an engine from a YAML snippet, and inputs.

use crate::{Engine, Input, Kind, Policy};

/// Compiles a policy written as YAML; the tests' policies are meant to be valid.
pub(crate) fn engine(yaml: &str) -> Engine {
    let policy = Policy::from_yaml(yaml).unwrap_or_else(|err| panic!("{yaml}: {err}"));
    Engine::compile(policy).unwrap_or_else(|err| panic!("{yaml}: {err}"))
}

pub(crate) fn input<'a>(
    kind: Kind,
    room: Option<&'a str>,
    channel: Option<&'a str>,
    payload: &'a str,
) -> Input<'a> {
    Input {
        kind,
        room,
        channel,
        payload,
    }
}

pub(crate) fn message<'a>(
    room: Option<&'a str>,
    channel: Option<&'a str>,
    payload: &'a str,
) -> Input<'a> {
    input(Kind::Message, room, channel, payload)
}
