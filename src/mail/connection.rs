//! The transport under every probe: DNS, TCP, TLS (from the first byte or after STARTTLS),
//! and CRLF-terminated lines, every step bounded by the probe's timeout and every failure
//! put in words a person can act on.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{CertificateError, RootCertStore};
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf,
};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{Failure, ProbeOptions, ServerSettings, Stage};
use crate::domain::Security;
use crate::egress::ResolveError;

/// The longest line accepted from a server. Capability lists run to a few hundred bytes; a
/// peer sending more without a line break is not a mail server worth reading.
const MAX_LINE: u64 = 8 * 1024;

/// A connection to a mail server that speaks in lines.
pub(super) struct Connection<'a> {
    reader: BufReader<Transport>,
    host: &'a str,
    options: &'a ProbeOptions,
    local_ip: IpAddr,
}

impl<'a> Connection<'a> {
    /// Looks up the host, connects, and for [`Security::Tls`] completes the TLS handshake.
    pub(super) async fn open(
        settings: &ServerSettings<'a>,
        options: &'a ProbeOptions,
    ) -> Result<Self, Failure> {
        let tcp = connect(settings.host, settings.port, options).await?;
        let local_ip = tcp
            .local_addr()
            .map_err(|error| {
                Failure::new(Stage::Connect, format!("The connection failed: {error}."))
            })?
            .ip();
        let transport = match settings.security {
            Security::Tls => Transport::Tls(Box::new(
                handshake(tcp, settings.host, options, Stage::Tls).await?,
            )),
            Security::StartTls | Security::None => Transport::Plain(tcp),
        };
        Ok(Self {
            reader: BufReader::new(transport),
            host: settings.host,
            options,
            local_ip,
        })
    }

    /// Our own address, for SMTP's EHLO (an address literal is always a valid EHLO name).
    pub(super) fn local_ip(&self) -> IpAddr {
        self.local_ip
    }

    /// Switches to TLS after the server agreed to STARTTLS.
    pub(super) async fn start_tls(self) -> Result<Self, Failure> {
        // Bytes the server sent after agreeing would be read as if they came over TLS:
        // the STARTTLS command injection of CVE-2011-0411 and its kin.
        if !self.reader.buffer().is_empty() {
            return Err(Failure::new(
                Stage::StartTls,
                "The server sent more data right after agreeing to STARTTLS; stopped, as that data could have been injected.",
            ));
        }
        let Transport::Plain(tcp) = self.reader.into_inner() else {
            return Err(Failure::new(
                Stage::StartTls,
                "The connection is already encrypted.",
            ));
        };
        let tls = handshake(tcp, self.host, self.options, Stage::StartTls).await?;
        Ok(Self {
            reader: BufReader::new(Transport::Tls(Box::new(tls))),
            ..self
        })
    }

    /// Reads the server's first line, which a mail server sends as soon as it accepts.
    pub(super) async fn read_greeting(&mut self) -> Result<String, Failure> {
        let limit = self.options.timeout;
        match timeout(limit, self.read_capped_line()).await {
            Ok(Ok(line)) => Ok(line),
            Ok(Err(error)) => Err(error.into_failure(Stage::Greeting, "before sending a greeting")),
            Err(_) => Err(Failure::new(
                Stage::Greeting,
                format!(
                    "The server accepted the connection but sent nothing for {}: it may not be a mail server, or it expects TLS on this port.",
                    describe(limit)
                ),
            )),
        }
    }

    /// Reads one line of the server's answer to `command` (a name such as "LOGIN", never the
    /// line sent, which may hold the password).
    pub(super) async fn read_line(
        &mut self,
        stage: Stage,
        command: &str,
    ) -> Result<String, Failure> {
        let limit = self.options.timeout;
        match timeout(limit, self.read_capped_line()).await {
            Ok(Ok(line)) => Ok(line),
            Ok(Err(error)) => Err(error.into_failure(stage, &format!("after {command}"))),
            Err(_) => Err(Failure::new(
                stage,
                format!(
                    "The server did not answer {command} within {}.",
                    describe(limit)
                ),
            )),
        }
    }

    /// Sends `line` and CRLF; `command` names it in messages, so a password is never echoed.
    pub(super) async fn send(
        &mut self,
        line: &str,
        stage: Stage,
        command: &str,
    ) -> Result<(), Failure> {
        let stream = self.reader.get_mut();
        let write = async {
            stream.write_all(line.as_bytes()).await?;
            stream.write_all(b"\r\n").await?;
            stream.flush().await
        };
        match timeout(self.options.timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(Failure::new(
                stage,
                format!("Sending {command} failed: {error}."),
            )),
            Err(_) => Err(Failure::new(
                stage,
                format!(
                    "Sending {command} took longer than {}.",
                    describe(self.options.timeout)
                ),
            )),
        }
    }

    /// Sends a logout command and waits for its answer, as a courtesy: the test has
    /// already succeeded, so nothing that goes wrong here changes its outcome.
    pub(super) async fn sign_off(mut self, line: &str) {
        if self.send(line, Stage::Authentication, line).await.is_ok() {
            let _ = self.read_line(Stage::Authentication, line).await;
        }
        let _ = timeout(self.options.timeout, self.reader.get_mut().shutdown()).await;
    }

    async fn read_capped_line(&mut self) -> Result<String, LineError> {
        let mut line = Vec::new();
        let read = (&mut self.reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await
            .map_err(LineError::Io)?;
        if read == 0 {
            return Err(LineError::Closed);
        }
        if line.last() != Some(&b'\n') {
            return Err(if read as u64 == MAX_LINE {
                LineError::TooLong
            } else {
                LineError::Closed
            });
        }
        Ok(String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_owned())
    }
}

enum LineError {
    Closed,
    TooLong,
    Io(io::Error),
}

impl LineError {
    fn into_failure(self, stage: Stage, when: &str) -> Failure {
        let message = match self {
            Self::Closed => format!("The server closed the connection {when}."),
            Self::TooLong => format!(
                "The server sent a line longer than {MAX_LINE} bytes {when}: this does not look like a mail server."
            ),
            Self::Io(error) => format!("Reading from the server failed {when}: {error}."),
        };
        Failure::new(stage, message)
    }
}

/// Resolves `host` and connects to the first address that answers, all within `limit`.
async fn connect(host: &str, port: u16, options: &ProbeOptions) -> Result<TcpStream, Failure> {
    let limit = options.timeout;
    let deadline = Instant::now() + limit;
    // Only the addresses the policy checked are connected to: no second lookup.
    let addresses =
        options
            .egress
            .resolve(host, port, limit)
            .await
            .map_err(|error| match error {
                ResolveError::Refused(refused) => {
                    Failure::new(Stage::Destination, refused.to_string())
                }
                other => Failure::new(Stage::Dns, other.to_string()),
            })?;
    let mut failure = Failure::new(Stage::Dns, format!("\"{host}\" has no addresses."));
    for address in addresses {
        match timeout_at(deadline, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) => failure = connect_failure(address, &error),
            Err(_) => {
                return Err(Failure::new(
                    Stage::Connect,
                    format!(
                        "The connection to {address} timed out after {}: a firewall may be dropping it, or the host or port is wrong.",
                        describe(limit)
                    ),
                ));
            }
        }
    }
    Err(failure)
}

fn connect_failure(address: SocketAddr, error: &io::Error) -> Failure {
    let message = match error.kind() {
        io::ErrorKind::ConnectionRefused => format!(
            "{address} refused the connection: nothing listens on port {}, or a firewall rejects it.",
            address.port()
        ),
        _ => format!("Could not connect to {address}: {error}."),
    };
    Failure::new(Stage::Connect, message)
}

/// Runs the TLS handshake, checking the certificate against the web roots and the extra ones.
async fn handshake(
    tcp: TcpStream,
    host: &str,
    options: &ProbeOptions,
    stage: Stage,
) -> Result<TlsStream<TcpStream>, Failure> {
    let connector = tls_connector(options)?;
    let name = ServerName::try_from(host.to_owned()).map_err(|_| {
        Failure::new(
            stage,
            format!("\"{host}\" is not a name a TLS certificate can be checked against."),
        )
    })?;
    match timeout(options.timeout, connector.connect(name, tcp)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(Failure::new(stage, tls_failure_message(host, &error))),
        Err(_) => Err(Failure::new(
            stage,
            format!(
                "The TLS handshake did not finish within {}: the server may not speak TLS on this port.",
                describe(options.timeout)
            ),
        )),
    }
}

fn tls_connector(options: &ProbeOptions) -> Result<TlsConnector, Failure> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for certificate in &options.extra_roots {
        roots.add(certificate.clone()).map_err(|error| {
            Failure::new(
                Stage::Tls,
                format!("An extra trusted certificate cannot be used: {error}."),
            )
        })?;
    }
    // The provider is named here rather than taken from the process default, so probes work
    // the same in `main`, in tests and in any tool that never installed one.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| Failure::new(Stage::Tls, format!("TLS is misconfigured: {error}.")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Says why the handshake failed, from rustls' own error where there is one.
fn tls_failure_message(host: &str, error: &io::Error) -> String {
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(certificate)) => {
            certificate_failure_message(host, certificate)
        }
        Some(rustls::Error::InvalidMessage(_)) => {
            "The server did not answer in TLS: this port may expect STARTTLS or no encryption."
                .into()
        }
        Some(rustls::Error::AlertReceived(alert)) => {
            format!("The server ended the TLS handshake (alert: {alert:?}).")
        }
        Some(other) => format!("The TLS handshake failed: {other}."),
        None if error.kind() == io::ErrorKind::UnexpectedEof => {
            "The server closed the connection during the TLS handshake.".into()
        }
        None => format!("The TLS handshake failed: {error}."),
    }
}

fn certificate_failure_message(host: &str, error: &CertificateError) -> String {
    match error {
        CertificateError::UnknownIssuer => "The server's certificate is not trusted: it is not signed by a known certificate authority (it may be self-signed, or from a private CA that must be added as trusted).".into(),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("The server's certificate does not match the name \"{host}\": {error}.")
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("The server's certificate has expired: {error}.")
        }
        _ => format!("The server's certificate was rejected: {error}."),
    }
}

/// A timeout as a person says it: "3 seconds", "1 second", "500 ms", "1.5 seconds".
pub(super) fn describe(duration: Duration) -> String {
    let millis = duration.as_millis();
    match (millis / 1000, millis % 1000) {
        (1, 0) => "1 second".into(),
        (seconds, 0) => format!("{seconds} seconds"),
        (0, _) => format!("{millis} ms"),
        _ => format!("{:.1} seconds", duration.as_secs_f64()),
    }
}

/// The stream under the line reader: plain TCP until (unless) TLS starts.
enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_read_as_people_say_them() {
        assert_eq!(describe(Duration::from_secs(1)), "1 second");
        assert_eq!(describe(Duration::from_secs(3)), "3 seconds");
        assert_eq!(describe(Duration::from_millis(500)), "500 ms");
        assert_eq!(describe(Duration::from_millis(1500)), "1.5 seconds");
    }

    #[test]
    fn certificate_errors_say_which_check_failed() {
        let untrusted =
            certificate_failure_message("mail.example", &CertificateError::UnknownIssuer);
        assert!(untrusted.contains("not trusted"), "{untrusted}");

        let mismatch = certificate_failure_message(
            "mail.example",
            &CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("mail.example").unwrap(),
                presented: vec!["other.example".into()],
            },
        );
        assert!(
            mismatch.contains("does not match the name \"mail.example\""),
            "{mismatch}"
        );
        assert!(mismatch.contains("other.example"), "{mismatch}");
    }

    #[test]
    fn plain_text_on_a_tls_port_is_explained() {
        let error = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert!(tls_failure_message("mail.example", &error).contains("did not answer in TLS"));
    }
}
