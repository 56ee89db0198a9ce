"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, recording every message it accepts.

aiosmtpd runs its own event loop in a thread, so the code under test (aiosmtplib on the test's
loop) talks to it over a real socket. It can require AUTH (a fixed user table), offer or require
STARTTLS, serve implicit TLS, and be told to refuse recipients, reject the data or hang up.
aiosmtpd cannot bind port 0, so a free port is picked first; it binds ``::1`` unless told a
hostname, hence ``127.0.0.1`` throughout.

    with SmtpServer(users={"tocsin": "s3cret"}, auth_require_tls=False) as smtp:
        ...  # EmailConfig(host=smtp.host, port=smtp.port, username="tocsin", password="s3cret")
        assert smtp.messages[0].message["Subject"] == "..."
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = [
    "HOST",
    "ReceivedMail",
    "SilentServer",
    "SmtpServer",
    "TestTLS",
    "free_port",
]

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class TestTLS:
    """A throwaway CA (trustme) and a server certificate for 127.0.0.1 / localhost."""

    server_context: ssl.SSLContext
    ca_file: Path

    __test__ = False  # not a pytest test class

    @classmethod
    def make(cls, directory: Path) -> TestTLS:
        """A new CA; its certificate is written to ``directory/ca.pem`` for ``tls_ca_path``."""
        ca = trustme.CA()
        cert = ca.issue_cert(HOST, "localhost")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        path = directory / "ca.pem"
        ca.cert_pem.write_to_path(str(path))
        return cls(ctx, path)


@dataclass(frozen=True)
class ReceivedMail:
    """One accepted message: envelope, raw bytes, the parsed message and the session's state."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage
    tls: bool  # the session was encrypted (STARTTLS or implicit TLS)
    login: str | None  # the AUTH user, if the session authenticated


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.server.rcpt_reply is not None:
            return self.server.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        if self.server.hang_up_on_data:
            assert smtp.transport is not None
            smtp.transport.close()
            return "421 closing"
        if self.server.data_reply is not None:
            return self.server.data_reply
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        login = session.auth_data if session.authenticated else None
        # session.ssl is set by STARTTLS only; implicit TLS shows on the transport.
        tls = session.ssl is not None or (
            smtp.transport is not None and smtp.transport.get_extra_info("ssl_object") is not None
        )
        with self.server.lock:
            self.server.messages.append(
                ReceivedMail(
                    mail_from=str(envelope.mail_from),
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    raw=raw,
                    message=parsed,
                    tls=tls,
                    login=login if isinstance(login, str) else None,
                )
            )
        return "250 2.0.0 OK queued"


class SmtpServer:
    """aiosmtpd on 127.0.0.1 with the options tests need; a context manager that starts/stops it.

    ``users`` turns on AUTH (LOGIN/PLAIN against this table); ``auth_require_tls`` is aiosmtpd's
    default (True: AUTH only after TLS). ``starttls`` offers STARTTLS with that server context,
    ``require_starttls`` refuses mail before it. ``implicit_tls`` serves TLS from the first byte.
    Set ``rcpt_reply`` / ``data_reply`` (e.g. ``"550 5.1.1 no such user"``) to refuse, or
    ``hang_up_on_data`` to drop the connection when the data arrives.
    """

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        auth_require_tls: bool = True,
        starttls: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        implicit_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = HOST
        self.port = free_port()
        self.users = dict(users or {})
        self.messages: list[ReceivedMail] = []
        self.auth_attempts: list[tuple[str, bool]] = []  # (login, success)
        self.rcpt_reply: str | None = None
        self.data_reply: str | None = None
        self.hang_up_on_data = False
        self.lock = threading.Lock()
        kwargs: dict[str, Any] = {
            "hostname": self.host,
            "port": self.port,
            "ready_timeout": 10.0,
            "auth_require_tls": auth_require_tls,
        }
        if users is not None:
            kwargs["authenticator"] = self._authenticate
        if starttls is not None:
            kwargs["tls_context"] = starttls
            kwargs["require_starttls"] = require_starttls
        if implicit_tls is not None:
            kwargs["ssl_context"] = implicit_tls
        self._controller = Controller(_Handler(self), **kwargs)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = data.login.decode()
        ok = self.users.get(login) == data.password.decode()
        with self.lock:
            self.auth_attempts.append((login, ok))
        # handled=False: aiosmtpd sends the 235 / 535 reply itself.
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    def start(self) -> SmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never says a word (for timeouts)."""

    def __init__(self) -> None:
        self.host = HOST
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)

    async def __aenter__(self) -> SilentServer:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for w in self._writers:
            w.close()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
