"""SMTP delivery with aiosmtplib, and the ``email`` channel's Notifier.

One attempt per ``notify``; the dispatcher owns retries. Every aiosmtplib / socket / TLS
exception maps to a DeliveryResult with a FailureReason: connection problems, timeouts,
disconnects and 4xx replies are retryable; authentication failures, refused recipients and 5xx
replies are permanent (they need a person to fix configuration or an address). Errors name no
secret.
"""

from __future__ import annotations

import logging
import ssl
from email.message import EmailMessage

import aiosmtplib

from adapters.config import EmailConfig
from adapters.delivery.notifier import Delivery, DeliveryResult, FailureReason
from adapters.email.links import LinkSigner
from adapters.email.message import InvalidRecipient, render_message
from adapters.tls import trust_context
from escalation.engine.clock import Clock

__all__ = ["EmailNotifier", "SmtpTransport", "classify_error", "tls_context"]

log = logging.getLogger("tocsin.email")

_ERROR_MAX = 200


def tls_context(ca_file: str | None) -> ssl.SSLContext | None:
    """The system trust store plus ``ca_file`` (a private or test CA), or None for the default.

    ValueError when the file is missing or holds no certificate (``check`` says so first).
    """
    return trust_context(ca_file)


class SmtpTransport:
    """Sends finished messages to the configured SMTP server, one connection per message."""

    def __init__(self, cfg: EmailConfig) -> None:
        self.cfg = cfg
        self._tls = tls_context(cfg.tls_ca_path)

    async def send(self, msg: EmailMessage) -> str:
        """Deliver ``msg``; the server's reply to the message data. aiosmtplib errors propagate."""
        cfg = self.cfg
        _, reply = await aiosmtplib.send(
            msg,
            hostname=cfg.host,
            port=cfg.port,  # None: aiosmtplib picks 465 / 587 / 25 from the TLS mode
            username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password is not None else None,
            use_tls=cfg.use_tls,
            start_tls=cfg.start_tls,
            timeout=cfg.timeout.total_seconds(),
            tls_context=self._tls,
            validate_certs=True,
        )
        return reply


def _short(text: str) -> str:
    out = " ".join(str(text).split())
    return out[:_ERROR_MAX]


_AGAIN = FailureReason.RETRYABLE


def _retryable_if(temporary: bool) -> FailureReason:
    return FailureReason.RETRYABLE if temporary else FailureReason.PERMANENT


def _by_code(code: int, what: str, message: str) -> DeliveryResult:
    error = _short(f"{what}: SMTP {code} {message}")
    # 4xx is the server's "try again later" (greylisting, full queue, 421 shutting down).
    return DeliveryResult(ok=False, reason=_retryable_if(400 <= code < 500), error=error)


def _cert_problem(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def classify_error(exc: BaseException) -> DeliveryResult:
    """Map one SMTP attempt's exception to a DeliveryResult (retryable or permanent)."""
    cert = _cert_problem(exc)
    if cert is not None:
        # An untrusted certificate does not heal by retrying: configuration (tls_ca_path).
        return DeliveryResult(
            ok=False, error=_short(f"TLS certificate rejected: {cert.verify_message}")
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        first = exc.recipients[0] if exc.recipients else None
        detail = f"SMTP {first.code} {first.message}" if first is not None else "no detail"
        # Every refusal temporary (e.g. 450 greylisting) → try again; any 5xx → the address is bad.
        retry = bool(codes) and all(400 <= c < 500 for c in codes)
        return DeliveryResult(
            ok=False, reason=_retryable_if(retry), error=_short(f"recipient refused: {detail}")
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        # 454 is a temporary authentication failure; 535 and friends need new credentials.
        return DeliveryResult(
            ok=False,
            reason=_retryable_if(exc.code == 454),
            error=_short(f"authentication failed: SMTP {exc.code} {exc.message}"),
        )
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return _by_code(exc.code, "sender refused", exc.message)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _by_code(exc.code, type(exc).__name__, exc.message)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return DeliveryResult(ok=False, reason=_AGAIN, error=_short(f"timeout: {exc}"))
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected):
        return DeliveryResult(ok=False, reason=_AGAIN, error=_short(f"connection failed: {exc}"))
    if isinstance(exc, aiosmtplib.SMTPException):
        # STARTTLS or AUTH required but not offered, and the like: configuration, not luck.
        return DeliveryResult(ok=False, error=_short(f"{type(exc).__name__}: {exc}"))
    # OSError (refused, reset, unreachable) and anything unforeseen: a later attempt may work.
    return DeliveryResult(ok=False, reason=_AGAIN, error=_short(f"{type(exc).__name__}: {exc}"))


class EmailNotifier:
    """The ``email`` channel: renders the delivery and sends it in one SMTP attempt."""

    def __init__(
        self, cfg: EmailConfig, signer: LinkSigner, clock: Clock, transport: SmtpTransport
    ) -> None:
        self.cfg = cfg
        self.signer = signer
        self.clock = clock
        self.transport = transport

    def render(self, delivery: Delivery) -> EmailMessage:
        """The message ``notify`` would send now (InvalidRecipient without an address)."""
        return render_message(
            delivery, signer=self.signer, now=self.clock.now(), from_address=self.cfg.from_address
        )

    async def notify(self, delivery: Delivery) -> DeliveryResult:
        """One attempt; never raises."""
        try:
            msg = self.render(delivery)
        except InvalidRecipient as e:
            return DeliveryResult(ok=False, reason=FailureReason.NO_ADDRESS, error=str(e))
        except Exception as e:  # a rendering bug must not look like a delivery to retry forever
            log.exception("email rendering failed", extra={"outbox": delivery.row.id})
            return DeliveryResult(ok=False, error=_short(f"rendering failed: {type(e).__name__}"))
        try:
            await self.transport.send(msg)
        except Exception as e:
            result = classify_error(e)
            log.warning(
                "email not delivered",
                extra={
                    "outbox": delivery.row.id,
                    "error": result.error,
                    "reason": str(result.reason),
                },
            )
            return result
        return DeliveryResult(ok=True, provider_id=str(msg["Message-ID"]))
