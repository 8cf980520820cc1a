"""Mail watching's settings ([mailwatch]), named after csf.conf's LF_QUEUE_* and LF_SCRIPT_*."""

from __future__ import annotations

from typing import Literal

from nightwarden.lib.settings import Count, Section, default_list


class MailWatchSettings(Section):
    # LF_QUEUE_ALERT: more mails than this in the queue alert (0 = off); the job runs every 5
    # minutes (LF_QUEUE_INTERVAL is its schedule), and says it again once the queue went back
    queue_alert: Count = 2000
    mta: Literal["auto", "postfix", "exim", "none"] = "auto"
    postqueue: list[str] = default_list("postqueue", "-j")
    exim: list[str] = default_list("exim", "-bp")  # exim4 on Debian is also `exim`
    # LF_SCRIPT_ALERT: a script that sent more than script_limit (LF_SCRIPT_LIMIT) mails in the
    # last hour alerts (0 = off), from these logs (those present)
    script_alert: bool = True
    script_limit: Count = 100
    script_logs: list[str] = default_list(
        "/var/log/exim4/mainlog", "/var/log/exim_mainlog", "/var/log/mail.log"
    )
    php_mail_log: str = ""  # PHP's mail.log setting (php.ini), e.g. /var/log/php-mail.log
    # LF_SCRIPT_PERM: chmod 000 what sent too much (a PHP script, or exim's cwd directory),
    # only under these directories, only what root does not own (off by default)
    script_disable: bool = False
    script_dirs: list[str] = default_list("/home", "/var/www")
    alert: bool = True
