"""deploy/relaxd.service (systemd-analyze verify and security) and logging under the unit."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from relaxd.core import logsetup
from relaxd.core.logsetup import setup_logging, syslog_priority, under_systemd

UNIT = Path(__file__).resolve().parent.parent / "deploy" / "relaxd.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None,
                                   reason="systemd-analyze not installed (apt-get install systemd)")
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


UI_UNIT = UNIT.parent / "relaxd-ui.service"


def verify_installed(tmp_path: Path, units: list[Path], unit: str) -> subprocess.CompletedProcess:
    """``systemd-analyze verify UNIT`` in a root where ``units`` are installed as install.sh
    installs them, beside the system's own units and a stand-in relaxd executable."""
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for installed in units:
        shutil.copy(installed, root / "etc/systemd/system" / installed.name)
    exe = root / "opt/relaxd/venv/bin/relaxd"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert ANALYZE is not None  # needs_analyze
    return subprocess.run([ANALYZE, "verify", f"--root={root}", unit],
                          capture_output=True, text=True, timeout=60)


def settings(unit: Path = UNIT) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_unit_has_the_required_settings():
    s = settings()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["ExecStart"] == ["/opt/relaxd/venv/bin/relaxd --config /etc/relaxd/config.yaml"]
    safe_off = ["/opt/relaxd/venv/bin/relaxd safe-off --config /etc/relaxd/config.yaml"]
    assert s["ExecStartPre"] == safe_off and s["ExecStopPost"] == safe_off
    assert s["Restart"] == ["on-failure"] and s["KillSignal"] == ["SIGTERM"]
    assert s["User"] == ["relaxd"] and s["SupplementaryGroups"] == ["gpio video audio"]
    assert s["StateDirectory"] == ["relaxd"] and s["ConfigurationDirectory"] == ["relaxd"]
    assert s["ProtectSystem"] == ["strict"] and s["CapabilityBoundingSet"] == [""]
    for key in ("WatchdogSec", "RestartSec", "TimeoutStopSec", "ProtectHome", "NoNewPrivileges",
                "PrivateTmp", "ProtectKernelTunables", "ProtectKernelModules", "LockPersonality",
                "RestrictAddressFamilies", "SystemCallFilter"):
        assert key in s, key
    assert {"char-gpiochip rw", "char-video4linux rw", "char-media rw", "char-dma_heap rw",
            "char-alsa rw"} <= set(s["DeviceAllow"])


@needs_analyze
@pytest.mark.parametrize("unit", ["relaxd.service", "relaxd-ui.service"])
def test_systemd_analyze_verify_is_silent(tmp_path, unit):
    """Any output (even a warning, which exits 0) fails. Both units installed, as install.sh
    installs them (the station's unit wants the daemon's)."""
    result = verify_installed(tmp_path, [UNIT, UI_UNIT], unit)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_analyze
def test_systemd_analyze_security_exposure_at_most_4(tmp_path):
    result = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", str(UNIT)],
                            capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for relaxd\.service: (\d+\.\d)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= 4.0
    # the figure the technician's guide states
    readme = (UNIT.parent / "README.md").read_text()
    assert f"exposure {found.group(1)}" in readme


def test_station_unit_has_its_own_user_the_socket_group_and_no_devices():
    s = settings(UI_UNIT)
    assert s["ExecStart"] == ["/opt/relaxd/venv/bin/relaxd ui serve --config /etc/relaxd/config.yaml"]
    assert s["User"] == ["relaxd-ui"] and s["SupplementaryGroups"] == ["relaxd"]
    assert s["ReadOnlyPaths"] == ["/var/lib/relaxd"] and s["StateDirectory"] == ["relaxd-ui"]
    assert s["ProtectSystem"] == ["strict"] and s["CapabilityBoundingSet"] == [""]
    assert s["PrivateDevices"] == ["yes"] and "DeviceAllow" not in s
    assert s["MemoryDenyWriteExecute"] == ["yes"] and s["NoNewPrivileges"] == ["yes"]
    # the network it serves, and no more: TCP and the unix socket; IP from local ranges only
    assert s["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert s["IPAddressDeny"] == ["any"] and "PrivateNetwork" not in s
    assert "MemoryMax" in s and "CPUQuota" in s


#: What the station's unit leaves exposed: the network it needs to serve browsers (0.9 of it:
#: a host network, internet address families, an IP allow list with the clinic's ranges), its
#: group for the control socket, users it cannot hide, the default group-readable umask.
STATION_EXPOSED = {"RootDirectory=/RootImage=", "SupplementaryGroups=",
                   "RestrictAddressFamilies=~AF_UNIX", "RestrictAddressFamilies=~AF_(INET|INET6)",
                   "PrivateNetwork=", "PrivateUsers=", "DeviceAllow=", "IPAddressDeny=", "UMask="}


@needs_analyze
def test_systemd_analyze_security_of_the_station_exposure_at_most_1_5(tmp_path):
    result = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", str(UI_UNIT)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    found = re.search(r"Overall exposure level for relaxd-ui\.service: (\d+\.\d)", result.stdout)
    assert found, result.stdout + result.stderr
    print(f"relaxd-ui.service exposure {found.group(1)}")
    assert float(found.group(1)) <= 1.5
    flagged = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("✗")}
    assert flagged <= STATION_EXPOSED, flagged - STATION_EXPOSED
    readme = (UNIT.parent / "README.md").read_text()
    assert f"relaxd-ui` rates it **exposure {found.group(1)}" in readme


SANDBOX = """
import errno, socket, subprocess, sys
from seccomp import ALLOW, ERRNO, Arg, EQ, NE, SyscallFilter

# The unit's SystemCallFilter=@system-service ~@privileged @resources (EPERM) and
# RestrictAddressFamilies=AF_UNIX, from systemd-analyze's own lists.
groups, current = {}, None
for line in subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"],
                           capture_output=True, text=True, check=True).stdout.splitlines():
    item = line.strip()
    if line.startswith("@"):
        current = groups.setdefault(item, [])
    elif item and not item.startswith("#") and current is not None:
        current.append(item)

def expand(name, seen):
    if not name.startswith("@"):
        return {name}
    if name in seen:
        return set()
    seen.add(name)
    return set().union(*(expand(i, seen) for i in groups[name]))

allowed = expand("@system-service", set()) - expand("@privileged", set()) - expand("@resources", set())
f = SyscallFilter(defaction=ERRNO(errno.EPERM))
for name in allowed - {"socket"}:
    try:
        f.add_rule(ALLOW, name)
    except (RuntimeError, ValueError, OSError):
        pass  # not a system call on this architecture
f.add_rule(ALLOW, "socket", Arg(0, EQ, socket.AF_UNIX))
f.add_rule(ERRNO(errno.EAFNOSUPPORT), "socket", Arg(0, NE, socket.AF_UNIX))
f.load()
from relaxd.cli import main
sys.exit(main(sys.argv[1:]))
"""


@needs_analyze
def test_system_call_filter_allows_a_simulated_check(tmp_path):
    """Everything ``relaxd check --simulate`` does (model, OpenCV, SQLite, WAV, mock pins)
    passes the unit's system call and socket filters."""
    pytest.importorskip("seccomp", reason="python3-seccomp (apt) not importable")
    result = subprocess.run([sys.executable, "-c", SANDBOX, "check", "--simulate"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "all checks passed"


# Logging under the unit: journald priorities, with or without systemd-python.

@pytest.fixture
def root_logger():
    root = logging.getLogger()
    level = root.level
    yield root
    for h in [h for h in root.handlers if getattr(h, "_relaxd", False)]:
        root.removeHandler(h)
    root.setLevel(level)


@pytest.fixture
def no_systemd_python(monkeypatch):
    monkeypatch.setitem(sys.modules, "systemd", None)
    monkeypatch.setitem(sys.modules, "systemd.journal", None)


def test_priorities():
    assert [syslog_priority(level) for level in (50, 40, 30, 20, 10, 25, 5)] == [2, 3, 4, 6, 7, 6, 7]


def test_under_systemd():
    assert under_systemd({"INVOCATION_ID": "abc"})
    assert under_systemd({"JOURNAL_STREAM": "8:1234"})
    assert not under_systemd({})


def test_stderr_gets_priority_prefixes_without_systemd_python(root_logger, no_systemd_python,
                                                              capsys, monkeypatch):
    monkeypatch.setenv("INVOCATION_ID", "0123")
    setup_logging(verbose=True)
    log = logging.getLogger("relaxd.safety.alerts")
    log.critical("child distressed\nsecond line")
    log.info("phase calm")
    log.debug("tick")
    assert capsys.readouterr().err.splitlines() == [
        "<2>relaxd.safety.alerts: child distressed", "<2>second line", "<6>relaxd.safety.alerts: phase calm",
        "<7>relaxd.safety.alerts: tick"]


def test_terminal_gets_plain_lines(root_logger, capsys, monkeypatch):
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    setup_logging()
    logging.getLogger("relaxd").debug("hidden")
    logging.getLogger("relaxd").warning("camera slow")
    (line,) = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d WARNING relaxd: camera slow", line)


def test_journal_handler_when_importable(root_logger, monkeypatch):
    class JournalHandler(logging.Handler):
        def __init__(self, **fields):
            super().__init__()
            self.fields, self.records = fields, []

        def emit(self, record):
            self.records.append(record)

    journal = types.SimpleNamespace(JournalHandler=JournalHandler)
    monkeypatch.setitem(sys.modules, "systemd", types.SimpleNamespace(journal=journal))
    monkeypatch.setitem(sys.modules, "systemd.journal", journal)
    handler = setup_logging(journald=True)
    assert isinstance(handler, JournalHandler) and handler.fields == {"SYSLOG_IDENTIFIER": "relaxd"}
    logging.getLogger("relaxd.safety.alerts").critical("stop")
    assert [r.levelno for r in handler.records] == [logging.CRITICAL]


def test_setup_twice_keeps_one_handler(root_logger, no_systemd_python):
    setup_logging(journald=False)
    setup_logging(journald=True)
    ours = [h for h in root_logger.handlers if getattr(h, "_relaxd", False)]
    assert len(ours) == 1 and isinstance(ours[0].formatter, logsetup.PriorityFormatter)
