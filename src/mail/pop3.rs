//! POP3 (RFC 1939, STLS from RFC 2595, AUTH from RFC 5034): greeting, STLS, USER and PASS
//! or AUTH XOAUTH2, QUIT.

use zeroize::Zeroizing;

use super::connection::Connection;
use super::oauth::{self, TokenCredentials};
use super::{Credentials, Failure, ProbeOptions, ServerSettings, SignIn, Stage, signed_in};
use crate::domain::Security;

/// RFC 5034 section 4: an AUTH command, CRLF included, may be no longer than this; a longer
/// initial response goes on its own line after the server's `+`.
const MAX_AUTH_LINE: usize = 255;

/// Lines tolerated in CAPA's answer; servers list a dozen capabilities at most.
const MAX_CAPA_LINES: usize = 100;

pub(super) async fn probe(
    settings: &ServerSettings<'_>,
    options: &ProbeOptions,
) -> Result<String, Failure> {
    let sign_in = SignIn::of(settings)?;
    let mut connection = Connection::open(settings, options).await?;
    let greeting = connection.read_greeting().await?;
    let greeting = match parse_status(&greeting) {
        Reply::Ok(text) => text.to_owned(),
        Reply::Err(text) => {
            return Err(Failure::new(
                Stage::Greeting,
                format!("The server refused the session; it said: \"{text}\""),
            ));
        }
        Reply::Other(line) => {
            return Err(Failure::new(
                Stage::Greeting,
                format!("This is not a POP3 server; it said: \"{line}\""),
            ));
        }
    };

    if settings.security == Security::StartTls {
        command(&mut connection, "STLS", "STLS", Stage::StartTls)
            .await?
            .map_err(|text| {
                Failure::new(
                    Stage::StartTls,
                    format!(
                        "The server does not offer STLS (STARTTLS for POP3); it said: \"{text}\""
                    ),
                )
            })?;
        connection = connection.start_tls().await?;
    }

    match &sign_in {
        SignIn::Password(credentials) => log_in(&mut connection, credentials).await?,
        SignIn::OAuth(token) => {
            log_in_with_token(&mut connection, token, settings.security).await?;
        }
    }
    connection.sign_off("QUIT").await;
    Ok(signed_in(&greeting))
}

async fn log_in(
    connection: &mut Connection<'_>,
    credentials: &Credentials<'_>,
) -> Result<(), Failure> {
    let user = format!("USER {}", credentials.username);
    let pass = Zeroizing::new(format!("PASS {}", credentials.password));
    for (line, name) in [(user.as_str(), "USER"), (pass.as_str(), "PASS")] {
        command(connection, line, name, Stage::Authentication)
            .await?
            .map_err(|text| {
                Failure::new(
                    Stage::Authentication,
                    format!("The server refused the sign-in; it said: \"{text}\""),
                )
            })?;
    }
    Ok(())
}

/// AUTH XOAUTH2, as Exchange Online's and Gmail's POP3 take it: the token on the command line
/// when it fits there (it rarely does), else after the server's `+`.
async fn log_in_with_token(
    connection: &mut Connection<'_>,
    token: &TokenCredentials<'_>,
    security: Security,
) -> Result<(), Failure> {
    const COMMAND: &str = "AUTH XOAUTH2";
    let stage = Stage::Authentication;
    let mechanisms = sasl_mechanisms(connection).await?;
    // A server that lists none may still take XOAUTH2; one that lists others does not.
    if !mechanisms.is_empty() && !mechanisms.iter().any(|name| name == "XOAUTH2") {
        return Err(oauth::not_offered(&mechanisms, security));
    }
    let xoauth2 = token.xoauth2();
    let one_line = Zeroizing::new(format!("{COMMAND} {}", *xoauth2));
    let mut answer = if one_line.len() + 2 <= MAX_AUTH_LINE {
        connection.send(&one_line, stage, COMMAND).await?;
        connection.read_line(stage, COMMAND).await?
    } else {
        connection.send(COMMAND, stage, COMMAND).await?;
        let answer = connection.read_line(stage, COMMAND).await?;
        if challenge(&answer).is_none() {
            let text = match parse_status(&answer) {
                Reply::Ok(text) | Reply::Err(text) | Reply::Other(text) => text,
            };
            return Err(Failure::new(
                stage,
                format!(
                    "The server does not accept OAuth 2.0 sign-in (AUTH XOAUTH2); it said: \"{text}\""
                ),
            ));
        }
        connection.send(&xoauth2, stage, "the access token").await?;
        connection.read_line(stage, COMMAND).await?
    };
    let server_challenge = challenge(&answer).map(str::to_owned);
    if server_challenge.is_some() {
        // A refused token: the challenge says why, and an empty line ends the exchange.
        connection
            .send("", stage, "the answer to the server's challenge")
            .await?;
        answer = connection.read_line(stage, COMMAND).await?;
    }
    match parse_status(&answer) {
        Reply::Ok(_) => Ok(()),
        Reply::Err(text) | Reply::Other(text) => {
            Err(token.refusal(server_challenge.as_deref(), text))
        }
    }
}

/// The SASL mechanisms CAPA lists (RFC 2449), upper-cased; none if it lists none or the
/// server does not know CAPA.
async fn sasl_mechanisms(connection: &mut Connection<'_>) -> Result<Vec<String>, Failure> {
    let stage = Stage::Authentication;
    connection.send("CAPA", stage, "CAPA").await?;
    let answer = connection.read_line(stage, "CAPA").await?;
    if !matches!(parse_status(&answer), Reply::Ok(_)) {
        return Ok(Vec::new());
    }
    let mut mechanisms = Vec::new();
    for _ in 0..=MAX_CAPA_LINES {
        let line = connection.read_line(stage, "CAPA").await?;
        if line == "." {
            return Ok(mechanisms);
        }
        let mut words = line.split_whitespace();
        if words
            .next()
            .is_some_and(|word| word.eq_ignore_ascii_case("SASL"))
        {
            mechanisms.extend(words.map(str::to_ascii_uppercase));
        }
    }
    Err(Failure::new(
        stage,
        format!("The server sent more than {MAX_CAPA_LINES} lines in answer to CAPA."),
    ))
}

/// The text of a SASL challenge, `+ text` (RFC 5034), which is not a `+OK`.
fn challenge(line: &str) -> Option<&str> {
    if line.starts_with("+OK") {
        return None;
    }
    line.strip_prefix('+').map(str::trim)
}

/// Sends `line` and reads its one-line answer. The outer error is a broken connection; the
/// inner one is the server's refusal in its own words, for the caller to explain.
async fn command(
    connection: &mut Connection<'_>,
    line: &str,
    name: &str,
    stage: Stage,
) -> Result<Result<(), String>, Failure> {
    connection.send(line, stage, name).await?;
    let answer = connection.read_line(stage, name).await?;
    Ok(match parse_status(&answer) {
        Reply::Ok(_) => Ok(()),
        Reply::Err(text) => Err(text.to_owned()),
        Reply::Other(line) => Err(line.to_owned()),
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Reply<'a> {
    Ok(&'a str),
    Err(&'a str),
    Other(&'a str),
}

fn parse_status(line: &str) -> Reply<'_> {
    if let Some(text) = line.strip_prefix("+OK") {
        Reply::Ok(text.trim())
    } else if let Some(text) = line.strip_prefix("-ERR") {
        Reply::Err(text.trim())
    } else {
        Reply::Other(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_split_into_verdict_and_words() {
        assert_eq!(
            parse_status("+OK Dovecot (Debian) ready."),
            Reply::Ok("Dovecot (Debian) ready.")
        );
        assert_eq!(
            parse_status("-ERR [AUTH] Authentication failed."),
            Reply::Err("[AUTH] Authentication failed.")
        );
        assert_eq!(parse_status("+OK"), Reply::Ok(""));
        assert_eq!(parse_status("* OK IMAP"), Reply::Other("* OK IMAP"));
    }

    #[test]
    fn challenges_are_plus_lines_that_are_not_ok() {
        assert_eq!(challenge("+ "), Some(""));
        assert_eq!(
            challenge("+ eyJzdGF0dXMiOiI0MDEifQ=="),
            Some("eyJzdGF0dXMiOiI0MDEifQ==")
        );
        assert_eq!(challenge("+OK User successfully authenticated."), None);
        assert_eq!(challenge("-ERR no"), None);
    }
}
