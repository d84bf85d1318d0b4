//! Microsoft's identity platform (Entra ID) and Graph: every call Portico makes to
//! Microsoft goes through here, with timeouts and Microsoft's errors explained.

pub mod delegated;
pub mod errors;
pub mod graph;
mod keys;
pub mod sign_in;

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Deserialize;
use url::Url;
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::MicrosoftArgs;
use crate::domain::{Cloud, DirectoryId};
use crate::egress::{self, EgressPolicy, Refused};
use crate::metrics::{CallOutcome, Metrics, MicrosoftCall};
pub use errors::{Advice, MicrosoftError};
use keys::KeyCache;

/// Connecting to Microsoft takes longer than this only when something is wrong.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Microsoft {
    /// For Microsoft's endpoints, as the operator configured them.
    http: reqwest::Client,
    /// For endpoints a tenant admin typed (an OAuth connection's Token URL): every name it
    /// resolves passes the egress policy.
    tenant_http: reqwest::Client,
    egress: EgressPolicy,
    login_override: Option<Url>,
    graph_override: Option<Url>,
    /// Stands in for the Global cloud's Exchange Online mail servers (a test's).
    exchange_host_override: Option<String>,
    keys: KeyCache,
    tokens: graph::TokenCache,
    metrics: Metrics,
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Microsoft answered with an error of its own (an AADSTS code, usually).
    #[error("{0}")]
    Microsoft(Box<MicrosoftError>),
    /// Microsoft could not be reached, or did not answer in time.
    #[error("Microsoft could not be reached: {0}")]
    Unreachable(String),
    /// Microsoft answered something Portico cannot use.
    #[error("Microsoft's answer could not be read: {0}")]
    Unexpected(String),
    /// A tenant's endpoint lies where tenants' settings may not reach; nothing was sent.
    #[error("{0}")]
    Destination(Refused),
}

impl CallError {
    fn from_reqwest(err: reqwest::Error) -> Self {
        if let Some(refused) = egress::refusal_in(&err) {
            Self::Destination(refused.clone())
        } else if err.is_timeout() {
            Self::Unreachable("no answer in time".into())
        } else if err.is_connect() {
            Self::Unreachable("the connection failed".into())
        } else {
            Self::Unexpected(err.without_url().to_string())
        }
    }

    fn outcome(&self) -> CallOutcome {
        match self {
            Self::Microsoft(_) => CallOutcome::Refused,
            Self::Unreachable(_) | Self::Destination(_) => CallOutcome::Unreachable,
            Self::Unexpected(_) => CallOutcome::Unexpected,
        }
    }
}

/// Runs one call to Microsoft, counting its outcome and timing it for the metrics.
async fn observed<T>(
    metrics: &Metrics,
    kind: MicrosoftCall,
    call: impl Future<Output = Result<T, CallError>>,
) -> Result<T, CallError> {
    let started = Instant::now();
    let result = call.await;
    let outcome = result
        .as_ref()
        .map_or_else(CallError::outcome, |_| CallOutcome::Ok);
    metrics.microsoft_call(kind, outcome, started.elapsed());
    result
}

impl Microsoft {
    pub fn new(
        args: &MicrosoftArgs,
        egress: EgressPolicy,
        clock: Clock,
        metrics: Metrics,
    ) -> Result<Self, reqwest::Error> {
        // No call to Microsoft may keep a page waiting longer than the configured timeout.
        let total_timeout = Duration::from_secs(args.timeout_seconds.max(1));
        let client = || {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT.min(total_timeout))
                .timeout(total_timeout)
                // OAuth endpoints must never be followed blindly (RFC 9700 §4.11); a redirect
                // would also lead around the egress policy.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("Portico/", env!("CARGO_PKG_VERSION")))
        };
        Ok(Self {
            http: client().build()?,
            tenant_http: client().dns_resolver(egress.resolver()).build()?,
            egress,
            login_override: args.login_url.clone(),
            graph_override: args.graph_url.clone(),
            exchange_host_override: args
                .exchange_host
                .as_deref()
                .map(|host| host.trim().trim_end_matches('.').to_ascii_lowercase()),
            keys: KeyCache::new(clock, metrics.clone()),
            tokens: graph::TokenCache::default(),
            metrics,
        })
    }

    /// Drops the cached tokens of a Graph credential.
    pub fn forget_tokens(&self, credential_id: &str) {
        self.tokens.forget(credential_id);
    }

    /// The identity platform's base URL for `cloud`, without a trailing slash.
    pub fn login_base(&self, cloud: Cloud) -> String {
        match (cloud, &self.login_override) {
            (Cloud::Global, Some(url)) => url.as_str().trim_end_matches('/').to_owned(),
            (Cloud::Global, None) => "https://login.microsoftonline.com".into(),
            (Cloud::UsGovernment | Cloud::UsGovernmentDod, _) => {
                "https://login.microsoftonline.us".into()
            }
            (Cloud::China, _) => "https://login.partner.microsoftonline.cn".into(),
        }
    }

    /// Graph's base URL for `cloud`, without a trailing slash.
    pub fn graph_base(&self, cloud: Cloud) -> String {
        match (cloud, &self.graph_override) {
            (Cloud::Global, Some(url)) => url.as_str().trim_end_matches('/').to_owned(),
            (Cloud::Global, None) => "https://graph.microsoft.com".into(),
            (Cloud::UsGovernment, _) => "https://graph.microsoft.us".into(),
            (Cloud::UsGovernmentDod, _) => "https://dod-graph.microsoft.us".into(),
            (Cloud::China, _) => "https://microsoftgraph.chinacloudapi.cn".into(),
        }
    }

    /// Whether `host` is one of `cloud`'s Exchange Online mail servers, where an app-only
    /// Exchange token may go: a token for all of an app's mailboxes is never handed to a
    /// server a tenant's settings name, only to Microsoft's (or the operator's stand-in).
    pub fn is_exchange_online_host(&self, cloud: Cloud, host: &str) -> bool {
        match (cloud, &self.exchange_host_override) {
            (Cloud::Global, Some(stand_in)) => host == stand_in,
            _ => cloud.is_exchange_online_host(host),
        }
    }

    /// Whether the Global cloud's identity platform and Graph (or their replacements)
    /// answer from here. Any HTTP answer counts: only the network path is in question.
    pub async fn reachability(&self) -> Vec<(String, Result<(), CallError>)> {
        let mut answers = Vec::new();
        for url in [
            format!(
                "{}/common/v2.0/.well-known/openid-configuration",
                self.login_base(Cloud::Global)
            ),
            format!("{}/v1.0/$metadata", self.graph_base(Cloud::Global)),
        ] {
            let answer = self.http.head(&url).send().await;
            answers.push((url, answer.map(drop).map_err(CallError::from_reqwest)));
        }
        answers
    }

    /// The directory GUID behind a directory ID: a GUID as is, a verified domain through
    /// its OpenID discovery document, whose issuer names the directory.
    pub async fn resolve_directory(
        &self,
        cloud: Cloud,
        directory: &DirectoryId,
    ) -> Result<Uuid, CallError> {
        let domain = match directory {
            DirectoryId::Guid(guid) => return Ok(*guid),
            DirectoryId::Domain(domain) => domain,
        };
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
        }
        let url = format!(
            "{}/{domain}/v2.0/.well-known/openid-configuration",
            self.login_base(cloud)
        );
        let discovery: Discovery = observed(&self.metrics, MicrosoftCall::Discovery, async {
            let response = self
                .http
                .get(url)
                .send()
                .await
                .map_err(CallError::from_reqwest)?;
            let status = response.status();
            let body = response.text().await.map_err(CallError::from_reqwest)?;
            if !status.is_success() {
                return Err(CallError::Microsoft(Box::new(MicrosoftError::from_body(
                    &body,
                ))));
            }
            serde_json::from_str(&body).map_err(|e| CallError::Unexpected(e.to_string()))
        })
        .await?;
        // The issuer reads <login host>/<directory GUID>/v2.0.
        discovery
            .issuer
            .trim_end_matches('/')
            .trim_end_matches("/v2.0")
            .rsplit('/')
            .next()
            .and_then(|segment| Uuid::try_parse(segment).ok())
            .ok_or_else(|| {
                CallError::Unexpected("the discovery document names no directory".into())
            })
    }
}
