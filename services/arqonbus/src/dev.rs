//! Development credentials for `arqonbus standalone` started without a secret.

use std::time::Duration;

use arqon_sdk::token::{Claims, mint_hs256};

/// How long the printed development token is valid.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// A secret generated for this run and a token signed with it.
#[derive(Debug, Clone)]
pub struct DevCredentials {
    pub secret: String,
    pub token: String,
}

/// Generates a random secret and an admin token for tenant `default`, valid for a day.
/// The secret lives only in this process: restart and the token stops working.
pub fn dev_credentials() -> anyhow::Result<DevCredentials> {
    let secret = format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    );
    let claims = Claims::new("developer", "default", "admin", DEV_TOKEN_TTL);
    let token = mint_hs256(secret.as_bytes(), &claims)?;
    Ok(DevCredentials { secret, token })
}

/// Printed on stdout (not in the logs) so a developer can connect at once.
#[allow(clippy::print_stdout)]
pub(crate) fn print_banner(addr: &str, token: &str) {
    println!();
    println!("ArqonBus standalone is running with a generated development secret.");
    println!("Connect with this token (tenant `default`, role `admin`, valid 24 hours):");
    println!();
    println!("  ws://{addr}/ws?token={token}");
    println!();
    println!(
        "The secret changes on every start; set ARQONBUS_AUTH_JWT_SECRET to keep tokens valid."
    );
    println!();
}
