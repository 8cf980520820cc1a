"""The integrity policy: what is watched, what is excluded, and which attributes each rule
checks, at what severity. Its fingerprint goes into the signed database header."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .settings import ATTRIBUTES, integrity_file

# "growing": a log that may only grow: its content and times may change, its size not shrink
GROWING_IGNORES = {"size", "sha256", "mtime", "ctime"}


@dataclass(frozen=True)
class PolicyRule:
    path: str
    attrs: frozenset
    severity: str
    growing: bool


class Policy:
    def __init__(self, config):
        icfg = config.integrity
        self.paths = [config.sandboxed(p) for p in icfg.paths]
        self.excludes = [str(config.sandboxed(p)) if p.startswith("/") else p for p in icfg.excludes]
        self.rules: list[PolicyRule] = []
        for raw in icfg.rules:  # attribute names were checked at config load
            attrs = set(ATTRIBUTES) if {"default", "all"} & set(raw.attrs) else set(raw.attrs)
            self.rules.append(
                PolicyRule(
                    str(config.sandboxed(raw.path)).rstrip("/") or "/",
                    frozenset(attrs),
                    raw.severity,
                    raw.growing,
                )
            )
        self.rules.sort(key=lambda r: len(r.path), reverse=True)
        self.default = PolicyRule("/", frozenset(ATTRIBUTES), "high", False)
        # the check's own files change with every init and update: never watched (and not in
        # the fingerprint, which the configuration alone decides)
        self.own = {str(integrity_file(config, key)) for key in ("database", "seal")}
        pattern = "|".join(f"(?:{fnmatch.translate(p)})" for p in self.excludes)
        self._excluded = re.compile(pattern, re.DOTALL) if pattern else None

    def excluded(self, path: str) -> bool:
        return path in self.own or bool(self._excluded and self._excluded.match(path))

    def rule_for(self, path: str) -> PolicyRule:
        for rule in self.rules:
            if rule.path == "/" or path == rule.path or path.startswith(rule.path + "/"):
                return rule
        return self.default

    def fingerprint(self) -> str:
        data = {
            "paths": [str(p) for p in self.paths],
            "excludes": self.excludes,
            "rules": [[r.path, sorted(r.attrs), r.severity, r.growing] for r in self.rules],
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def missing_paths(self) -> list[Path]:
        return [p for p in self.paths if not p.exists() and not p.is_symlink()]
