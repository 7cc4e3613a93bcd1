//! The lane's settings (`ARQONBUS_OMEGA_*`), checked once at start.

use arqon_protocol::{ChannelName, RoomName, Topic};

/// Most events the lane may be told to keep: every list reads them all.
const MOST_EVENTS: i64 = 100_000;
/// Most substrates the lane may be told to allow.
const MOST_SUBSTRATES: i64 = 10_000;

/// Settings of the Tier-Omega experimental lane.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct OmegaSettings {
    /// Turns the lane on (`op.omega.status` answers either way).
    #[arg(
        id = "omega_enabled",
        long = "omega-enabled",
        env = "ARQONBUS_OMEGA_ENABLED",
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub enabled: bool,

    /// The room each emitted event is broadcast to (in the emitting admin's tenant).
    #[arg(
        id = "omega_lab_room",
        long = "omega-lab-room",
        env = "ARQONBUS_OMEGA_LAB_ROOM",
        default_value = "omega-lab"
    )]
    pub lab_room: String,

    /// The channel of that room.
    #[arg(
        id = "omega_lab_channel",
        long = "omega-lab-channel",
        env = "ARQONBUS_OMEGA_LAB_CHANNEL",
        default_value = "signals"
    )]
    pub lab_channel: String,

    /// Events kept (the newest; 1 to 100000).
    #[arg(
        id = "omega_max_events",
        long = "omega-max-events",
        env = "ARQONBUS_OMEGA_MAX_EVENTS",
        default_value_t = 1000,
        allow_negative_numbers = true
    )]
    pub max_events: i64,

    /// Substrates that may be registered at once (1 to 10000).
    #[arg(
        id = "omega_max_substrates",
        long = "omega-max-substrates",
        env = "ARQONBUS_OMEGA_MAX_SUBSTRATES",
        default_value_t = 128,
        allow_negative_numbers = true
    )]
    pub max_substrates: i64,
}

impl Default for OmegaSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            lab_room: "omega-lab".to_owned(),
            lab_channel: "signals".to_owned(),
            max_events: 1000,
            max_substrates: 128,
        }
    }
}

/// The lane's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LaneConfig {
    pub(crate) enabled: bool,
    pub(crate) lab: Topic,
    pub(crate) max_events: usize,
    pub(crate) max_substrates: usize,
}

impl LaneConfig {
    /// Checks `settings`; every problem is reported, joined by `; `.
    pub(crate) fn from_settings(settings: &OmegaSettings) -> Result<Self, String> {
        let mut errors = Vec::new();
        let room = name(
            "lab_room",
            "room",
            &settings.lab_room,
            RoomName::parse,
            &mut errors,
        );
        let channel = name(
            "lab_channel",
            "channel",
            &settings.lab_channel,
            ChannelName::parse,
            &mut errors,
        );
        let max_events = bounded("max_events", settings.max_events, MOST_EVENTS, &mut errors);
        let max_substrates = bounded(
            "max_substrates",
            settings.max_substrates,
            MOST_SUBSTRATES,
            &mut errors,
        );
        match (room, channel, max_events, max_substrates) {
            (Some(room), Some(channel), Some(max_events), Some(max_substrates))
                if errors.is_empty() =>
            {
                Ok(Self {
                    enabled: settings.enabled,
                    lab: Topic::new(room, channel),
                    max_events,
                    max_substrates,
                })
            }
            _ => Err(errors.join("; ")),
        }
    }
}

fn name<T, E: std::fmt::Display>(
    setting: &str,
    kind: &str,
    text: &str,
    parse: impl Fn(&str) -> Result<T, E>,
    errors: &mut Vec<String>,
) -> Option<T> {
    let text = text.trim();
    if text.is_empty() {
        errors.push(format!("Tier-Omega {setting} must be non-empty"));
        return None;
    }
    parse(text)
        .map_err(|e| {
            errors.push(format!(
                "Tier-Omega {setting} must be a valid {kind} name: {e}"
            ))
        })
        .ok()
}

fn bounded(setting: &str, value: i64, most: i64, errors: &mut Vec<String>) -> Option<usize> {
    if value < 1 {
        errors.push(format!("Tier-Omega {setting} must be >= 1"));
        return None;
    }
    if value > most {
        errors.push(format!("Tier-Omega {setting} must be <= {most}"));
        return None;
    }
    usize::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        omega: OmegaSettings,
    }

    fn parse(args: &[&str]) -> OmegaSettings {
        Cli::try_parse_from(std::iter::once("arqonbus").chain(args.iter().copied()))
            .unwrap()
            .omega
    }

    /// The original's acceptance scenario 43: the five settings come from their environment variables (or flags), with
    /// the original's defaults.
    #[test]
    fn the_environment_populates_the_five_settings() {
        let command = Cli::command();
        let env = |id: &str| {
            command
                .get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_env())
                .and_then(|e| e.to_str())
                .map(str::to_owned)
        };
        for (id, var) in [
            ("omega_enabled", "ARQONBUS_OMEGA_ENABLED"),
            ("omega_lab_room", "ARQONBUS_OMEGA_LAB_ROOM"),
            ("omega_lab_channel", "ARQONBUS_OMEGA_LAB_CHANNEL"),
            ("omega_max_events", "ARQONBUS_OMEGA_MAX_EVENTS"),
            ("omega_max_substrates", "ARQONBUS_OMEGA_MAX_SUBSTRATES"),
        ] {
            assert_eq!(env(id).as_deref(), Some(var), "{id}");
        }
        assert_eq!(parse(&[]), OmegaSettings::default());
        let set = parse(&[
            "--omega-enabled",
            "true",
            "--omega-lab-room",
            "lab-2",
            "--omega-lab-channel",
            "pulses",
            "--omega-max-events",
            "7",
            "--omega-max-substrates",
            "3",
        ]);
        assert_eq!(
            LaneConfig::from_settings(&set).unwrap(),
            LaneConfig {
                enabled: true,
                lab: Topic::parse("lab-2", "pulses").unwrap(),
                max_events: 7,
                max_substrates: 3,
            }
        );
        assert!(!parse(&["--omega-enabled", "false"]).enabled);
        assert!(Cli::try_parse_from(["arqonbus", "--omega-enabled", "maybe"]).is_err());
    }

    /// The original's acceptance scenario 44: empty names and zero limits, each with its message.
    #[test]
    fn bad_settings_are_reported_together() {
        let bad = parse(&[
            "--omega-lab-room",
            " ",
            "--omega-lab-channel",
            "",
            "--omega-max-events",
            "0",
            "--omega-max-substrates",
            "-3",
        ]);
        let error = LaneConfig::from_settings(&bad).unwrap_err();
        assert_eq!(
            error,
            "Tier-Omega lab_room must be non-empty; Tier-Omega lab_channel must be non-empty; \
             Tier-Omega max_events must be >= 1; Tier-Omega max_substrates must be >= 1"
        );
        let unsafe_names = OmegaSettings {
            lab_room: "omega.lab".to_owned(),
            lab_channel: "sig nals".to_owned(),
            max_events: MOST_EVENTS + 1,
            ..OmegaSettings::default()
        };
        let error = LaneConfig::from_settings(&unsafe_names).unwrap_err();
        assert!(
            error.starts_with(
                "Tier-Omega lab_room must be a valid room name: Invalid room name 'omega.lab'"
            ),
            "{error}"
        );
        assert!(
            error.contains("Tier-Omega lab_channel must be a valid channel name"),
            "{error}"
        );
        assert!(
            error.contains("Tier-Omega max_events must be <= 100000"),
            "{error}"
        );
    }

    /// The original's acceptance scenario 45: the checked settings keep the five values (`op.omega.status` exports them).
    #[test]
    fn the_defaults_are_the_originals() {
        let config = LaneConfig::from_settings(&OmegaSettings::default()).unwrap();
        assert!(!config.enabled);
        assert_eq!(config.lab.to_string(), "omega-lab:signals");
        assert_eq!((config.max_events, config.max_substrates), (1000, 128));
    }
}
