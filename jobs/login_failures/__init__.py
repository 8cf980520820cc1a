"""The login-failure job (lfd's LF_SSHD, LF_FTPD, ... and fail2ban's jails).

Every minute `job` asks `reading` for what each configured log gained since its cursor:
`sources` reads files across rotation and the journal, `formats` knows the syslog and
daemon-native line formats, `rules` holds one table of wordings per daemon compiled into
one expression per source, and `counting` turns the matches into attempts per service and
address. Addresses over their service's limit within the window are blocked through the
shared block library; `store` keeps the attempts; `report` is this job's part of the daily
report.
"""
