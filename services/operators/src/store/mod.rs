//! `op.store.*`: a key-value store with namespaces inside each tenant, on the
//! [`subject::STORE_BUCKET`] bucket (layout in [`keys`]).
//!
//! A caller's namespaces are always its tenant's: no namespace is `tenant:<tenant>`, an
//! explicit one is `tenant:<tenant>/<namespace>`, and only admins may name another tenant
//! (`tenant`). Limits: key length, value size, keys per tenant (a counter per tenant,
//! `places.rs`, so a new key costs O(1) and the limit is exact across replicas). Writes may be
//! compare-and-set (`expected_revision`) and may expire (`ttl_seconds`): NATS 2.11 has
//! per-key TTLs only at creation and the bus does not offer them, so the expiry is kept
//! in the record, an expired value reads as absent everywhere at once, and a periodic
//! sweep deletes it (`data.rs`).

mod data;
mod keys;
mod places;
mod record;

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::task::JoinHandle;

use clap::builder::RangedU64ValueParser;

use arqon_proto::layout;
use arqon_proto::operators::v1 as pb;
use arqon_protocol::{TenantId, Timestamp};

use crate::caller::Caller;
use crate::error::{ApiError, bus_failure, forbidden, grpc_api, validation};
use crate::{OperatorsError, Shared};
use data::{Data, Write};
use keys::Namespace;
use places::Places;

/// Longest TTL: ten years.
const MAX_TTL_SECONDS: f64 = 315_360_000.0;
/// Most keys one `List` page holds.
pub(crate) const MAX_LIST_LIMIT: usize = 1000;
/// A `List` page ends before its keys (as JSON strings) pass this many bytes; it holds at
/// least one key. So a reply stays well under the bus's message size, whatever the keys.
const LIST_PAGE_BYTES: usize = 512 * 1024;

/// Default of `ARQONBUS_STORE_MAX_KEY_BYTES`.
const MAX_KEY_BYTES: usize = 256;
/// Default of `ARQONBUS_STORE_MAX_VALUE_BYTES`.
const MAX_VALUE_BYTES: usize = 65_536;
/// Default of `ARQONBUS_STORE_MAX_KEYS_PER_TENANT`.
const MAX_KEYS_PER_TENANT: usize = 10_000;
/// Default of `ARQONBUS_STORE_SWEEP_INTERVAL_MS`.
const SWEEP_INTERVAL_MS: u64 = 1_000;

/// Settings of the store.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreSettings {
    /// Longest key, in bytes (at most 398, so that every key fits the bus).
    #[arg(
        id = "store_max_key_bytes",
        long = "store-max-key-bytes",
        env = "ARQONBUS_STORE_MAX_KEY_BYTES",
        default_value_t = MAX_KEY_BYTES,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=keys::LONGEST_KEY_BYTES as u64),
    )]
    pub max_key_bytes: usize,

    /// Largest value, in bytes of JSON text (it must fit in the bus's largest message).
    #[arg(
        id = "store_max_value_bytes",
        long = "store-max-value-bytes",
        env = "ARQONBUS_STORE_MAX_VALUE_BYTES",
        default_value_t = MAX_VALUE_BYTES,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..),
    )]
    pub max_value_bytes: usize,

    /// Most keys one tenant may have, over all its namespaces.
    #[arg(
        id = "store_max_keys_per_tenant",
        long = "store-max-keys-per-tenant",
        env = "ARQONBUS_STORE_MAX_KEYS_PER_TENANT",
        default_value_t = MAX_KEYS_PER_TENANT,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..),
    )]
    pub max_keys_per_tenant: usize,

    /// How often expired values are deleted, in milliseconds (they read as absent as soon
    /// as they expire).
    #[arg(
        id = "store_sweep_interval_ms",
        long = "store-sweep-interval-ms",
        env = "ARQONBUS_STORE_SWEEP_INTERVAL_MS",
        default_value_t = SWEEP_INTERVAL_MS,
        value_parser = clap::value_parser!(u64).range(10..),
    )]
    pub sweep_interval_ms: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        arqon_service::settings::defaults()
    }
}

/// The store's API.
#[derive(Debug, Clone)]
pub struct StoreApi {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    data: Data,
    max_key_bytes: usize,
    max_value_bytes: usize,
    _sweeper: Sweeper,
}

/// The periodic sweep, which lives as long as the API: it has nothing to finish, so it
/// is stopped when the last handle on the API goes.
#[derive(Debug)]
struct Sweeper(JoinHandle<()>);

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) async fn start(
    shared: &Shared,
    settings: &StoreSettings,
) -> Result<StoreApi, OperatorsError> {
    let kv = shared.bus.key_value(layout::store(&shared.bus)).await?;
    check(settings, kv.max_value_size()).map_err(OperatorsError::Settings)?;
    let data = Data {
        places: Places::new(kv.clone(), settings.max_keys_per_tenant),
        kv,
    };
    let sweeper = Sweeper(tokio::spawn(data::sweep_periodically(
        data.clone(),
        Duration::from_millis(settings.sweep_interval_ms),
    )));
    Ok(StoreApi {
        inner: Arc::new(Inner {
            data,
            max_key_bytes: settings.max_key_bytes,
            max_value_bytes: settings.max_value_bytes,
            _sweeper: sweeper,
        }),
    })
}

/// Why `settings` cannot be used with a bucket whose values are at most `max_value`.
fn check(settings: &StoreSettings, max_value: usize) -> Result<(), String> {
    let largest = max_value.saturating_sub(record::OVERHEAD);
    if settings.max_value_bytes > largest {
        return Err(format!(
            "ARQONBUS_STORE_MAX_VALUE_BYTES ({}) must be at most {largest}: the bus's largest value, less the record around it",
            settings.max_value_bytes
        ));
    }
    Ok(())
}

/// The namespace a call addresses: authorization first, then the name.
fn resolve(caller: &Caller, namespace: Option<pb::Namespace>) -> Result<Namespace, ApiError> {
    let namespace = namespace.unwrap_or_default();
    let tenant = match namespace.tenant.as_deref().map(str::trim) {
        None | Some("") => caller.tenant.clone(),
        Some(name) => {
            let tenant = TenantId::parse(name).map_err(|e| validation(e.to_string()))?;
            if tenant != caller.tenant && !caller.system {
                return Err(forbidden(
                    "Only the system authority can use another tenant's store (a tenant's admin uses its own)",
                ));
            }
            tenant
        }
    };
    match namespace.namespace.as_deref().map(str::trim) {
        None | Some("") => Ok(Namespace::root(tenant)),
        Some(name) => Namespace::sub(tenant, name).map_err(|e| validation(e.to_string())),
    }
}

/// The page of `keys` (sorted) after `after`: at most `limit` keys and
/// [`LIST_PAGE_BYTES`], at least one; and whether it is the last.
fn page(keys: Vec<String>, after: Option<&str>, limit: usize) -> (Vec<String>, bool) {
    let start = after.map_or(0, |after| keys.partition_point(|key| key.as_str() <= after));
    let mut budget = LIST_PAGE_BYTES;
    let mut end = start;
    for key in &keys[start..] {
        // The key as the client will read it: a JSON string and a comma.
        let size = serde_json::to_string(key).map_or(key.len(), |json| json.len()) + 1;
        if end - start == limit || (end > start && size > budget) {
            break;
        }
        budget = budget.saturating_sub(size);
        end += 1;
    }
    let complete = end == keys.len();
    let mut keys = keys;
    keys.truncate(end);
    keys.drain(..start);
    (keys, complete)
}

fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| Timestamp::from(t).to_rfc3339())
}

impl StoreApi {
    fn key<'a>(&self, key: &'a str) -> Result<&'a str, ApiError> {
        let key = key.trim();
        if key.is_empty() {
            return Err(validation("'key' is required"));
        }
        let max = self.inner.max_key_bytes;
        if key.len() > max {
            return Err(validation(format!(
                "'key' is too long: {} bytes, the limit is {max}",
                key.len()
            )));
        }
        Ok(key)
    }

    fn value(&self, json: &str) -> Result<Box<RawValue>, ApiError> {
        let json = json.trim();
        if json.is_empty() || json == "null" {
            return Err(validation("'value' is required"));
        }
        let max = self.inner.max_value_bytes;
        if json.len() > max {
            return Err(validation(format!(
                "'value' is too large: {} bytes, the limit is {max}",
                json.len()
            )));
        }
        serde_json::from_str(json).map_err(|_| validation("'value' must be JSON"))
    }
}

fn ttl(seconds: Option<f64>) -> Result<Option<Duration>, ApiError> {
    match seconds {
        None => Ok(None),
        // Also refuses NaN.
        Some(s) if s.is_nan() || s <= 0.0 => Err(validation("'ttl_seconds' must be > 0")),
        Some(s) if s > MAX_TTL_SECONDS => Err(validation(format!(
            "'ttl_seconds' must be at most {MAX_TTL_SECONDS}"
        ))),
        Some(s) => Ok(Some(Duration::from_secs_f64(s))),
    }
}

grpc_api!(StoreApi: pb::store_server::Store {
    set(SetRequest) -> SetResponse,
    get(GetRequest) -> GetResponse,
    delete(DeleteRequest) -> DeleteResponse,
    list(ListRequest) -> ListResponse,
});

impl StoreApi {
    async fn set(&self, request: pb::SetRequest) -> Result<pb::SetResponse, ApiError> {
        let caller = Caller::try_from(request.caller)?;
        let namespace = resolve(&caller, request.namespace)?;
        let key = self.key(&request.key)?;
        let value = self.value(&request.value_json)?;
        let write = Write {
            key,
            value: &value,
            expected_revision: request.expected_revision,
            ttl: ttl(request.ttl_seconds)?,
        };
        let written = self.inner.data.set(&namespace, write).await?;
        Ok(pb::SetResponse {
            namespace: namespace.to_string(),
            key: key.to_owned(),
            updated: written.updated,
            revision: written.revision,
            expires_at: written.expires_at_ms.and_then(rfc3339),
        })
    }

    async fn get(&self, request: pb::GetRequest) -> Result<pb::GetResponse, ApiError> {
        let caller = Caller::try_from(request.caller)?;
        let namespace = resolve(&caller, request.namespace)?;
        let key = self.key(&request.key)?;
        let found = self
            .inner
            .data
            .get(&namespace, key)
            .await
            .map_err(|e| bus_failure("read the store value", &e))?;
        let mut response = pb::GetResponse {
            namespace: namespace.to_string(),
            key: key.to_owned(),
            ..pb::GetResponse::default()
        };
        if let Some(found) = found {
            response.found = true;
            response.value_json = found.value.get().to_owned();
            response.revision = found.revision;
            response.expires_at = found.expires_at_ms.and_then(rfc3339);
        }
        Ok(response)
    }

    async fn delete(&self, request: pb::DeleteRequest) -> Result<pb::DeleteResponse, ApiError> {
        let caller = Caller::try_from(request.caller)?;
        let namespace = resolve(&caller, request.namespace)?;
        let key = self.key(&request.key)?;
        let deleted = self
            .inner
            .data
            .delete(&namespace, key)
            .await
            .map_err(|e| bus_failure("delete the store value", &e))?;
        Ok(pb::DeleteResponse {
            namespace: namespace.to_string(),
            key: key.to_owned(),
            deleted,
        })
    }

    async fn list(&self, request: pb::ListRequest) -> Result<pb::ListResponse, ApiError> {
        let caller = Caller::try_from(request.caller)?;
        let namespace = resolve(&caller, request.namespace)?;
        let limit = match request.limit {
            0 => MAX_LIST_LIMIT,
            n if n as usize <= MAX_LIST_LIMIT => n as usize,
            n => {
                return Err(validation(format!(
                    "'limit' must be an integer from 1 to {MAX_LIST_LIMIT}, not {n}"
                )));
            }
        };
        let keys = self
            .inner
            .data
            .list(&namespace)
            .await
            .map_err(|e| bus_failure("list the store keys", &e))?;
        let total = keys.len() as u64;
        let (keys, complete) = page(keys, request.after.as_deref(), limit);
        Ok(pb::ListResponse {
            namespace: namespace.to_string(),
            keys,
            complete,
            total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arqon_protocol::{ClientId, EdgeId};

    fn caller(tenant: &str, admin: bool, system: bool) -> Caller {
        Caller {
            tenant: TenantId::parse(tenant).unwrap(),
            client_id: ClientId::generate_on(&EdgeId::generate()),
            admin,
            subject: None,
            system,
        }
    }

    fn namespace(namespace: Option<&str>, tenant: Option<&str>) -> Option<pb::Namespace> {
        Some(pb::Namespace {
            namespace: namespace.map(str::to_owned),
            tenant: tenant.map(str::to_owned),
        })
    }

    #[test]
    fn list_pages_end_at_the_limit_or_the_byte_budget() {
        let keys: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
        let strings = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        assert_eq!(page(keys.clone(), None, 2), (strings(&["k0", "k1"]), false));
        assert_eq!(
            page(keys.clone(), Some("k1"), 2),
            (strings(&["k2", "k3"]), false)
        );
        assert_eq!(page(keys.clone(), Some("k3"), 2), (strings(&["k4"]), true));
        // After a key that went meanwhile, or past the end.
        assert_eq!(page(keys.clone(), Some("k2a"), 10).0, ["k3", "k4"]);
        assert_eq!(page(keys, Some("z"), 10), (vec![], true));
        // 300 keys of 4 KiB are over the budget: the page holds what fits.
        let big: Vec<String> = (0..300)
            .map(|i| format!("{i:03}{}", "x".repeat(4096)))
            .collect();
        let (first, complete) = page(big.clone(), None, MAX_LIST_LIMIT);
        assert!(!complete);
        let bytes: usize = first.iter().map(|k| k.len() + 3).sum();
        assert!(
            bytes <= LIST_PAGE_BYTES && bytes + 4100 > LIST_PAGE_BYTES,
            "{bytes}"
        );
        // A key larger than the budget still comes, alone.
        let huge = vec!["h".repeat(LIST_PAGE_BYTES), "i".to_owned()];
        assert_eq!(page(huge, None, 10).0.len(), 1);
    }

    #[test]
    fn namespaces_stay_in_the_callers_tenant_unless_the_system_authority_says_otherwise() {
        let user = caller("t-a", false, false);
        let resolved = |ns| resolve(&user, ns).map(|n| n.to_string());
        assert_eq!(resolved(None).unwrap(), "tenant:t-a");
        assert_eq!(resolved(namespace(Some("  "), None)).unwrap(), "tenant:t-a");
        assert_eq!(
            resolved(namespace(Some(" tenant:t-b "), None)).unwrap(),
            "tenant:t-a/tenant:t-b"
        );
        assert_eq!(
            resolved(namespace(None, Some("t-a"))).unwrap(),
            "tenant:t-a"
        );
        let refused = resolved(namespace(None, Some("t-b"))).unwrap_err();
        assert!(matches!(refused, ApiError::Forbidden(_)), "{refused:?}");
        let refused = resolved(namespace(Some("a\u{7}"), None)).unwrap_err();
        assert!(matches!(refused, ApiError::Invalid(_)), "{refused:?}");

        // A tenant's admin is admin of its own tenant only.
        let admin = caller("t-a", true, false);
        let refused = resolve(&admin, namespace(Some("cache"), Some("t-b"))).unwrap_err();
        assert!(matches!(refused, ApiError::Forbidden(_)), "{refused:?}");
        let system = caller("t-a", false, true);
        assert_eq!(
            resolve(&system, namespace(Some("cache"), Some("t-b")))
                .unwrap()
                .to_string(),
            "tenant:t-b/cache"
        );
        let refused = resolve(&system, namespace(None, Some("t.b"))).unwrap_err();
        assert!(
            refused.to_string().contains("Invalid tenant name"),
            "{refused:?}"
        );
    }

    #[test]
    fn settings_must_fit_the_bus() {
        let defaults = StoreSettings::default();
        assert_eq!(check(&defaults, 1024 * 1024 - 256), Ok(()));
        let error = check(&defaults, 32 * 1024).unwrap_err();
        assert!(
            error.starts_with("ARQONBUS_STORE_MAX_VALUE_BYTES (65536) must be at most 32704"),
            "{error}"
        );
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            store: StoreSettings,
        }
        let longest = (keys::LONGEST_KEY_BYTES + 1).to_string();
        for (flag, value) in [
            ("--store-max-key-bytes", longest.as_str()),
            ("--store-max-key-bytes", "0"),
            ("--store-max-value-bytes", "0"),
            ("--store-max-keys-per-tenant", "0"),
            ("--store-sweep-interval-ms", "9"),
        ] {
            let error = Cli::try_parse_from(["t", flag, value])
                .err()
                .unwrap()
                .to_string();
            assert!(error.contains(flag), "{error}");
        }
    }

    #[test]
    fn ttls_are_positive_and_bounded() {
        assert_eq!(ttl(None).unwrap(), None);
        assert_eq!(ttl(Some(1.5)).unwrap(), Some(Duration::from_millis(1500)));
        for bad in [0.0, -1.0, f64::NAN] {
            assert_eq!(
                ttl(Some(bad)).unwrap_err().to_string(),
                "'ttl_seconds' must be > 0"
            );
        }
        assert!(ttl(Some(f64::INFINITY)).is_err());
    }
}
