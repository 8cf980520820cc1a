"""The processes job's settings ([processes]), named after csf.conf's PT_* where there is one."""

from __future__ import annotations

from nightwarden.lib.settings import Section, default_list


class ProcessSettings(Section):
    all_users: bool = False  # PT_ALL_USERS: root's processes too
    deleted: bool = True  # PT_DELETED: an executable deleted since it started
    writable: bool = True  # an executable in a directory anyone can write
    names: bool = True  # a name that pretends: [kworker] with an executable, argv[0] another program
    writable_dirs: list[str] = default_list("/tmp", "/dev/shm", "/var/tmp")  # and the quarantine's dirs
    ignore_file: str = ""  # "" = <config dir>/nightwarden.pignore (csf.pignore format)
    extra_ignore_files: list[str] = default_list("/etc/csf/csf.pignore")
    alert: bool = True  # one mail per run with every new finding
    detail_lines: int = 20  # open files and mapped files listed per process
