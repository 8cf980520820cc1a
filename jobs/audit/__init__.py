"""The server security check (csf's "Server Security Check"): `nightwarden audit`, weekly and by
hand. Each finding has a severity, the evidence and the fix: sshd's effective settings
(`sshd -T`), accounts (empty passwords, a second uid 0, file-transfer accounts with a full
shell), cleartext services listening beyond loopback and what listens now that did not at
the last audit, world-writable directories without the sticky bit, /tmp and /dev/shm mount
options, nightwarden's own keys, lists and state, and the firewall. settings: [audit];
checks: the checks; job: the job and its report."""
