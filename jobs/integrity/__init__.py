"""The integrity job, in Tripwire's model.

`policy` says what is watched and which attributes each rule checks; `scan` walks and hashes
the trees (worker processes for the hashing, `attrs` for ACLs, capabilities and ext4 flags);
`dbfile` is the signed database (Ed25519 keys from `keys`), verified before any record is
read; `compare` names every change; `dpkg` explains changes by package upgrades; `job` is the
command: keygen, init, check, update, show.
"""
