"""The processes job's settings ([processes]), named after csf.conf's PT_* where there is one."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from nightwarden.lib.settings import Count, Section, default_list

Load = Annotated[float, msgspec.Meta(ge=0)]


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
    # excessive resource use by one process (0 = off): PT_USERMEM (virtual, MB), PT_USERRSS
    # (resident, MB), PT_USERTIME (CPU seconds)
    user_mem: Count = 512
    user_rss: Count = 256
    user_time: Count = 1800
    user_proc: Count = 10  # PT_USERPROC: more processes than this for one user (0 = off)
    # PT_LOAD_LEVEL over the 1, 5 or 15-minute average (PT_LOAD_AVG) alerts, with the top
    # processes; then quiet for PT_LOAD_SKIP seconds. 0 = off.
    load_level: Load = 6.0
    load_avg: Literal[1, 5, 15] = 5
    load_skip: Count = 3600
    load_source: str = "/proc/loadavg"  # where the averages are read (a file in /proc/loadavg's format)
