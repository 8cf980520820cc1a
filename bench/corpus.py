"""How many of fail2ban's own annotated sample lines (its test logs, installed with Debian's
fail2ban package) nightwarden's shipped rules count, against the same address, beside
fail2ban's own verdicts (every line annotated "match": true is one fail2ban counts). The files
are read where the package put them and never copied into this project.

Usage: corpus.py [DIR]   (default /usr/lib/python3/dist-packages/fail2ban/tests/files/logs)
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

# fail2ban's sample files for the daemons nightwarden covers, and the services that hold them
FILES = {
    "sshd": ["sshd"],
    "sshd-journal": ["sshd"],
    "zzz-sshd-obsolete-multiline": ["sshd"],
    "dropbear": ["sshd"],
    "pam-generic": ["sshd", "ftpd", "imapd", "smtpauth"],
    "dovecot": ["imapd", "pop3d"],
    "postfix": ["smtpauth"],
    "exim": ["smtpauth"],
    "courier-auth": ["imapd", "pop3d"],
    "vsftpd": ["ftpd"],
    "pure-ftpd": ["ftpd"],
    "proftpd": ["ftpd"],
    "apache-auth": ["htaccess"],
    "apache-modsecurity": ["modsec"],
    "nginx-http-auth": ["htaccess"],
}


def main() -> None:
    from nightwarden.jobs.login_failures import explain, rules

    args = [a for a in sys.argv[1:] if a != "-v"]
    base = Path(args[0] if args else "/usr/lib/python3/dist-packages/fail2ban/tests/files/logs")
    if not base.is_dir():
        print(f"{base}: not found (apt-get install fail2ban)")
        return
    totals = Counter()
    print(f"{'file':30}{'fail2ban: failures':>20}{'nightwarden: same':>20}{'wrong address':>15}{'extra':>7}")
    for name, services in FILES.items():
        path = base / name
        if not path.exists():
            continue
        ex = explain.Explainer(rules.shipped(), services, None, time.time())
        want = None
        f2b = ours = wrong = extra = 0
        for number, raw in enumerate(path.read_bytes().splitlines(), 1):
            line = raw.decode("utf-8", "replace")
            if line.startswith("# failJSON:"):
                try:
                    want = json.loads(line.split(":", 1)[1])
                except ValueError:
                    want = None
                continue
            if not line.strip() or line.startswith("#") or want is None:
                continue
            v = ex.explain(number, raw)
            counted = v.kind == "failure" and (v.address or v.host)
            if want.get("match"):
                f2b += 1
                host = want.get("host")
                if counted and (host is None or host in (v.address, v.host) or v.address == _mapped(host)):
                    ours += 1
                elif counted:
                    wrong += 1
                    got = v.address or v.host
                    print(f"  wrong address {name}:{number}: {got} (fail2ban {host}): {line[:160]}")
                elif "-v" in sys.argv:
                    print(f"  missed {name}:{number}: {line[:200]}")
            elif counted:
                extra += 1
                if "-v" in sys.argv:
                    print(f"  extra {name}:{number}: {line[:200]}")
            want = None
        totals.update(f2b=f2b, ours=ours, wrong=wrong, extra=extra)
        print(f"{name:30}{f2b:>20}{ours:>20}{wrong:>15}{extra:>7}")
    t = totals
    print(f"{'total':30}{t['f2b']:>20}{t['ours']:>20}{t['wrong']:>15}{t['extra']:>7}")
    print(f"nightwarden counts {t['ours'] / max(t['f2b'], 1):.0%} of the lines fail2ban's filters count")


def _mapped(host: str) -> str:
    return host[7:] if host.startswith("::ffff:") else host


if __name__ == "__main__":
    main()
