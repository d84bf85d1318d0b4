//! The processes under load (Portico and the ceiling) and the databases Portico runs on.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// A sibling binary of this one in the release target directory.
pub fn built(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let examples = exe.parent().ok_or("no directory")?;
    let path = match name {
        "portico" => examples.parent().ok_or("no target directory")?.join(name),
        _ => examples.join(name),
    };
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{} is not built (bench/run builds it)", path.display()).into())
    }
}

/// A free port on 127.0.0.1: Portico must know its own URL before it starts.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A process under load.
pub struct Server {
    child: Child,
    pub url: String,
    /// From spawning to the first 200 of `/readyz` (Portico) or the first line (ceiling).
    pub ready_after: Duration,
}

impl Server {
    /// The bare axum handlers, on a port they pick and print: "hello" at `/`, and each of
    /// `pages` (route, recorded response) at its route.
    pub async fn ceiling(pages: &[(String, PathBuf)]) -> Result<Self> {
        let started = Instant::now();
        let mut child = Command::new(built("bench-ceiling")?)
            .args(
                pages
                    .iter()
                    .map(|(route, file)| format!("--page={route}={}", file.display())),
            )
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let address = listening_address(&mut child).await?;
        Ok(Self {
            child,
            url: format!("http://{address}"),
            ready_after: started.elapsed(),
        })
    }

    /// `bench-ceiling --portico`: Portico's own stack with each page's data in memory,
    /// configured by `env` as `portico serve` is, on a port it picks and prints.
    pub async fn stack(env: &[(&str, String)], log: &Path) -> Result<Self> {
        let started = Instant::now();
        let mut child = Command::new(built("bench-ceiling")?)
            .arg("--portico")
            .env_clear()
            .env("PORTICO_BIND", "127.0.0.1:0")
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .kill_on_drop(true)
            .spawn()?;
        let address = listening_address(&mut child).await?;
        Ok(Self {
            child,
            url: format!("http://{address}"),
            ready_after: started.elapsed(),
        })
    }

    /// `BINARY serve` with `env`, its log in `log`; ready when `/readyz` answers 200.
    pub async fn portico(
        binary: &Path,
        port: u16,
        env: &[(&str, String)],
        log: &Path,
    ) -> Result<Self> {
        let url = format!("http://127.0.0.1:{port}");
        let log_path = log;
        let log = std::fs::File::create(log_path)?;
        let started = Instant::now();
        let child = Command::new(binary)
            .arg("serve")
            .env_clear()
            .env("PORTICO_BIND", format!("127.0.0.1:{port}"))
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let client = reqwest::Client::new();
        let readyz = format!("{url}/readyz");
        loop {
            let answer = client.get(&readyz).send().await;
            if answer.is_ok_and(|response| response.status() == 200) {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let output = std::fs::read_to_string(log_path).unwrap_or_default();
                return Err(format!("Portico was not ready within 30 s:\n{output}").into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(Self {
            ready_after: started.elapsed(),
            child,
            url,
        })
    }

    /// Resident memory now, in MiB.
    pub fn rss_mib(&self) -> Result<f64> {
        let pid = self.child.id().ok_or("the process has ended")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .ok_or("no VmRSS")?
            .parse()?;
        Ok(kib / 1024.0)
    }

    /// SIGTERM, as a service manager stops it, then waits.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await?;
        }
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// The address a ceiling prints on its first line, `listening on ADDR`.
async fn listening_address(child: &mut Child) -> Result<String> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let line = BufReader::new(stdout)
        .lines()
        .next_line()
        .await?
        .ok_or("the ceiling printed nothing")?;
    let address = line
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("unexpected first line: {line}"))?;
    Ok(address.to_owned())
}

/// A database of its own for one backend's run, dropped at the end.
pub enum Database {
    Sqlite {
        url: String,
    },
    Postgres {
        admin_url: String,
        name: String,
        url: String,
    },
}

impl Database {
    pub fn sqlite(dir: &Path) -> Self {
        Self::Sqlite {
            url: format!("sqlite://{}?mode=rwc", dir.join("portico.db").display()),
        }
    }

    /// A fresh database on the server of `admin_url`, which may create databases.
    pub async fn postgres(admin_url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let name = format!("portico_bench_{}", std::process::id());
        let admin = sqlx::AnyPool::connect(admin_url).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&admin)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await?;
        admin.close().await;
        let mut url = url::Url::parse(admin_url)?;
        url.set_path(&name);
        Ok(Self::Postgres {
            admin_url: admin_url.to_owned(),
            url: url.to_string(),
            name,
        })
    }

    pub fn url(&self) -> &str {
        match self {
            Self::Sqlite { url } | Self::Postgres { url, .. } => url,
        }
    }

    pub async fn drop_it(self) -> Result<()> {
        if let Self::Postgres {
            admin_url, name, ..
        } = self
        {
            let admin = sqlx::AnyPool::connect(&admin_url).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&admin)
                .await?;
            admin.close().await;
        }
        Ok(())
    }
}
