//! SMTP submission (RFC 5321, STARTTLS from RFC 3207, AUTH from RFC 4954): greeting, EHLO,
//! STARTTLS and EHLO again, AUTH PLAIN, LOGIN or XOAUTH2, QUIT.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use zeroize::Zeroizing;

use super::connection::Connection;
use super::oauth::{self, TokenCredentials};
use super::{Credentials, Failure, ProbeOptions, ServerSettings, SignIn, Stage, signed_in};
use crate::domain::Security;

/// Continuation lines tolerated in one reply; EHLO lists a dozen extensions at most.
const MAX_REPLY_LINES: usize = 100;

pub(super) async fn probe(
    settings: &ServerSettings<'_>,
    options: &ProbeOptions,
) -> Result<String, Failure> {
    let sign_in = SignIn::of(settings)?;
    let mut connection = Connection::open(settings, options).await?;
    let first = connection.read_greeting().await?;
    let greeting = read_reply(&mut connection, first, Stage::Greeting, "the greeting").await?;
    if greeting.code != 220 {
        return Err(Failure::new(
            Stage::Greeting,
            format!(
                "The server refused the session; it said: \"{}\"",
                greeting.text()
            ),
        ));
    }

    let mut extensions = ehlo(&mut connection).await?;
    if settings.security == Security::StartTls {
        if !extensions
            .iter()
            .any(|line| line.eq_ignore_ascii_case("STARTTLS"))
        {
            return Err(Failure::new(
                Stage::StartTls,
                "The server does not offer STARTTLS on this port.",
            ));
        }
        let reply = exchange(&mut connection, "STARTTLS", Stage::StartTls, "STARTTLS").await?;
        if reply.code != 220 {
            return Err(Failure::new(
                Stage::StartTls,
                format!("The server refused STARTTLS; it said: \"{}\"", reply.text()),
            ));
        }
        connection = connection.start_tls().await?;
        // What the server offers may change once the connection is encrypted (RFC 3207 4.2).
        extensions = ehlo(&mut connection).await?;
    }

    let reply = authenticate(
        &mut connection,
        &sign_in,
        &auth_mechanisms(&extensions),
        settings.security,
    )
    .await?;
    if reply.code != 235 {
        return Err(Failure::new(
            Stage::Authentication,
            format!(
                "The server refused the sign-in; it said: \"{}\"",
                reply.text()
            ),
        ));
    }
    connection.sign_off("QUIT").await;
    Ok(signed_in(&greeting.text_without_code()))
}

/// Sends EHLO and returns the extensions the server lists, one per line.
async fn ehlo(connection: &mut Connection<'_>) -> Result<Vec<String>, Failure> {
    let command = format!("EHLO {}", address_literal(connection.local_ip()));
    let reply = exchange(connection, &command, Stage::Greeting, "EHLO").await?;
    if reply.code != 250 {
        return Err(Failure::new(
            Stage::Greeting,
            format!("The server refused EHLO; it said: \"{}\"", reply.text()),
        ));
    }
    Ok(reply.lines.into_iter().skip(1).collect())
}

/// AUTH XOAUTH2 for a token; for a password AUTH PLAIN where offered, else AUTH LOGIN.
/// Returns the server's final reply.
async fn authenticate(
    connection: &mut Connection<'_>,
    sign_in: &SignIn<'_>,
    mechanisms: &[String],
    security: Security,
) -> Result<Reply, Failure> {
    if mechanisms.is_empty() {
        let hint = if security == Security::None {
            " Many servers offer it only on an encrypted connection: choose TLS or STARTTLS."
        } else {
            ""
        };
        return Err(Failure::new(
            Stage::Authentication,
            format!("The server does not offer sign-in (AUTH) on this connection.{hint}"),
        ));
    }
    match sign_in {
        SignIn::Password(credentials) => {
            authenticate_with_password(connection, credentials, mechanisms).await
        }
        SignIn::OAuth(token) => {
            authenticate_with_token(connection, token, mechanisms, security).await
        }
    }
}

/// AUTH XOAUTH2 with the token as its initial response; a 235 reply or the failure.
async fn authenticate_with_token(
    connection: &mut Connection<'_>,
    token: &TokenCredentials<'_>,
    mechanisms: &[String],
    security: Security,
) -> Result<Reply, Failure> {
    const COMMAND: &str = "AUTH XOAUTH2";
    let stage = Stage::Authentication;
    if !mechanisms.iter().any(|mechanism| mechanism == "XOAUTH2") {
        return Err(oauth::not_offered(mechanisms, security));
    }
    let command = Zeroizing::new(format!("{COMMAND} {}", *token.xoauth2()));
    let mut reply = exchange(connection, &command, stage, COMMAND).await?;
    let mut challenge = None;
    if reply.code == 334 {
        // A refused token: the challenge says why, and an empty line ends the exchange.
        challenge = Some(reply.text_without_code());
        reply = exchange(
            connection,
            "",
            stage,
            "the answer to the server's challenge",
        )
        .await?;
    }
    if reply.code == 235 {
        Ok(reply)
    } else {
        Err(token.refusal(challenge.as_deref(), &reply.text()))
    }
}

async fn authenticate_with_password(
    connection: &mut Connection<'_>,
    credentials: &Credentials<'_>,
    mechanisms: &[String],
) -> Result<Reply, Failure> {
    let offers = |name: &str| mechanisms.iter().any(|mechanism| mechanism == name);
    let stage = Stage::Authentication;
    if offers("PLAIN") {
        let command = Zeroizing::new(format!("AUTH PLAIN {}", *credentials.sasl_plain()));
        return exchange(connection, &command, stage, "AUTH PLAIN").await;
    }
    if offers("LOGIN") {
        let mut reply = exchange(connection, "AUTH LOGIN", stage, "AUTH LOGIN").await?;
        let answers = [
            (
                Zeroizing::new(BASE64.encode(credentials.username)),
                "the user name",
            ),
            (
                Zeroizing::new(BASE64.encode(credentials.password)),
                "the password",
            ),
        ];
        for (answer, name) in answers {
            if reply.code != 334 {
                break;
            }
            reply = exchange(connection, &answer, stage, name).await?;
        }
        return Ok(reply);
    }
    Err(Failure::new(
        stage,
        format!(
            "The server offers only {} sign-in, and Portico signs in with PLAIN or LOGIN.",
            mechanisms.join(", ")
        ),
    ))
}

/// Sends `line` and reads its whole reply.
async fn exchange(
    connection: &mut Connection<'_>,
    line: &str,
    stage: Stage,
    name: &str,
) -> Result<Reply, Failure> {
    connection.send(line, stage, name).await?;
    let first = connection.read_line(stage, name).await?;
    read_reply(connection, first, stage, name).await
}

/// Reads the continuation lines (`250-...`) that follow `first` up to the last (`250 ...`).
async fn read_reply(
    connection: &mut Connection<'_>,
    first: String,
    stage: Stage,
    name: &str,
) -> Result<Reply, Failure> {
    let mut reply = Reply::default();
    let mut line = first;
    loop {
        let not_smtp = || {
            Failure::new(
                stage,
                format!("This is not an SMTP server; it said: \"{line}\""),
            )
        };
        let (code, last, text) = parse_reply_line(&line).ok_or_else(not_smtp)?;
        reply.code = code;
        reply.lines.push(text.to_owned());
        if last {
            return Ok(reply);
        }
        if reply.lines.len() > MAX_REPLY_LINES {
            return Err(Failure::new(
                stage,
                format!("The server sent more than {MAX_REPLY_LINES} lines in answer to {name}."),
            ));
        }
        line = connection.read_line(stage, name).await?;
    }
}

#[derive(Debug, Default)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    /// The reply as the server wrote it, lines joined: "535 5.7.8 Authentication failed".
    fn text(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" "))
            .trim_end()
            .to_owned()
    }

    fn text_without_code(&self) -> String {
        self.lines.join(" ")
    }
}

/// `250-SIZE 1000` → (250, false, "SIZE 1000"); `250 OK` → (250, true, "OK").
fn parse_reply_line(line: &str) -> Option<(u16, bool, &str)> {
    let code = line
        .get(..3)
        .filter(|code| code.bytes().all(|b| b.is_ascii_digit()))?;
    let code = code.parse().ok()?;
    match line.as_bytes().get(3) {
        None => Some((code, true, "")),
        Some(b' ') => Some((code, true, &line[4..])),
        Some(b'-') => Some((code, false, &line[4..])),
        Some(_) => None,
    }
}

/// The SASL mechanisms in EHLO's AUTH line, upper-cased; also the pre-standard `AUTH=`.
fn auth_mechanisms(extensions: &[String]) -> Vec<String> {
    extensions
        .iter()
        .filter_map(|line| {
            let keyword = line.get(..5)?;
            (keyword.eq_ignore_ascii_case("AUTH ") || keyword.eq_ignore_ascii_case("AUTH="))
                .then(|| line[5..].split_whitespace())
        })
        .flatten()
        .map(str::to_ascii_uppercase)
        .fold(Vec::new(), |mut mechanisms, mechanism| {
            if !mechanisms.contains(&mechanism) {
                mechanisms.push(mechanism);
            }
            mechanisms
        })
}

/// EHLO's name for us: our address as a literal, valid without a DNS name (RFC 5321 4.1.3).
fn address_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => format!("[{ip}]"),
        IpAddr::V6(ip) => format!("[IPv6:{ip}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_split_into_code_continuation_and_text() {
        assert_eq!(
            parse_reply_line("250-SIZE 1000"),
            Some((250, false, "SIZE 1000"))
        );
        assert_eq!(parse_reply_line("250 OK"), Some((250, true, "OK")));
        assert_eq!(parse_reply_line("220"), Some((220, true, "")));
        assert_eq!(parse_reply_line("+OK POP3 ready"), None);
        assert_eq!(parse_reply_line("2500 x"), None);
    }

    #[test]
    fn auth_mechanisms_come_from_either_spelling() {
        let extensions = [
            "SIZE 33554432".to_owned(),
            "AUTH plain LOGIN".to_owned(),
            "AUTH=LOGIN XOAUTH2".to_owned(),
            "AUTHX FOO".to_owned(),
        ];
        assert_eq!(auth_mechanisms(&extensions), ["PLAIN", "LOGIN", "XOAUTH2"]);
        assert!(auth_mechanisms(&["STARTTLS".to_owned()]).is_empty());
    }

    #[test]
    fn ehlo_names_are_address_literals() {
        assert_eq!(address_literal("192.0.2.1".parse().unwrap()), "[192.0.2.1]");
        assert_eq!(
            address_literal("2001:db8::1".parse().unwrap()),
            "[IPv6:2001:db8::1]"
        );
    }

    #[test]
    fn replies_read_as_the_server_wrote_them() {
        let reply = Reply {
            code: 535,
            lines: vec!["5.7.8 Authentication credentials invalid".into()],
        };
        assert_eq!(reply.text(), "535 5.7.8 Authentication credentials invalid");
    }
}
