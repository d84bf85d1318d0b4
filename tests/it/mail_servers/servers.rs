//! Real mail servers on 127.0.0.1, started once per test binary: a private Dovecot (IMAP and
//! POP3, from Debian's dovecot-imapd and dovecot-pop3d) and aiosmtpd (SMTP, from PyPI).
//! Both present a certificate for "localhost" and 127.0.0.1, signed by a CA made at start
//! that only the tests trust (through `ProbeOptions::extra_roots`).
//!
//! The servers live in a static that is never dropped, so neither can be killed on drop:
//! each holds a pipe on its standard input instead, and stops when the test process exits,
//! however it exits, and the pipe closes.

use std::fs;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::CertificateDer;

/// The throwaway account on every server. The password has a space, a double quote and a
/// backslash, so IMAP's quoting is exercised on every sign-in.
pub const USER: &str = "agent@example.test";
pub const PASSWORD: &str = "correct \"horse\" battery\\staple";
/// A second IMAP account whose password is not ASCII, which IMAP LOGIN cannot carry.
pub const UNICODE_USER: &str = "agent2@example.test";
pub const UNICODE_PASSWORD: &str = "pässwörd ✓";

/// How long the servers get to start on a busy two-core machine.
const STARTUP: Duration = Duration::from_secs(30);

/// Where the mail servers come from, said once when one is missing.
const INSTALL: &str = "run ./test, which installs what the suite needs (Dovecot, aiosmtpd, \
     PostgreSQL, Chromium) and runs it";

/// The programs the mail servers run on, found on this machine.
pub struct Installed {
    dovecot: PathBuf,
    /// A Python that has aiosmtpd: not always the first `python3` on PATH (a pyenv one
    /// hides Debian's python3-aiosmtpd).
    python: PathBuf,
}

/// Dovecot and a Python with aiosmtpd, looked up once. When either is missing the test binary
/// stops at once with one line saying what to run, instead of every mail test panicking with
/// the same story.
pub fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| match (dovecot_binary(), python_with_aiosmtpd()) {
        (Some(dovecot), Some(python)) => Installed { dovecot, python },
        (dovecot, python) => {
            let missing = [
                dovecot.is_none().then_some("Dovecot (IMAP and POP3)"),
                python.is_none().then_some("aiosmtpd (SMTP)"),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" and ");
            // Straight to the process's stderr: the test harness captures eprintln!.
            let _ = writeln!(
                std::io::stderr(),
                "The tests need {missing}, not found on this machine: {INSTALL}."
            );
            std::process::exit(2)
        }
    })
}

pub struct MailServers {
    /// IMAP with STARTTLS (as on port 143). Dovecot's ports listen on 127.0.0.2 as well,
    /// an address the certificate does not name.
    pub imap: u16,
    /// IMAP over TLS (as on 993).
    pub imaps: u16,
    pub pop3: u16,
    pub pop3s: u16,
    /// SMTP with STARTTLS (as on 587), AUTH only after it.
    pub smtp_starttls: u16,
    /// SMTP over TLS (as on 465).
    pub smtps: u16,
    /// SMTP over TLS offering only AUTH LOGIN.
    pub smtps_login_only: u16,
    /// SMTP without TLS, so without STARTTLS and AUTH.
    pub smtp_plain: u16,
    /// The CA that signed the servers' certificate.
    pub ca: CertificateDer<'static>,
    /// The same CA as a PEM file, for Portico's PORTICO_MAIL_CA_FILE.
    pub ca_file: std::path::PathBuf,
    /// The servers' certificate and key (PEM), for the tests' own TLS responders.
    pub certificate_file: PathBuf,
    pub key_file: PathBuf,
    /// Where the SMTP server writes every message it accepts (see `received_by`).
    outbox: PathBuf,
    /// Dovecot's accounts, one `user:{PLAIN}password` a line (see `set_password`).
    users: PathBuf,
    _dovecot: Child,
    _smtp: Child,
}

/// The servers, started by the first test that asks.
pub fn mail_servers() -> &'static MailServers {
    static SERVERS: OnceLock<MailServers> = OnceLock::new();
    SERVERS.get_or_init(MailServers::start)
}

impl MailServers {
    fn start() -> Self {
        // Kept after this process: the Dovecot wrapper deletes it once Dovecot stops.
        let dir = tempfile::Builder::new()
            .prefix("portico-mail-")
            .tempdir()
            .unwrap()
            .keep();
        // Dovecot's auth and login processes run as its own users and must reach in here.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let ca = write_certificates(&dir);
        let [imap, imaps, pop3, pop3s] = free_ports();
        let dovecot = start_dovecot(&dir, imap, imaps, pop3, pop3s);
        let outbox = dir.join("outbox");
        fs::create_dir(&outbox).unwrap();
        let (smtp, ports) = start_smtp(&dir, &outbox);
        let smtp_port = |name: &str| {
            ports
                .iter()
                .find(|(port_name, _)| port_name == name)
                .map(|(_, port)| *port)
                .unwrap_or_else(|| panic!("smtp_server.py printed no {name} port: {ports:?}"))
        };
        Self {
            imap,
            imaps,
            pop3,
            pop3s,
            smtp_starttls: smtp_port("STARTTLS"),
            smtps: smtp_port("TLS"),
            smtps_login_only: smtp_port("TLS_LOGIN_ONLY"),
            smtp_plain: smtp_port("PLAIN"),
            ca,
            ca_file: dir.join("ca.pem"),
            certificate_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
            outbox,
            users: dir.join("users"),
            _dovecot: dovecot,
            _smtp: smtp,
        }
    }
}

impl MailServers {
    /// Every message the SMTP server accepted for `address` so far, as received (headers and
    /// body), after a first `X-Envelope-To:` line.
    pub fn received_by(&self, address: &str) -> Vec<String> {
        let mut messages: Vec<String> = fs::read_dir(&self.outbox)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
            .map(|path| fs::read_to_string(path).unwrap())
            .filter(|message| {
                message.lines().next().is_some_and(|envelope| {
                    envelope
                        .trim_start_matches("X-Envelope-To: ")
                        .split(',')
                        .any(|to| to.eq_ignore_ascii_case(address))
                })
            })
            .collect();
        messages.sort();
        messages
    }
}

impl MailServers {
    /// Gives the Dovecot account `user` the password `password`, making the account when it
    /// is new: a test's own account, whose password it may change while other tests sign in
    /// with theirs. Dovecot reads the file again when its size or time changes (at most once
    /// a second), so a test waits for the change to take; giving a password of another length
    /// than the one before makes sure the size changes.
    pub fn set_password(&self, user: &str, password: &str) {
        static EDITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _editing = EDITING.lock().unwrap();
        let content = fs::read_to_string(&self.users).unwrap();
        let prefix = format!("{user}:");
        let mut lines: Vec<String> = content
            .lines()
            .filter(|line| !line.starts_with(&prefix))
            .map(str::to_owned)
            .collect();
        lines.push(format!("{user}:{{PLAIN}}{password}"));
        // Written beside it and renamed over it, so Dovecot never reads half a file.
        let next = self
            .users
            .with_extension(uuid::Uuid::new_v4().simple().to_string());
        fs::write(&next, lines.join("\n") + "\n").unwrap();
        fs::set_permissions(&next, fs::Permissions::from_mode(0o644)).unwrap();
        fs::rename(&next, &self.users).unwrap();
    }
}

/// Writes `server.pem` and `server.key` for "localhost" and 127.0.0.1, and returns their CA.
fn write_certificates(dir: &Path) -> CertificateDer<'static> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Portico test mail CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let key = KeyPair::generate().unwrap();
    let certificate = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &*ca)
        .unwrap();
    fs::write(dir.join("server.pem"), certificate.pem()).unwrap();
    fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    ca.der().clone()
}

/// Ports free on 127.0.0.1 now, all different. Dovecot cannot report the ports it picked, so
/// it is given these; the kernel does not hand them out again straight away.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners = [(); N].map(|()| TcpListener::bind("127.0.0.1:0").unwrap());
    listeners.map(|listener| listener.local_addr().unwrap().port())
}

/// Runs `dovecot -F` under a shell that stops it when our end of its stdin closes, then
/// deletes `dir`.
const DOVECOT_WRAPPER: &str = r#"
"$1" -F -c "$2" &
dovecot=$!
exec 3<&0
( cat <&3 >/dev/null; kill "$dovecot" 2>/dev/null ) &
wait "$dovecot"
status=$?
rm -rf "$3"
exit "$status"
"#;

fn start_dovecot(dir: &Path, imap: u16, imaps: u16, pop3: u16, pop3s: u16) -> Child {
    let binary = &installed().dovecot;
    let dir_text = dir.display();
    fs::write(
        dir.join("users"),
        format!("{USER}:{{PLAIN}}{PASSWORD}\n{UNICODE_USER}:{{PLAIN}}{UNICODE_PASSWORD}\n"),
    )
    .unwrap();
    fs::set_permissions(dir.join("users"), fs::Permissions::from_mode(0o644)).unwrap();
    // For Dovecot 2.3 (Debian 12). Run as root, it needs users to drop to: "dovecot" and
    // "dovenull" come with Debian's package, and mail is read and written as "nobody".
    for mail_dir in ["mail", "home"] {
        fs::create_dir(dir.join(mail_dir)).unwrap();
        fs::set_permissions(dir.join(mail_dir), fs::Permissions::from_mode(0o777)).unwrap();
    }
    let config = format!(
        r#"# A private Dovecot for Portico's tests (tests/it/mail_servers/servers.rs).
base_dir = {dir_text}/run
state_dir = {dir_text}/state
log_path = {dir_text}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1, 127.0.0.2
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
mail_location = maildir:{dir_text}/mail/%u
ssl = yes
ssl_cert = <{dir_text}/server.pem
ssl_key = <{dir_text}/server.key
auth_mechanisms = plain login
# Refusals are answered at once: the tests are not attackers to slow down.
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {dir_text}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={dir_text}/home/%u
}}
# Nor is the next sign-in from 127.0.0.1 delayed after a failure (the auth penalty): the
# auth process gives the penalty up when it cannot reach this socket.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
"#
    );
    let config_path = dir.join("dovecot.conf");
    fs::write(&config_path, config).unwrap();

    let mut child = Command::new("sh")
        .args(["-c", DOVECOT_WRAPPER, "sh"])
        .arg(binary)
        .arg(&config_path)
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("dovecot.stderr")).unwrap())
        .spawn()
        .unwrap();
    let ports = [
        ("127.0.0.1", imap),
        ("127.0.0.1", imaps),
        ("127.0.0.2", imaps),
        ("127.0.0.1", pop3),
        ("127.0.0.1", pop3s),
    ];
    let deadline = Instant::now() + STARTUP;
    while !ports
        .iter()
        .all(|&(ip, port)| TcpStream::connect((ip, port)).is_ok())
    {
        let stopped = child.try_wait().unwrap();
        if stopped.is_some() || Instant::now() > deadline {
            let log = |name: &str| fs::read_to_string(dir.join(name)).unwrap_or_default();
            panic!(
                "Dovecot did not start (exit: {stopped:?}).\nstderr:\n{}\nlog:\n{}",
                log("dovecot.stderr"),
                log("dovecot.log")
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    child
}

/// `dovecot`, which root's PATH has, or where Debian puts it for everyone else's, with the
/// IMAP and POP3 servers of dovecot-imapd and dovecot-pop3d beside it.
fn dovecot_binary() -> Option<PathBuf> {
    let protocols = ["/usr/lib/dovecot/imap", "/usr/lib/dovecot/pop3"];
    if !protocols.iter().all(|server| Path::new(server).exists()) {
        return None;
    }
    ["dovecot", "/usr/sbin/dovecot"]
        .into_iter()
        .map(PathBuf::from)
        .find(|binary| runs(Command::new(binary).arg("--version")))
}

/// The first Python 3 that can import aiosmtpd: the one on PATH (pip's), then the system's.
fn python_with_aiosmtpd() -> Option<PathBuf> {
    ["python3", "/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .map(PathBuf::from)
        .find(|python| runs(Command::new(python).args(["-c", "import aiosmtpd"])))
}

fn runs(command: &mut Command) -> bool {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Starts smtp_server.py and returns it with the ports it printed, by name.
fn start_smtp(dir: &Path, outbox: &Path) -> (Child, Vec<(String, u16)>) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/mail_servers/smtp_server.py"
    );
    let stderr_path = dir.join("smtp.stderr");
    let mut child = Command::new(&installed().python)
        .arg(script)
        .arg(dir.join("server.pem"))
        .arg(dir.join("server.key"))
        .args([USER, PASSWORD])
        .arg(outbox)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver.recv_timeout(STARTUP).unwrap_or_default();
    let Some(ports) = line.trim().strip_prefix("ready ") else {
        panic!(
            "The SMTP server did not start.\nstderr:\n{}",
            fs::read_to_string(&stderr_path).unwrap_or_default()
        );
    };
    let ports = ports
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, port)| (name.to_owned(), port.parse().unwrap()))
        .collect();
    (child, ports)
}
