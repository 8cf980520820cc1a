"""The audit's settings ([audit])."""

from __future__ import annotations

from nightwarden.lib.settings import Count, Section, default_list


class AuditSettings(Section):
    sshd: list[str] = default_list("sshd", "-T")  # how sshd's effective settings are read
    sshd_config: str = ""  # "" = sshd's own (/etc/ssh/sshd_config); else `-f FILE`
    # groups whose members only transfer files (they should get internal-sftp, not a shell)
    transfer_groups: list[str] = default_list("sftp", "sftponly", "sftpusers", "sftp-only", "ftp", "ftpusers")
    max_auth_tries: Count = 6  # MaxAuthTries above this is said
    # the trees looked through for world-writable directories without the sticky bit
    # ([] = integrity.paths and watch.paths)
    trees: list[str] = default_list()
    max_dirs: Count = 200_000  # directories looked at per audit, at most
    ignore: list[str] = default_list()  # finding ids to leave out, e.g. "ssh.x11forwarding"
