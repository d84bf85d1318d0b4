"""A real SMTP submission server for Portico's mail tests, built on aiosmtpd.

Usage: smtp_server.py CERT_PEM KEY_PEM USER PASSWORD OUTBOX_DIR

Listens on 127.0.0.1 with ports the system picks, and prints them once ready:

    ready STARTTLS=<port> TLS=<port> TLS_LOGIN_ONLY=<port> PLAIN=<port>

- STARTTLS: plain until STARTTLS; AUTH (PLAIN, LOGIN) only after it, as on port 587.
- TLS: TLS from the first byte, AUTH PLAIN and LOGIN, as on port 465.
- TLS_LOGIN_ONLY: as TLS, but offering only AUTH LOGIN.
- PLAIN: no TLS at all, so no STARTTLS and no AUTH.

Every message accepted is written to OUTBOX_DIR as one file: a first line
`X-Envelope-To: <recipients, comma-separated>`, then the message as received.

Runs until its standard input closes, which happens when the test process exits, however
it exits: the test binary keeps the servers for its whole run and cannot stop them itself.
"""

import asyncio
import os
import ssl
import sys
import uuid

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError:
    sys.exit("aiosmtpd is not installed: run ./test, which installs it.")


class Record:
    """Keeps every message for the tests to read (Portico's expiry alerts)."""

    def __init__(self, outbox):
        self.outbox = outbox

    async def handle_DATA(self, server, session, envelope):
        path = os.path.join(self.outbox, f"{uuid.uuid4()}.eml")
        with open(path + ".part", "wb") as file:
            file.write(f"X-Envelope-To: {','.join(envelope.rcpt_tos)}\r\n".encode())
            file.write(envelope.original_content or envelope.content)
        # Renamed once whole, so a reader never sees half a message.
        os.rename(path + ".part", path)
        return "250 Message accepted for delivery"


async def serve(cert, key, user, password, outbox):
    loop = asyncio.get_running_loop()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    expected = LoginPassword(user.encode(), password.encode())

    def authenticator(server, session, envelope, mechanism, auth_data):
        # handled=False lets aiosmtpd answer a refusal with its standard 535 reply.
        return AuthResult(success=auth_data == expected, handled=False)

    def session(**settings):
        return lambda: SMTP(
            Record(outbox),
            hostname="localhost",
            authenticator=authenticator,
            loop=loop,
            **settings,
        )

    servers = {
        "STARTTLS": await loop.create_server(
            session(tls_context=context, auth_require_tls=True), "127.0.0.1", 0
        ),
        # aiosmtpd only counts STARTTLS as TLS; on these ports TLS came first.
        "TLS": await loop.create_server(
            session(auth_require_tls=False), "127.0.0.1", 0, ssl=context
        ),
        "TLS_LOGIN_ONLY": await loop.create_server(
            session(auth_require_tls=False, auth_exclude_mechanism=["PLAIN"]),
            "127.0.0.1",
            0,
            ssl=context,
        ),
        "PLAIN": await loop.create_server(
            session(auth_require_tls=True), "127.0.0.1", 0
        ),
    }
    ports = " ".join(
        f"{name}={server.sockets[0].getsockname()[1]}" for name, server in servers.items()
    )
    print(f"ready {ports}", flush=True)
    await loop.run_in_executor(None, sys.stdin.buffer.read)


if __name__ == "__main__":
    asyncio.run(serve(*sys.argv[1:6]))
