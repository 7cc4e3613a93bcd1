//! `arqonbus healthcheck`: one GET on the local service's `/ready` (or `/health`), for
//! container health checks in images without a shell or an HTTP client.

use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::cli::HealthcheckArgs;

/// The body of a 200 answer; an error naming the status and the service's reasons (the
/// body of a 503) or why nothing answered.
pub async fn check(args: &HealthcheckArgs) -> anyhow::Result<String> {
    let url = format!("{}{}", args.http.local_url(), args.path);
    // reqwest is built without a provider of its own: the process's one (ring).
    arqon_edge::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_seconds.max(1)))
        .build()
        .context("building the HTTP client")?;
    let response = match client.get(&url).send().await {
        Ok(response) => response,
        Err(e) => bail!("no answer from {url}: {}", root_cause(&e)),
    };
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{url} answered {}: {}", status.as_u16(), body.trim());
    }
    Ok(body)
}

/// The innermost cause: "Connection refused" rather than "error sending request".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
