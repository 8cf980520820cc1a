"""Packaging: every sub-package reaches the wheel, and nothing named lib or jobs does."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile

import pytest

from helpers import ROOT

MAPPING = {"lib": "nightwarden.lib", "jobs": "nightwarden.jobs", "reports": "nightwarden.reports"}


def packages_on_disk() -> set[str]:
    found = set()
    for top, dotted in MAPPING.items():
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join([dotted, *rel.parts]) if rel.parts else dotted)
    return found


def test_every_package_on_disk_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert set(config["tool"]["setuptools"]["packages"]) == packages_on_disk()


@pytest.mark.slow
def test_wheel_holds_every_module_and_template(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    wheel = next(tmp_path.glob("nightwarden-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for top, dotted in MAPPING.items():
        for src in (ROOT / top).rglob("*.py"):
            rel = src.relative_to(ROOT / top)
            assert "/".join([*dotted.split("."), *rel.parts]) in names, f"{src} missing from wheel"
    assert "nightwarden/reports/templates/report.html" in names
    assert "nightwarden/lib/schedule/systemd/nightwarden-listener.service" in names
    assert not any(n.startswith(("lib/", "jobs/")) for n in names)
    entry = [n for n in names if n.endswith("entry_points.txt")][0]
    assert "nightwarden = nightwarden.lib.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
