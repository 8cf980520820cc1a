"""The processes job's readers of /proc: a process table, the kernel's socket tables and the
port settings, on files in /proc's formats (a name with parentheses and spaces, IPv6
addresses in the kernel's word order, a table cut short, a process gone between reads)."""

from __future__ import annotations

import os

import pytest

from helpers import run_cli, write_config
from nightwarden.jobs.processes import procfs
from nightwarden.lib import netstat as sockets


def fake_proc(tmp_path, pids: dict):
    root = tmp_path / "proc"
    root.mkdir()
    (root / "stat").write_text("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n")
    (root / "self").mkdir()
    for pid, (comm, uid, argv) in pids.items():
        d = root / str(pid)
        d.mkdir()
        rest = ["S", "1", "1", "1", "0", "-1", "4194560", "0", "0", "0", "0"]
        rest += ["150", "50", "0", "0", "20", "0", "1", "0", "4200", "104857600", "2560"]
        (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(rest) + " 0 0\n")
        ids = "\t".join([str(uid)] * 4)
        (d / "status").write_text(f"Name:\t{comm}\nUmask:\t0022\nState:\tS\nUid:\t{ids}\n")
        (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
    (root / "77").mkdir()  # gone between the listing and the reads: no files
    return root


def test_the_process_table_reads_names_with_parentheses_and_bounds_nothing_else(tmp_path):
    root = fake_proc(tmp_path, {41: ("a) (b c", 1000, ["./x", "--flag"]), 42: ("kworker/0:1", 0, [])})
    tick, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    got = {e.pid: e for e in procfs.entries(str(root))}
    assert set(got) == {41, 42}  # 77 went away: skipped
    e = got[41]
    assert (e.ppid, e.uid, e.argv) == (1, 1000, ["./x", "--flag"])
    assert e.started == pytest.approx(1700000000 + 4200 / tick)
    assert e.vms == 104857600 and e.rss == 2560 * page and e.cpu == pytest.approx(200 / tick)
    assert got[42].argv == [] and got[42].uid == 0


TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:10C2 00000000:0000 0A 00000000:00000000 00:00000000 00000000    65534        0 5551 1
   1: 0100007F:9C40 0100007F:1A0B 01 00000000:00000000 00:00000000 00000000    65534        0 5552 1
   2: 0100007F:9C41 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 5553 1
   3: 0100007F:9C42 0100007F:1A0B 06 00000000:00000000 00:00000000 00000000     0        0 0 1
   4: garbage
"""
TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6661 1
   1: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 6662 1
"""  # noqa: E501


def test_socket_tables_in_the_kernels_format(tmp_path):
    (tmp_path / "tcp").write_text(TCP)
    (tmp_path / "tcp6").write_text(TCP6)
    listening = sockets.table("tcp", "tcp", 4, {sockets.LISTEN}, net=str(tmp_path))
    assert [(s.local, s.port, s.uid, s.inode) for s in listening] == [("127.0.0.1", 4290, 65534, 5551)]
    out = sockets.table("tcp", "tcp", 4, {sockets.ESTABLISHED}, net=str(tmp_path))
    assert [(s.remote, s.rport) for s in out] == [("127.0.0.1", 6667), ("127.0.0.1", 8080)]
    six = sockets.table("tcp6", "tcp", 6, {sockets.LISTEN}, net=str(tmp_path))
    assert [(s.local, s.port) for s in six] == [("::1", 22), ("127.0.0.1", 8080)]  # v4-mapped as v4
    assert sockets.table("udp7", "udp", 4, {sockets.LISTEN}, net=str(tmp_path)) == []


def test_port_specs_and_a_bad_one_named_in_the_config_error(tmp_path):
    ports = sockets.PortSet(["22", "53/udp", "6660-6669/tcp"])
    assert ports.has("tcp", 22) and ports.has("udp", 22) and ports.has("udp", 53)
    assert not ports.has("tcp", 53) and ports.has("tcp", 6665) and not ports.has("udp", 6665)
    for bad in ("0", "70000", "9-3", "22/sctp", "ssh"):
        with pytest.raises(ValueError, match=bad):
            sockets.parse_spec(bad)
    cfg = write_config(tmp_path, '\n[processes]\nwatch_ports = ["6667", "irc"]\n')
    done = run_cli("--config", str(cfg), "config", "check")
    assert done.returncode == 78
    assert "watch_ports" in done.stderr and "'irc'" in done.stderr and "Traceback" not in done.stderr
