"""Signed decisions: batches under one signature, and what a host refuses (a value moved to
another key, an older value played back, a decision only an operator may make)."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nightwarden.jobs.fleet import decisions as dec
from nightwarden.jobs.fleet import signing
from nightwarden.jobs.fleet.decisions import Decision, Refused

FLEET = Ed25519PrivateKey.generate()
OPERATOR = Ed25519PrivateKey.generate()


def block(target="203.0.113.7", seq=10, ttl=3600, **kw) -> Decision:
    now = time.time()
    return Decision("block", target, issued=now, expires=now + ttl, seq=seq, by="authority:a", **kw)


def opened(d: Decision, key=FLEET) -> Decision:
    env = signing.sign_batch(key, [d.payload()])[0]
    return Decision.from_payload(signing.Verifier(FLEET.public_key()).open(env))


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000])
def test_a_batch_verifies_each_decision_with_one_signature_check(size):
    payloads = [block(f"198.51.100.{i % 250}", seq=i).payload() + str(i).encode() for i in range(size)]
    envelopes = signing.sign_batch(FLEET, payloads)
    v = signing.Verifier(FLEET.public_key())
    assert [v.open(e) for e in envelopes] == payloads
    assert v.checked == 1


def test_a_changed_byte_anywhere_or_another_key_does_not_verify():
    envelopes = signing.sign_batch(FLEET, [block(seq=i).payload() for i in range(5)])
    v = signing.Verifier(FLEET.public_key())
    env = bytearray(envelopes[3])
    for i in range(3, len(env)):  # payload, signature, index, path: every byte matters
        changed = bytes(env[:i]) + bytes([env[i] ^ 1]) + bytes(env[i + 1 :])
        with pytest.raises(signing.BadSignature):
            v.open(changed)
    other = signing.sign_batch(Ed25519PrivateKey.generate(), [block().payload()])[0]
    with pytest.raises(signing.BadSignature):
        v.open(other)
    with pytest.raises(signing.BadSignature):
        v.open(b"NW1" + b"\x00" * 10)


def test_a_value_moved_to_another_key_is_refused():
    d = block("203.0.113.7")
    payload = d.payload().replace(b'"key":"f.203.0.113.7"', b'"key":"f.203.0.113.8"')
    with pytest.raises(Refused, match="signed for key"):
        Decision.from_payload(payload)
    moved = opened(block("203.0.113.7"))
    assert moved.key == "f.203.0.113.7"  # a host compares it with the key it was read under


def test_an_older_or_equal_sequence_is_a_replay():
    d = opened(block(seq=5))
    dec.check(d, time.time(), 4, OPERATOR.public_key())
    for last in (5, 6):
        with pytest.raises(Refused, match="replay"):
            dec.check(d, time.time(), last, OPERATOR.public_key())


def test_an_expired_block_is_refused():
    d = opened(block(ttl=-1))
    with pytest.raises(Refused, match="expired"):
        dec.check(d, time.time(), None, OPERATOR.public_key())


@pytest.mark.parametrize(
    "d",
    [
        Decision("allow", "203.0.113.7", issued=time.time(), seq=1, by="authority:a"),
        Decision(
            "unblock", "203.0.113.7", issued=time.time(), expires=time.time() + 86400, seq=1, by="authority:a"
        ),
        Decision("block", "203.0.113.7", issued=time.time(), expires=None, seq=1, by="authority:a"),
        Decision("block", "203.0.112.0/23", issued=time.time(), expires=time.time() + 86400, seq=1, by="a"),
        Decision("block", "2001:db8::/47", issued=time.time(), expires=time.time() + 86400, seq=1, by="a"),
    ],
    ids=["allow", "unblock", "forever", "wider-than-24", "wider-than-48"],
)
def test_evidence_alone_can_never_allow_unblock_block_forever_or_block_wide(d):
    with pytest.raises(Refused, match="needs an operator"):
        dec.check(opened(d), time.time(), None, OPERATOR.public_key())


def test_networks_up_to_24_and_48_need_no_operator():
    for target in ("203.0.113.0/24", "2001:db8:1::/48", "2001:db8::1"):
        dec.check(opened(block(target)), time.time(), None, OPERATOR.public_key())


def operator_decision(action="allow", target="203.0.113.7", key=OPERATOR, said=None, issued=None, ttl=None):
    now = time.time()
    cmd = dec.operator_command(action, said or target, "fleet", "", ttl, "office", now=issued or now)
    expires = None if ttl is None else now + ttl
    return Decision(
        action,
        target,
        issued=now,
        expires=expires,
        seq=1,
        by="operator",
        operator=dec.sign_operator(key, cmd),
    )


def test_an_operators_command_makes_an_allow_good_and_nothing_else_does():
    dec.check(opened(operator_decision()), time.time(), None, OPERATOR.public_key())
    dec.check(opened(operator_decision("block", ttl=600)), time.time(), None, OPERATOR.public_key())
    with pytest.raises(Refused, match="does not verify"):
        dec.check(opened(operator_decision(key=FLEET)), time.time(), None, OPERATOR.public_key())
    with pytest.raises(Refused, match="says something else"):
        dec.check(opened(operator_decision(said="203.0.113.8")), time.time(), None, OPERATOR.public_key())
    with pytest.raises(Refused, match="replay"):
        old = operator_decision(issued=time.time() - 3600)
        dec.check(opened(old), time.time(), None, OPERATOR.public_key())
    with pytest.raises(Refused, match="no operator key"):
        dec.check(opened(operator_decision()), time.time(), None, None)


def test_a_block_longer_than_the_operator_said_is_refused():
    d = operator_decision("block", ttl=600)
    longer = Decision(
        d.action,
        d.target,
        issued=d.issued,
        expires=d.issued + 7200,
        seq=1,
        by="operator",
        operator=d.operator,
    )
    with pytest.raises(Refused, match="longer"):
        dec.check(opened(longer), time.time(), None, OPERATOR.public_key())


def test_scopes_name_the_hosts_they_apply_to():
    g = Decision("block", "203.0.113.7", scope="group", to="web", issued=1, expires=2, seq=1)
    h = Decision("block", "203.0.113.7", scope="host", to="db1", issued=1, expires=2, seq=1)
    assert g.key == "g.web.203.0.113.7" and h.key == "h.db1.203.0.113.7"
    assert g.applies_to("web1", ["web"]) and not g.applies_to("db1", ["db"])
    assert h.applies_to("db1", []) and not h.applies_to("web1", ["web"])
    assert Decision("block", "2001:db8::1").key == "f.2001_db8__1"
