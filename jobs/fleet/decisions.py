"""A fleet decision: what to do to an address or network, where, until when, why, and who
said so. Its payload is compact JSON inside a signed envelope (signing.py), stored in the
bucket under a key named after its scope and target, so a value cannot be moved to another
key or host without breaking its signature.

What evidence can never decide: allow, unblock, a block without an end, and networks wider
than /24 (IPv4) or /48 (IPv6). Those need an operator's command, signed with the operator's
key, which travels inside the decision and which every host checks too."""

from __future__ import annotations

import base64
import json
import os
import time
from functools import cached_property

import msgspec

from nightwarden.lib.netaddr import Network, display, parse_network, plain_ipv4

from . import signing

ACTIONS = ("block", "unblock", "allow")
SCOPES = ("fleet", "group", "host")
WIDEST = {4: 24, 6: 48}  # evidence blocks nothing wider
OPERATOR_SKEW = 600  # an operator's command is good for this long after it was signed
BUCKET = "nw-decisions"


class Refused(Exception):
    """A decision a host must ignore, and why."""


class Decision(msgspec.Struct, frozen=True, omit_defaults=True, dict=True):
    """Decoded by msgspec straight from the signed payload: a field of the wrong type is a
    malformed decision, and 100,000 of them decode in a fraction of a second."""

    action: str
    target: str  # an address or network, as display() writes it
    scope: str = "fleet"
    to: str = ""  # the group or host of a group or host scope
    issued: float = 0.0
    expires: float | None = None  # None: until lifted (operator only)
    seq: int = 0  # grows with every decision on one key
    by: str = ""  # "authority:NAME" or "operator"
    reason: str = ""
    evidence: list[dict] = msgspec.field(default_factory=list)  # [{"host", "kind", "trusted", "time"}]
    operator: dict | None = None  # {"cmd": base64, "sig": base64} when an operator said so
    signed_key: str = msgspec.field(default="", name="key")  # the key it was signed for

    @cached_property
    def key(self) -> str:
        return key_for(self.scope, self.to, self.target)

    def payload(self) -> bytes:
        return _encode(msgspec.structs.replace(self, signed_key=self.key))

    @classmethod
    def from_payload(cls, payload: bytes) -> Decision:
        try:
            d = _decoder.decode(payload)
        except msgspec.DecodeError as e:
            raise Refused(f"a malformed decision ({e})") from None
        if d.signed_key != d.key:
            raise Refused(f"signed for key {d.signed_key!r}, not {d.key!r}")
        return d

    @cached_property
    def net(self) -> Network:
        return parse_network(self.target)

    def network(self) -> Network:
        return self.net

    def needs_operator(self) -> bool:
        if self.action != "block" or self.expires is None:
            return True
        net = self.network()
        return net.prefixlen < WIDEST[net.version]

    def applies_to(self, host: str, groups: list[str]) -> bool:
        return (
            self.scope == "fleet"
            or (self.scope == "group" and self.to in groups)
            or (self.scope == "host" and self.to == host)
        )

    def in_force(self, now: float | None = None) -> bool:
        return self.action != "unblock" and (self.expires is None or self.expires > (now or time.time()))


_decoder = msgspec.json.Decoder(Decision)
_encode = msgspec.json.Encoder().encode


def encode_key(target: str) -> str:
    """A target as bucket key tokens (':' is not allowed in a key)."""
    return target.replace(":", "_")


def key_for(scope: str, to: str, target: str) -> str:
    if scope == "fleet":
        return "f." + encode_key(target)
    return f"{scope[0]}.{to}.{encode_key(target)}"


def check(d: Decision, now: float, last_seq: int | None, operator_key) -> None:
    """Raise Refused unless the decision is well-formed, new, in time and, where it must be,
    an operator's (the envelope's signature is checked before, by signing.Verifier)."""
    if last_seq is not None and d.seq <= last_seq:
        raise Refused(f"sequence {d.seq} is not newer than {last_seq} (a replay)")
    if (
        d.action == "block"
        and d.expires is not None
        and d.operator is None
        and d.by != "operator"
        and (d.scope == "fleet") == (d.to == "")
        and d.scope in SCOPES
        and plain_ipv4(d.target) is not None
    ):  # the common case, an evidence block of an IPv4 address: nothing more to parse
        if d.expires <= now:
            raise Refused("expired")
        return
    if d.action not in ACTIONS or d.scope not in SCOPES:
        raise Refused(f"unknown action or scope ({d.action!r}, {d.scope!r})")
    if (d.scope == "fleet") != (d.to == ""):
        raise Refused("a scope and its host or group do not agree")
    try:
        net = d.network()
    except Exception:
        raise Refused(f"not an address: {d.target!r}") from None
    if plain_ipv4(d.target) is None and display(net) != d.target:
        raise Refused(f"{d.target!r} is not written as {display(net)!r}")
    if not isinstance(d.seq, int) or (last_seq is not None and d.seq <= last_seq):
        raise Refused(f"sequence {d.seq} is not newer than {last_seq} (a replay)")
    if d.expires is not None and d.expires <= now and d.action == "block":
        raise Refused("expired")
    if d.needs_operator() or d.operator or d.by == "operator":
        check_operator(d, operator_key)


# -- the operator's commands ------------------------------------------------------------
def operator_command(
    action: str, target: str, scope: str, to: str, ttl: int | None, reason: str, now: float | None = None
) -> dict:
    return {
        "action": action,
        "target": target,
        "scope": scope,
        "to": to,
        "ttl": ttl,
        "reason": reason[:200],
        "issued": now or time.time(),
        "nonce": base64.b64encode(os.urandom(12)).decode(),
    }


def sign_operator(private_key, cmd: dict) -> dict:
    raw = json.dumps(cmd, sort_keys=True, separators=(",", ":")).encode()
    return {
        "cmd": base64.b64encode(raw).decode(),
        "sig": base64.b64encode(private_key.sign(signing.OPERATOR + raw)).decode(),
    }


def open_operator(signed: dict, operator_key) -> dict:
    """The operator's command, or Refused."""
    from cryptography.exceptions import InvalidSignature

    if operator_key is None:
        raise Refused("no operator key is pinned (fleet.operator_key)")
    try:
        raw = base64.b64decode(signed["cmd"], validate=True)
        operator_key.verify(base64.b64decode(signed["sig"], validate=True), signing.OPERATOR + raw)
        cmd = json.loads(raw)
    except (InvalidSignature, KeyError, TypeError, ValueError):
        raise Refused("the operator's signature does not verify") from None
    if not isinstance(cmd, dict):
        raise Refused("a malformed operator command")
    return cmd


def check_operator(d: Decision, operator_key) -> None:
    if not d.operator:
        raise Refused(f"{d.action} {d.target} needs an operator's signed command")
    cmd = open_operator(d.operator, operator_key)
    said = (cmd.get("action"), cmd.get("target"), cmd.get("scope"), cmd.get("to"))
    if said != (d.action, d.target, d.scope, d.to):
        raise Refused("the operator's command says something else")
    issued = cmd.get("issued")
    if not isinstance(issued, (int, float)) or not (issued - 60 <= d.issued <= issued + OPERATOR_SKEW):
        raise Refused("the operator's command is not of the decision's time (a replay)")
    ttl = cmd.get("ttl")
    if d.action == "block" and (ttl is None) != (d.expires is None):
        raise Refused("the decision's end is not the operator's")
    if d.action == "block" and ttl is not None and d.expires is not None and d.expires > d.issued + ttl + 1:
        raise Refused("the decision lasts longer than the operator said")
