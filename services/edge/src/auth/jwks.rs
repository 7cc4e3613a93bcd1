//! Keys from a JWKS URL: fetched at start, cached by `kid`, fetched again on an unknown
//! `kid` (at most once per refresh interval, one fetch at a time) and periodically.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{AuthError, Reason};
use crate::EdgeError;

/// Bounds one fetch of the key set.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, DecodingKey>,
    /// Keys without a `kid`, usable only when a token names none and there is one key.
    anonymous: Vec<DecodingKey>,
}

/// A JWKS with its cache.
pub(crate) struct Jwks {
    url: String,
    algorithm: Algorithm,
    client: reqwest::Client,
    keys: RwLock<KeySet>,
    /// When the last fetch started; serializes fetches.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    min_interval: Duration,
}

impl Jwks {
    /// Builds the cache and fetches once. A failed first fetch is logged, not fatal.
    pub(crate) async fn start(
        url: &str,
        algorithm: Algorithm,
        min_interval: Duration,
    ) -> Result<Arc<Self>, EdgeError> {
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| EdgeError::Config(format!("cannot build the JWKS client: {e}")))?;
        let jwks = Arc::new(Self {
            url: url.to_owned(),
            algorithm,
            client,
            keys: RwLock::new(KeySet::default()),
            last_fetch: tokio::sync::Mutex::new(None),
            min_interval,
        });
        *jwks.last_fetch.lock().await = Some(Instant::now());
        if let Err(e) = jwks.fetch().await {
            warn!(url, error = %e, "JWKS fetch failed: tokens are refused until it succeeds");
        }
        Ok(jwks)
    }

    pub(crate) fn has_keys(&self) -> bool {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        !keys.by_kid.is_empty() || !keys.anonymous.is_empty()
    }

    fn lookup(&self, kid: Option<&str>) -> Option<DecodingKey> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        match kid {
            Some(kid) => keys.by_kid.get(kid).cloned(),
            None => match (keys.anonymous.as_slice(), keys.by_kid.len()) {
                ([only], 0) => Some(only.clone()),
                ([], 1) => keys.by_kid.values().next().cloned(),
                _ => None,
            },
        }
    }

    /// The key for `kid`, fetching the set again if it is unknown and the last fetch is
    /// older than the refresh interval.
    pub(crate) async fn key(&self, kid: Option<&str>) -> Result<DecodingKey, AuthError> {
        if let Some(key) = self.lookup(kid) {
            return Ok(key);
        }
        {
            let mut last = self.last_fetch.lock().await;
            // Another request may have fetched while this one waited for the lock.
            if let Some(key) = self.lookup(kid) {
                return Ok(key);
            }
            if last.is_none_or(|t| t.elapsed() >= self.min_interval) {
                *last = Some(Instant::now());
                if let Err(e) = self.fetch().await {
                    warn!(url = %self.url, error = %e, "JWKS fetch failed");
                }
            }
        }
        self.lookup(kid).ok_or_else(|| {
            if self.has_keys() {
                AuthError::new(Reason::UnknownKey, format!("no key with kid {kid:?}"))
            } else {
                AuthError::new(Reason::KeysUnavailable, "the JWKS has not been fetched")
            }
        })
    }

    async fn fetch(&self) -> Result<(), String> {
        let set: JwkSet = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| format!("not a JWK set: {e}"))?;
        let mut fresh = KeySet::default();
        for jwk in &set.keys {
            if !self.suits(jwk) {
                continue;
            }
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => match &jwk.common.key_id {
                    Some(kid) => {
                        fresh.by_kid.insert(kid.clone(), key);
                    }
                    None => fresh.anonymous.push(key),
                },
                Err(e) => warn!(url = %self.url, error = %e, "skipping an unusable JWK"),
            }
        }
        let count = fresh.by_kid.len() + fresh.anonymous.len();
        if count == 0 {
            return Err(format!("no {:?} key in the set", self.algorithm));
        }
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        info!(url = %self.url, keys = count, "JWKS fetched");
        Ok(())
    }

    /// Keys of the configured algorithm's family, and of that algorithm when they say.
    fn suits(&self, jwk: &jsonwebtoken::jwk::Jwk) -> bool {
        let family = matches!(
            (&jwk.algorithm, self.algorithm),
            (AlgorithmParameters::RSA(_), Algorithm::RS256)
                | (AlgorithmParameters::EllipticCurve(_), Algorithm::ES256)
        );
        let declared = match jwk.common.key_algorithm {
            None => true,
            Some(KeyAlgorithm::RS256) => self.algorithm == Algorithm::RS256,
            Some(KeyAlgorithm::ES256) => self.algorithm == Algorithm::ES256,
            Some(_) => false,
        };
        family && declared
    }

    /// Fetches the set every refresh interval until `stop`, keeping the old keys when a
    /// fetch fails.
    pub(crate) async fn refresh_periodically(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.min_interval) => {}
            }
            let mut last = self.last_fetch.lock().await;
            *last = Some(Instant::now());
            if let Err(e) = self.fetch().await {
                warn!(url = %self.url, error = %e, "periodic JWKS fetch failed; keeping the cached keys");
            }
        }
    }
}
