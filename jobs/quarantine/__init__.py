"""The quarantine job (lfd's LF_DIRWATCH with LF_DIRWATCH_DISABLE, done race-free).

Every few minutes `sweep` walks /tmp, /dev/shm and /var/tmp without following a link or
leaving the file system, `ignore` drops what csf.fignore-style rules allow, and each
suspicious entry (ELF binaries, scripts, exploit names, hidden directories, symlinks) goes to
`archive`: appended to a tar file that `tar -xpf` restores with path, owner and mode, recorded
in `store`, and only then removed. `job` is the command: sweep, list, show, restore.
"""
