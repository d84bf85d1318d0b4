//! Load from wrk (Debian's package): a fixed number of seconds at a fixed number of
//! connections, on loopback.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::process::Command;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

const REPORT_SCRIPT: &str = include_str!("wrk-report.lua");

/// How every run loads its target.
#[derive(Debug, Clone)]
pub struct Load {
    pub connections: u32,
    pub threads: u32,
    pub duration: Duration,
    script: PathBuf,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measured {
    pub requests: u64,
    pub duration_us: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// Connect, read, write and timeout errors.
    pub socket_errors: u64,
    /// Answers other than 2xx and 3xx.
    pub bad_status: u64,
}

impl Measured {
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / (self.duration_us as f64 / 1e6)
    }

    pub fn p50_ms(&self) -> f64 {
        self.p50_us / 1000.0
    }

    pub fn p99_ms(&self) -> f64 {
        self.p99_us / 1000.0
    }
}

impl Load {
    /// Writes wrk's report script into `dir`.
    pub fn new(dir: &Path, connections: u32, duration: Duration) -> Result<Self> {
        let script = dir.join("wrk-report.lua");
        std::fs::write(&script, REPORT_SCRIPT)?;
        Ok(Self {
            connections,
            threads: 2,
            duration,
            script,
        })
    }

    /// GETs `url` for the configured time, sending `cookie` when given. A run where any
    /// answer was an error, or not 2xx/3xx, fails: a fast error page proves nothing.
    pub async fn get(&self, url: &str, cookie: Option<&str>) -> Result<Measured> {
        let mut wrk = Command::new("wrk");
        wrk.arg("--connections")
            .arg(self.connections.to_string())
            .arg("--threads")
            .arg(self.threads.to_string())
            .arg("--duration")
            .arg(format!("{}s", self.duration.as_secs()))
            .arg("--timeout")
            .arg("5s")
            .arg("--script")
            .arg(&self.script);
        if let Some(cookie) = cookie {
            wrk.arg("--header").arg(format!("Cookie: {cookie}"));
        }
        let output = wrk.arg(url).output().await?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!(
                "wrk failed: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        let report = stdout
            .lines()
            .find(|line| line.starts_with("{\"requests\""))
            .ok_or_else(|| format!("no report from wrk: {stdout}"))?;
        let measured: Measured = serde_json::from_str(report)?;
        if measured.socket_errors > 0 || measured.bad_status > 0 {
            return Err(format!("{url}: errors under load: {stdout}").into());
        }
        Ok(measured)
    }
}
