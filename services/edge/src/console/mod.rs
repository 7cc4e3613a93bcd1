//! The admin console (ADR 020), served on the WebSocket listener so that it shares the
//! origin of `/ws` (and the port a load balancer exposes):
//!
//! - `GET /console/` and its files: static pages built into the binary (`assets.rs`),
//!   with a strict Content-Security-Policy. They read nothing by themselves.
//! - `POST /console/api/session`: checks credentials exactly as an upgrade does and says
//!   who they make the caller (tenant, role, authority), so the login page can tell a bad
//!   token from a closed door before it opens a WebSocket.
//! - `/console/feed` (`feed.rs`): bounded WebSocket feeds of what no command returns,
//!   CASIL decisions and dead webhook deliveries, for admins.
//!
//! Everything the console shows or does otherwise is a command on `/ws` with the user's
//! own credentials: the dispatcher decides, as for any client. The console's pages send
//! the credentials in a WebSocket subprotocol (`auth::extract_credential`), never in a
//! URL or a cookie, so there is no ambient credential a forged request could use.

mod assets;
mod feed;
mod metrics;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tracing::info;

use crate::Shared;
use crate::auth::{self, Credential};

pub(crate) use metrics::ConsoleMetrics;

/// The policy of every console response: its own files only, a WebSocket to its own
/// origin, no inline script or style, no framing, no forms posted elsewhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(index))
        .route("/console/api/session", post(session))
        .route("/console/feed", any(feed::upgrade))
        .route("/console/{*path}", get(asset))
        .with_state(shared)
}

/// The headers every console response carries.
fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ] {
        headers.insert(name, value);
    }
    response
}

async fn index() -> Response {
    asset(Path("index.html".to_owned())).await
}

async fn asset(Path(path): Path<String>) -> Response {
    match assets::find(&path) {
        Some(asset) => secured(
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(asset.content_type),
                )],
                asset.body,
            )
                .into_response(),
        ),
        None => secured((StatusCode::NOT_FOUND, "Not found").into_response()),
    }
}

/// What the login page sends: a JWT, or the service token and a tenant.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    token: Option<String>,
    service_token: Option<String>,
    tenant: Option<String>,
}

/// Who the credentials make the caller, as an upgrade would; 401 as an upgrade's.
async fn session(
    State(shared): State<Arc<Shared>>,
    login: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let console = &shared.metrics.console;
    // A JSON body only: a form another site posts cannot be one without the browser
    // asking this origin first.
    let Ok(Json(login)) = login else {
        console.session(false);
        return secured(
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "Bad Request", "details": "Send a JSON object: {\"token\"} or {\"service_token\", \"tenant\"}"})),
            )
                .into_response(),
        );
    };
    let credential = match (login.token, login.service_token) {
        (_, Some(token)) => Some(Credential::Service {
            token,
            tenant: login.tenant,
        }),
        (Some(token), None) => Some(Credential::Token(token)),
        (None, None) => None,
    };
    let operator = matches!(credential, Some(Credential::Service { .. }));
    let verified = auth::authenticate(shared.auth.as_ref(), shared.operator.as_ref(), credential)
        .await
        .inspect_err(|e| shared.metrics.auth_failure(e.reason));
    match verified {
        Ok(grant) => {
            console.session(true);
            secured(
                Json(json!({
                    "tenant": grant.tenant.as_str(),
                    "subject": grant.subject,
                    "role": grant.role.as_str(),
                    "admin": grant.role.is_admin(),
                    "system": grant.system,
                    "operator": operator,
                    "expires_at": grant.expires_at,
                    "authentication": shared.auth.is_some(),
                }))
                .into_response(),
            )
        }
        Err(e) => {
            info!(reason = %e, "console login refused");
            console.session(false);
            secured(e.into_response())
        }
    }
}

#[cfg(test)]
mod tests;
