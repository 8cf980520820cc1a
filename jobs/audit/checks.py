"""The audit's checks. Each returns Findings: an id (stable, for `audit.ignore` and for telling
what is new), a severity (high, medium, low), what is wrong, the evidence and the fix."""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

from nightwarden.lib import proc
from nightwarden.lib.errors import UnavailableError

SEVERITY_BITS = {"low": 1, "medium": 2, "high": 4}
WEAK_CIPHERS = ("3des", "blowfish", "cast128", "arcfour", "rc4", "-cbc")
# broken ones only: OpenSSH 9 still offers hmac-sha1 and umac-64 by default, not a finding
WEAK_MACS = ("hmac-md5", "-96", "ripemd160")
WEAK_KEX = ("diffie-hellman-group1-sha1", "diffie-hellman-group14-sha1", "diffie-hellman-group-exchange-sha1")
CLEARTEXT = {
    23: "telnet",
    512: "rexec",
    513: "rlogin",
    514: "rsh",
    21: "FTP (passwords in clear unless TLS is required)",
    110: "POP3 without TLS",
    143: "IMAP without TLS",
}
NO_SHELLS = ("nologin", "false", "true", "sync", "halt", "shutdown")


@dataclass
class Finding:
    id: str
    severity: str
    what: str
    evidence: str
    fix: str

    def as_dict(self) -> dict:
        return asdict(self)


# -- sshd ----------------------------------------------------------------------------------------
def sshd_settings(cfg, spec: str | None = None) -> tuple[dict[str, str], str]:
    """sshd's effective settings (`sshd -T`, keys lower case), or ({}, why not)."""
    argv = list(cfg.sshd) + (["-f", cfg.sshd_config] if cfg.sshd_config else [])
    if spec:
        argv += ["-C", spec]
    try:  # through the one seam for external commands (lib/proc)
        done = proc.run([proc.need(argv[0]), *argv[1:]], timeout=30)
    except UnavailableError as e:
        return {}, f"{e.message} (no OpenSSH server here?)"
    if done.returncode != 0:
        return {}, f"{' '.join(argv)} exited {done.returncode}: {done.error_line}"
    out: dict[str, str] = {}
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(" ")
        if key:
            out[key.lower()] = value if key.lower() not in out else out[key.lower()] + "," + value
    return out, ""


def ssh(cfg) -> list[Finding]:
    s, why = sshd_settings(cfg)
    if not s:
        return [
            Finding("ssh.unread", "low", "sshd's settings could not be read", why, "check `sshd -T` by hand")
        ]
    out = []

    def say(key: str, severity: str, bad: bool, what: str, fix: str) -> None:
        if bad:
            out.append(Finding(f"ssh.{key}", severity, what, f"{key} {s.get(key, '?')}", fix))

    say(
        "permitrootlogin",
        "high",
        s.get("permitrootlogin") == "yes",
        "root may log in with a password",
        "PermitRootLogin prohibit-password (or no)",
    )
    say(
        "passwordauthentication",
        "medium",
        s.get("passwordauthentication") == "yes",
        "passwords are accepted (brute force works)",
        "PasswordAuthentication no, with keys for every user",
    )
    say(
        "kbdinteractiveauthentication",
        "medium",
        s.get("kbdinteractiveauthentication", s.get("challengeresponseauthentication")) == "yes",
        "keyboard-interactive logins (passwords by another door)",
        "KbdInteractiveAuthentication no",
    )
    say(
        "permitemptypasswords",
        "high",
        s.get("permitemptypasswords") == "yes",
        "accounts with an empty password may log in",
        "PermitEmptyPasswords no",
    )
    say(
        "permituserenvironment",
        "medium",
        s.get("permituserenvironment", "no") not in ("no", ""),
        "users may set environment variables for sshd (LD_PRELOAD tricks)",
        "PermitUserEnvironment no",
    )
    say(
        "allowtcpforwarding",
        "low",
        s.get("allowtcpforwarding") in ("yes", "all"),
        "any user may tunnel TCP through this host",
        "AllowTcpForwarding no (or local), per Match block where needed",
    )
    say("x11forwarding", "low", s.get("x11forwarding") == "yes", "X11 forwarding is on", "X11Forwarding no")
    tries = s.get("maxauthtries", "6")
    say(
        "maxauthtries",
        "low",
        tries.isdigit() and int(tries) > cfg.max_auth_tries,
        f"{tries} password tries per connection",
        f"MaxAuthTries {cfg.max_auth_tries} or fewer",
    )
    say(
        "protocol",
        "high",
        "1" in s.get("protocol", "2").split(","),
        "SSH protocol 1 is enabled",
        "Protocol 2",
    )
    for key, weak, name in (("ciphers", WEAK_CIPHERS, "ciphers"), ("macs", WEAK_MACS, "MACs")):
        bad = [c for c in s.get(key, "").split(",") if c and any(w in c for w in weak)]
        if bad:
            out.append(
                Finding(
                    f"ssh.{key}", "medium", f"weak {name} offered", ", ".join(bad), f"remove them from {name}"
                )
            )
    kex = [k for k in s.get("kexalgorithms", "").split(",") if k in WEAK_KEX]
    if kex:
        out.append(Finding("ssh.kex", "medium", "weak key exchanges offered", ", ".join(kex), "remove them"))
    return out


# -- accounts ------------------------------------------------------------------------------------
def read_shadow(path: str = "/etc/shadow") -> dict[str, str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return {line.split(":")[0]: line.split(":")[1] for line in f if line.count(":") >= 2}
    except OSError:
        return {}


def accounts(config) -> list[Finding]:
    cfg = config.audit
    passwd, shadow, group = (str(config.sandboxed(f"/etc/{n}")) for n in ("passwd", "shadow", "group"))
    out = []
    hashes = read_shadow(shadow)
    users = []
    try:
        with open(passwd, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 7:
                    users.append(parts)
    except OSError as e:
        return [
            Finding(
                "accounts.unread",
                "medium",
                "the account list could not be read",
                f"{passwd}: {e.strerror}",
                "-",
            )
        ]
    for name, pw, uid, *_ in users:
        if uid == "0" and name != "root":
            out.append(
                Finding(
                    f"accounts.uid0.{name}",
                    "high",
                    f"{name} has uid 0 (root's powers under another name)",
                    f"{passwd}: {name}:x:0:...",
                    "remove the account or give it a uid of its own",
                )
            )
        secret = hashes.get(name, pw if pw not in ("x", "*") else "!")
        if secret == "":
            out.append(
                Finding(
                    f"accounts.empty.{name}",
                    "high",
                    f"{name} has an empty password",
                    f"{shadow}: {name}::...",
                    f"passwd -l {name} (or set a password)",
                )
            )
    out += _transfer_accounts(cfg, users, group)
    return out


def _transfer_accounts(cfg, users: list, group: str) -> list[Finding]:
    """Members of the file-transfer groups whose shell is a real one and whom sshd does not
    confine to internal-sftp (the seed's rssh advice, as OpenSSH does it today)."""
    wanted = set(cfg.transfer_groups)
    members: dict[str, set] = {}
    gids = {}
    try:
        with open(group, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 4 and parts[0] in wanted:
                    gids[parts[2]] = parts[0]
                    for m in filter(None, parts[3].split(",")):
                        members.setdefault(m, set()).add(parts[0])
    except OSError:
        return []
    out = []
    for name, _pw, _uid, gid, _g, _home, shell in (u[:7] for u in users):
        groups = members.get(name, set()) | ({gids[gid]} if gid in gids else set())
        if not groups or os.path.basename(shell) in NO_SHELLS or not shell:
            continue
        s, _ = sshd_settings(cfg, f"user={name},host=localhost,addr=127.0.0.1")
        if s.get("forcecommand", "none") == "internal-sftp" and s.get("chrootdirectory", "none") != "none":
            continue
        out.append(
            Finding(
                f"accounts.transfer.{name}",
                "medium",
                f"{name} ({', '.join(sorted(groups))}) only transfers files but has a full shell",
                f"shell {shell}; sshd gives it forcecommand {s.get('forcecommand', '?')}, "
                f"chrootdirectory {s.get('chrootdirectory', '?')}",
                f"Match Group {sorted(groups)[0]} / ForceCommand internal-sftp / ChrootDirectory %h "
                f"(and usermod -s /usr/sbin/nologin {name})",
            )
        )
    return out


# -- services ------------------------------------------------------------------------------------
def _loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1"


def services(previous: set | None) -> tuple[list[Finding], set]:
    """Cleartext services beyond loopback, and listeners new since the last audit."""
    from nightwarden.lib import netstat

    now = {(s.proto, s.port, s.local) for s in netstat.listening()}
    out = []
    for proto, port, local in sorted(now):
        name = CLEARTEXT.get(port)
        if proto == "tcp" and name and not _loopback(local):
            out.append(
                Finding(
                    f"services.cleartext.{port}",
                    "high" if port in (23, 512, 513, 514) else "medium",
                    f"{name} listens on {local}:{port}",
                    f"tcp {local}:{port} in LISTEN",
                    "turn it off, or require TLS (FTPS, POP3S/IMAPS on 995/993), or bind it to loopback",
                )
            )
    if previous is not None:
        for proto, port, local in sorted(now - previous):
            out.append(
                Finding(
                    f"services.new.{proto}.{port}.{local}",
                    "medium",
                    f"{proto} {local}:{port} listens now and did not at the last audit",
                    "the socket table",
                    "find its owner (`ss -lpn`), and stop it unless it is expected",
                )
            )
        for proto, port, local in sorted(previous - now):
            out.append(
                Finding(
                    f"services.gone.{proto}.{port}.{local}",
                    "low",
                    f"{proto} {local}:{port} listened at the last audit and does not now",
                    "the socket table",
                    "nothing, if it was stopped on purpose",
                )
            )
    return out, now


# -- files ---------------------------------------------------------------------------------------
def writable_dirs(trees: list, limit: int) -> list[Finding]:
    """World-writable directories without the sticky bit (anyone may delete or replace others'
    files there), in the given trees, not crossing file systems, at most `limit` looked at."""
    out, seen = [], 0
    for root in trees:
        try:
            top = os.lstat(root)
        except OSError:
            continue
        if not stat.S_ISDIR(top.st_mode):
            continue
        stack = [str(root)]
        while stack and seen < limit:
            d = stack.pop()
            seen += 1
            try:
                st = os.lstat(d)
                entries = list(os.scandir(d))
            except OSError:
                continue
            if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
                out.append(
                    Finding(
                        f"files.writable.{d}",
                        "high",
                        f"{d} is writable by anyone, without the sticky bit",
                        f"mode {stat.S_IMODE(st.st_mode):04o}",
                        f"chmod o-w {d} (or chmod +t {d} for a shared directory)",
                    )
                )
            for e in entries:
                try:
                    if e.is_dir(follow_symlinks=False) and e.stat(follow_symlinks=False).st_dev == top.st_dev:
                        stack.append(e.path)
                except OSError:
                    continue
    return out


def mounts(path: str = "/proc/self/mounts") -> list[Finding]:
    opts = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 4:
                    opts[parts[1]] = set(parts[3].split(","))
    except OSError:
        return []
    out = []
    for point in ("/tmp", "/dev/shm"):
        have = opts.get(point)
        if have is None:
            out.append(
                Finding(
                    f"files.mount.{point}",
                    "low",
                    f"{point} is no file system of its own: it cannot be noexec, nosuid",
                    "/proc/self/mounts",
                    f"mount a tmpfs on {point} with nodev,nosuid,noexec",
                )
            )
            continue
        missing = [o for o in ("noexec", "nosuid") if o not in have]
        if missing:
            out.append(
                Finding(
                    f"files.mount.{point}",
                    "low",
                    f"{point} is mounted without {', '.join(missing)}",
                    f"options {','.join(sorted(have))}",
                    f"add {','.join(missing)} to {point}'s mount options",
                )
            )
    return out


def own_files(config) -> list[Finding]:
    """nightwarden's keys, lists and state: nobody but root may write them; nobody else may
    read the private key or the state."""
    from nightwarden.jobs.integrity.settings import integrity_file

    items = [
        (integrity_file(config, "private_key"), 0o077, "the integrity private key"),
        (config.state_dir, 0o022, "the state directory"),
        (config.state_dir / "state.db", 0o022, "the state database"),
        (config.list_file("allow"), 0o022, "the allow list"),
        (config.list_file("deny"), 0o022, "the deny list"),
        (config.list_file("ignore"), 0o022, "the ignore list"),
    ]
    out = []
    for path, forbidden, what in items:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        loose = stat.S_IMODE(st.st_mode) & forbidden
        owner = pwd.getpwuid(st.st_uid).pw_name if _known_uid(st.st_uid) else str(st.st_uid)
        if loose or (os.geteuid() == 0 and st.st_uid != 0):
            out.append(
                Finding(
                    f"own.{Path(path).name}",
                    "high",
                    f"{what} ({path}) is open to others",
                    f"mode {stat.S_IMODE(st.st_mode):04o}, owner {owner}",
                    f"chown root {path}; chmod go-{'rwx' if forbidden == 0o077 else 'w'} {path}",
                )
            )
    return out


def _known_uid(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


def firewall(config) -> list[Finding]:
    from nightwarden.lib.errors import NightwardenError
    from nightwarden.lib.state import State

    out = []
    try:
        state = State(config.db_path, dry_run=True)
        try:
            from nightwarden.lib.blocks import OFF

            off = state.get_meta(OFF)
        finally:
            state.close()
    except (NightwardenError, OSError) as e:
        return [Finding("firewall.unread", "medium", "the state could not be read", str(e), "-")]
    if off:
        out.append(
            Finding(
                "firewall.off",
                "high",
                "nightwarden's firewall is off: nothing is blocked",
                off,
                "nightwarden firewall start",
            )
        )
    try:
        from nightwarden.lib.firewall import open_backend

        ready = open_backend(config, reading=True).is_ready()
    except (NightwardenError, OSError) as e:
        ready, why = False, str(e)
    else:
        why = "its table or chain is not loaded"
    if not ready and not off:
        out.append(
            Finding(
                "firewall.unloaded",
                "high",
                "nightwarden's rules are not in the kernel (after a reboot, or flushed)",
                why,
                "nightwarden firewall start (the expire job also puts them back)",
            )
        )
    return out
