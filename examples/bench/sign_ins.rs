//! Sign-ins as a browser makes them: local ones (the storm) and Microsoft ones through the
//! fake identity platform, whose token endpoint is timed by a proxy so that Portico's own
//! share of the callback can be told apart from the fake's.

use std::collections::HashMap;
use std::error::Error;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use crate::seed;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// A browser: its own cookie jar, and redirects left to the caller.
pub fn browser() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// A browser of a person at `address` (Portico trusts X-Forwarded-For in the benchmark), so
/// each storm agent's sign-ins are counted against their own address, as in an office
/// whose agents sign in at once.
fn browser_at(address: &str) -> Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-forwarded-for", address.parse()?);
    Ok(reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()?)
}

fn hidden_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = start + html[start..].find('"')?;
    Some(html[start..end].to_owned())
}

/// Opens the sign-in page and signs in with a password; ends on the dashboard's redirect.
pub async fn sign_in(
    browser: &reqwest::Client,
    base: &str,
    slug: &str,
    email: &str,
    password: &str,
) -> Result<()> {
    let login = format!("{base}/t/{slug}/login");
    let page = browser.get(&login).send().await?.text().await?;
    let token = hidden_field(&page, "csrf_token").ok_or("no form token on the sign-in page")?;
    let answer = browser
        .post(&login)
        .form(&[
            ("csrf_token", token.as_str()),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await?;
    let location = answer
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok());
    if answer.status() != StatusCode::SEE_OTHER || location != Some(&format!("/t/{slug}/")) {
        return Err(format!("sign-in failed: {} {location:?}", answer.status()).into());
    }
    Ok(())
}

/// The session cookie a signed-in browser holds, as a `Cookie` header value.
pub async fn signed_in_cookie(
    base: &str,
    slug: &str,
    email: &str,
    password: &str,
) -> Result<String> {
    // A jar of its own, so the cookie can be read back.
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let browser = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    sign_in(&browser, base, slug, email, password).await?;
    use reqwest::cookie::CookieStore as _;
    let cookies = jar
        .cookies(&base.parse()?)
        .ok_or("no cookie after sign-in")?;
    Ok(cookies.to_str()?.to_owned())
}

/// Local sign-ins by `concurrency` browsers at once, each a new browser, until stopped.
pub struct Storm {
    concurrency: usize,
    stop: Arc<AtomicBool>,
    completed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
    started: Instant,
}

#[derive(Debug, Clone, Serialize)]
pub struct StormReport {
    pub concurrency: usize,
    pub sign_ins: u64,
    pub sign_ins_per_second: f64,
}

impl Storm {
    /// `concurrency` agents (`seed::agent_email(n)`), each from an address of their own,
    /// signing in again and again.
    pub fn start(concurrency: usize, base: &str, slug: &str, password: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let completed = Arc::new(AtomicU64::new(0));
        let tasks = (0..concurrency)
            .map(|n| {
                let (stop, completed) = (stop.clone(), completed.clone());
                let (base, slug, email, password) = (
                    base.to_owned(),
                    slug.to_owned(),
                    seed::agent_email(n),
                    password.to_owned(),
                );
                let address = format!("198.51.100.{}", n + 1);
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        sign_in(&browser_at(&address)?, &base, &slug, &email, &password).await?;
                        completed.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        Self {
            concurrency,
            stop,
            completed,
            tasks,
            started: Instant::now(),
        }
    }

    pub async fn stop(self) -> Result<StormReport> {
        self.stop.store(true, Ordering::Relaxed);
        let elapsed = self.started.elapsed();
        for task in self.tasks {
            task.await??;
        }
        let sign_ins = self.completed.load(Ordering::Relaxed);
        Ok(StormReport {
            concurrency: self.concurrency,
            sign_ins,
            sign_ins_per_second: sign_ins as f64 / elapsed.as_secs_f64(),
        })
    }
}

/// Stands between Portico and the fake Microsoft, forwarding everything and timing each
/// token request by the code it redeems.
#[derive(Clone)]
pub struct TimingProxy {
    pub url: String,
    upstream: String,
    client: reqwest::Client,
    token_times: Arc<Mutex<HashMap<String, Duration>>>,
}

impl TimingProxy {
    /// Listens, so the fake can be told the proxy's URL before it starts.
    pub async fn bind() -> Result<(tokio::net::TcpListener, String)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        Ok((listener, url))
    }

    /// Forwards what `listener` receives to `upstream`.
    pub fn serve(listener: tokio::net::TcpListener, url: String, upstream: &str) -> Result<Self> {
        let proxy = Self {
            url,
            upstream: upstream.to_owned(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            token_times: Arc::default(),
        };
        let app = Router::new().fallback(forward).with_state(proxy.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(proxy)
    }

    /// How long the fake took to redeem `code`, as Portico waited for it.
    pub fn token_time(&self, code: &str) -> Option<Duration> {
        self.token_times.lock().ok()?.get(code).copied()
    }
}

async fn forward(State(proxy): State<TimingProxy>, request: Request) -> Response {
    match forwarded(&proxy, request).await {
        Ok(response) => response,
        Err(err) => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::from(err.to_string()))
            .unwrap_or_default(),
    }
}

async fn forwarded(proxy: &TimingProxy, request: Request) -> Result<Response> {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, 1 << 20).await?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let code = path
        .ends_with("/oauth2/v2.0/token")
        .then(|| {
            url::form_urlencoded::parse(&body)
                .find(|(name, _)| name == "code")
                .map(|(_, value)| value.into_owned())
        })
        .flatten();
    let mut upstream = proxy
        .client
        .request(parts.method, format!("{}{path}", proxy.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != "host" {
            upstream = upstream.header(name, value);
        }
    }
    let started = Instant::now();
    let answer = upstream.send().await?;
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await?;
    if let Some(code) = code
        && let Ok(mut times) = proxy.token_times.lock()
    {
        times.insert(code, started.elapsed());
    }
    let mut response = Response::builder().status(status);
    for (name, value) in &headers {
        if name != "transfer-encoding" && name != "content-length" && name != "connection" {
            response = response.header(name, value);
        }
    }
    Ok(response.body(Body::from(bytes))?)
}

/// One Microsoft sign-in: Portico's button, the fake's authorize endpoint, then Portico's
/// callback. Returns the callback's whole time and the token request's share of it.
pub async fn microsoft_sign_in(
    base: &str,
    slug: &str,
    proxy: &TimingProxy,
) -> Result<(Duration, Duration)> {
    let browser = browser()?;
    let location = |response: &reqwest::Response| -> Result<String> {
        Ok(response
            .headers()
            .get("location")
            .ok_or_else(|| format!("no redirect: {}", response.status()))?
            .to_str()?
            .to_owned())
    };
    let start = browser
        .get(format!("{base}/t/{slug}/auth/microsoft"))
        .send()
        .await?;
    let authorize_url = location(&start)?;
    let authorize = browser.get(&authorize_url).send().await?;
    let Ok(callback) = location(&authorize) else {
        let status = authorize.status();
        let page = authorize.text().await?;
        return Err(format!("{authorize_url} answered {status}: {page}").into());
    };
    let code = url::Url::parse(&callback)?
        .query_pairs()
        .find(|(name, _)| name == "code")
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| format!("Microsoft sent no code: {callback}"))?;
    let started = Instant::now();
    let answer = browser.get(&callback).send().await?;
    let elapsed = started.elapsed();
    let Ok(landed) = location(&answer) else {
        let status = answer.status();
        let page = answer.text().await?;
        return Err(format!("the callback answered {status}: {page}").into());
    };
    if landed != format!("/t/{slug}/") {
        return Err(format!("the callback sent the browser to {landed}").into());
    }
    let token = proxy
        .token_time(&code)
        .ok_or("the token request did not pass the proxy")?;
    Ok((elapsed, token))
}
