"""Login-failure detection rules: data files, one per daemon, compiled into one regular
expression per log format and set of services.

The rules ship as TOML files in `ruleset/` (one per daemon: its programs, the wording of each
line it writes, what the wording captures, the kind and the versions it was written from).
An administrator adds or overrides rules in a drop-in directory (`logins.rules_dir`, by
default /etc/nightwarden/rules.d/*.toml): a rule with the id of a shipped one replaces it,
`disabled = true` removes it, any other id adds a rule. README, "Detection rules", documents
the file format.

A rule's `kind` and `count` decide how a line is counted (README, "How failures are counted"):

  failure + each             one line, one failure (<N> captured: that many)
  failure + connection       sshd's "Failed <method> for ...": counted per connection
  failure + connection-once  sshd lines of a connection that has not (yet) logged Failed
  failure + local            a local failure without an address (su, sudo): never blocked
  success                    a successful login
  harmless                   understood, nothing to count (only for the report and `logs test`)

Internally these are the kinds fail, failed, pre, local, success and known. The address is
always captured from the daemon's fixed text (<ADDR>, <HOST>), anchored between fixed words
up to the end of the line, so a user name or a request that carries another address does not
move it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

import msgspec

from nightwarden.lib.errors import ConfigError

from .formats import FORMATS, Format

# the services a rule may count for (the job's settings name them)
SERVICES_ALL = ("sshd", "su", "sudo", "console", "ftpd", "imapd", "pop3d", "smtpauth", "htaccess", "modsec")
NOISE = ("cron", "logind", "systemd")  # harmless lines of every syslog source

IPV4 = r"(?:\d{1,3}\.){3}\d{1,3}"
IPV6 = r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:]{1,40}(?:" + IPV4 + r")?"
PLACEHOLDERS = {
    "ADDR": r"(?P<ip>" + IPV4 + "|" + IPV6 + ")",
    "HOST": r"(?P<ip>" + IPV4 + "|" + IPV6 + r"|[0-9A-Za-z][0-9A-Za-z._-]{0,253})",
    "USER": r"(?P<user>.*?)",
    "N": r"(?P<n>\d+)",
    "PORT": r"\d+",
    "TARGET": r"(?P<target>\S+)",
}
_PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)>")
KINDS = {
    ("failure", "each"): "fail",
    ("failure", "connection"): "failed",
    ("failure", "connection-once"): "pre",
    ("failure", "local"): "local",
    ("success", "each"): "success",
    ("harmless", "each"): "known",
}


class RuleSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One [[rules]] table of a rule file."""

    id: str
    match: str = ""
    starts: list[str] = msgspec.field(default_factory=list)  # harmless: literal beginnings
    kind: Literal["failure", "success", "harmless"] = "failure"
    count: Literal["each", "connection", "connection-once", "local"] = "each"
    service: str = ""  # "" = the file's
    programs: list[str] | None = None  # None = the file's
    formats: list[str] | None = None
    versions: str = ""
    example: str = ""
    disabled: bool = False


class RuleFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A rule file: the daemon's defaults and its rules."""

    daemon: str = ""
    service: str = ""
    programs: list[str] = msgspec.field(default_factory=list)
    formats: list[str] = msgspec.field(default_factory=list)
    versions: str = ""
    defines: dict[str, str] = msgspec.field(default_factory=dict)
    rules: list[RuleSpec] = msgspec.field(default_factory=list)


@dataclass
class LogRule:
    id: str
    service: str
    kind: str  # fail, failed, pre, local, success, known
    prog: bytes | None  # syslog programs (a regular expression); None: native formats only
    body: bytes  # the wording, placeholders expanded, with named groups ip, user, n, target
    tag: bytes = b""  # the literal the wording starts with (fast dispatch)
    formats: tuple = ()  # native formats this rule is for
    # filled in by compile
    index: int = -1
    pos: dict = field(default_factory=dict)
    key: int | None = None  # a group that is set whenever this rule matched

    @property
    def public_kind(self) -> str:
        return {"known": "harmless", "success": "success"}.get(self.kind, "failure")


def _literal_prefix(pattern: str) -> str:
    """The text every match of `pattern` starts with (up to its first special character)."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern) and not pattern[i + 1].isalnum():
            nxt = pattern[i + 2 : i + 3]
            if nxt and nxt in "*+?{":
                break
            out.append(pattern[i + 1])
            i += 2
            continue
        if ch in ".^$*+?{}[]|()\\<":
            break
        nxt = pattern[i + 1 : i + 2]
        if nxt and nxt in "*+?{":
            break
        out.append(ch)
        i += 1
    return "".join(out)


def _line_of(text: str, rule_id: str) -> int:
    """The line of `id = "<rule_id>"` in a rule file (0 when not found)."""
    m = re.search(r"^[ \t]*id[ \t]*=[ \t]*[\"']" + re.escape(rule_id) + r"[\"']", text, re.M)
    return text.count("\n", 0, m.start()) + 1 if m else 0


def _expand(pattern: str, defines: dict[str, str], where: str) -> str:
    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name in defines:
            return defines[name]
        if name in PLACEHOLDERS:
            return PLACEHOLDERS[name]
        raise ConfigError(f"{where}: unknown placeholder <{name}>")

    for _ in range(5):  # defines may use placeholders and other defines
        expanded = _PLACEHOLDER.sub(sub, pattern)
        if expanded == pattern:
            break
        pattern = expanded
    return pattern


def parse_file(text: str, origin: str, check_patterns: bool = True) -> list[LogRule | str]:
    """The rules of one file (a disabled rule stands as its id). ConfigError names the file
    and the line. check_patterns=False leaves out compiling each wording on its own (most of
    the time taken here): for the shipped files, which the tests check, so that loading the
    configuration stays quick."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{origin}: {e}") from None
    try:
        spec = msgspec.convert(data, RuleFile)
    except msgspec.ValidationError as e:
        msg = str(e)
        m = re.search(r"\$\.rules\[(\d+)\]", msg)
        line = 0
        if m and isinstance(data.get("rules"), list) and int(m.group(1)) < len(data["rules"]):
            rid = data["rules"][int(m.group(1))].get("id", "")
            line = _line_of(text, rid) if rid else 0
        raise ConfigError(f"{origin}:{line or 1}: {msg.replace('$.', '')}") from None
    out: list[LogRule | str] = []
    for r in spec.rules:
        line = _line_of(text, r.id) or 1
        where = f"{origin}:{line}: rule {r.id!r}"
        if r.disabled:
            out.append(r.id)
            continue
        service = r.service or spec.service
        if service not in SERVICES_ALL + NOISE:
            raise ConfigError(f"{where}: unknown service {service!r} (one of {', '.join(SERVICES_ALL)})")
        if (r.kind, r.count) not in KINDS:
            raise ConfigError(f"{where}: count = {r.count!r} does not go with kind = {r.kind!r}")
        programs = spec.programs if r.programs is None else r.programs
        formats = spec.formats if r.formats is None else r.formats
        for f in formats:
            if f not in FORMATS or FORMATS[f].syslog:
                raise ConfigError(f"{where}: {f!r} is not a native log format")
        if not programs and not formats:
            raise ConfigError(f"{where}: no programs and no formats: the rule would never be used")
        prog = "|".join(f"(?:{p})" for p in programs) if programs else None
        if r.starts:
            if r.kind != "harmless" or r.match:
                raise ConfigError(f"{where}: starts = [...] is for harmless rules without a match")
            # one rule for them all: the key group holds the beginning that matched
            body = "(?P<k>" + "|".join(re.escape(t) for t in sorted(r.starts, key=len, reverse=True)) + ").*"
            tag = os.path.commonprefix(r.starts)
        elif r.match:
            body, tag = _expand(r.match, spec.defines, where), _literal_prefix(r.match)
        else:
            raise ConfigError(f"{where}: no match (or starts, for harmless lines)")
        if check_patterns:
            _check_patterns(body, prog, r, where)
        out.append(
            LogRule(
                r.id,
                service,
                KINDS[(r.kind, r.count)],
                prog.encode() if prog else None,
                body.encode(),
                tag=tag.encode(),
                formats=tuple(formats),
            )
        )
    return out


def _check_patterns(body: str, prog: str | None, r: RuleSpec, where: str) -> None:
    try:
        compiled = re.compile(body)
        if prog:
            re.compile(prog)
    except re.error as e:
        raise ConfigError(f"{where}: bad regular expression: {e}") from None
    if r.kind == "failure" and r.count != "local" and "ip" not in compiled.groupindex:
        if r.count != "connection-once":  # old sshd lines name the connection only
            raise ConfigError(f"{where}: a counted failure needs <ADDR> or <HOST>")
    unknown = set(compiled.groupindex) - {"ip", "user", "n", "target"} - ({"k"} if r.starts else set())
    if unknown:
        raise ConfigError(f"{where}: unknown group(s) {', '.join(sorted(unknown))}")


@dataclass
class RuleSet:
    """The shipped rules with the drop-ins applied, in order (first match wins within a
    program: specific wordings come before general ones)."""

    rules: list[LogRule]


def _shipped() -> list[tuple[str, str]]:
    base = resources.files(__package__) / "ruleset"
    return sorted(
        (f"ruleset/{p.name}", p.read_text(encoding="utf-8"))
        for p in base.iterdir()
        if p.name.endswith(".toml")
    )


def _dropins(directory: Path) -> list[tuple[str, str]]:
    from nightwarden.lib.fsutil import read_regular

    try:
        names = sorted(p for p in directory.iterdir() if p.name.endswith(".toml"))
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise ConfigError(f"{directory}: rule directory is not a directory") from None
    except OSError as e:
        raise ConfigError(f"{directory}: cannot read: {e.strerror}") from None
    out = []
    for path in names:
        try:
            raw = read_regular(path, 1 << 20, "rule file", follow=True)
            out.append((str(path), raw.decode("utf-8")))
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text") from None
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    return out


_sets: dict[str, RuleSet] = {}


def load(directory: Path | None = None) -> RuleSet:
    """The shipped rules, then every *.toml of `directory` in name order over them."""
    key = str(directory)
    if key in _sets:
        return _sets[key]
    by_id: dict[str, LogRule] = {}
    files = [(origin, text, False) for origin, text in _shipped()]
    files += [(origin, text, True) for origin, text in (_dropins(directory) if directory else [])]
    for origin, text, check in files:
        for r in parse_file(text, origin, check):
            if isinstance(r, str):
                by_id.pop(r, None)
            else:
                by_id.pop(r.id, None)  # an override takes the new file's place in the order
                by_id[r.id] = r
    ruleset = RuleSet(list(by_id.values()))
    _sets[key] = ruleset
    return ruleset


def for_config(config) -> RuleSet:
    """The rule set a configuration uses (its drop-in directory applied)."""
    value = config.logins.rules_dir
    directory = config.sandboxed(value) if value else config.config_dir / "rules.d"
    return load(directory)


def shipped() -> RuleSet:
    """The rules that ship with nightwarden, without drop-ins."""
    return load(None)


def services_without_rules(fmt_name: str, services: list[str]) -> list[str]:
    """The services that have no rule in this format ("auto" stands for the syslog
    formats): a source configured with one of them would never match a line."""
    name = "rfc3164" if fmt_name == "auto" else fmt_name
    return [s for s in services if not select(shipped(), name, [s], False)]


def select(ruleset: RuleSet, fmt_name: str, services: list[str], known: bool) -> list[LogRule]:
    fmt = FORMATS[fmt_name]
    out = []
    for r in ruleset.rules:
        if r.kind == "known":
            if not known or (r.service not in services and r.service not in NOISE):
                continue
        elif r.service not in services:
            continue
        if (fmt.syslog and r.prog is not None) or (not fmt.syslog and fmt_name in r.formats):
            out.append(r)
    return out


@dataclass
class Compiled:
    """One source's combined expression and how to read its tuples."""

    fmt: Format
    regex: re.Pattern
    rules: list[LogRule]
    tag_pos: int
    prog_pos: int | None
    pid_pos: int | None
    by_tag: dict[tuple, list[LogRule]] = field(default_factory=dict)

    def candidates(self, tag: bytes, prog: bytes | None = None) -> list[LogRule]:
        """Rules whose literal start the captured tag begins with (and whose program fits,
        when one is given), longest start first; sorted out once per (tag, program) text."""
        key = (tag, prog)
        cands = self.by_tag.get(key)
        if cands is None:
            cands = [
                r
                for r in self.rules
                if tag.startswith(r.tag)
                and (prog is None or r.prog is None or not self.fmt.syslog or re.fullmatch(r.prog, prog))
            ]
            cands.sort(key=lambda r: -len(r.tag))  # the likeliest first: the longest start
            if len(self.by_tag) < 100_000:
                self.by_tag[key] = cands
        return cands

    def rule_of(self, t: tuple) -> LogRule | None:
        """The rule a findall tuple came from: among the candidates, the one whose key
        group is set (every rule has one of its own)."""
        prog = t[self.prog_pos] if self.prog_pos is not None else b""
        for r in self.candidates(t[self.tag_pos], prog):
            if t[r.key]:
                return r
        return None


_cache: dict[tuple, Compiled] = {}


def _top_level(pattern: bytes) -> list[bytes]:
    """The alternatives of a pattern, split at its top-level bars only."""
    out, depth, start, i = [], 0, 0, 0
    while i < len(pattern):
        ch = pattern[i : i + 1]
        if ch == b"\\":
            i += 2
            continue
        if ch == b"(":
            depth += 1
        elif ch == b")":
            depth -= 1
        elif ch == b"|" and depth == 0:
            out.append(pattern[start:i])
            start = i + 1
        i += 1
    return out + [pattern[start:]]


def _program(j: int, prog: bytes) -> bytes:
    """One program's alternative, `(?P<pJ>...)`, with the first letter its names all share
    written before the group: the regular expression engine then skips the alternative after
    comparing one character (a group first would make it try every alternative in full)."""
    alts = [a[3:-1] if a.startswith(b"(?:") and a.endswith(b")") else a for a in _top_level(prog)]
    first = {a[:1] for a in alts}
    if len(first) == 1 and all(a[:1].isalnum() and a[1:2] not in (b"*", b"+", b"?", b"{") for a in alts):
        head = alts[0][:1]
        return b"%s(?P<p%d>%s)" % (head, j, b"|".join(b"(?:%s)" % a[1:] for a in alts))
    return b"(?P<p%d>%s)" % (j, prog)


def compile_rules(
    fmt_name: str,
    services: list[str],
    known: bool = False,
    users: bool = True,
    ruleset: RuleSet | None = None,
) -> Compiled:
    """The combined expression: newline, the format's prefix, [prog[pid]: ], a look-ahead
    that captures the literal the message starts with, then every rule's wording (each
    program's only after that program's name), anchored at the end of the line (trailing
    blanks and a carriage return allowed)."""
    ruleset = ruleset or shipped()
    key = (fmt_name, tuple(sorted(services)), known, users, id(ruleset))
    if key in _cache:
        return _cache[key]
    fmt = FORMATS[fmt_name]
    rules = [
        LogRule(**{k: v for k, v in r.__dict__.items() if k not in ("index", "pos", "key")})
        for r in select(ruleset, fmt_name, services, known)
    ]
    if not rules:
        raise ValueError(f"no rules for format {fmt_name} and services {', '.join(services)}")
    tags = sorted({re.escape(r.tag) for r in rules if r.tag}, key=len, reverse=True)
    bodies: dict[bytes | None, list[bytes]] = {}
    untagged: list[str] = []
    for i, r in enumerate(rules):
        r.index = i
        keep = {"ip", "n", "k"} | ({"user", "target"} if users or r.kind in ("success", "local") else set())
        body = re.sub(
            rb"\(\?P<(\w+)>",
            lambda m, i=i, keep=keep: (
                b"(?P<r%d_%s>" % (i, m.group(1)) if m.group(1).decode() in keep else b"(?:"
            ),
            r.body,
        )
        if b"(?P<r%d_" % i not in body:  # no group kept: the whole wording is the key
            body = b"(?P<r%d_k>%s)" % (i, body)
        bodies.setdefault(r.prog if fmt.syslog else None, []).append(body)
        untagged += [] if r.tag else [r.id]
    # Rules without a literal start: the look-ahead lets every line through (tag b""), and
    # only the line's own program's wordings are tried after it.
    look = rb"(?=(?P<tag>" + b"|".join(tags) + b")" + (b"|" if untagged else b"") + b")"
    end = rb")[ \t]*\r?$"
    if fmt.syslog:
        # each program's bodies only after that program's name: (?(pN)...|(?!))
        progs = list(bodies)
        names = b"|".join(_program(j, p) for j, p in enumerate(progs))
        alts = b"|".join(b"(?(p%d)(?:%s)|(?!))" % (j, b"|".join(bodies[p])) for j, p in enumerate(progs))
        pattern = fmt.prefix + fmt.progpid.replace(b"{prog}", names) + look + b"(?:" + alts + end
    else:
        pattern = fmt.prefix + look + b"(?:" + b"|".join(bodies[None]) + end
    regex = re.compile(pattern, re.M)
    names = regex.groupindex
    for r in rules:
        r.pos = {n.split("_", 1)[1]: idx - 1 for n, idx in names.items() if n.startswith(f"r{r.index}_")}
        r.key = next(r.pos[g] for g in ("ip", "n", "user", "target", "k") if g in r.pos)
    compiled = Compiled(
        fmt,
        regex,
        rules,
        names["tag"] - 1,
        names["prog"] - 1 if "prog" in names else None,
        names["pid"] - 1 if "pid" in names else None,
    )
    _cache[key] = compiled
    return compiled
