"""Channels beside mail: a webhook receiving JSON posts, and Apprise, both against a real HTTP
server on loopback; what cannot be delivered waits in the outbox and a flush delivers it; a
token in a channel's URL never reaches a file or a log line."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers import free_port, run_cli, write_config

TOKEN = "s3cr3t-t0ken-abc"


class Receiver:
    """An HTTP server on loopback that keeps what it was posted."""

    def __init__(self, port: int):
        posts = self.posts = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                posts.append((self.path, self.headers.get("Content-Type"), body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def everything_written(tmp_path) -> str:
    out = []
    for p in tmp_path.rglob("*"):
        if p.is_file() and p.suffix not in (".toml",) and p.name != "nightwarden.toml":
            out.append(p.read_bytes().decode("utf-8", "replace"))
    return "\n".join(out)


def test_a_webhook_gets_every_alert_and_a_dead_one_is_retried_from_the_outbox(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook?token={TOKEN}"
    cfg = write_config(
        tmp_path, f'\n[mail]\ntransport = "mbox"\nmbox = "{tmp_path}/mbox"\nwebhooks = ["{url}"]\n'
    )
    # the receiver is down: the mail goes out, the webhook's copy waits in the outbox
    done = run_cli("--config", str(cfg), "mail", "test")
    outbox = list((tmp_path / "state" / "outbox").glob("*.eml"))
    assert len(outbox) == 1 and b"X-Nightwarden-Channel: webhook:" in outbox[0].read_bytes()
    assert (tmp_path / "mbox").exists()
    receiver = Receiver(port)
    try:
        done = run_cli("--config", str(cfg), "mail", "flush", check=0)
        assert "delivered 1 message(s)" in done.stdout
        assert not list((tmp_path / "state" / "outbox").glob("*.eml"))
        path, kind, body = receiver.posts[0]
        assert path == f"/hook?token={TOKEN}" and kind == "application/json"
        payload = json.loads(body)
        assert (
            payload["subject"].endswith(": test message")
            and "test message from nightwarden" in payload["text"]
        )
        # delivered at once while it answers
        run_cli("--config", str(cfg), "mail", "test", check=0)
        assert len(receiver.posts) == 2
    finally:
        receiver.close()
    assert TOKEN not in everything_written(tmp_path)  # not in the outbox, the log, the mbox


def test_apprise_urls_are_a_channel_too(tmp_path):
    pytest.importorskip("apprise")
    port = free_port()
    receiver = Receiver(port)
    try:
        cfg = write_config(
            tmp_path, f'\n[mail]\ntransport = "none"\napprise = ["json://127.0.0.1:{port}/notify"]\n'
        )
        run_cli("--config", str(cfg), "mail", "test", check=0)
        assert len(receiver.posts) == 1
        body = json.loads(receiver.posts[0][2])
        assert body["title"].endswith(": test message") and "test message from nightwarden" in body["message"]
    finally:
        receiver.close()


def test_a_webhook_that_is_no_url_is_a_configuration_error(tmp_path):
    cfg = write_config(tmp_path, '\n[mail]\nwebhooks = ["file:///etc/passwd"]\n')
    done = run_cli("--config", str(cfg), "config", "check")
    assert done.returncode == 78 and "webhooks" in done.stderr
