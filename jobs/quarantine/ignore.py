"""The quarantine's ignore list, in csf.fignore's format.

  /tmp/mysql.sock          an exact path
  /tmp/*.pid               a shell wildcard (* and ?)
  /tmp/clamav.*            a regular expression (matched against the whole path)
  user:postgres            every file owned by that user
A bad line is reported as file:line and skipped.
"""

from __future__ import annotations

import fnmatch
import pwd
import re
from dataclasses import dataclass, field
from pathlib import Path

REGEX_HINTS = (".*", ".+", "\\", "(", "[", "^", "$", "+", "|", "{")


@dataclass
class IgnoreRules:
    exact: set[bytes] = field(default_factory=set)
    patterns: list[tuple[re.Pattern, str]] = field(default_factory=list)
    uids: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    def ignores(self, path: bytes, uid: int) -> str | None:
        """The rule that ignores this path, or None."""
        if uid in self.uids:
            return f"user:{uid}"
        if path in self.exact:
            return path.decode("utf-8", "replace")
        text = path.decode("utf-8", "surrogateescape")
        for pattern, source in self.patterns:
            if pattern.fullmatch(text):
                return source
        return None


def load_rules(files: list[Path]) -> IgnoreRules:
    rules = IgnoreRules()
    for path in files:
        try:
            lines = path.read_bytes().splitlines()
        except FileNotFoundError:
            continue
        except OSError as e:
            rules.errors.append(f"{path}: cannot read: {e.strerror}")
            continue
        for lineno, raw in enumerate(lines, 1):
            line = raw.split(b"#", 1)[0].strip() if not raw.strip().startswith(b"/") else raw.strip()
            if not line or line.startswith(b"#"):
                continue
            where = f"{path}:{lineno}"
            text = line.decode("utf-8", "surrogateescape")
            if text.startswith("user:"):
                name = text[5:].strip()
                try:
                    rules.uids.add(pwd.getpwnam(name).pw_uid)
                except KeyError:
                    rules.errors.append(f"{where}: no such user {name!r}; line skipped")
                continue
            if any(h in text for h in REGEX_HINTS):
                try:
                    rules.patterns.append((re.compile(text, re.DOTALL), text))
                except re.error as e:
                    rules.errors.append(f"{where}: invalid regular expression: {e}; line skipped")
            elif "*" in text or "?" in text:
                rules.patterns.append((re.compile(fnmatch.translate(text), re.DOTALL), text))
            else:
                rules.exact.add(line)
    return rules
