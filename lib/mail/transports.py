"""Mail transports: an mbox or Maildir file (the embedded default), sendmail, SMTP."""

from __future__ import annotations

import mailbox
import os
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path

from .. import proc
from ..errors import ConfigError, UnavailableError
from ..fsutil import ensure_dir


class Secret:
    """A password that never shows itself in a log, a repr or a traceback's locals."""

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


class Transport:
    name = "base"

    def deliver(self, msg: EmailMessage) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class MboxTransport(Transport):
    name = "mbox"

    def __init__(self, path: Path):
        self.path = path

    def deliver(self, msg: EmailMessage) -> None:
        ensure_dir(self.path.parent, 0o700)
        if self.path.is_symlink():
            raise UnavailableError(f"{self.path}: is a symbolic link; refusing to write mail there")
        box = mailbox.mbox(self.path, create=True)
        box.lock()
        try:
            box.add(msg)
            box.flush()
        finally:
            box.unlock()
            box.close()
        os.chmod(self.path, 0o600)

    def describe(self) -> str:
        return f"mbox {self.path}"


class MaildirTransport(Transport):
    name = "maildir"

    def __init__(self, path: Path):
        self.path = path

    def deliver(self, msg: EmailMessage) -> None:
        ensure_dir(self.path.parent, 0o700)
        mailbox.Maildir(self.path, create=True).add(msg)

    def describe(self) -> str:
        return f"Maildir {self.path}"


class SendmailTransport(Transport):
    name = "sendmail"

    def __init__(self, path: str):
        self.path = path

    def deliver(self, msg: EmailMessage) -> None:
        done = proc.run([self.path, "-t", "-i"], input=msg.as_bytes(), timeout=60)
        if done.returncode != 0:
            raise UnavailableError(f"{self.path} -t -i failed: {done.error_line}")

    def describe(self) -> str:
        return f"{self.path} -t -i"


class SmtpTransport(Transport):
    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        security: str,
        user: str = "",
        password: Secret | None = None,
        timeout: float = 30,
        cafile: str = "",
    ):
        self.host, self.port, self.security = host, port, security
        self.user, self.password, self.timeout, self.cafile = user, password, timeout, cafile

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cafile or None)

    def deliver(self, msg: EmailMessage) -> None:
        self.deliver_many([msg])

    def deliver_many(self, messages, deadline: float | None = None) -> int:
        """Several messages over one connection, until the deadline (time.monotonic); how
        many were delivered. A failure raises after what was delivered before it."""
        import time

        done = 0
        try:
            if self.security == "tls":
                client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._context())
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with client:
                client.ehlo()
                if self.security == "starttls":
                    client.starttls(context=self._context())
                    client.ehlo()
                if self.user:
                    client.login(self.user, self.password.reveal() if self.password else "")
                for msg in messages:
                    if deadline is not None and time.monotonic() > deadline:
                        break
                    client.send_message(msg)
                    done += 1
            return done
        except smtplib.SMTPAuthenticationError as e:
            error = UnavailableError(
                f"SMTP {self.host}:{self.port}: authentication failed for {self.user!r} ({e.smtp_code})"
            )
        except (OSError, smtplib.SMTPException, ssl.SSLError) as e:
            error = UnavailableError(f"SMTP {self.host}:{self.port}: {e.__class__.__name__}: {e}")
        error.delivered = done  # what went out before the failure
        raise error

    def describe(self) -> str:
        return f"SMTP {self.host}:{self.port} ({self.security})"


class NullTransport(Transport):
    name = "none"

    def deliver(self, msg: EmailMessage) -> None:
        return None


def read_password(mail_cfg: dict) -> Secret | None:
    path = mail_cfg.smtp_password_file
    if path:
        try:
            return Secret(Path(path).read_text().strip("\n"))
        except OSError as e:
            raise ConfigError(f"{path}: cannot read the SMTP password file: {e.strerror}") from None
    env = mail_cfg.smtp_password_env
    if env and env in os.environ:
        return Secret(os.environ[env])
    return None


def make_transport(config) -> Transport:
    m = config.mail
    kind = m.transport
    if kind == "mbox":
        return MboxTransport(mail_path(config, "mbox"))
    if kind == "maildir":
        return MaildirTransport(mail_path(config, "maildir"))
    if kind == "sendmail":
        return SendmailTransport(m.sendmail)
    if kind == "smtp":
        return SmtpTransport(
            m.smtp_host,
            m.smtp_port,
            m.smtp_security,
            m.smtp_user,
            read_password(m),
            m.smtp_timeout,
            m.smtp_cafile,
        )
    return NullTransport()


def mail_path(config, kind: str) -> Path:
    """The mbox file or the Maildir: as configured, or under the state directory."""
    default = config.state_dir / "mail" / ("mbox" if kind == "mbox" else "Maildir")
    return config.configured_path(getattr(config.mail, kind), default)
