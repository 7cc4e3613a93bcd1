//! Who sent an envelope, as established by the edge from the verified token.

use std::fmt;

use crate::{ClientId, EdgeId, TenantId};

/// A role claim. Any string is kept (clients may use their own roles), but only `admin`
/// (in any case) grants administrative commands.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Role(String);

impl Role {
    /// The role of a token without a `role` claim, and of connections when authentication
    /// is off.
    pub fn user() -> Self {
        Self("user".to_owned())
    }

    pub fn admin() -> Self {
        Self("admin".to_owned())
    }

    pub fn new(role: impl Into<String>) -> Self {
        Self(role.into())
    }

    pub fn is_admin(&self) -> bool {
        self.0.eq_ignore_ascii_case("admin")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The identity the edge stamps on every envelope it accepts. Services trust it because
/// only the edge writes it; a client cannot set any of it from a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub tenant: TenantId,
    pub client_id: ClientId,
    /// The token's `sub` claim, when it had one.
    pub subject: Option<String>,
    pub role: Role,
    /// The edge holding the connection: replies to this client go there.
    pub edge_id: EdgeId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admin_is_admin() {
        assert!(Role::new("ADMIN").is_admin());
        assert!(Role::admin().is_admin());
        assert!(!Role::user().is_admin());
        assert!(!Role::new("administrator").is_admin());
    }
}
