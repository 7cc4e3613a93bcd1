//! `arqonbus config <command>`: the settings `<command>` would run with, read from the
//! same flags and `ARQONBUS_*` variables by the same parsers, printed as an env file or
//! JSON. Secrets (every flag whose variable's value help hides) are masked.

use clap::ArgMatches;
use serde_json::{Map, Value};

/// What a set secret prints as.
pub const MASK: &str = "********";

/// One setting: its variable and its value (`None`: unset, no default).
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub env: String,
    pub value: Option<Value>,
}

/// The settings of `command` (a subcommand of `arqonbus`), as `matches` parsed them, in
/// the order of its help; each variable once (standalone reads `ARQONBUS_POLICY_URL` for
/// the dispatcher and the operators alike).
pub fn settings(command: &clap::Command, matches: &ArgMatches) -> Vec<Setting> {
    let mut seen = std::collections::HashSet::new();
    let mut settings = Vec::new();
    for arg in command.get_arguments() {
        let Some(env) = arg.get_env().and_then(|e| e.to_str()) else {
            continue;
        };
        if !seen.insert(env.to_owned()) {
            continue;
        }
        let id = arg.get_id().as_str();
        let value = match matches.value_source(id) {
            None => None,
            Some(_) if arg.is_hide_env_values_set() => Some(Value::from(MASK)),
            Some(_) => value(matches, id),
        };
        settings.push(Setting {
            env: env.to_owned(),
            value,
        });
    }
    settings
}

/// The parsed value: booleans and numbers as their parsers read them, anything else as
/// given (a list joined by commas).
fn value(matches: &ArgMatches, id: &str) -> Option<Value> {
    macro_rules! typed {
        ($($t:ty),*) => {$(
            if let Ok(Some(v)) = matches.try_get_one::<$t>(id) {
                return Some(Value::from(*v));
            }
        )*};
    }
    typed!(bool, u8, u16, u32, u64, usize, i64, f64);
    let raw: Vec<String> = matches
        .get_raw(id)?
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    Some(Value::from(raw.join(",")))
}

/// `ARQONBUS_X=value` lines (unset: `ARQONBUS_X=`, which the services read as unset).
pub fn env_file(command: &str, settings: &[Setting]) -> String {
    let mut text = format!(
        "# arqonbus {command}: the settings it runs with (flags, then ARQONBUS_* variables, then defaults); secrets masked\n"
    );
    for setting in settings {
        let value = match &setting.value {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        text.push_str(&format!("{}={value}\n", setting.env));
    }
    text
}

/// One JSON object, variable to value (`null`: unset).
pub fn json(settings: &[Setting]) -> String {
    let object: Map<String, Value> = settings
        .iter()
        .map(|s| (s.env.clone(), s.value.clone().unwrap_or(Value::Null)))
        .collect();
    Value::Object(object).to_string()
}

/// The `arqonbus config` subcommand's output for `matches` of the whole command line.
pub fn render(matches: &ArgMatches) -> Option<String> {
    let (_, config) = matches.subcommand().filter(|(name, _)| *name == "config")?;
    let (name, service) = config.subcommand()?;
    let root = <crate::cli::Cli as clap::CommandFactory>::command();
    let command = root.find_subcommand("config")?.find_subcommand(name)?;
    let settings = settings(command, service);
    Some(if config.get_flag("json") {
        json(&settings)
    } else {
        env_file(name, &settings)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn rendered(args: &[&str]) -> String {
        let matches = crate::cli::Cli::command()
            .try_get_matches_from(args)
            .unwrap();
        render(&matches).unwrap()
    }

    #[test]
    fn flags_defaults_and_masked_secrets() {
        let text = rendered(&[
            "arqonbus",
            "config",
            "edge",
            "--max-connections",
            "77",
            "--jwt-secret",
            "s3cret-value",
            "--enable-auth",
            "yes",
        ]);
        assert!(text.contains("\nARQONBUS_MAX_CONNECTIONS=77\n"), "{text}");
        assert!(text.contains("\nARQONBUS_ENABLE_AUTH=true\n"), "{text}");
        assert!(
            text.contains("\nARQONBUS_AUTH_JWT_SECRET=********\n"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            text.contains("\nARQONBUS_PING_INTERVAL_SECONDS=20\n"),
            "{text}"
        );
        assert!(
            text.contains("\nARQONBUS_AUTH_JWT_ALGORITHM=HS256\n"),
            "{text}"
        );
        assert!(text.contains("\nARQONBUS_NATS_URL=\n"), "{text}");
        // Unset secrets say so, not the mask.
        assert!(text.contains("\nARQONBUS_SERVICE_TOKEN=\n"), "{text}");
        // The edge's command has no policy settings.
        assert!(!text.contains("ARQONBUS_CASIL_MODE"), "{text}");
    }

    #[test]
    fn json_has_typed_values_and_every_variable_once() {
        let text = rendered(&[
            "arqonbus",
            "config",
            "standalone",
            "--json",
            "--nats-token",
            "t0k",
        ]);
        let object: Map<String, Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(object["ARQONBUS_MAX_MESSAGE_SIZE"], 1_048_576);
        assert_eq!(object["ARQONBUS_CASIL_ENABLED"], false);
        assert_eq!(
            object["ARQONBUS_CASIL_REDACTION_PATHS"],
            "password,token,secret"
        );
        assert_eq!(object["ARQONBUS_NATS_TOKEN"], MASK);
        assert_eq!(object["ARQONBUS_POLICY_URL"], Value::Null);
        assert!(!text.contains("t0k"));
        assert!(object.contains_key("ARQONBUS_WEBHOOK_MAX_ATTEMPTS"));
    }

    #[test]
    fn every_secret_is_masked() {
        let root = crate::cli::Cli::command();
        let standalone = root
            .find_subcommand("config")
            .and_then(|c| c.find_subcommand("standalone"))
            .unwrap();
        let mut masked: Vec<_> = standalone
            .get_arguments()
            .filter(|a| a.is_hide_env_values_set())
            .filter_map(|a| a.get_env()?.to_str())
            .collect();
        masked.sort_unstable();
        assert_eq!(
            masked,
            [
                "ARQONBUS_AUTH_JWT_PUBLIC_KEY",
                "ARQONBUS_AUTH_JWT_SECRET",
                "ARQONBUS_NATS_NKEY_SEED",
                "ARQONBUS_NATS_PASSWORD",
                "ARQONBUS_NATS_TOKEN",
                "ARQONBUS_SERVICE_TOKEN",
            ]
        );
    }
}
