//! The console's operator login: the service token, presented on the WebSocket port,
//! gives the system authority in the tenant the operator names, for a bounded session.
//! Off unless `ARQONBUS_CONSOLE_OPERATOR_LOGIN=true` (ADR 020).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arqon_proto::grpc::ServiceToken;
use arqon_protocol::{Role, TenantId};

use super::{AuthError, Grant, Reason};
use crate::EdgeError;
use crate::config::EdgeConfig;

/// The shortest service token the operator login accepts: the WebSocket port is usually
/// reachable by anyone, so the token must not be guessable.
const MIN_TOKEN_LEN: usize = 24;

/// The `sub` of an operator's connections (in presence and `updated_by`).
pub(crate) const OPERATOR_SUBJECT: &str = "operator";

/// Checks the service token presented by an operator.
pub(crate) struct OperatorLogin {
    token: ServiceToken,
    session: Duration,
}

impl std::fmt::Debug for OperatorLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorLogin")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl OperatorLogin {
    /// The login `config` asks for: `None` when it is off. On without a service token,
    /// or with a short one, is a configuration error naming both settings.
    pub(crate) fn from_config(config: &EdgeConfig) -> Result<Option<Self>, EdgeError> {
        if !config.console_operator_login {
            return Ok(None);
        }
        let token = config.service_token.clone().ok_or_else(|| {
            EdgeError::Config(
                "ARQONBUS_CONSOLE_OPERATOR_LOGIN=true needs ARQONBUS_SERVICE_TOKEN: the operator logs in with it"
                    .to_owned(),
            )
        })?;
        if token.expose().len() < MIN_TOKEN_LEN {
            return Err(EdgeError::Config(format!(
                "ARQONBUS_CONSOLE_OPERATOR_LOGIN=true needs an ARQONBUS_SERVICE_TOKEN of at least {MIN_TOKEN_LEN} characters: it is then accepted on the WebSocket port"
            )));
        }
        Ok(Some(Self {
            token,
            session: config.console_operator_session(),
        }))
    }

    /// The grant of an operator who presented `presented` for `tenant`: an admin of the
    /// tenant with the system authority, until the session ends.
    pub(crate) fn grant(&self, presented: &str, tenant: Option<&str>) -> Result<Grant, AuthError> {
        if !self.token.matches(presented) {
            return Err(AuthError::new(
                Reason::BadServiceToken,
                "the token presented for an operator login is not the service token",
            ));
        }
        let tenant = tenant.ok_or_else(|| {
            AuthError::new(Reason::BadClaims, "an operator login names no tenant")
        })?;
        let tenant = TenantId::parse(tenant)
            .map_err(|e| AuthError::new(Reason::BadClaims, format!("operator login: {e}")))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(Grant {
            tenant,
            subject: Some(OPERATOR_SUBJECT.to_owned()),
            role: Role::admin(),
            expires_at: Some((now + self.session).as_secs()),
            permissions: None,
            system: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "a-service-token-long-enough-0123";

    fn config(on: bool, token: Option<&str>) -> EdgeConfig {
        EdgeConfig {
            console_operator_login: on,
            service_token: token.map(ServiceToken::new),
            ..EdgeConfig::with_secret("s")
        }
    }

    #[test]
    fn off_by_default_and_refused_at_start_without_a_long_token() {
        assert!(
            OperatorLogin::from_config(&EdgeConfig::default())
                .unwrap()
                .is_none()
        );
        assert!(
            OperatorLogin::from_config(&config(false, Some(TOKEN)))
                .unwrap()
                .is_none()
        );
        let missing = OperatorLogin::from_config(&config(true, None)).unwrap_err();
        assert!(
            missing.to_string().contains("ARQONBUS_SERVICE_TOKEN"),
            "{missing}"
        );
        let short = OperatorLogin::from_config(&config(true, Some("short"))).unwrap_err();
        assert!(short.to_string().contains("at least 24"), "{short}");
    }

    #[test]
    fn the_service_token_grants_the_system_authority_in_the_named_tenant() {
        let login = OperatorLogin::from_config(&config(true, Some(TOKEN)))
            .unwrap()
            .unwrap();
        let grant = login.grant(TOKEN, Some("acme")).unwrap();
        assert_eq!(grant.tenant.as_str(), "acme");
        assert!(grant.system && grant.role.is_admin());
        assert_eq!(grant.subject.as_deref(), Some(OPERATOR_SUBJECT));
        assert!(grant.expires_at.is_some());
        let wrong = login.grant("not-the-token", Some("acme")).unwrap_err();
        assert_eq!(wrong.reason, Reason::BadServiceToken);
        let no_tenant = login.grant(TOKEN, None).unwrap_err();
        assert_eq!(no_tenant.reason, Reason::BadClaims);
        let bad_tenant = login.grant(TOKEN, Some("a.b")).unwrap_err();
        assert_eq!(bad_tenant.reason, Reason::BadClaims);
    }
}
