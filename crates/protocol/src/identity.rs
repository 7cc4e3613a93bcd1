//! Who sent an envelope, as established by the edge from the verified token.

use std::fmt;

use crate::{ClientId, EdgeId, TenantId};

/// The token scope (in the space-separated `scope` claim) that asks for the fleet-wide
/// authority, [`Identity::system`]; honoured only where the operator allows it (ADR 015).
pub const SYSTEM_SCOPE: &str = "arqonbus:system";

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

/// A permission a built-in command needs (the original's permission model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// `create_channel`, `delete_channel`.
    ChannelManagement,
    /// `join_channel`, `leave_channel`.
    ChannelAccess,
    /// `list_channels`, `channel_info`, `history`.
    ChannelView,
}

impl Permission {
    /// The string a token's `permissions` claim lists.
    pub const fn as_str(self) -> &'static str {
        match self {
            Permission::ChannelManagement => "channel_management",
            Permission::ChannelAccess => "channel_access",
            Permission::ChannelView => "channel_view",
        }
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
    /// The token's `permissions` claim, when it had one.
    pub permissions: Option<Vec<String>>,
    /// The fleet-wide authority (ADR 015): across tenants, over the global CASIL policy.
    /// Only a token with the `arqonbus:system` scope, on an edge configured to honour it,
    /// has it; `admin` is the admin of its own tenant only.
    pub system: bool,
}

impl Identity {
    /// Whether this identity may use commands that need `permission`: admins may do
    /// everything; a token with a `permissions` claim may do exactly what it lists; a
    /// token without one may do everything but channel management (the original's
    /// permissive default for the rest).
    pub fn may(&self, permission: Permission) -> bool {
        if self.role.is_admin() {
            return true;
        }
        match &self.permissions {
            Some(granted) => granted.iter().any(|p| p == permission.as_str()),
            None => permission != Permission::ChannelManagement,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(role: Role, permissions: Option<&[&str]>) -> Identity {
        let edge_id = EdgeId::generate();
        Identity {
            tenant: TenantId::default_tenant(),
            client_id: ClientId::generate_on(&edge_id),
            subject: None,
            role,
            edge_id,
            permissions: permissions.map(|p| p.iter().map(|s| (*s).to_owned()).collect()),
            system: false,
        }
    }

    #[test]
    fn permissions_follow_the_original_model() {
        let admin = identity(Role::admin(), Some(&[]));
        let legacy = identity(Role::user(), None);
        let viewer = identity(Role::user(), Some(&["channel_view"]));
        let manager = identity(
            Role::user(),
            Some(&["channel_management", "channel_access"]),
        );
        for p in [
            Permission::ChannelManagement,
            Permission::ChannelAccess,
            Permission::ChannelView,
        ] {
            assert!(admin.may(p), "{p:?}");
            assert_eq!(legacy.may(p), p != Permission::ChannelManagement, "{p:?}");
            assert_eq!(viewer.may(p), p == Permission::ChannelView, "{p:?}");
            assert_eq!(manager.may(p), p != Permission::ChannelView, "{p:?}");
        }
    }

    #[test]
    fn only_admin_is_admin() {
        assert!(Role::new("ADMIN").is_admin());
        assert!(Role::admin().is_admin());
        assert!(!Role::user().is_admin());
        assert!(!Role::new("administrator").is_admin());
    }
}
