//! POP3 (RFC 1939, STLS from RFC 2595): greeting, STLS, USER and PASS, QUIT.

use zeroize::Zeroizing;

use super::connection::Connection;
use super::{Credentials, Failure, ProbeOptions, ServerSettings, Stage, signed_in};
use crate::domain::Security;

pub(super) async fn probe(
    settings: &ServerSettings<'_>,
    options: &ProbeOptions,
) -> Result<String, Failure> {
    let credentials = Credentials::of(settings)?;
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

    let user = format!("USER {}", credentials.username);
    let pass = Zeroizing::new(format!("PASS {}", credentials.password));
    for (line, name) in [(user.as_str(), "USER"), (pass.as_str(), "PASS")] {
        command(&mut connection, line, name, Stage::Authentication)
            .await?
            .map_err(|text| {
                Failure::new(
                    Stage::Authentication,
                    format!("The server refused the sign-in; it said: \"{text}\""),
                )
            })?;
    }
    connection.sign_off("QUIT").await;
    Ok(signed_in(&greeting))
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
}
