"""Writes a PortSentry 1.2 history of the last day (fixed seed) for `make demo`: one busy
scanner and a /24 of occasional ones. Usage: sample_history.py FILE [LINES]"""

import random
import sys
import time


def main() -> None:
    out, count = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 400
    rnd = random.Random(1)
    now = time.time()
    sources = ["203.0.113.5"] * 6 + [f"198.51.100.{i}" for i in range(1, 9)]
    rows = sorted(
        (
            now - rnd.random() * 86400,
            rnd.choice(sources),
            rnd.choice([22, 23, 80, 111, 443, 1080, 3306, 6667]),
        )
        for _ in range(count)
    )
    with open(out, "w") as f:
        for t, ip, port in rows:
            stamp = time.strftime("%m/%d/%Y %H:%M:%S", time.localtime(t))
            f.write(f"{int(t)} - {stamp} Host: {ip}/{ip} Port: {port} TCP Blocked\n")


if __name__ == "__main__":
    main()
