"""`nightwarden install [--root DIR]` and `uninstall`: the cron.d, logrotate.d and systemd
files rendered from the configuration, put in place with a manifest of what was written,
so that uninstall removes exactly that (and keeps a file someone changed since)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from nightwarden.lib import schedule
from nightwarden.lib.errors import CantCreateError
from nightwarden.lib.fsutil import atomic_write

UNIT_DIR = Path("/etc/systemd/system")


@dataclass
class Item:
    path: Path  # where it goes on the installed system
    content: bytes
    mode: int = 0o644


def files(config, timers: bool) -> list[Item]:
    out = [
        Item(Path(schedule.DOC), schedule.render_doc().encode()),
        Item(Path("/etc/logrotate.d/nightwarden"), schedule.render_logrotate(config).encode()),
        Item(UNIT_DIR / "nightwarden-listener.service", schedule.render_listener_unit(config).encode()),
    ]
    if config.fleet.signing_key:  # this host runs the fleet's authority
        out.append(Item(UNIT_DIR / AUTHORITY_UNIT, schedule.render_authority_unit(config).encode()))
    if timers:
        out += [Item(UNIT_DIR / name, text.encode()) for name, text in schedule.render_timers(config).items()]
    else:
        out.append(Item(Path("/etc/cron.d/nightwarden"), schedule.render_cron(config).encode()))
    return out


def _dirs(config) -> list[tuple[Path, int]]:
    return [
        (config.config_dir, 0o750),
        (config.state_dir, 0o750),
        (schedule.lock_dir(config), 0o700),
        (config.log_dir, 0o750),
        (config.report_dir, 0o750),
    ]


def _make_dirs(path: Path, mode: int) -> None:
    """Each missing directory on the way made with `mode` exactly, whatever the umask."""
    if path.is_dir():
        return
    _make_dirs(path.parent, mode)
    path.mkdir(mode=mode, exist_ok=True)
    os.chmod(path, mode)


def _under(root: Path, path: Path) -> Path:
    return root / path.relative_to("/") if path.is_absolute() else root / path


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest_path(config, root: Path) -> Path:
    return _under(root, config.state_dir / "installed.json")


def _read_manifest(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def install(
    config, root: Path, timers: bool = False, force: bool = False, dry_run: bool = False
) -> list[str]:
    """Write the files; returns one line per thing done, for the person who asked."""
    said = []
    manifest_path = _manifest_path(config, root)
    old = _read_manifest(manifest_path).get("files", {})
    new: dict[str, str] = {}
    for d, mode in _dirs(config):
        target = _under(root, d)
        if not target.is_dir():
            said.append(f"{'would create' if dry_run else 'created'} directory {target}")
            if not dry_run:
                _make_dirs(target.parent, 0o755)
                target.mkdir(mode=mode, exist_ok=True)
                os.chmod(target, mode)
    for item in files(config, timers):
        target = _under(root, item.path)
        key = str(item.path)
        if target.is_symlink():
            said.append(f"left alone {target}: it is a symlink")
            continue
        exists = target.exists()
        current = target.read_bytes() if exists else b""
        if exists and current == item.content:
            said.append(f"unchanged {target}")
            new[key] = _sha(item.content)
            continue
        ours = key in old and exists and _sha(current) == old[key]
        if exists and not ours and not force:
            said.append(
                f"left alone {target}: it exists and is not the one nightwarden installed "
                f"(--force replaces it)"
            )
            if key in old:  # once ours, changed since: uninstall --force may still remove it
                new[key] = old[key]
            continue
        verb = "replaced" if exists else "installed"
        said.append(f"{'would be ' + verb if dry_run else verb} {target}")
        new[key] = _sha(item.content)
        if not dry_run:
            try:
                _make_dirs(target.parent, 0o755)
                atomic_write(target, item.content, item.mode)
            except OSError as e:
                raise CantCreateError(f"{target}: {e.strerror}") from None
    # files of an earlier install that this one no longer writes (cron <-> timers)
    for key, sha in old.items():
        if key in new:
            continue
        target = _under(root, Path(key))
        said += _remove(target, sha, dry_run)
    if not dry_run:
        atomic_write(manifest_path, json.dumps({"files": new}, indent=1).encode(), 0o640)
        said += _reload(root, timers)
    return said


def warnings(config, root: Path) -> list[str]:
    """What would make the installed schedule or unit fail later, said before it does."""
    import os

    out = []
    program = schedule.command(config)
    for hidden, why in (
        ("/home/", "ProtectHome=yes"),
        ("/tmp/", "PrivateTmp=yes"),
        ("/root/", "ProtectHome=yes"),
    ):
        if program.startswith(hidden):
            out.append(
                f"warning: the program {program} is under {hidden.rstrip('/')}, which the listener's unit "
                f"hides ({why}): install nightwarden under /opt or /usr/local (schedule.command)"
            )
    if root == Path("/") and os.geteuid() != 0:
        out.append(
            "warning: not root: the files under /etc cannot be written (run it as root, or --root DIR)"
        )
    return out


AUTHORITY_UNIT = "nightwarden-fleet-authority.service"


def next_steps(timers: bool, authority: bool = False) -> list[str]:
    steps = ["next: systemctl enable --now nightwarden-listener.service  (the resident listener)"]
    if authority:
        steps.append(f"next: systemctl enable --now {AUTHORITY_UNIT}  (the fleet's authority)")
    if timers:
        steps.append("next: systemctl enable --now 'nightwarden-*.timer'  (the schedule)")
    else:
        steps.append("next: nothing to enable for the schedule: cron reads /etc/cron.d/nightwarden")
    steps.append("next: nightwarden status  (what runs, and any problem)")
    return steps


def uninstall(config, root: Path, dry_run: bool = False, force: bool = False) -> list[str]:
    manifest_path = _manifest_path(config, root)
    manifest = _read_manifest(manifest_path)
    if not manifest:
        return [f"nothing to remove: no {manifest_path}"]
    said = []
    kept = {}
    for key, sha in manifest.get("files", {}).items():
        lines = _remove(_under(root, Path(key)), sha, dry_run, force)
        said += lines
        if any(line.startswith("kept ") for line in lines):
            kept[key] = sha
    if not dry_run:
        if kept:  # still in place: a later uninstall --force can remove it
            atomic_write(manifest_path, json.dumps({"files": kept}, indent=1).encode(), 0o640)
            said.append(f"{len(kept)} file(s) kept; `nightwarden uninstall --force` removes them")
        else:
            manifest_path.unlink()
        said += _reload(root, timers=False)
    said.append(
        f"kept: configuration in {_under(root, config.config_dir)}, state in "
        f"{_under(root, config.state_dir)}, logs in {_under(root, config.log_dir)}"
    )
    return said


def _remove(target: Path, sha: str, dry_run: bool, force: bool = False) -> list[str]:
    try:
        current = target.read_bytes()
    except FileNotFoundError:
        return [f"already gone {target}"]
    if _sha(current) != sha and not force:
        return [f"kept {target}: changed since it was installed"]
    if not dry_run:
        target.unlink()
    return [f"{'would remove' if dry_run else 'removed'} {target}"]


def _reload(root: Path, timers: bool) -> list[str]:
    """On the live system (root /) with systemd running: daemon-reload, and say what to enable."""
    if root != Path("/") or not Path("/run/systemd/system").is_dir() or not shutil.which("systemctl"):
        return []
    subprocess.run(["systemctl", "daemon-reload"], check=False)
    return ["systemctl daemon-reload done"]
