"""The processes job: lfd's process tracking (PT_LIMIT, PT_DELETED, PT_ALL_USERS). Every minute
it looks at the running processes through psutil (reading /proc only) and reports, once per
process, those that run an executable that was deleted, that lies in a directory anyone can
write, or whose name pretends to be something else: one mail per run with lfd's fields (user,
pid, parent, uptime, executable, command line, sockets, open files, mapped files). An ignore list
in csf.pignore's format keeps known programs out. settings: the [processes] schema; pignore: the
ignore list; checks: what is suspicious about one process; store: what was reported."""
