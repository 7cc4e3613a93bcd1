//! Who a call is for, checked once on receipt.

use arqon_proto::operators::v1 as pb;
use arqon_protocol::{ClientId, TenantId};

use crate::error::{ApiError, validation};

/// The caller of an operators call: the WebSocket client the dispatcher acts for, or the
/// one a backend states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    pub client_id: ClientId,
    /// Admin of its own tenant.
    pub admin: bool,
    pub subject: Option<String>,
    /// The fleet-wide authority (ADR 015): another tenant's store.
    pub system: bool,
}

impl TryFrom<Option<pb::Caller>> for Caller {
    type Error = ApiError;

    fn try_from(caller: Option<pb::Caller>) -> Result<Self, ApiError> {
        let caller = caller.ok_or_else(|| validation("'caller' is required"))?;
        let tenant = TenantId::parse(&caller.tenant)
            .map_err(|e| validation(format!("Invalid caller tenant: {e}")))?;
        let client_id = ClientId::parse(&caller.client_id).ok_or_else(|| {
            validation(format!("Invalid caller client id: '{}'", caller.client_id))
        })?;
        Ok(Self {
            tenant,
            client_id,
            admin: caller.admin,
            subject: caller.subject,
            system: caller.system,
        })
    }
}

impl Caller {
    /// The message form, for the dispatcher and tests.
    pub fn to_pb(&self) -> pb::Caller {
        pb::Caller {
            tenant: self.tenant.to_string(),
            client_id: self.client_id.to_string(),
            admin: self.admin,
            subject: self.subject.clone(),
            system: self.system,
        }
    }

    /// May act on something `owner` owns in `tenant`: its owner, or an admin of the tenant.
    pub fn may_manage(&self, tenant: &TenantId, owner: &str) -> bool {
        self.tenant == *tenant && (self.admin || self.client_id.as_str() == owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arqon_protocol::EdgeId;

    #[test]
    fn a_caller_is_checked_once() {
        let id = ClientId::generate_on(&EdgeId::generate());
        let good = pb::Caller {
            tenant: "t-a".into(),
            client_id: id.to_string(),
            admin: false,
            subject: None,
            system: false,
        };
        let caller = Caller::try_from(Some(good.clone())).unwrap();
        assert_eq!(caller.to_pb(), good);
        assert!(caller.may_manage(&TenantId::parse("t-a").unwrap(), id.as_str()));
        assert!(!caller.may_manage(&TenantId::parse("t-b").unwrap(), id.as_str()));
        assert!(!caller.may_manage(&TenantId::parse("t-a").unwrap(), "someone-else"));
        for bad in [
            None,
            Some(pb::Caller {
                tenant: "a.b".into(),
                ..good.clone()
            }),
            Some(pb::Caller {
                client_id: "nobody".into(),
                ..good
            }),
        ] {
            assert!(matches!(
                Caller::try_from(bad).unwrap_err(),
                ApiError::Invalid(_)
            ));
        }
    }
}
