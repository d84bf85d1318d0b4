//! Microsoft's token signing keys, cached. openidconnect never refreshes keys itself.

use std::collections::HashMap;

use openidconnect::core::CoreJsonWebKeySet;
use time::{Duration, OffsetDateTime};
use tokio::sync::Mutex;

use super::CallError;
use crate::clock::Clock;

/// Keys are fetched again after a day, as Microsoft recommends.
const TIME_TO_LIVE: Duration = Duration::hours(24);
/// An unknown `kid` refetches at most this often, so forged tokens cannot make Portico
/// hammer Microsoft.
const MIN_REFETCH_INTERVAL: Duration = Duration::minutes(5);

pub struct KeyCache {
    clock: Clock,
    /// By JWKS URL. One lock for all: fetches are rare, and two sign-ins that start
    /// together must not fetch twice.
    entries: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    keys: CoreJsonWebKeySet,
    fetched_at: OffsetDateTime,
}

/// Whether the caller wants whatever is cached, or believes the cache is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Cached,
    /// A token named a key the cached set lacks: refetch, unless that was just done.
    UnknownKeySeen,
}

impl KeyCache {
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            entries: Mutex::default(),
        }
    }

    /// The key set at `url`, and whether it was fetched by this call.
    pub async fn get(
        &self,
        http: &reqwest::Client,
        url: &str,
        freshness: Freshness,
    ) -> Result<(CoreJsonWebKeySet, bool), CallError> {
        let mut entries = self.entries.lock().await;
        let now = self.clock.now();
        if let Some(entry) = entries.get(url) {
            let age = now - entry.fetched_at;
            let fresh_enough = match freshness {
                Freshness::Cached => age < TIME_TO_LIVE,
                Freshness::UnknownKeySeen => age < MIN_REFETCH_INTERVAL,
            };
            if fresh_enough {
                return Ok((entry.keys.clone(), false));
            }
        }
        let keys = fetch(http, url).await?;
        entries.insert(
            url.to_owned(),
            Entry {
                keys: keys.clone(),
                fetched_at: now,
            },
        );
        Ok((keys, true))
    }
}

async fn fetch(http: &reqwest::Client, url: &str) -> Result<CoreJsonWebKeySet, CallError> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(CallError::from_reqwest)?;
    if !response.status().is_success() {
        return Err(CallError::Unexpected(format!(
            "the signing keys answered {}",
            response.status()
        )));
    }
    response
        .json()
        .await
        .map_err(|e| CallError::Unexpected(format!("the signing keys: {}", e.without_url())))
}
