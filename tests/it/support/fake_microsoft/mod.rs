//! A fake Microsoft identity platform (Entra ID, v2.0 endpoints) and Microsoft Graph, served
//! on a loopback port. Microsoft cannot be reached from tests, and a mock that answers only
//! the happy path would hide what Portico must handle, so the fake behaves like Entra, quirks
//! included: the same AADSTS codes and wording, error pages where Entra will not redirect,
//! pairwise `sub`s, single-use codes, PKCE, secret expiry, key rotation.
//!
//! Self-contained on purpose (it uses nothing from `portico`): it is also built by
//! `examples/fake-microsoft.rs`, and it must not share code with what it tests.
#![allow(
    dead_code,
    reason = "each test binary and the example use a different part of this API"
)]

mod assertions;
mod directory;
mod errors;
mod graph;
mod keys;
mod oidc;
mod seed;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State as AxumState};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use uuid::Uuid;

#[allow(
    unused_imports,
    reason = "each test binary and the example use a different part of this API"
)]
pub use directory::{
    CONSUMERS_TENANT, EXCHANGE_RESOURCE, FakeApp, FakeSecret, FakeUser, IssuedAccess,
    MailboxAccess, SentMail,
};
pub use keys::Signing;
#[allow(
    unused_imports,
    reason = "each test binary and the example use a different part of this API"
)]
pub use seed::{Seed, SeedDirectory, SeedMailbox};

use directory::{Directory, State};

/// A running fake; cheap to clone, and every clone drives the same fake.
#[derive(Clone)]
pub struct FakeMicrosoft {
    shared: Arc<Shared>,
}

/// What the request handlers share.
pub(crate) struct Shared {
    /// `http://127.0.0.1:PORT`, or the URL of a proxy in front of it.
    base_url: String,
    /// Where it listens: `http://127.0.0.1:PORT`.
    listen_url: String,
    /// Stands in for `https://login.microsoftonline.com`.
    login_url: String,
    /// Stands in for `https://graph.microsoft.com`.
    graph_url: String,
    state: Mutex<State>,
    /// Every connection is reset, new and open ones alike: Microsoft is unreachable.
    unreachable: AtomicBool,
    /// Requests a `Fault::Hang` holds right now.
    held: AtomicUsize,
    /// Wakes held requests when faults change.
    faults_changed: Notify,
}

/// The endpoints Portico calls, each of which can be made to fail on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `.well-known/openid-configuration`.
    Discovery,
    /// The signing keys (JWKS).
    Keys,
    /// The token endpoint, every grant.
    Token,
    /// Microsoft Graph.
    Graph,
}

impl Endpoint {
    fn of(path: &str) -> Option<Self> {
        if path.ends_with("/.well-known/openid-configuration") {
            Some(Self::Discovery)
        } else if path.ends_with("/discovery/v2.0/keys") {
            Some(Self::Keys)
        } else if path.ends_with("/oauth2/v2.0/token") {
            Some(Self::Token)
        } else if path.starts_with("/graph/") {
            Some(Self::Graph)
        } else {
            None
        }
    }
}

/// How an endpoint misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Takes the request and never answers, until the fault is lifted (then it answers).
    Hang,
    /// Answers 200 with a body that is none of Microsoft's.
    Garbage,
}

impl Shared {
    /// The state; a panic in another handler does not make it unusable.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FakeMicrosoft {
    /// Starts a fake on 127.0.0.1 and a free port, with only the consumers directory.
    pub async fn start() -> FakeMicrosoft {
        #[expect(
            clippy::expect_used,
            reason = "a test cannot go on without a loopback listener"
        )]
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("the fake Microsoft could not listen on 127.0.0.1")
    }

    /// Starts a fake on `addr` (the example uses it for a fixed port).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FakeMicrosoft> {
        Self::start_behind(addr, None).await
    }

    /// Starts a fake on `addr` that calls itself `public_url` in its documents, redirects
    /// and tokens: for a proxy in front of it (the benchmark's, which times the fake).
    pub async fn start_behind(
        addr: SocketAddr,
        public_url: Option<&str>,
    ) -> std::io::Result<FakeMicrosoft> {
        let listener = TcpListener::bind(addr).await?;
        let listen_url = format!("http://{}", listener.local_addr()?);
        let base_url = public_url.map_or_else(|| listen_url.clone(), str::to_owned);
        let shared = Arc::new(Shared {
            listen_url,
            login_url: format!("{base_url}/login"),
            graph_url: format!("{base_url}/graph"),
            base_url,
            state: Mutex::new(State::new()),
            unreachable: AtomicBool::new(false),
            held: AtomicUsize::new(0),
            faults_changed: Notify::new(),
        });
        let app = router(Arc::clone(&shared));
        let listener = FlakyListener {
            inner: listener,
            shared: Arc::clone(&shared),
        };
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                eprintln!("fake Microsoft stopped: {err}");
            }
        });
        Ok(FakeMicrosoft { shared })
    }

    /// Where the fake is reached, `http://127.0.0.1:PORT` (or its proxy's URL).
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Where the fake listens, `http://127.0.0.1:PORT`, proxy or not.
    pub fn listen_url(&self) -> String {
        self.shared.listen_url.clone()
    }

    /// Use in place of `https://login.microsoftonline.com`.
    pub fn login_url(&self) -> String {
        self.shared.login_url.clone()
    }

    /// Use in place of `https://graph.microsoft.com`.
    pub fn graph_url(&self) -> String {
        self.shared.graph_url.clone()
    }

    /// Adds (or replaces) a directory, reachable by its GUID or any of its domains.
    pub fn add_directory(&self, tenant_id: Uuid, verified_domains: &[&str]) {
        let mut state = self.shared.state();
        state.directories.retain(|d| d.id != tenant_id);
        state.directories.push(Directory {
            id: tenant_id,
            verified_domains: verified_domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
        });
    }

    /// Registers (or replaces) an app registration.
    pub fn add_app(&self, app: FakeApp) {
        let mut state = self.shared.state();
        state.apps.retain(|a| a.client_id != app.client_id);
        state.apps.push(app);
    }

    /// Uploads a certificate (PEM) to the app `client_id`, as an admin does under
    /// "Certificates & secrets".
    pub fn upload_certificate(&self, client_id: Uuid, pem: &str) {
        let mut state = self.shared.state();
        if let Some(app) = state.apps.iter_mut().find(|a| a.client_id == client_id) {
            app.certificates.push(pem.to_owned());
        }
    }

    /// Deletes an uploaded certificate from the app `client_id`.
    pub fn remove_certificate(&self, client_id: Uuid, pem: &str) {
        let mut state = self.shared.state();
        if let Some(app) = state.apps.iter_mut().find(|a| a.client_id == client_id) {
            app.certificates
                .retain(|uploaded| uploaded.trim() != pem.trim());
        }
    }

    /// Adds (or replaces, by UPN) a user.
    pub fn add_user(&self, user: FakeUser) {
        let mut state = self.shared.state();
        state
            .users
            .retain(|u| !u.upn.eq_ignore_ascii_case(&user.upn));
        state.users.push(user);
    }

    /// The user the authorize endpoint signs in from now on, unless a `login_hint` names
    /// another known user: the browser session there is no login form to create.
    pub fn sign_in_as(&self, upn: &str) {
        self.shared.state().signed_in = Some(upn.to_owned());
    }

    /// The next authorization ends as if the user cancelled: `access_denied`, AADSTS65004.
    pub fn cancel_next_sign_in(&self) {
        self.shared.state().cancel_next = true;
    }

    /// The next ID token issued is rewritten by `tamper`, which also chooses its signing.
    pub fn tamper_next_id_token(
        &self,
        tamper: impl FnOnce(&mut serde_json::Value) -> Signing + Send + 'static,
    ) {
        self.shared.state().tamper_next_id_token = Some(Box::new(tamper));
    }

    /// Revokes every refresh token issued so far, as a password change or an admin would.
    pub fn revoke_refresh_tokens(&self) {
        self.shared.state().refresh_tokens.clear();
    }

    /// Every authorization code, access, refresh and ID token issued so far.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.state().issued.clone()
    }

    /// How many times the JWKS was fetched.
    pub fn keys_fetches(&self) -> usize {
        self.shared.state().keys_fetches
    }

    /// How many requests reached the token endpoint, any grant, success or not.
    pub fn token_requests(&self) -> usize {
        self.shared.state().token_requests
    }

    /// The names of the fields the last token request sent in its body (`client_id`,
    /// `client_secret`, `client_assertion`...), to check what a client did not send.
    pub fn last_token_request_fields(&self) -> Vec<String> {
        self.shared.state().last_token_fields.clone()
    }

    /// How many times an OpenID configuration document was fetched.
    pub fn discovery_fetches(&self) -> usize {
        self.shared.state().discovery_fetches
    }

    /// Signs with a new key (new `kid`) from now on; the JWKS serves it and the previous one.
    pub fn rotate_signing_key(&self) {
        self.shared.state().keys.rotate();
    }

    /// Makes `endpoint` fail as `fault` says, or (`None`) work again; held requests then
    /// get their answer.
    pub fn set_fault(&self, endpoint: Endpoint, fault: Option<Fault>) {
        let mut state = self.shared.state();
        match fault {
            Some(fault) => state.faults.insert(endpoint, fault),
            None => state.faults.remove(&endpoint),
        };
        drop(state);
        self.shared.faults_changed.notify_waiters();
    }

    /// Makes Microsoft unreachable (every connection reset), or reachable again.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.shared.unreachable.store(unreachable, Ordering::SeqCst);
    }

    /// How many requests a `Fault::Hang` holds right now.
    pub fn held_requests(&self) -> usize {
        self.shared.held.load(Ordering::SeqCst)
    }

    /// Makes every endpoint wait `delay` before answering (`None`: answer at once).
    pub fn set_delay(&self, delay: Option<Duration>) {
        self.shared.state().delay = delay;
    }

    /// Moves the fake's clock forward: codes (10 min), tokens (1 h) and secrets expire by it,
    /// and the tokens it then issues carry the moved times.
    pub fn advance_clock(&self, by: Duration) {
        let by = time::Duration::try_from(by).unwrap_or(time::Duration::MAX);
        let mut state = self.shared.state();
        state.clock_offset = state.clock_offset.saturating_add(by);
    }

    /// A JWT over exactly `claims`, signed as `how` says: for forged-token tests.
    pub fn mint_id_token(&self, claims: serde_json::Value, how: Signing) -> String {
        self.shared.state().keys.mint(&claims, &how)
    }

    /// The claims of the ID token the fake would issue to `client_id` for user `upn` now (a
    /// starting point to tamper with before `mint_id_token`); `None` for an unknown user.
    pub fn id_token_claims(
        &self,
        client_id: Uuid,
        upn: &str,
        nonce: Option<&str>,
    ) -> Option<serde_json::Value> {
        let state = self.shared.state();
        let user = state.user(upn)?;
        Some(oidc::id_token_claims(
            &self.shared.login_url,
            client_id,
            user,
            nonce,
            state.now(),
        ))
    }

    /// What `access_token` grants, if the fake issued it: how Exchange Online checks an
    /// XOAUTH2 bearer token.
    pub fn access_granted_by(&self, access_token: &str) -> Option<IssuedAccess> {
        let state = self.shared.state();
        let grant = state.access_tokens.get(access_token)?;
        Some(IssuedAccess {
            app_id: grant.app_id,
            tenant_id: grant.tenant_id,
            audience: grant.audience.clone(),
            roles: grant.roles.clone(),
            app_only: !grant.delegated,
            expired: grant.expires_at <= state.now(),
        })
    }

    /// Every message Graph accepted to send (`sendMail`), oldest first.
    pub fn sent_mail(&self) -> Vec<SentMail> {
        self.shared.state().sent_mail.clone()
    }

    /// What Graph answers app `client_id` reading `mailbox` or sending as it (default:
    /// `NotFound`).
    pub fn set_mailbox_access(&self, client_id: Uuid, mailbox: &str, access: MailboxAccess) {
        self.shared
            .state()
            .mailboxes
            .insert((client_id, mailbox.to_ascii_lowercase()), access);
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/login/{authority}/v2.0/.well-known/openid-configuration",
            get(oidc::discovery),
        )
        .route("/login/{authority}/discovery/v2.0/keys", get(oidc::keys))
        .route(
            "/login/{authority}/oauth2/v2.0/authorize",
            get(oidc::authorize),
        )
        .route("/login/{authority}/oauth2/v2.0/token", post(oidc::token))
        .route("/login/{authority}/oauth2/v2.0/logout", get(oidc::logout))
        .route("/graph/v1.0/organization", get(graph::organization))
        .route(
            "/graph/v1.0/users/{user}/{*path}",
            get(graph::user_resource).post(graph::user_action),
        )
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), delay))
        .with_state(shared)
}

/// Simulates a slow Microsoft (`set_delay`) and failing endpoints (`set_fault`), for
/// Portico's timeout and fault tests.
async fn delay(
    AxumState(shared): AxumState<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let delay = shared.state().delay;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let endpoint = Endpoint::of(request.uri().path());
    let fault = || endpoint.and_then(|endpoint| shared.state().faults.get(&endpoint).copied());
    if fault() == Some(Fault::Hang) {
        let _held = Held::new(&shared);
        loop {
            let changed = shared.faults_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if fault() != Some(Fault::Hang) {
                break;
            }
            changed.await;
        }
    }
    if fault() == Some(Fault::Garbage) {
        return (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            "{\"value\": [{\"id\": \u{1}\u{2} <html>garbage",
        )
            .into_response();
    }
    next.run(request).await
}

/// Counts a held request for as long as it is held (dropped when the client gives up).
struct Held<'a>(&'a Shared);

impl<'a> Held<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.held.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The fake's listener: while Microsoft is unreachable, it resets new connections, and
/// `FlakyStream` fails the open ones.
struct FlakyListener {
    inner: TcpListener,
    shared: Arc<Shared>,
}

impl axum::serve::Listener for FlakyListener {
    type Io = FlakyStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (FlakyStream, SocketAddr) {
        loop {
            let Ok((stream, addr)) = self.inner.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            if self.shared.unreachable.load(Ordering::SeqCst) {
                // Reset, not closed: what a client sees when the network refuses.
                let _ = stream.set_zero_linger();
                continue;
            }
            let shared = Arc::clone(&self.shared);
            return (
                FlakyStream {
                    inner: stream,
                    shared,
                },
                addr,
            );
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

struct FlakyStream {
    inner: TcpStream,
    shared: Arc<Shared>,
}

impl FlakyStream {
    fn check(&self) -> std::io::Result<()> {
        if self.shared.unreachable.load(Ordering::SeqCst) {
            Err(std::io::ErrorKind::ConnectionReset.into())
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for FlakyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FlakyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An unguessable opaque string, for codes, refresh tokens and the like.
fn random_token() -> String {
    let bytes = [Uuid::new_v4().into_bytes(), Uuid::new_v4().into_bytes()].concat();
    URL_SAFE_NO_PAD.encode(bytes)
}
