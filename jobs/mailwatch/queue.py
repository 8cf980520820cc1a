"""The mail queue: postfix's `postqueue -j` (one JSON object per message, postqueue(1)'s
"JSON OBJECT FORMAT") or exim's `exim -bp` listing (a header line per message: age, size, id,
<sender>; its recipients indented below)."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

from nightwarden.lib import proc
from nightwarden.lib.errors import UnavailableError

MAX_OUTPUT = 256 << 20
EXIM_HEADER = re.compile(r"^\s*\S+\s+\S+\s+(\S+-\S+-\S+)\s+<([^>]*)>")


@dataclass
class Queue:
    mta: str
    length: int = 0
    senders: Counter = field(default_factory=Counter)
    recipients: Counter = field(default_factory=Counter)


def which_mta(cfg) -> str:
    if cfg.mta != "auto":
        return cfg.mta
    if proc.which(cfg.postqueue[0]):
        return "postfix"
    if proc.which(cfg.exim[0]):
        return "exim"
    return "none"


def _run(argv: list[str]) -> bytes:
    """The queue listing, through the one seam for external commands (lib/proc)."""
    try:
        done = proc.run([proc.need(argv[0]), *argv[1:]], timeout=120)
    except UnavailableError as e:
        raise UnavailableError(f"mail queue: {e.message}") from None
    if done.returncode != 0:
        raise UnavailableError(f"mail queue: {argv[0]} exited {done.returncode}: {done.error_line}")
    return done.stdout[:MAX_OUTPUT]


def postfix(out: bytes) -> Queue:
    q = Queue("postfix")
    for line in out.splitlines():
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if not isinstance(m, dict):
            continue
        q.length += 1
        q.senders[str(m.get("sender") or "<>")] += 1
        for r in m.get("recipients") or []:
            if isinstance(r, dict) and r.get("address"):
                q.recipients[str(r["address"])] += 1
    return q


def exim(out: bytes) -> Queue:
    q = Queue("exim")
    inside = False
    for raw in out.decode("utf-8", "replace").splitlines():
        m = EXIM_HEADER.match(raw)
        if m:
            q.length += 1
            q.senders[m.group(2) or "<>"] += 1
            inside = True
        elif inside and raw.strip():
            if not raw.strip().startswith("D "):  # "D ": delivered already
                q.recipients[raw.strip()] += 1
        else:
            inside = False
    return q


def read(cfg) -> Queue | None:
    mta = which_mta(cfg)
    if mta == "postfix":
        return postfix(_run(list(cfg.postqueue)))
    if mta == "exim":
        return exim(_run(list(cfg.exim)))
    return None
