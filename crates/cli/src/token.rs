//! `arqon token`: a development JWT (HS256) with the claims the edge reads.

use std::time::Duration;

use anyhow::Context as _;

use arqon_sdk::token::{Claims, mint_hs256};

#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    /// The bus's HS256 secret.
    #[arg(long, env = "ARQONBUS_AUTH_JWT_SECRET", hide_env_values = true)]
    secret: String,
    #[arg(long, default_value = "dev")]
    sub: String,
    #[arg(long, default_value = "default")]
    tenant: String,
    /// `admin` or `user`.
    #[arg(long, default_value = "user")]
    role: String,
    /// Add the `arqonbus:system` scope: the fleet-wide authority, on edges that honour it
    /// (`ARQONBUS_AUTH_SYSTEM_SCOPE=true`).
    #[arg(long)]
    system: bool,
    /// Seconds the token is valid.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// The token and its claims as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: TokenArgs) -> anyhow::Result<()> {
    let mut claims = Claims::new(
        &args.sub,
        &args.tenant,
        &args.role,
        Duration::from_secs(args.ttl),
    );
    if args.system {
        claims.scope = Some(arqon_sdk::token::SYSTEM_SCOPE.to_owned());
    }
    let token = mint_hs256(args.secret.as_bytes(), &claims).context("signing the token")?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"token": token, "sub": claims.sub, "tenant_id": claims.tenant_id,
                               "role": claims.role, "scope": claims.scope, "expires_at": claims.exp})
        );
    } else {
        println!("{token}");
    }
    Ok(())
}
