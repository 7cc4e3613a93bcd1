//! The lane's settings (`ARQONBUS_OMEGA_*`), checked by their parsers.

use arqon_protocol::{ChannelName, NameError, RoomName, Topic};

/// Default of `ARQONBUS_OMEGA_LAB_ROOM`.
const LAB_ROOM: &str = "omega-lab";
/// Default of `ARQONBUS_OMEGA_LAB_CHANNEL`.
const LAB_CHANNEL: &str = "signals";
/// Default of `ARQONBUS_OMEGA_MAX_EVENTS`.
const MAX_EVENTS: u32 = 1000;
/// Default of `ARQONBUS_OMEGA_MAX_SUBSTRATES`.
const MAX_SUBSTRATES: u32 = 128;
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
        default_value = LAB_ROOM,
        value_parser = |text: &str| RoomName::parse(text.trim()).map_err(named),
    )]
    pub lab_room: RoomName,

    /// The channel of that room.
    #[arg(
        id = "omega_lab_channel",
        long = "omega-lab-channel",
        env = "ARQONBUS_OMEGA_LAB_CHANNEL",
        default_value = LAB_CHANNEL,
        value_parser = |text: &str| ChannelName::parse(text.trim()).map_err(named),
    )]
    pub lab_channel: ChannelName,

    /// Events kept (the newest; 1 to 100000).
    #[arg(
        id = "omega_max_events",
        long = "omega-max-events",
        env = "ARQONBUS_OMEGA_MAX_EVENTS",
        default_value_t = MAX_EVENTS,
        value_parser = clap::value_parser!(u32).range(1..=MOST_EVENTS),
        allow_negative_numbers = true,
    )]
    pub max_events: u32,

    /// Substrates that may be registered at once (1 to 10000).
    #[arg(
        id = "omega_max_substrates",
        long = "omega-max-substrates",
        env = "ARQONBUS_OMEGA_MAX_SUBSTRATES",
        default_value_t = MAX_SUBSTRATES,
        value_parser = clap::value_parser!(u32).range(1..=MOST_SUBSTRATES),
        allow_negative_numbers = true,
    )]
    pub max_substrates: u32,
}

impl Default for OmegaSettings {
    fn default() -> Self {
        arqon_service::settings::defaults()
    }
}

/// A name's problem, as clap shows it after the flag.
fn named(error: NameError) -> String {
    error.to_string()
}

/// The lane's settings, as the lane uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LaneConfig {
    pub(crate) enabled: bool,
    pub(crate) lab: Topic,
    pub(crate) max_events: usize,
    pub(crate) max_substrates: usize,
}

impl From<&OmegaSettings> for LaneConfig {
    fn from(settings: &OmegaSettings) -> Self {
        Self {
            enabled: settings.enabled,
            lab: Topic::new(settings.lab_room.clone(), settings.lab_channel.clone()),
            max_events: settings.max_events as usize,
            max_substrates: settings.max_substrates as usize,
        }
    }
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

    fn parse(args: &[&str]) -> Result<OmegaSettings, String> {
        Cli::try_parse_from(std::iter::once("arqonbus").chain(args.iter().copied()))
            .map(|cli| cli.omega)
            .map_err(|e| e.to_string())
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
        assert_eq!(parse(&[]).unwrap(), OmegaSettings::default());
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
        ])
        .unwrap();
        assert_eq!(
            LaneConfig::from(&set),
            LaneConfig {
                enabled: true,
                lab: Topic::parse("lab-2", "pulses").unwrap(),
                max_events: 7,
                max_substrates: 3,
            }
        );
        assert!(!parse(&["--omega-enabled", "false"]).unwrap().enabled);
        assert!(parse(&["--omega-enabled", "maybe"]).is_err());
    }

    /// The original's acceptance scenario 44: empty or unsafe names and limits out of
    /// range, each refused naming its flag.
    #[test]
    fn bad_settings_are_refused_by_name() {
        for (flag, value, problem) in [
            ("--omega-lab-room", " ", "room"),
            (
                "--omega-lab-room",
                "omega.lab",
                "Invalid room name 'omega.lab'",
            ),
            ("--omega-lab-channel", "", "channel"),
            ("--omega-lab-channel", "sig nals", "Invalid channel name"),
            ("--omega-max-events", "0", "1..=100000"),
            ("--omega-max-events", "100001", "1..=100000"),
            ("--omega-max-substrates", "-3", "--omega-max-substrates"),
            ("--omega-max-substrates", "10001", "1..=10000"),
        ] {
            let error = parse(&[flag, value]).unwrap_err();
            assert!(error.contains(flag), "{flag} {value:?}: {error}");
            assert!(error.contains(problem), "{flag} {value:?}: {error}");
        }
    }

    /// The original's acceptance scenario 45: the checked settings keep the five values (`op.omega.status` exports them).
    #[test]
    fn the_defaults_are_the_originals() {
        let config = LaneConfig::from(&OmegaSettings::default());
        assert!(!config.enabled);
        assert_eq!(config.lab.to_string(), "omega-lab:signals");
        assert_eq!((config.max_events, config.max_substrates), (1000, 128));
    }
}
