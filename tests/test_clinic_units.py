"""deploy/relaxd-bridge.service and relaxd-overview.service: systemd-analyze verify is silent,
their exposure is low, and each runs as its own user with the network it needs only."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None,
                                   reason="systemd-analyze not installed (apt-get install systemd)")
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
UNITS = ["relaxd-bridge.service", "relaxd-overview.service"]


def settings(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (DEPLOY / unit).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.parametrize("unit, user", [("relaxd-bridge.service", "relaxd-bridge"),
                                        ("relaxd-overview.service", "relaxd-overview")])
def test_own_user_no_devices_no_privileges(unit, user):
    s = settings(unit)
    assert s["User"] == [user] and s["StateDirectory"] == [user]
    assert s["ProtectSystem"] == ["strict"] and s["CapabilityBoundingSet"] == [""]
    assert s["PrivateDevices"] == ["yes"] and s["NoNewPrivileges"] == ["yes"]
    assert s["IPAddressDeny"] == ["any"] and "MemoryMax" in s


def test_only_the_bridge_reaches_the_chair():
    bridge, overview = settings(UNITS[0]), settings(UNITS[1])
    assert bridge["SupplementaryGroups"] == ["relaxd"] and bridge["ReadOnlyPaths"] == ["/var/lib/relaxd"]
    assert "SupplementaryGroups" not in overview and "ReadOnlyPaths" not in overview
    assert bridge["ExecStart"] == ["/opt/relaxd/venv/bin/relaxd bridge --config /etc/relaxd/config.yaml"]


@needs_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_verify_is_silent(tmp_path, unit):
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for installed in ("relaxd.service", *UNITS):
        shutil.copy(DEPLOY / installed, root / "etc/systemd/system" / installed)
    exe = root / "opt/relaxd/venv/bin/relaxd"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    result = subprocess.run([ANALYZE, "verify", f"--root={root}", unit],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_exposure_at_most_1_5(tmp_path, unit):
    result = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager",
                             str(DEPLOY / unit)], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path)
    found = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d)", result.stdout)
    assert found, result.stdout + result.stderr
    print(f"{unit} exposure {found.group(1)}")
    assert float(found.group(1)) <= 1.5
