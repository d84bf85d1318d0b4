//! IMAP (RFC 9051, RFC 3501): greeting, STARTTLS, LOGIN, AUTHENTICATE PLAIN or XOAUTH2,
//! LOGOUT.

use zeroize::Zeroizing;

use super::connection::Connection;
use super::oauth::{self, TokenCredentials};
use super::{Credentials, Failure, ProbeOptions, ServerSettings, SignIn, Stage, signed_in};
use crate::domain::Security;

/// Untagged lines tolerated before a command's tagged answer: a server that streams more
/// than this is not answering.
const MAX_UNTAGGED: usize = 100;

pub(super) async fn probe(
    settings: &ServerSettings<'_>,
    options: &ProbeOptions,
) -> Result<String, Failure> {
    let sign_in = SignIn::of(settings)?;
    let mut connection = Connection::open(settings, options).await?;
    let greeting = connection.read_greeting().await?;
    let greeting =
        parse_greeting(&greeting).map_err(|message| Failure::new(Stage::Greeting, message))?;

    if settings.security == Security::StartTls {
        connection
            .send("a STARTTLS", Stage::StartTls, "STARTTLS")
            .await?;
        let (status, text) = read_tagged(&mut connection, "a", Stage::StartTls, "STARTTLS").await?;
        if status != Status::Ok {
            return Err(Failure::new(
                Stage::StartTls,
                format!("The server does not offer STARTTLS; it said: \"{text}\""),
            ));
        }
        connection = connection.start_tls().await?;
    }

    match &sign_in {
        SignIn::Password(credentials) => {
            let (status, text) = log_in(&mut connection, credentials).await?;
            if status != Status::Ok {
                return Err(Failure::new(
                    Stage::Authentication,
                    format!("The server refused the sign-in; it said: \"{text}\""),
                ));
            }
        }
        SignIn::OAuth(token) => {
            log_in_with_token(&mut connection, token, settings.security).await?
        }
    }
    connection.sign_off("c LOGOUT").await;
    Ok(signed_in(&greeting))
}

/// LOGIN with quoted strings when both are ASCII; otherwise AUTHENTICATE PLAIN, whose
/// base64 carries UTF-8 that IMAP4rev1's quoted strings may not.
async fn log_in(
    connection: &mut Connection<'_>,
    credentials: &Credentials<'_>,
) -> Result<(Status, String), Failure> {
    if credentials.username.is_ascii() && credentials.password.is_ascii() {
        let password = Zeroizing::new(quoted(credentials.password));
        let command = Zeroizing::new(format!(
            "b LOGIN {} {}",
            quoted(credentials.username),
            *password
        ));
        connection
            .send(&command, Stage::Authentication, "LOGIN")
            .await?;
        return read_tagged(connection, "b", Stage::Authentication, "LOGIN").await;
    }
    connection
        .send(
            "b AUTHENTICATE PLAIN",
            Stage::Authentication,
            "AUTHENTICATE PLAIN",
        )
        .await?;
    let line = connection
        .read_line(Stage::Authentication, "AUTHENTICATE PLAIN")
        .await?;
    if !line.starts_with('+') {
        return Ok(parse_tagged(&line, "b").unwrap_or((Status::Bad, line)));
    }
    connection
        .send(
            &credentials.sasl_plain(),
            Stage::Authentication,
            "the PLAIN credentials",
        )
        .await?;
    read_tagged(connection, "b", Stage::Authentication, "AUTHENTICATE PLAIN").await
}

/// AUTHENTICATE XOAUTH2, with the token on the command line where the server takes an
/// initial response (SASL-IR, RFC 4959), else after its `+`.
async fn log_in_with_token(
    connection: &mut Connection<'_>,
    token: &TokenCredentials<'_>,
    security: Security,
) -> Result<(), Failure> {
    const COMMAND: &str = "AUTHENTICATE XOAUTH2";
    let stage = Stage::Authentication;
    let capabilities = capabilities(connection).await?;
    if !capabilities.iter().any(|name| name == "AUTH=XOAUTH2") {
        let mechanisms: Vec<String> = capabilities
            .iter()
            .filter_map(|name| name.strip_prefix("AUTH="))
            .map(str::to_owned)
            .collect();
        return Err(oauth::not_offered(&mechanisms, security));
    }
    let xoauth2 = token.xoauth2();
    let mut answer = if capabilities.iter().any(|name| name == "SASL-IR") {
        let command = Zeroizing::new(format!("b {COMMAND} {}", *xoauth2));
        connection.send(&command, stage, COMMAND).await?;
        read_sasl_answer(connection, COMMAND).await?
    } else {
        connection
            .send(&format!("b {COMMAND}"), stage, COMMAND)
            .await?;
        match read_sasl_answer(connection, COMMAND).await? {
            SaslAnswer::Continue(_) => {
                connection.send(&xoauth2, stage, "the access token").await?;
                read_sasl_answer(connection, COMMAND).await?
            }
            done @ SaslAnswer::Done(..) => done,
        }
    };
    let mut challenge = None;
    if let SaslAnswer::Continue(text) = answer {
        // A refused token: the challenge says why, and an empty line ends the exchange.
        challenge = Some(text);
        connection
            .send("", stage, "the answer to the server's challenge")
            .await?;
        let (status, text) = read_tagged(connection, "b", stage, COMMAND).await?;
        answer = SaslAnswer::Done(status, text);
    }
    match answer {
        SaslAnswer::Done(Status::Ok, _) => Ok(()),
        SaslAnswer::Done(_, text) => Err(token.refusal(challenge.as_deref(), &text)),
        SaslAnswer::Continue(_) => Err(Failure::new(
            stage,
            "The server asked for more after the answer to its challenge.",
        )),
    }
}

/// What the server lists in answer to CAPABILITY, upper-cased: `IMAP4REV1`, `AUTH=PLAIN`...
async fn capabilities(connection: &mut Connection<'_>) -> Result<Vec<String>, Failure> {
    let stage = Stage::Authentication;
    connection.send("k CAPABILITY", stage, "CAPABILITY").await?;
    let mut capabilities = Vec::new();
    for _ in 0..=MAX_UNTAGGED {
        let line = connection.read_line(stage, "CAPABILITY").await?;
        if parse_tagged(&line, "k").is_some() {
            return Ok(capabilities);
        }
        if let Some(names) = line
            .get(..13)
            .filter(|start| start.eq_ignore_ascii_case("* CAPABILITY "))
            .map(|_| &line[13..])
        {
            capabilities.extend(names.split_whitespace().map(str::to_ascii_uppercase));
        }
    }
    Err(Failure::new(
        stage,
        format!("The server sent more than {MAX_UNTAGGED} lines without answering CAPABILITY."),
    ))
}

/// The next step of an AUTHENTICATE exchange: a challenge (`+ text`) or the tagged end.
#[derive(Debug, PartialEq, Eq)]
enum SaslAnswer {
    Continue(String),
    Done(Status, String),
}

async fn read_sasl_answer(
    connection: &mut Connection<'_>,
    command: &str,
) -> Result<SaslAnswer, Failure> {
    for _ in 0..=MAX_UNTAGGED {
        let line = connection.read_line(Stage::Authentication, command).await?;
        if let Some(text) = line.strip_prefix('+') {
            return Ok(SaslAnswer::Continue(text.trim().to_owned()));
        }
        if let Some((status, text)) = parse_tagged(&line, "b") {
            return Ok(SaslAnswer::Done(status, text));
        }
    }
    Err(Failure::new(
        Stage::Authentication,
        format!("The server sent more than {MAX_UNTAGGED} lines without answering {command}."),
    ))
}

/// Reads until the line tagged `tag`, skipping untagged data such as capabilities.
async fn read_tagged(
    connection: &mut Connection<'_>,
    tag: &str,
    stage: Stage,
    command: &str,
) -> Result<(Status, String), Failure> {
    for _ in 0..=MAX_UNTAGGED {
        let line = connection.read_line(stage, command).await?;
        if let Some(answer) = parse_tagged(&line, tag) {
            return Ok(answer);
        }
    }
    Err(Failure::new(
        stage,
        format!("The server sent more than {MAX_UNTAGGED} lines without answering {command}."),
    ))
}

#[derive(Debug, PartialEq, Eq)]
enum Status {
    Ok,
    No,
    Bad,
}

/// `tag OK|NO|BAD text` → the status and the text (response code kept: it names the reason,
/// as in "[AUTHENTICATIONFAILED] Authentication failed.").
fn parse_tagged(line: &str, tag: &str) -> Option<(Status, String)> {
    let rest = line.strip_prefix(tag)?.strip_prefix(' ')?;
    let (status, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let status = match status.to_ascii_uppercase().as_str() {
        "OK" => Status::Ok,
        "NO" => Status::No,
        "BAD" => Status::Bad,
        _ => return None,
    };
    Some((status, text.trim().to_owned()))
}

/// The greeting's words for a person, without the capability list many servers put first.
fn parse_greeting(line: &str) -> Result<String, String> {
    let upper = line.to_ascii_uppercase();
    if upper.starts_with("* OK") || upper.starts_with("* PREAUTH") {
        let text = line[2..].split_once(' ').map_or("", |(_, text)| text);
        Ok(without_response_code(text).to_owned())
    } else if upper.starts_with("* BYE") {
        Err(format!(
            "The server refused the session; it said: \"{}\"",
            line[5..].trim()
        ))
    } else {
        Err(format!("This is not an IMAP server; it said: \"{line}\""))
    }
}

/// Drops a leading `[CODE ...]`, such as `[CAPABILITY IMAP4rev1 ...]`.
fn without_response_code(text: &str) -> &str {
    match text.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        Some((_, rest)) => rest.trim_start(),
        None => text,
    }
}

/// An IMAP quoted string: backslash and double quote escaped (RFC 9051, `quoted`).
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_answers_keep_the_response_code() {
        assert_eq!(
            parse_tagged("b NO [AUTHENTICATIONFAILED] Authentication failed.", "b"),
            Some((
                Status::No,
                "[AUTHENTICATIONFAILED] Authentication failed.".into()
            ))
        );
        assert_eq!(
            parse_tagged("a ok Begin TLS", "a"),
            Some((Status::Ok, "Begin TLS".into()))
        );
        assert_eq!(parse_tagged("* CAPABILITY IMAP4rev1", "b"), None);
        assert_eq!(parse_tagged("bb OK", "b"), None);
    }

    #[test]
    fn greetings_lose_their_capability_list() {
        assert_eq!(
            parse_greeting("* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot (Debian) ready."),
            Ok("Dovecot (Debian) ready.".into())
        );
        assert_eq!(parse_greeting("* OK IMAP ready"), Ok("IMAP ready".into()));
        assert!(
            parse_greeting("* BYE Too many connections")
                .unwrap_err()
                .contains("Too many connections")
        );
        assert!(
            parse_greeting("+OK POP3 ready")
                .unwrap_err()
                .contains("not an IMAP server")
        );
    }

    #[test]
    fn quoted_strings_escape_quotes_and_backslashes() {
        assert_eq!(quoted("plain"), "\"plain\"");
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
