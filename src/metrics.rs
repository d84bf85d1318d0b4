//! What Portico tells Prometheus about itself. Labels come from small fixed sets (route
//! templates, never raw paths; kinds and outcomes named here), so no tenant, user or secret
//! can reach a series, and the number of series stays bounded.

use std::time::Duration;

use axum::http::StatusCode;
use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::domain::CheckState;

/// How far ahead a client secret counts as expiring: the dashboard banners' horizon.
pub const EXPIRY_HORIZON_DAYS: i64 = 30;

/// One registry per running application (tests run many side by side), cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    sign_ins: IntCounterVec,
    microsoft_calls: IntCounterVec,
    microsoft_duration: HistogramVec,
    token_cache: IntCounterVec,
    job_runs: IntCounterVec,
    job_failures: IntCounterVec,
    credentials: IntGaugeVec,
    db_connections: IntGaugeVec,
    mailbox_checks: IntCounterVec,
    mailboxes_by_check_state: IntGaugeVec,
}

#[derive(Debug, Clone, Copy)]
pub enum SignInMethod {
    Password,
    Microsoft,
}

#[derive(Debug, Clone, Copy)]
pub enum SignInResult {
    Success,
    /// Wrong credentials, an unknown or disabled account, or a token Portico refused.
    Refused,
    Throttled,
    /// The sign-in could not finish: Microsoft was unreachable or its answer unusable.
    Error,
}

#[derive(Debug, Clone, Copy)]
pub enum MicrosoftCall {
    /// OpenID discovery documents (resolving a verified domain to its directory).
    Discovery,
    /// Token signing keys.
    Keys,
    /// Token endpoints: sign-in codes, app-only and delegated tokens.
    Token,
    Graph,
}

#[derive(Debug, Clone, Copy)]
pub enum CallOutcome {
    Ok,
    /// Microsoft answered with an error of its own.
    Refused,
    /// No connection, or no answer in time.
    Unreachable,
    /// An answer Portico could not use.
    Unexpected,
}

#[derive(Debug, Clone, Copy)]
pub enum Job {
    SessionCleanup,
    OAuthRenewal,
    ExpiryAlerts,
    AuditCleanup,
    MailboxChecks,
}

/// How one background test of a mailbox ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxCheckOutcome {
    Passed,
    /// The server, Microsoft or the egress policy refused, or a step failed.
    Failed,
    /// No answer within the check's timeout.
    TimedOut,
}

impl MailboxCheckOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
        }
    }
}

impl SignInMethod {
    fn label(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Microsoft => "microsoft",
        }
    }
}

impl SignInResult {
    fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Refused => "refused",
            Self::Throttled => "throttled",
            Self::Error => "error",
        }
    }
}

impl MicrosoftCall {
    fn label(self) -> &'static str {
        match self {
            Self::Discovery => "discovery",
            Self::Keys => "keys",
            Self::Token => "token",
            Self::Graph => "graph",
        }
    }
}

impl CallOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::Unreachable => "unreachable",
            Self::Unexpected => "unexpected",
        }
    }
}

impl Job {
    pub fn label(self) -> &'static str {
        match self {
            Self::SessionCleanup => "session_cleanup",
            Self::OAuthRenewal => "oauth_renewal",
            Self::ExpiryAlerts => "expiry_alerts",
            Self::AuditCleanup => "audit_cleanup",
            Self::MailboxChecks => "mailbox_checks",
        }
    }
}

/// Calls to Microsoft take from tens of milliseconds to the configured timeout.
const MICROSOFT_BUCKETS: &[f64] = &[0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("portico".into()), None)?;
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let vec = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(vec.clone()))?;
            Ok::<_, prometheus::Error>(vec)
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            let vec = HistogramVec::new(opts, labels)?;
            registry.register(Box::new(vec.clone()))?;
            Ok::<_, prometheus::Error>(vec)
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let vec = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(vec.clone()))?;
            Ok::<_, prometheus::Error>(vec)
        };
        Ok(Self {
            http_requests: counter(
                "http_requests_total",
                "HTTP requests answered, by route template and status.",
                &["method", "route", "status"],
            )?,
            http_duration: histogram(
                "http_request_duration_seconds",
                "Time to answer an HTTP request, by route template.",
                &["method", "route"],
                prometheus::DEFAULT_BUCKETS,
            )?,
            sign_ins: counter(
                "sign_ins_total",
                "Sign-in attempts, by method and outcome.",
                &["method", "outcome"],
            )?,
            microsoft_calls: counter(
                "microsoft_calls_total",
                "Calls to Microsoft's identity platform and Graph, by kind and outcome.",
                &["kind", "outcome"],
            )?,
            microsoft_duration: histogram(
                "microsoft_call_duration_seconds",
                "Time Microsoft took to answer, by kind.",
                &["kind"],
                MICROSOFT_BUCKETS,
            )?,
            token_cache: counter(
                "graph_token_cache_total",
                "Graph app tokens asked of the cache, by whether it had a good one.",
                &["result"],
            )?,
            job_runs: counter(
                "background_job_runs_total",
                "Runs of background jobs.",
                &["job"],
            )?,
            job_failures: counter(
                "background_job_failures_total",
                "Runs of background jobs that failed.",
                &["job"],
            )?,
            credentials: gauge(
                "graph_client_secrets",
                "Graph credentials (client secrets and certificates) that have expired, or expire \
                 within 30 days.",
                &["state"],
            )?,
            db_connections: gauge(
                "db_pool_connections",
                "Database pool connections: in use, idle, and the pool's maximum.",
                &["state"],
            )?,
            mailbox_checks: counter(
                "mailbox_checks_total",
                "Background tests of mailboxes, by outcome.",
                &["outcome"],
            )?,
            mailboxes_by_check_state: gauge(
                "mailboxes_by_check_state",
                "Enabled mailboxes by what their background tests found: unchecked, passing, \
                 failed_once or failing (two or more failures in a row).",
                &["state"],
            )?,
            registry,
        })
    }

    pub fn http_request(&self, method: &str, route: &str, status: StatusCode, took: Duration) {
        self.http_requests
            .with_label_values(&[method, route, status.as_str()])
            .inc();
        self.http_duration
            .with_label_values(&[method, route])
            .observe(took.as_secs_f64());
    }

    pub fn sign_in(&self, method: SignInMethod, result: SignInResult) {
        self.sign_ins
            .with_label_values(&[method.label(), result.label()])
            .inc();
    }

    pub fn microsoft_call(&self, kind: MicrosoftCall, outcome: CallOutcome, took: Duration) {
        self.microsoft_calls
            .with_label_values(&[kind.label(), outcome.label()])
            .inc();
        self.microsoft_duration
            .with_label_values(&[kind.label()])
            .observe(took.as_secs_f64());
    }

    pub fn token_cache(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.token_cache.with_label_values(&[result]).inc();
    }

    pub fn job_run(&self, job: Job, failed: bool) {
        self.job_runs.with_label_values(&[job.label()]).inc();
        if failed {
            self.job_failures.with_label_values(&[job.label()]).inc();
        }
    }

    /// The database pool's connections now: checked out, idle, and the most it opens.
    pub fn set_pool_usage(&self, in_use: u32, idle: u32, max: u32) {
        for (state, value) in [("in_use", in_use), ("idle", idle), ("max", max)] {
            self.db_connections
                .with_label_values(&[state])
                .set(i64::from(value));
        }
    }

    /// Graph credentials whose client secret has expired, or expires within
    /// [`EXPIRY_HORIZON_DAYS`].
    pub fn set_credential_expiry(&self, expired: i64, expiring: i64) {
        for (state, value) in [("expired", expired), ("expiring_30d", expiring)] {
            self.credentials.with_label_values(&[state]).set(value);
        }
    }

    pub fn mailbox_check(&self, outcome: MailboxCheckOutcome) {
        self.mailbox_checks
            .with_label_values(&[outcome.label()])
            .inc();
    }

    /// Enabled mailboxes now, by the state of their background tests.
    pub fn set_mailboxes_by_check_state(&self, counts: &[(CheckState, i64)]) {
        for (state, count) in counts {
            self.mailboxes_by_check_state
                .with_label_values(&[state.label()])
                .set(*count);
        }
    }

    /// Every series in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(err) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut text) {
            tracing::error!(error = %err, "metrics could not be encoded");
        }
        text
    }
}

/// The content type of [`Metrics::encode`]'s text.
pub fn content_type() -> String {
    TextEncoder::new().format_type().to_owned()
}
