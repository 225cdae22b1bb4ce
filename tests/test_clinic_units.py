"""deploy/relaxd-bridge.service and relaxd-overview.service: systemd-analyze verify is silent,
their exposure is low, and each runs as its own user with the network it needs only."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from test_service_unit import ANALYZE, needs_analyze, verify_installed
from test_service_unit import settings as unit_settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNITS = ["relaxd-bridge.service", "relaxd-overview.service"]


def settings(unit: str) -> dict[str, list[str]]:
    return unit_settings(DEPLOY / unit)


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
    installed = [DEPLOY / name for name in ("relaxd.service", *UNITS)]
    result = verify_installed(tmp_path, installed, unit)
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
