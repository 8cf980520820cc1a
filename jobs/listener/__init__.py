"""The resident listener (PortSentry's job): the only long-running piece of nightwarden.

`job` runs it through the runner like any other job; `loop` binds the bait ports (connect
mode) or reads raw sockets (advanced mode, packets decoded by `packets`), decides in the
receive loop and puts the block into the kernel through the firewall backend's fast path;
`responder` is the second thread that does everything slower (state, the PortSentry history
files, hosts.deny, commands, alert digests) in batches, so the receive loop never waits.
`messages` are what the two threads hand each other; `store` writes the scan events.
"""
