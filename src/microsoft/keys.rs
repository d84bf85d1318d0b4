//! Microsoft's token signing keys, cached. openidconnect never refreshes keys itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use openidconnect::core::CoreJsonWebKeySet;
use time::{Duration, OffsetDateTime};

use super::{CallError, observed};
use crate::clock::Clock;
use crate::metrics::{Metrics, MicrosoftCall};

/// Keys are fetched again after a day, as Microsoft recommends.
const TIME_TO_LIVE: Duration = Duration::hours(24);
/// An unknown `kid` refetches at most this often, so forged tokens cannot make Portico
/// hammer Microsoft.
const MIN_REFETCH_INTERVAL: Duration = Duration::minutes(5);

pub struct KeyCache {
    clock: Clock,
    metrics: Metrics,
    /// By JWKS URL, each with its own lock: sign-ins that start together fetch once, and a
    /// slow key endpoint of one cloud does not hold up another's.
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
}

#[derive(Default)]
struct Slot {
    keys: Option<CoreJsonWebKeySet>,
    fetched_at: Option<OffsetDateTime>,
    /// The last fetch, successful or not: failures are rate-limited too.
    attempted_at: Option<OffsetDateTime>,
}

/// Whether the caller wants whatever is cached, or believes the cache is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Cached,
    /// A token named a key the cached set lacks: refetch, unless that was just done.
    UnknownKeySeen,
}

impl KeyCache {
    pub fn new(clock: Clock, metrics: Metrics) -> Self {
        Self {
            clock,
            metrics,
            slots: Mutex::default(),
        }
    }

    fn slot(&self, url: &str) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.entry(url.to_owned()).or_default().clone()
    }

    /// The key set at `url`, and whether it was fetched by this call.
    pub async fn get(
        &self,
        http: &reqwest::Client,
        url: &str,
        freshness: Freshness,
    ) -> Result<(CoreJsonWebKeySet, bool), CallError> {
        let slot = self.slot(url);
        let mut slot = slot.lock().await;
        let now = self.clock.now();
        let since = |at: Option<OffsetDateTime>| at.map(|at| now - at);
        let skip_fetch = match freshness {
            Freshness::Cached => since(slot.fetched_at).is_some_and(|age| age < TIME_TO_LIVE),
            Freshness::UnknownKeySeen => {
                since(slot.attempted_at).is_some_and(|age| age < MIN_REFETCH_INTERVAL)
            }
        };
        if let (true, Some(keys)) = (skip_fetch, &slot.keys) {
            return Ok((keys.clone(), false));
        }
        slot.attempted_at = Some(now);
        match observed(&self.metrics, MicrosoftCall::Keys, fetch(http, url)).await {
            Ok(keys) => {
                slot.keys = Some(keys.clone());
                slot.fetched_at = Some(now);
                Ok((keys, true))
            }
            // Keys change rarely: past their day they still beat failing every sign-in.
            Err(error) => slot.keys.clone().map(|keys| (keys, false)).ok_or(error),
        }
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
