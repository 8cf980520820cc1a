"""File integrity, in Tripwire's model: a database of file attributes and hashes, signed with
an Ed25519 key. `check` (nightly) needs only the public key; `init` and `update` need the
private key and its passphrase.

Exit codes of check, as tripwire's: bits 1 added, 2 removed, 4 changed (unexplained), 8 some
files could not be read; 80 the database failed verification (altered, another host's, or an
older generation replayed).
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

from nightwarden.lib.errors import NoInputError, TamperedError, UsageError
from nightwarden.lib.runner import Result

from . import trust
from .settings import integrity_file

NAME = "integrity"


def add_arguments(parser) -> None:
    parser.add_argument(
        "action",
        nargs="?",
        default="check",
        choices=["check", "init", "update", "show", "keygen", "rekey"],
        help="check (default), init, update, show, keygen, rekey (a new key pair; needs the old private key)",
    )
    parser.add_argument(
        "paths", nargs="*", help="update: accept only changes under these paths; show: only these paths"
    )
    parser.add_argument("--all", action="store_true", help="update: accept every change")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="check: do not re-hash files whose inode, size, mtime and ctime are unchanged (faster, weaker)",
    )
    parser.add_argument("--force", action="store_true", help="init: replace an existing database")
    parser.add_argument("--json", action="store_true", help="check, show: JSON output")
    parser.add_argument(
        "--no-mail",
        action="store_true",
        help="check: do not mail the report (a verification failure is mailed all the same)",
    )


def is_run(args) -> bool:
    """Only a check is a run of the job (its health in the report); keygen, init, update,
    rekey and show are done by hand."""
    return (getattr(args, "action", "check") if args is not None else "check") == "check"


def run(ctx) -> Result:
    action = getattr(ctx.args, "action", "check") if ctx.args is not None else "check"
    actions = {"check": check, "init": init, "update": update, "show": show_database, "keygen": keygen}
    return {**actions, "rekey": rekey}[action](ctx)


def _entry(path: str, r) -> dict:
    """A database record as an object with named fields (times ISO 8601 UTC, mode in octal)."""
    from .scan import CTIME, FLAGS, GID, INODE, MODE, MTIME, NLINK, SHA256, SIZE, TARGET, TYPE, UID, XATTRS

    return {
        "path": path,
        "type": r[TYPE],
        "mode": None if r[MODE] is None else f"{r[MODE]:04o}",
        "uid": r[UID],
        "gid": r[GID],
        "size": r[SIZE],
        "inode": r[INODE],
        "links": r[NLINK],
        "mtime": _iso_ns(r[MTIME]),
        "ctime": _iso_ns(r[CTIME]),
        "target": r[TARGET],
        "sha256": r[SHA256],
        "xattrs": r[XATTRS],
        "flags": r[FLAGS],
    }


def _iso_ns(value):
    """A file time kept in nanoseconds, as ISO 8601 UTC with them."""
    if not isinstance(value, int | float):
        return value
    seconds, ns = divmod(int(value), 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ns:09d}Z"


def _icfg(ctx):
    return ctx.config.integrity


def _policy(ctx):
    from .policy import Policy

    policy = Policy(ctx.config)
    for missing in policy.missing_paths():
        ctx.log.warning("integrity policy path %s does not exist", missing)
    return policy


def _scan(ctx, policy, previous=None, should_stop=lambda: False, encode=False):
    from .scan import TreeScanner

    result = TreeScanner(policy, _icfg(ctx).workers, previous, should_stop=should_stop, encode=encode).run()
    for path, error in sorted(result.errors.items()):
        ctx.log.warning("%s: %s", path, error)
    for note in result.skipped:
        ctx.log.info("%s", note)
    return result


def _seen(ctx) -> int:
    return int(ctx.state.get_meta("integrity.generation", "0"))


def _set_seen(ctx, generation: int) -> None:
    with ctx.state:
        if generation > _seen(ctx):
            ctx.state.set_meta("integrity.generation", str(generation))


def _private_key(ctx):
    from . import keys

    path = integrity_file(ctx.config, "private_key")
    if not path.exists():
        keys.load_private(path, b"")  # raises the clear "no key" error
    return keys.load_private(path, keys.passphrase(_icfg(ctx)))


class _KeyLoader:
    """Decrypts the private key in a thread while the scan runs; a wrong passphrase stops the
    scan at the next directory."""

    def __init__(self, ctx):
        import threading

        from . import keys

        path = integrity_file(ctx.config, "private_key")
        if not path.exists():
            keys.load_private(path, b"")  # the clear "no key" error, now
        secret = keys.passphrase(_icfg(ctx))  # asked before the scan starts
        self._result, self._error = None, None

        def load():
            try:
                self._result = keys.load_private(path, secret)
            except BaseException as e:  # handed to the main thread by key()
                self._error = e

        self._thread = threading.Thread(target=load, daemon=True)

    def __enter__(self) -> _KeyLoader:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._thread.join()

    def failed(self) -> bool:
        return self._error is not None

    def key(self):
        if self._error is not None:
            raise self._error
        return self._result


def _verified(ctx, public_key=None):
    """The database, verified: the pinned key, signature, body, host, generation (against
    state and the seal). Returns (header, records, what the replay check used); raises
    TamperedError."""
    from . import dbfile, keys

    path = integrity_file(ctx.config, "database")
    public_path = integrity_file(ctx.config, "public_key")
    public_key = public_key or keys.load_public(public_path)
    trust.check_pin(ctx.state, keys.key_id(public_key), public_path)
    header, body = dbfile.read_header(path, public_key)
    if header.get("host") != ctx.config.hostname:
        raise TamperedError(
            f"{path}: made for host {header.get('host')!r}, this is "
            f"{ctx.config.hostname!r}: refusing to compare"
        )
    newest, evidence = trust.newest_generation(ctx, public_key)
    if header.get("generation", 0) < newest:
        raise TamperedError(
            f"{path}: generation {header.get('generation')} is older than the "
            f"newest this host has had ({newest}; {evidence}): an old database replayed"
        )
    return header, dbfile.parse_body(path, body), evidence


def keygen(ctx) -> Result:
    from . import keys

    private, public = integrity_file(ctx.config, "private_key"), integrity_file(ctx.config, "public_key")
    if ctx.dry_run:
        ctx.say(f"dry run: would write {private} and {public}")
        return Result(0, "dry run")
    ident = keys.generate(
        private,
        public,
        keys.passphrase(_icfg(ctx), confirm=True),
        f"nightwarden-integrity@{ctx.config.hostname}",
    )
    if trust.pinned_key(ctx.state) is None:
        trust.pin_key(ctx.state, ident)
    else:
        ctx.say(
            f"note: key {trust.pinned_key(ctx.state)} is pinned; a database signed with the new key is "
            "refused until `nightwarden integrity rekey` moves the pin"
        )
    ctx.say(f"integrity key {ident}: private {private} (0600, encrypted), public {public}")
    return Result(0, f"key {ident} created")


def _write(ctx, records, generation: int, private_key, policy, note: str, scan=None) -> dict:
    from . import dbfile, keys

    header = {
        "host": ctx.config.hostname,
        "policy": policy.fingerprint(),
        "created": time.time(),
        "generation": generation,
        "key": keys.key_id(private_key.public_key()),
        "note": note,
    }
    header = dbfile.write(
        integrity_file(ctx.config, "database"),
        header,
        records,
        private_key,
        scan.encoded if scan else (),
        scan.encoded_count if scan else 0,
    )
    _set_seen(ctx, generation)
    trust.write_seal(ctx.config, private_key, generation, header["key"])
    return header


def init(ctx) -> Result:
    path = integrity_file(ctx.config, "database")
    if path.exists() and not ctx.args.force:
        raise UsageError(
            f"{path} exists: `integrity update` accepts changes; `integrity init --force` starts over"
        )
    policy = _policy(ctx)
    with _KeyLoader(ctx) as loader:  # the passphrase KDF runs beside the scan
        scan = _scan(ctx, policy, should_stop=loader.failed, encode=True)
    key = loader.key()
    from . import keys

    trust.check_pin(ctx.state, keys.key_id(key.public_key()), integrity_file(ctx.config, "private_key"))
    if ctx.dry_run:
        ctx.say(
            f"dry run: scanned {len(scan.records) + scan.encoded_count:,} entries in "
            f"{scan.seconds:.1f} s; not written"
        )
        return Result(0, "dry run")
    header = _write(ctx, scan.records, _seen(ctx) + 1, key, policy, "init", scan)
    if trust.pinned_key(ctx.state) is None:
        trust.pin_key(ctx.state, header["key"])
    ctx.say(
        f"integrity database {path}: {header['count']:,} entries, generation "
        f"{header['generation']}, signed with key {header['key']} ({scan.seconds:.1f} s)"
    )
    return Result(
        8 if scan.errors else 0, f"init: {header['count']} entries, generation {header['generation']}"
    )


def _alert_tampered(ctx, error) -> None:
    """The loud alert of a verification failure: mailed even with --no-mail (README says so)."""
    _mail(
        ctx,
        f"DATABASE VERIFICATION FAILED on {ctx.config.hostname}",
        str(integrity_file(ctx.config, "database")),
        "-",
        f"{error}\n\nThe integrity database cannot be trusted. Do not accept changes "
        f"from it. Restore the database from a trusted copy or run `nightwarden "
        f"integrity init --force` on a host you know to be clean.\n",
    )


def check(ctx) -> Result:
    from nightwarden.lib.errors import DataError, NoInputError

    from . import dpkg
    from .compare import compare

    paths = [integrity_file(ctx.config, k) for k in ("database", "public_key", "private_key")]
    established = trust.established(ctx)
    if not established and not any(os.path.lexists(p) for p in paths):
        ctx.log.warning(
            "integrity checking is not set up yet: run `nightwarden integrity keygen`, "
            "then `nightwarden integrity init`"
        )
        return Result(0, "not set up (no key, no database)")
    warnings = trust.permission_warnings(ctx.config)
    for warning in warnings:
        ctx.log.warning("integrity: %s", warning)
    policy = _policy(ctx)
    try:
        header, records, evidence = _verified(ctx)
    except TamperedError as e:
        _alert_tampered(ctx, e)
        raise
    except (DataError, NoInputError) as e:
        if not established:
            raise
        # this host has had a database: a missing, emptied or unreadable one is tampering
        tampered = TamperedError(f"{e} (generation {_seen(ctx)} was seen on this host)")
        _alert_tampered(ctx, tampered)
        raise tampered from None
    quick = _icfg(ctx).quick or getattr(ctx.args, "quick", False)
    scan = _scan(ctx, policy, records if quick else None)
    result = compare(records, scan.records, policy)
    explained = 0
    if _icfg(ctx).package_aware and result.changed:
        explained = dpkg.explain(
            result.changed, header["created"], Path(_icfg(ctx).dpkg_info), Path(_icfg(ctx).dpkg_log)
        )
    text, data = render_check(ctx, header, result, scan, quick, policy, evidence, warnings)
    code = result.exit_bits | (8 if scan.errors else 0)
    unexplained = [c for c in result.changed if not c.explained]
    summary = (
        f"{len(result.added)} added, {len(result.removed)} removed, {len(unexplained)} changed"
        + (f", {explained} explained by package upgrades" if explained else "")
        + (f", {len(scan.errors)} unreadable" if scan.errors else "")
    )
    if not ctx.dry_run:
        _save(ctx, text, data)
        _set_seen(ctx, header["generation"])
        with ctx.state:
            ctx.state.add_event(
                "integrity",
                source="integrity",
                added=len(result.added),
                removed=len(result.removed),
                changed=len(unexplained),
                explained=explained,
                unreadable=len(scan.errors),
                paths=_paths(result),
            )
    ctx.say(json.dumps(data, indent=1) if getattr(ctx.args, "json", False) else text)
    if code and not getattr(ctx.args, "no_mail", False):
        _mail(ctx, summary, str(integrity_file(ctx.config, "database")), header["generation"], text)
    return Result(
        code,
        f"check: {summary} ({len(scan.records):,} entries, {scan.seconds:.1f} s{', quick' if quick else ''})",
    )


REPORTED_PATHS = 200  # paths named in the check's event (the daily report lists them)


def _paths(result) -> list[dict]:
    """The unexplained changes, then the added and removed paths, for the daily report."""
    out = [
        {"path": c.path, "change": "changed", "attributes": [[a, b, f] for a, b, f in c.attrs]}
        for c in result.changed
        if not c.explained
    ]
    out += [{"path": p, "change": "added", "attributes": [["", "", what]]} for p, _, what in result.added]
    out += [{"path": p, "change": "removed", "attributes": [["", what, ""]]} for p, _, what in result.removed]
    return out[:REPORTED_PATHS]


def render_check(ctx, header, result, scan, quick, policy, evidence="", warnings=()) -> tuple[str, dict]:
    from tabulate import tabulate

    lines = [
        f"Integrity check of {ctx.config.hostname}: database generation {header['generation']} "
        f"of {datetime.fromtimestamp(header['created']):%Y-%m-%d %H:%M:%S}, signed with key "
        f"{header.get('key', '?')}, {len(scan.records):,} entries scanned in {scan.seconds:.1f} s"
        + (" (quick mode: unchanged inode/size/mtime/ctime not re-hashed)" if quick else ""),
        f"The {evidence}.",
    ]
    lines += [f"WARNING: {w}" for w in warnings]
    if header.get("policy") != policy.fingerprint():
        lines.append(
            "NOTE: the policy changed since this database was made; run "
            "`nightwarden integrity update --all` once the changes are reviewed."
        )
    unexplained = [c for c in result.changed if not c.explained]
    sections = [
        (
            "Changed",
            [[c.path, c.severity, a, before, after] for c in unexplained for a, before, after in c.attrs],
            ["path", "severity", "attribute", "before", "after"],
        ),
        ("Added", [[p, s, w] for p, s, w in result.added], ["path", "severity", "now"]),
        ("Removed", [[p, s, w] for p, s, w in result.removed], ["path", "severity", "was"]),
        (
            "Explained by package upgrades",
            [[c.path, c.explained] for c in result.changed if c.explained],
            ["path", "why"],
        ),
        ("Could not be read", [[p, e] for p, e in sorted(scan.errors.items())], ["path", "error"]),
    ]
    for title, rows, headers in sections:
        if rows:
            lines += ["", f"{title} ({len({r[0] for r in rows})})", tabulate(rows, headers)]
    if not any(rows for _, rows, _ in sections):
        lines.append("No changes.")
    data = {
        "host": ctx.config.hostname,
        "generation": header["generation"],
        "key": header.get("key"),
        "replay_evidence": evidence,
        "warnings": list(warnings),
        "added": result.added,
        "removed": result.removed,
        "changed": [
            {
                "path": c.path,
                "severity": c.severity,
                "explained": c.explained,
                "attributes": [{"name": a, "before": b, "after": f} for a, b, f in c.attrs],
            }
            for c in result.changed
        ],
        "unreadable": scan.errors,
    }
    return "\n".join(lines) + "\n", data


def _save(ctx, text: str, data: dict) -> None:
    from nightwarden.lib.fsutil import atomic_write

    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    base = ctx.config.report_dir / f"integrity-{stamp}"
    atomic_write(base.with_suffix(".txt"), text.encode(), 0o640)
    atomic_write(base.with_suffix(".json"), json.dumps(data, indent=1).encode(), 0o640)


def _mail(ctx, summary: str, database: str, generation, details: str) -> None:
    ctx.mailer.alert(
        "integrity", {"summary": summary, "database": database, "generation": generation, "details": details}
    )


def update(ctx) -> Result:
    from .compare import compare

    if not ctx.args.all and not ctx.args.paths:
        raise UsageError("integrity update needs --all or the paths whose changes you accept")
    key = _private_key(ctx)
    header, records, _ = _verified(ctx, key.public_key())
    policy = _policy(ctx)
    scan = _scan(ctx, policy)
    result = compare(records, scan.records, policy)
    names = {p: "added" for p, _, _ in result.added}
    names.update({p: "removed" for p, _, _ in result.removed})
    names.update({c.path: "changed: " + ", ".join(a for a, _, _ in c.attrs) for c in result.changed})
    if ctx.args.all:
        accepted = dict(scan.records)
        taken = sorted(names)
        count = len(taken)
    else:
        prefixes = [p.rstrip("/") for p in ctx.args.paths]

        def chosen(path: str) -> bool:
            return any(path == p or path.startswith(p + "/") for p in prefixes)

        accepted = dict(records)
        taken = []
        for path in sorted(set(records) | set(scan.records)):
            if chosen(path) and records.get(path) != scan.records.get(path):
                taken.append(path)
                if path in scan.records:
                    accepted[path] = scan.records[path]
                else:
                    accepted.pop(path, None)
        count = len(taken)
    verb = "would accept" if ctx.dry_run else "accepted"
    for path in taken[:500]:
        ctx.say(f"  {verb}: {path} ({names.get(path, 'changed')})")
    if len(taken) > 500:
        ctx.say(f"  ... and {len(taken) - 500} more")
    if ctx.dry_run:
        ctx.say(f"dry run: would accept {count} change(s)")
        return Result(0, "dry run")
    new = _write(ctx, accepted, max(header["generation"], _seen(ctx)) + 1, key, policy, "update")
    ctx.say(f"accepted {count} change(s); database generation {new['generation']}, {new['count']:,} entries")
    return Result(0, f"update: accepted {count} changes, generation {new['generation']}")


def show_database(ctx) -> Result:
    from tabulate import tabulate

    from .compare import describe
    from .scan import SHA256

    header, records, _ = _verified(ctx)

    def under(p: str, q: str) -> bool:
        return p == q.rstrip("/") or p.startswith(q.rstrip("/") + "/")

    missing = [q for q in ctx.args.paths if not any(under(p, q) for p in records)]
    if missing:
        raise NoInputError(f"not in the integrity database: {', '.join(missing)}")
    paths = sorted(
        p
        for p in records
        if not ctx.args.paths
        or any(p == q.rstrip("/") or p.startswith(q.rstrip("/") + "/") for q in ctx.args.paths)
    )
    if ctx.args.json:
        from nightwarden.lib.cli.output import iso

        head = {**header, "created": iso(header.get("created"))} if header.get("created") else header
        ctx.say(json.dumps({"header": head, "entries": [_entry(p, records[p]) for p in paths]}, indent=1))
        return Result(0, f"{len(paths)} entries")
    for key in ("host", "generation", "created", "count", "policy", "key", "note"):
        value = header.get(key)
        if key == "created":
            value = f"{datetime.fromtimestamp(value):%Y-%m-%d %H:%M:%S}"
        ctx.say(f"{key:<11} {value}")
    from nightwarden.jobs.quarantine.archive import shown

    rows = [
        [shown(p.encode("utf-8", "surrogateescape")), describe(records[p]), (records[p][SHA256] or "-")[:16]]
        for p in paths
    ]
    ctx.say(tabulate(rows, ["path", "entry", "sha256"]))
    return Result(0, f"{len(paths)} entries")


def rekey(ctx) -> Result:
    """A new key pair that takes over from the old one: the old private key (and its
    passphrase) proves the right to it, the current database is verified with the old key and
    signed again with the new one, and the pin moves. The new passphrase comes from
    $<passphrase_env>_NEW or the terminal."""
    from . import keys

    old = _private_key(ctx)
    header, records, _ = _verified(ctx, old.public_key())
    private, public = integrity_file(ctx.config, "private_key"), integrity_file(ctx.config, "public_key")
    if ctx.dry_run:
        ctx.say(
            f"dry run: would make a new key pair in {private} and {public} and sign generation "
            f"{header['generation'] + 1} with it"
        )
        return Result(0, "dry run")
    env = _icfg(ctx).passphrase_env + "_NEW"
    secret = os.environ.get(env, "").encode() or keys.passphrase(_icfg(ctx), confirm=True, prompt="new ")
    retired = private.with_name(private.name + ".old")
    os.replace(private, retired)
    try:
        ident = keys.generate(private, public, secret, f"nightwarden-integrity@{ctx.config.hostname}")
    except BaseException:
        os.replace(retired, private)
        raise
    new_key = keys.load_private(private, secret)
    trust.pin_key(ctx.state, ident)
    generation = max(header["generation"], _seen(ctx)) + 1
    new = _write(
        ctx, records, generation, new_key, _policy(ctx), f"rekey from {keys.key_id(old.public_key())}"
    )
    retired.unlink()
    ctx.say(f"new integrity key {ident} pinned; database generation {new['generation']} signed with it")
    return Result(0, f"rekey: key {ident}, generation {new['generation']}")
