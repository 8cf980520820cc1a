"""Alert and report mail: templates, multipart text + HTML, transports, and an outbox.

A message that cannot be delivered is written to the outbox (one file per message,
written atomically, mode 0600) and retried by the next run or by `nightwarden mail flush`:
never lost.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, make_msgid
from pathlib import Path

from ..errors import NightwardenError
from ..fsutil import atomic_write, ensure_dir
from ..logsetup import get
from .templates import render
from .transports import make_transport

log = get("mail")


@dataclass
class SendResult:
    status: str  # "sent", "spooled" or "dry-run"
    where: str
    error: str = ""


class Outbox:
    def __init__(self, path: Path):
        self.path = path

    def pending(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        return sorted(
            p for p in self.path.iterdir() if p.suffix == ".eml" and p.is_file() and not p.is_symlink()
        )

    def spool(self, msg: EmailMessage) -> Path:
        ensure_dir(self.path, 0o700)
        name = f"{time.time():.6f}-{uuid.uuid4().hex[:8]}.eml"
        target = self.path / name
        atomic_write(target, msg.as_bytes(), mode=0o600)
        return target

    @staticmethod
    def load(path: Path) -> EmailMessage:
        with open(path, "rb") as f:
            return BytesParser(policy=policy.default).parse(f)

    @staticmethod
    def load_bytes(data: bytes) -> EmailMessage:
        return BytesParser(policy=policy.default).parsebytes(data)


class Mailer:
    """Builds messages from templates and delivers them, spooling on failure."""

    def __init__(self, config, dry_run: bool = False, transport=None, deferred: bool = False):
        """deferred: messages go to the outbox at once and are delivered by flush() after
        the job's real work (the runner does it), so a slow or dead mail server never holds
        a job."""
        self.config = config
        self.dry_run = dry_run
        self.deferred = deferred
        self.transport = transport or make_transport(config)
        self.outbox = Outbox(config.outbox_dir)
        self.sent: list[EmailMessage] = []

    def base_fields(self) -> dict:
        now = datetime.now().astimezone()
        return {
            "hostname": self.config.hostname,
            "time": now.strftime("%a %b %d %H:%M:%S %Y %z"),
            "tool": "nightwarden",
        }

    def build(
        self,
        template: str,
        fields: dict,
        images: dict[str, bytes] | None = None,
        attachments: list[tuple[str, bytes, str]] | None = None,
    ) -> EmailMessage:
        """A multipart/alternative message (text, HTML with inline images) from a template."""
        m = self.config.mail
        all_fields = {**self.base_fields(), **fields}
        r = render(template, all_fields, m.templates_dir, m.html)
        msg = EmailMessage()
        msg["From"] = m.sender or r.sender or f"nightwarden@{self.config.hostname}"
        msg["To"] = m.to or r.to or "root"
        msg["Subject"] = r.subject
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = make_msgid(domain=self.config.hostname or None)
        msg["X-Nightwarden-Template"] = template
        msg.set_content(r.text)
        if r.html is not None:
            msg.add_alternative(r.html, subtype="html")
            if images:
                html_part = msg.get_payload()[-1]
                for cid, data in images.items():
                    html_part.add_related(
                        data,
                        maintype="image",
                        subtype="png",
                        cid=f"<{cid}>",
                        filename=f"{cid}.png",
                        disposition="inline",
                    )
        for filename, data, mime in attachments or []:
            maintype, subtype = mime.split("/", 1)
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
        return msg

    def send(self, msg: EmailMessage) -> SendResult:
        if self.dry_run:
            log.info("dry run: would mail %r to %s", msg["Subject"], msg["To"])
            return SendResult("dry-run", "nowhere")
        self._to_channels(msg)
        return self._send_mail(msg)

    def _to_channels(self, msg: EmailMessage) -> None:
        """A copy for each webhook and Apprise URL: delivered now (unless deferred), or kept
        in the outbox marked with its channel and retried like mail."""
        from . import channels

        for ident, (kind, url) in channels.configured(self.config).items():
            copy = Outbox.load_bytes(msg.as_bytes())
            copy[channels.HEADER] = ident
            if self.deferred:
                self.outbox.spool(copy)
                continue
            try:
                channels.deliver(kind, url, copy, self.config.mail.channel_timeout)
                log.info("sent %r to %s", msg["Subject"], channels.describe(kind, url))
            except NightwardenError as e:
                path = self.outbox.spool(copy)
                log.warning("%s; kept in the outbox as %s", e, path.name)

    def _send_mail(self, msg: EmailMessage) -> SendResult:
        if self.deferred:
            path = self.outbox.spool(msg)
            return SendResult("queued", str(path))
        try:
            self.flush()
            self.transport.deliver(msg)
        except NightwardenError as e:
            path = self.outbox.spool(msg)
            log.warning("mail not delivered (%s); kept in the outbox as %s", e, path.name)
            return SendResult("spooled", str(path), str(e))
        self.sent.append(msg)
        log.info("mailed %r to %s via %s", msg["Subject"], msg["To"], self.transport.describe())
        return SendResult("sent", self.transport.describe())

    def alert(self, template: str, fields: dict, **kwargs) -> SendResult:
        return self.send(self.build(template, fields, **kwargs))

    def flush(self, budget: float | None = None) -> tuple[int, int]:
        """Deliver spooled messages, oldest first, over one connection where the transport
        has connections, within `budget` seconds; stop at the first failure. (sent, left)."""
        import time

        deadline = None if budget is None else time.monotonic() + budget
        ready = []
        for path in self.outbox.pending():
            try:
                ready.append((path, self.outbox.load(path)))
            except (OSError, ValueError) as e:
                log.warning("outbox: %s is unreadable (%s); moved aside", path.name, e)
                os.replace(path, path.with_suffix(".bad"))
        ready, sent_channels, left_channels = self._flush_channels(ready, deadline)
        if not ready:
            return sent_channels, left_channels
        many = getattr(self.transport, "deliver_many", None)
        sent = 0
        try:
            if many is not None:
                sent = many([m for _, m in ready], deadline)
            else:
                for _, msg in ready:
                    if deadline is not None and time.monotonic() > deadline:
                        break
                    self.transport.deliver(msg)
                    sent += 1
        except NightwardenError as e:
            sent = getattr(e, "delivered", sent)
            raise
        finally:  # what went out leaves the outbox, even when a later message failed
            for path, _ in ready[:sent]:
                path.unlink()
        return sent + sent_channels, len(ready) - sent + left_channels

    def _flush_channels(self, ready: list, deadline: float | None = None) -> tuple[list, int, int]:
        """Deliver the outbox's channel copies (a channel that fails keeps its copies and the
        others go on); returns the mail left for the transport, and channel (sent, left)."""
        from . import channels

        known = channels.configured(self.config)
        mail, sent, left = [], 0, 0
        failed: set[str] = set()
        for path, msg in ready:
            ident = msg[channels.HEADER]
            if ident is None:
                mail.append((path, msg))
                continue
            if ident not in known:  # that channel is no longer configured
                log.warning("outbox: %s was for a channel no longer configured; dropped", path.name)
                path.unlink()
                continue
            kind, url = known[ident]
            if ident in failed or (deadline is not None and time.monotonic() > deadline):
                left += 1
                continue
            try:
                channels.deliver(kind, url, msg, self.config.mail.channel_timeout)
            except NightwardenError as e:
                log.warning("outbox: %s", e)
                failed.add(ident)
                left += 1
                continue
            path.unlink()
            sent += 1
        return mail, sent, left
