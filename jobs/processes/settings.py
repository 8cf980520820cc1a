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
    # a process listening on a port nobody expected: not in listen_allowed ("22", "53/udp",
    # "8000-8100/tcp") nor among the ports that listened at the job's first run (its
    # baseline; `nightwarden processes --learn-listeners` takes it again)
    listen: bool = True
    listen_allowed: list[str] = default_list()
    # connections out to these ports by a program in `interpreters` (file name patterns):
    # IRC, and the ports mining pools and reverse shells favour
    watch_ports: list[str] = default_list(
        "6660-6669/tcp", "6697/tcp", "7000/tcp", "3333/tcp", "4444/tcp", "5555/tcp", "7777/tcp",
        "9999/tcp", "14433/tcp", "14444/tcp", "45560/tcp", "45700/tcp",
    )  # fmt: skip
    interpreters: list[str] = default_list(
        "perl*", "python*", "php*", "ruby*", "node", "nodejs", "lua*", "tclsh*", "java",
        "bash", "sh", "dash", "zsh", "ksh*", "busybox", "nc", "ncat", "netcat", "nc.*", "socat",
    )  # fmt: skip
    alert: bool = True  # one mail per run with every new finding
    detail_lines: int = 20  # open files and mapped files listed per process
    # excessive resource use by one process (0 = off): PT_USERMEM (virtual, MB), PT_USERRSS
    # (resident, MB), PT_USERTIME (CPU seconds)
    user_mem: Count = 512
    user_rss: Count = 256
    user_time: Count = 1800
    # PT_USERKILL: kill such a process (never root's, the ignore list's or this job's own);
    # PT_USERKILL_ALERT: a mail naming what was killed
    user_kill: bool = False
    user_kill_alert: bool = True
    user_proc: Count = 10  # PT_USERPROC: more processes than this for one user (0 = off)
    # PT_LOAD_LEVEL over the 1, 5 or 15-minute average (PT_LOAD_AVG) alerts, with the top
    # processes; then quiet for PT_LOAD_SKIP seconds. 0 = off.
    load_level: Load = 6.0
    load_avg: Literal[1, 5, 15] = 5
    load_skip: Count = 3600
    load_source: str = "/proc/loadavg"  # where the averages are read (a file in /proc/loadavg's format)

    def __post_init__(self):
        from nightwarden.lib.netstat import parse_spec

        for name in ("listen_allowed", "watch_ports"):
            for spec in getattr(self, name):
                try:
                    parse_spec(spec)
                except ValueError as e:
                    raise ValueError(f"{name}: {e}") from None
