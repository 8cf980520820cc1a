"""The fleet: evidence up, decisions down, over NATS JetStream.

Each host publishes what it saw (scans, login-failure blocks, its local blocks, its daily
summary) on subjects of its own; an authority turns evidence into decisions by policy and
writes each one, signed with the fleet's Ed25519 key, into a key-value bucket; every host's
listener watches the bucket, checks each decision against the pinned keys, and applies new
ones in one firewall transaction per batch. The host's own allow, ignore and protected lists
always win. nats-py is an optional extra (`pip install 'nightwarden[fleet]'`)."""
