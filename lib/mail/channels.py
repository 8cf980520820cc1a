"""Channels beside mail: a webhook (a JSON POST) and Apprise (chat and push services from one
URL each). Each alert and digest goes to every configured channel; a copy that cannot be
delivered waits in the outbox, marked with its channel (by a digest of the URL: a token in the
URL never lands in a file or a log line), and is retried with the mail."""

from __future__ import annotations

import hashlib
import json
from email.message import EmailMessage
from urllib.parse import urlsplit

from ..errors import UnavailableError

HEADER = "X-Nightwarden-Channel"


def channel_id(kind: str, url: str) -> str:
    return f"{kind}:{hashlib.sha256(url.encode()).hexdigest()[:16]}"


def configured(config) -> dict[str, tuple[str, str]]:
    """channel id -> (kind, url), in the configuration's order."""
    m = config.mail
    out = {channel_id("webhook", u): ("webhook", u) for u in m.webhooks}
    out.update({channel_id("apprise", u): ("apprise", u) for u in m.apprise})
    return out


def describe(kind: str, url: str) -> str:
    """The channel for a log line: its kind and host, never its path or token."""
    host = urlsplit(url).hostname or urlsplit(url).scheme or "?"
    return f"{kind} ({host})"


def _text(msg: EmailMessage) -> str:
    body = msg.get_body(("plain",))
    return body.get_content() if body is not None else ""


def deliver(kind: str, url: str, msg: EmailMessage, timeout: float) -> None:
    """Deliver one message to one channel; UnavailableError when it did not take it."""
    subject = str(msg["Subject"] or "")
    if kind == "webhook":
        import urllib.error
        import urllib.request

        payload = {
            "subject": subject,
            "text": _text(msg),
            "template": str(msg["X-Nightwarden-Template"] or ""),
            "date": str(msg["Date"] or ""),
            "from": str(msg["From"] or ""),
        }
        request = urllib.request.Request(
            url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "nightwarden"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if not 200 <= response.status < 300:
                    raise UnavailableError(f"{describe(kind, url)} answered {response.status}")
        except urllib.error.HTTPError as e:
            raise UnavailableError(f"{describe(kind, url)} answered {e.code}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise UnavailableError(f"{describe(kind, url)} unreachable: {reason}") from None
        return
    try:
        import apprise
    except ImportError:
        raise UnavailableError(
            "mail.apprise is set but apprise is not installed (pip install 'nightwarden[apprise]')"
        ) from None
    notifier = apprise.Apprise()
    if not notifier.add(url):
        raise UnavailableError(f"{describe(kind, url)}: Apprise does not understand the URL")
    if not notifier.notify(title=subject, body=_text(msg)):
        raise UnavailableError(f"{describe(kind, url)} did not take the message")
