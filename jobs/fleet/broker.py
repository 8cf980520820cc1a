"""The broker: subjects, streams and the bucket, the server's configuration with one user per
host, and the connection (nats-py, imported here only)."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

from nightwarden.lib.errors import ConfigError, DataError, UnavailableError

from .decisions import BUCKET

EVIDENCE = "NW_EVIDENCE"  # what hosts saw: nw.evt.<host>.e.<kind>
HOSTS = "NW_HOSTS"  # their status and daily summaries: nw.evt.<host>.status|summary
KV_STREAM = f"KV_{BUCKET}"
SNAPSHOT = "NW_SNAPSHOT"  # the bucket's snapshots, for hosts back after long: nw.snap.head, nw.snap.<id>.<n>
COMMANDS = "nw.cmd"  # operators' signed commands, answered by one authority (queue group)
QUEUE = "nw-authority"


def evidence_subject(host: str, kind: str) -> str:
    return f"nw.evt.{host}.e.{kind}"


def host_subject(host: str, what: str) -> str:
    return f"nw.evt.{host}.{what}"


def host_permissions(host: str) -> dict:
    """What a host's user may do: publish on its own subjects, read the decision bucket (a
    consumer of its stream, flow control), receive on its own inbox. Nothing else."""
    read = [
        f"$JS.API.{api}.{stream}{more}"
        for stream in (KV_STREAM, SNAPSHOT)
        for api, more in (("STREAM.INFO", ""), ("CONSUMER.CREATE", ""), ("CONSUMER.CREATE", ".>"))
    ]
    return {
        "publish": {
            "allow": [
                f"nw.evt.{host}.>",
                *read,
                f"$JS.API.STREAM.MSG.GET.{SNAPSHOT}",
                f"$JS.FC.{KV_STREAM}.>",
                f"$JS.FC.{SNAPSHOT}.>",
            ]
        },
        "subscribe": {"allow": [f"_INBOX_{host}.>"]},
    }


def operator_permissions() -> dict:
    """The operator: send signed commands, read the bucket and the streams."""
    return {
        "publish": {
            "allow": [
                f"{COMMANDS}.>",
                "$JS.API.INFO",
                "$JS.API.STREAM.INFO.*",
                "$JS.API.STREAM.MSG.GET.*",
                "$JS.API.CONSUMER.CREATE.*",
                "$JS.API.CONSUMER.CREATE.*.>",
                "$JS.API.CONSUMER.DELETE.*.*",
                "$JS.FC.>",
            ]
        },
        "subscribe": {"allow": ["_INBOX_operator.>"]},
    }


def server_config(store_dir: Path, listen: str, users: dict[str, str]) -> str:
    """nats-server's configuration: JetStream on, one account, bcrypt-hashed passwords.
    users: name -> bcrypt hash; "authority" may do everything in the account."""
    entries = []
    for name, hashed in sorted(users.items()):
        if name == "authority":
            perms = {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}}
        elif name == "operator":
            perms = operator_permissions()
        else:
            perms = host_permissions(name)
        entries.append({"user": name, "password": hashed, "permissions": perms})
    users_text = ",\n".join("      " + json.dumps(e) for e in entries)
    return (
        "# nightwarden fleet broker (written by `nightwarden fleet init`)\n"
        f"listen: {json.dumps(listen)}\n"
        "max_payload: 65536\n"
        "max_connections: 10000\n"
        f"jetstream {{ store_dir: {json.dumps(str(store_dir))},"
        " max_file_store: 8G, max_memory_store: 256M }\n"
        "accounts {\n  FLEET {\n    jetstream: enabled\n    users: [\n"
        f"{users_text}\n    ]\n  }}\n}}\n"
    )


# -- credentials ----------------------------------------------------------------------------
def write_private(path: Path, text: str) -> None:
    """A new file of ours, mode 0600, never through a link or over another file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def read_credentials(path: Path) -> tuple[str, str]:
    """(user, password) from a credentials file that only we can read."""
    from nightwarden.lib.fsutil import read_private

    data = read_private(path, 4096, "fleet credentials")
    try:
        creds = tomllib.loads(data.decode())
        return str(creds["user"]), str(creds["password"])
    except (ValueError, KeyError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a fleet credentials file ({e})") from None


# -- connecting -----------------------------------------------------------------------------
def require_nats():
    try:
        import nats  # noqa: F401
    except ImportError:
        raise UnavailableError("the fleet needs nats-py: pip install 'nightwarden[fleet]'") from None


async def connect(cfg, credentials: str, name: str, persistent: bool = False, **callbacks):
    """A connection to the fleet's broker, its inbox the user's own. The first connection is
    tried a few times (a command says at once that the broker is away); a persistent one
    (the listener's, the authority's) then reconnects for ever."""
    require_nats()
    import nats
    from nats.errors import Error as NatsError

    if not cfg.servers:
        raise ConfigError("fleet.servers is empty: this host is not in a fleet (`nightwarden fleet join`)")
    if not credentials:
        raise ConfigError("fleet.credentials is empty (`nightwarden fleet join`)")
    user, password = read_credentials(Path(credentials))

    async def quiet(e):  # said by the callers' own checks; never a traceback in the log
        pass

    try:
        nc = await nats.connect(
            servers=list(cfg.servers),
            user=user,
            password=password,
            name=name,
            inbox_prefix=f"_INBOX_{user}",
            connect_timeout=cfg.connect_timeout,
            allow_reconnect=True,
            max_reconnect_attempts=2,
            reconnect_time_wait=0.5,
            error_cb=callbacks.get("error_cb", quiet),
            disconnected_cb=callbacks.get("disconnected_cb"),
            reconnected_cb=callbacks.get("reconnected_cb"),
        )
    except (OSError, NatsError, TimeoutError) as e:
        raise UnavailableError(
            f"the fleet broker {', '.join(cfg.servers)}: {e or type(e).__name__}"
        ) from None
    if persistent:
        nc.options["max_reconnect_attempts"] = -1  # read at each reconnection
    return nc


async def ensure_streams(js) -> None:
    """The evidence and host streams and the decision bucket (the authority's user makes them)."""
    from nats.js.api import DiscardPolicy, KeyValueConfig, StorageType, StreamConfig

    wanted = [
        StreamConfig(
            name=EVIDENCE,
            subjects=["nw.evt.*.e.*"],
            max_age=2 * 86400,
            max_bytes=2 * 1024**3,
            max_msgs_per_subject=2_000_000,
            max_msg_size=16384,
            discard=DiscardPolicy.OLD,
            storage=StorageType.FILE,
        ),
        StreamConfig(
            name=HOSTS,
            subjects=["nw.evt.*.status", "nw.evt.*.summary"],
            max_age=40 * 86400,
            max_msgs_per_subject=60,
            max_msg_size=65536,
            discard=DiscardPolicy.OLD,
            storage=StorageType.FILE,
        ),
        StreamConfig(
            name=SNAPSHOT,
            subjects=["nw.snap.>"],
            max_age=86400,
            max_bytes=2 * 1024**3,
            max_msgs_per_subject=2,
            max_msg_size=65536,
            discard=DiscardPolicy.OLD,
            storage=StorageType.FILE,
        ),
    ]
    for config in wanted:
        try:
            await js.add_stream(config)
        except Exception:  # exists with other limits: bring it to ours
            await js.update_stream(config)
    await js.create_key_value(KeyValueConfig(bucket=BUCKET, history=8, max_value_size=16384))
