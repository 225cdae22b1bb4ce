"""deploy/install.sh's station parts off the Pi: the tablets' certificate made by
``relaxd ui renew-cert`` (subjectAltName, 397 days) instead of a 10-year one without names, and
``ui.network_start`` on for a station-only chair (a drop-in of relaxd-ui.service), off
otherwise."""

from __future__ import annotations

from test_install import install

from relaxd.station.settings import UISettings


def test_the_certificate_comes_from_renew_cert_with_names_and_397_days(tmp_path):
    root = tmp_path / "root"
    out = install("--dry-run", "--root", root)
    etc = f"{root}/etc/relaxd"
    assert (f"{root}/opt/relaxd/venv/bin/relaxd ui renew-cert --config {etc}/config.yaml "
            f"--cert {etc}/ui.crt --key {etc}/ui.key") in out
    assert "openssl req" not in out and "3650" not in out
    assert f"chmod 0640 {etc}/ui.key" in out and f"chmod 0644 {etc}/ui.crt" in out


def test_a_station_only_chair_lets_a_tablet_start_and_has_no_kiosk(tmp_path):
    only, with_display = tmp_path / "only", tmp_path / "display"
    out = install("--root", only, "--station-only")
    dropin = only / "etc/systemd/system/relaxd-ui.service.d/station-only.conf"
    assert dropin.read_text() == "[Service]\nEnvironment=RELAXD_NETWORK_START=1\n"
    assert not (only / "etc/xdg/autostart/relaxd-kiosk.desktop").exists()
    assert "station only (no display at the chair)" in out
    install("--root", with_display)
    assert not (with_display / "etc/systemd/system/relaxd-ui.service.d/station-only.conf").exists()
    assert (with_display / "etc/xdg/autostart/relaxd-kiosk.desktop").exists()
    install("--root", only)  # the chair gained a display: Start from tablets off again
    assert not dropin.exists()
    install("--root", only, "--uninstall")
    assert not dropin.exists()


def test_network_start_follows_the_drop_in_and_the_configuration_still_decides(monkeypatch):
    monkeypatch.delenv("RELAXD_NETWORK_START", raising=False)
    assert UISettings().network_start is False
    monkeypatch.setenv("RELAXD_NETWORK_START", "1")
    assert UISettings().network_start is True
    assert UISettings(network_start=False).network_start is False
