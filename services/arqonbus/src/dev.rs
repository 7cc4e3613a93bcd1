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
