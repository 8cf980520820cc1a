"""Mail through real peers: aiosmtpd on loopback (plain, STARTTLS + AUTH), msmtp as the
sendmail program, mbox and Maildir files; the outbox when the server is down."""

from __future__ import annotations

import datetime
import email
import ipaddress
import mailbox
import os
import shutil
import ssl
from email import policy
from pathlib import Path

import pytest

from helpers import free_port, load_config, run_cli, write_config
from nightwarden.lib.mail import Mailer
from nightwarden.lib.mail.templates import PLACEHOLDER

aiosmtpd = pytest.importorskip("aiosmtpd.controller")
from aiosmtpd.smtp import AuthResult  # noqa: E402


class Sink:
    def __init__(self):
        self.messages = []
        self.logins = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def smtp_server():
    started = []

    def start(port=None, **kwargs):
        sink = Sink()
        ctrl = aiosmtpd.Controller(sink, hostname="127.0.0.1", port=port or free_port(), **kwargs)
        ctrl.start()
        started.append(ctrl)
        return sink, ctrl.port

    yield start
    for ctrl in started:
        ctrl.stop()


def smtp_config(tmp_path, port, extra="", security="none"):
    return write_config(
        tmp_path,
        f"""
[mail]
transport = "smtp"
smtp_host = "127.0.0.1"
smtp_port = {port}
smtp_security = "{security}"
to = "admin@example.org"
smtp_timeout = 5
{extra}""",
    )


def test_portscan_alert_over_starttls_with_auth(tmp_path, smtp_server):
    cert, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    password = "s3cret-Pa55"
    seen = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        seen.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == password.encode(), handled=False)

    sink, port = smtp_server(
        tls_context=server_ctx, require_starttls=True, authenticator=authenticator, auth_require_tls=True
    )
    secret = tmp_path / "smtp.pass"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    cfg_path = smtp_config(
        tmp_path,
        port,
        f"""smtp_user = "nightwarden"
smtp_password_file = "{secret}"
smtp_cafile = "{cert}"
""",
        security="starttls",
    )
    cfg = load_config(cfg_path)
    mailer = Mailer(cfg)
    result = mailer.alert(
        "portscan",
        {
            "ip": "203.0.113.9",
            "scantype": "SYN",
            "ports": "22,23,80",
            "hits": 3,
            "temp": "yes, 3600 s",
            "hitlines": ["22/tcp SYN", "23/tcp SYN <b>x</b>"],
        },
    )
    assert result.status == "sent"
    assert seen == [(b"nightwarden", password.encode())]
    msg = sink.messages[0]
    assert msg["Subject"] == f"nightwarden on {cfg.hostname}: *Port Scan* detected from 203.0.113.9"
    assert msg["To"] == "admin@example.org"
    assert msg["From"] == f"nightwarden@{cfg.hostname}"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "IP:           203.0.113.9" in text and "23/tcp SYN <b>x</b>" in text
    assert "23/tcp SYN &lt;b&gt;x&lt;/b&gt;" in html
    assert not PLACEHOLDER.search(text) and not PLACEHOLDER.search(html), "every placeholder filled"


def test_password_never_reaches_the_log(tmp_path, smtp_server):
    sink, port = smtp_server(
        authenticator=lambda *a: AuthResult(success=False, handled=False), auth_require_tls=False
    )
    cfg_path = smtp_config(tmp_path, port, 'smtp_user = "u"\n')
    env = {"NIGHTWARDEN_SMTP_PASSWORD": "TopSecretValue42"}
    done = run_cli("--config", str(cfg_path), "-vv", "mail", "test", env=env)
    assert done.returncode == 69
    log = (tmp_path / "log" / "nightwarden.log").read_text()
    assert "authentication failed" in log
    assert "TopSecretValue42" not in log + done.stderr + done.stdout
    assert len(list((tmp_path / "state" / "outbox").glob("*.eml"))) == 1


def test_server_down_spools_then_flush_delivers(tmp_path, smtp_server):
    port = free_port()
    cfg_path = smtp_config(tmp_path, port)
    done = run_cli("--config", str(cfg_path), "mail", "test")
    assert done.returncode == 69 and "spooled" in done.stdout
    outbox = tmp_path / "state" / "outbox"
    assert len(list(outbox.glob("*.eml"))) == 1
    done = run_cli("--config", str(cfg_path), "mail", "flush")
    assert done.returncode == 69 and "1 message(s) still in the outbox" in done.stdout
    sink, _ = smtp_server(port=port)
    done = run_cli("--config", str(cfg_path), "mail", "flush", check=0)
    assert "delivered 1 message(s)" in done.stdout
    assert list(outbox.glob("*.eml")) == []
    assert len(sink.messages) == 1
    assert "test message" in sink.messages[0]["Subject"]


def test_default_transport_is_an_mbox_file(tmp_path):
    cfg = load_config(write_config(tmp_path))
    Mailer(cfg).alert(
        "filealert",
        {"count": 1, "action": "quarantined", "archive": "/x.tar", "files": "/tmp/.x/evil (ELF binary)"},
    )
    box = mailbox.mbox(tmp_path / "state" / "mail" / "mbox")
    messages = list(box)
    assert len(messages) == 1
    assert messages[0]["Subject"].endswith("Suspicious File Alert (1 files)")
    assert oct(os.stat(tmp_path / "state" / "mail" / "mbox").st_mode & 0o777) == "0o600"


def test_sendmail_transport_with_msmtp(tmp_path, smtp_server, monkeypatch):
    msmtp = shutil.which("msmtp")
    if msmtp is None:
        pytest.skip("msmtp is not installed (make test installs it as root)")
    sink, port = smtp_server()
    rc = tmp_path / ".msmtprc"
    rc.write_text(f"account default\nhost 127.0.0.1\nport {port}\nfrom nw@example.org\nauth off\ntls off\n")
    rc.chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = load_config(
        write_config(
            tmp_path, f'[mail]\ntransport = "sendmail"\nsendmail = "{msmtp}"\nto = "ops@example.org"\n'
        )
    )
    assert Mailer(cfg).alert("alert", {"ip": "192.0.2.4", "service": "sshd", "count": 5}).status == "sent"
    assert sink.messages[0]["To"] == "ops@example.org"
    assert "Failures:     5" in sink.messages[0].get_body(("plain",)).get_content()


def test_user_brings_a_csf_style_template(tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "alert.txt").write_text(
        "From: root\nSubject: lfd on [hostname]: blocked [ip] ([iptype])\nTo: root\n\n"
        "Time:     [time]\nIP:       [ip]\nUnknown:  [nosuchfield]\n"
    )
    cfg = load_config(write_config(tmp_path, f'[mail]\ntemplates_dir = "{templates}"\nto = ""\n'))
    msg = Mailer(cfg).build("alert", {"ip": "192.0.2.5", "iptype": "IPv4"})
    assert msg["Subject"] == f"lfd on {cfg.hostname}: blocked 192.0.2.5 (IPv4)"
    assert msg["To"] == "root" and msg["From"] == "root"
    body = msg.get_body(("plain",)).get_content()
    assert "Unknown:  [nosuchfield]" in body and "IP:       192.0.2.5" in body


def test_broken_template_names_the_file_and_line(tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "alert.txt").write_text("Subject: x\nthis is not a header\n\nbody\n")
    cfg = load_config(write_config(tmp_path, f'[mail]\ntemplates_dir = "{templates}"\n'))
    from nightwarden.lib.errors import DataError

    with pytest.raises(DataError, match=r"alert.txt:2: expected a From:, To: or Subject:"):
        Mailer(cfg).build("alert", {})


@pytest.mark.slow
def test_a_mail_server_that_never_answers_does_not_hold_the_job(tmp_path):
    """It accepts the connection and says nothing: the blocks are made and recorded first,
    the alerts wait in the outbox, and one connection attempt ends the run."""
    import socket
    import time

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    box = tmp_path / "sb"
    (box / "etc").mkdir(parents=True)
    (box / "etc" / "nightwarden.toml").write_text(
        f'[mail]\ntransport = "smtp"\nsmtp_host = "127.0.0.1"\nsmtp_port = {silent.getsockname()[1]}\n'
        'smtp_security = "none"\nsmtp_timeout = 2\n[logins]\njournal = "no"\n'
        '[[logins.sources]]\npath = "/var/log/auth.log"\nservices = ["sshd"]\n'
    )
    (box / "var" / "log").mkdir(parents=True)
    now = time.time()
    lines = []
    for n, addr in enumerate(("203.0.113.31", "203.0.113.32", "203.0.113.33")):
        for i in range(6):
            stamp = time.strftime("%b %e %H:%M:%S", time.localtime(now - 60 + i))
            lines.append(
                f"{stamp} web1 sshd[{100 * n + i}]: Failed password for root from {addr} port {i} ssh2\n"
            )
    (box / "var" / "log" / "auth.log").write_text("".join(lines))
    try:
        started = time.monotonic()
        done = run_cli("--sandbox", str(box), "login-failures", timeout=60)
        took = time.monotonic() - started
    finally:
        silent.close()
    assert done.returncode == 1, done.stderr
    assert took < 2 * 2 + 3, f"{took:.1f} s: the job waited on the mail server per message"
    assert len(list((box / "state" / "outbox").glob("*.eml"))) == 3, "the alerts wait in the outbox"
    blocks = run_cli("--sandbox", str(box), "blocks", check=0).stdout
    assert all(a in blocks for a in ("203.0.113.31", "203.0.113.32", "203.0.113.33"))
