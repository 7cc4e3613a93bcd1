//! One stored version of the live policy, as it is kept on the bus (the `policy` key of
//! the `arqon_casil` bucket): the format every reader and writer shares. The policy
//! service writes it; policy replicas and edges follow it.

use serde::{Deserialize, Serialize};

use crate::Policy;

/// One stored version of the policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Starts at 1; each reload stores the next.
    pub version: u64,
    /// RFC 3339.
    pub updated_at: String,
    /// Who made this version: `settings` for the seed, else the reloading caller.
    pub updated_by: String,
    pub policy: Policy,
}

impl Record {
    /// The stored form: JSON.
    pub fn encode(&self) -> Vec<u8> {
        // A record is plain data: serializing it cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a stored record; the error says what is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_refuses_unknown_fields() {
        let record = Record {
            version: 3,
            updated_at: "2026-01-01T00:00:00.000000Z".to_owned(),
            updated_by: "ada".to_owned(),
            policy: Policy {
                enabled: true,
                ..Policy::default()
            },
        };
        assert_eq!(Record::decode(&record.encode()).unwrap(), record);
        let mut value: serde_json::Value = serde_json::from_slice(&record.encode()).unwrap();
        value["extra"] = serde_json::json!(1);
        let error = Record::decode(value.to_string().as_bytes()).unwrap_err();
        assert!(error.contains("extra"), "{error}");
    }
}
