"""The processes job: lfd's process tracking (PT_LIMIT, PT_DELETED, PT_ALL_USERS, PT_USER*,
PT_LOAD*). Every minute it reads /proc and the kernel's socket tables and reports, once per
process, those that run an executable that was deleted, that lies in a directory anyone can
write, whose name pretends to be something else, that listen on a port nobody expected, or
that are interpreters talking to a watched port; one mail per run with lfd's fields (user, pid,
parent, uptime, executable, command line, sockets, open files, mapped files). It also says
resource hogs (and kills them with user_kill), users with too many processes and a high load.
An ignore list in csf.pignore's format keeps known programs out. look: the pass; procfs: the
process table; sockets: the socket tables; checks: what is suspicious about one process;
pignore: the ignore list; report: the daily report's part; store: what was reported."""
