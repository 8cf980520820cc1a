"""The watched files' settings ([watch]): csf's LF_DIRWATCH_FILE and its csf.dirwatch list."""

from __future__ import annotations

from nightwarden.lib.settings import Section, default_list


class WatchSettings(Section):
    # what an intruder changes first: accounts, sudo, sshd, root's keys, cron, the preload list
    paths: list[str] = default_list(
        "/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", "/etc/sudoers", "/etc/sudoers.d",
        "/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d", "/root/.ssh", "/etc/crontab", "/etc/cron.d",
        "/etc/ld.so.preload", "/etc/pam.d",
    )  # fmt: skip
    extra_files: list[str] = default_list("/etc/csf/csf.dirwatch")  # one path per line, # comments
    excludes: list[str] = default_list()  # shell patterns of paths not looked at
    alert: bool = True  # LF_DIRWATCH's mail (watchalert)
