//! The built `portico` binary as a process, for what only a process shows: exit codes,
//! signals, log output, several instances at once.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Longest wait for anything a process should do in milliseconds: a hang guard, not a
/// timing assertion.
const PATIENCE: Duration = Duration::from_secs(60);

/// `portico ARGS` with a clean environment: only what the test sets, a data directory and
/// `RUST_LOG=info`.
pub fn portico(data_dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portico"));
    command
        .args(args)
        .env_clear()
        .env("PORTICO_DATA_DIR", data_dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs a command to its end, feeding `input` to its standard input.
pub async fn run(mut command: Command, input: &str) -> Output {
    use tokio::io::AsyncWriteExt as _;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .unwrap()
        .unwrap()
}

/// A serving `portico`, its output read line by line (standard output and error).
pub struct Running {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every line read so far.
    pub output: Vec<String>,
    /// Where it listens, from its "listening on" line.
    pub address: SocketAddr,
}

impl Running {
    /// Starts `command` and waits until it listens.
    pub async fn start(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (sender, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        forward_lines(stdout, sender.clone());
        forward_lines(stderr, sender);
        let mut running = Self {
            child,
            lines,
            output: Vec::new(),
            address: "0.0.0.0:0".parse().unwrap(),
        };
        let line = running.line_containing("listening on ").await;
        let after = &line[line.find("listening on ").unwrap() + "listening on ".len()..];
        let address: String = after
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
            .collect();
        running.address = address.parse().unwrap();
        running
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Waits for the next line containing `text`; panics with the output when the process
    /// ends first.
    pub async fn line_containing(&mut self, text: &str) -> String {
        let found = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = self.lines.recv().await {
                self.output.push(line.clone());
                if line.contains(text) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            _ => panic!(
                "portico never printed {text:?}; its output:\n{}",
                self.output.join("\n")
            ),
        }
    }

    /// Sends SIGTERM, as a container runtime or systemd does to stop it.
    pub async fn terminate(&self) {
        let pid = self.child.id().unwrap().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(status.success(), "kill -TERM {pid} failed");
    }

    /// Waits for the process to end; returns its status and all its output.
    pub async fn exit(mut self) -> (ExitStatus, Vec<String>) {
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("portico did not exit:\n{}", self.output.join("\n")))
            .unwrap();
        while let Some(line) = self.lines.recv().await {
            self.output.push(line);
        }
        (status, self.output)
    }
}

fn forward_lines(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    sender: mpsc::UnboundedSender<String>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
}
