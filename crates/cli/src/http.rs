//! `arqon status` and `arqon version`: one GET, the JSON printed.

use std::time::Duration;

use anyhow::bail;
use serde_json::Value;

use crate::output::pretty_json;

#[derive(Debug, clap::Args)]
pub(crate) struct HttpArgs {
    /// The HTTP endpoints of an edge or a standalone process.
    #[arg(
        long,
        env = "ARQONBUS_HTTP_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    http_url: String,
    #[arg(long, default_value_t = 5.0)]
    timeout_seconds: f64,
}

/// GETs `path` and prints the JSON object it returns.
pub(crate) async fn get(args: &HttpArgs, path: &str) -> anyhow::Result<()> {
    let url = format!("{}{path}", args.http_url.trim_end_matches('/'));
    let body = fetch(
        &url,
        Duration::from_secs_f64(args.timeout_seconds.max(0.001)),
    )
    .await?;
    println!("{}", pretty_json(&body));
    Ok(())
}

async fn fetch(url: &str, timeout: Duration) -> anyhow::Result<Value> {
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let response = match client.get(url).send().await {
        Ok(response) => response,
        Err(e) => bail!("Failed to reach {url}: {}", root_cause(&e)),
    };
    let status = response.status();
    let text = match response.text().await {
        Ok(text) => text,
        Err(e) => bail!("Failed to reach {url}: {}", root_cause(&e)),
    };
    if !status.is_success() {
        bail!("HTTP {} calling {url}: {text}", status.as_u16());
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => bail!("Expected JSON object from {url}"),
        Err(e) => bail!("Invalid JSON from {url}: {e}"),
    }
}

/// The innermost cause: "connection refused" rather than "error sending request".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
