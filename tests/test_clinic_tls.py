"""The clinic over TLS end to end: a test CA made with openssl in tmp, mosquitto with a TLS
listener taking client certificates (the name is the chair id) and one taking passwords, both
with the deployed ACL; a chair's bridge (its certificate) and the overview (its password) over
mqtts:// with the CA pinned; anonymous clients and clients of another CA refused; plain MQTT to
another machine refused before anything opens."""

from __future__ import annotations

import ssl
import subprocess
import sys
import threading

import paho.mqtt.client as paho
import pytest

from tests.clinic_process import (
    OVERVIEW_USER,
    ROOT,
    Chair,
    OverviewProcess,
    wait_until,
)
from tests.clinic_tls import ClinicCA, Issued, TlsBroker, available

pytestmark = pytest.mark.skipif(not available(),
                                reason="mosquitto or openssl not installed "
                                       "(apt-get install mosquitto openssl)")


@pytest.fixture(scope="module")
def clinic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clinic-tls")
    ca, rogue = ClinicCA(folder / "ca", "relaxd test CA"), ClinicCA(folder / "rogue", "another CA")
    broker = TlsBroker(folder / "broker", ["A", OVERVIEW_USER], ca)
    broker.start()
    chair = Chair(folder, None, "A")
    bridge, overview = None, None
    try:
        path = wait_until(chair.socket_path, 60, "chair A's control socket")
        mine = ca.issue("A")
        bridge = subprocess.Popen(
            [sys.executable, "-m", "relaxd", "bridge", "--broker", broker.cert_url,
             "--chair-id", "A", "--room", "room 1", "--ca", str(ca.pem), "--certificate",
             str(mine.certificate), "--key", str(mine.key), "--socket", path, "--records",
             str(chair.out), "--state-dir", str(folder / "bridge-A")],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(folder / "bridge-A.log", "ab"))
        overview = OverviewProcess(folder, broker, extra=("--ca", str(ca.pem)))
        yield broker, ca, rogue, chair, overview
    finally:
        if overview is not None:
            overview.stop()
        if bridge is not None:
            bridge.terminate()
            bridge.wait(10)
        chair.stop()
        broker.kill()


def test_bridge_and_overview_reach_each_other_over_tls(clinic):
    _, _, _, chair, overview = clinic
    wait_until(lambda: (overview.chair("A") or {}).get("tile") == "running", 90,
               "chair A running on the overview, over TLS")
    assert overview.view()["broker"] is True
    answer = overview.send("A", "hold")  # overview -> broker -> bridge -> chair, and the reply
    assert answer.status_code == 200, answer.text
    assert chair.state()["hold"] is True


def connect(port: int, trust, certificate: Issued | None = None,
            user: str | None = None, password: str | None = None) -> str:
    """Try to sign in: "connected", or why not."""
    context = ssl.create_default_context(cafile=str(trust.pem))
    if certificate is not None:
        context.load_cert_chain(str(certificate.certificate), str(certificate.key))
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.tls_set_context(context)
    if user is not None:
        client.username_pw_set(user, password)
    outcome: list[str] = []
    done = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: (outcome.append(
        "connected" if not rc.is_failure else str(rc)), done.set())
    client.on_disconnect = lambda c, u, f, rc, p: (outcome.append(f"disconnected: {rc}"),
                                                   done.set())
    try:
        client.connect("localhost", port, keepalive=5)
    except (ssl.SSLError, OSError) as exc:
        return f"refused: {exc}"
    client.loop_start()
    try:
        done.wait(10)
    finally:
        client.loop_stop()
        client.disconnect()
    return outcome[0] if outcome else "no answer"


SIGN_IN_REFUSED = ("Not authorized", "Bad user name or password")


def test_a_chair_certificate_signs_in_as_its_name(clinic):
    broker, ca, _, _, _ = clinic
    assert connect(broker.cert_port, ca, ca.issue("B")) == "connected"


def test_anonymous_clients_are_refused(clinic):
    broker, ca, _, _, _ = clinic
    # no certificate: the TLS handshake fails, the connection is dropped
    assert connect(broker.cert_port, ca).startswith(("disconnected", "refused"))
    assert connect(broker.port, ca) in SIGN_IN_REFUSED  # no user, no password
    assert connect(broker.port, ca, user=OVERVIEW_USER, password="wrong password") \
        in SIGN_IN_REFUSED
    assert connect(broker.port, ca, user=OVERVIEW_USER,
                   password=broker.passwords[OVERVIEW_USER]) == "connected"


def test_another_ca_is_refused_both_ways(clinic):
    broker, ca, rogue, _, _ = clinic
    # a client trusting another CA does not trust the broker
    refused = connect(broker.port, rogue, user=OVERVIEW_USER,
                      password=broker.passwords[OVERVIEW_USER])
    assert refused.startswith("refused") and "certificate verify failed" in refused, refused
    # the broker does not take a certificate made by another CA, even for a real chair id
    assert connect(broker.cert_port, ca, rogue.issue("A")).startswith(("disconnected", "refused"))


@pytest.mark.parametrize("cmd", [
    ["bridge", "--broker", "mqtt://10.0.0.5:1883", "--chair-id", "A"],
    ["overview", "--broker", "mqtt://broker.clinic:1883", "--port", "0"],
    ["--simulate", "--ui", "--bridge", "mqtt://192.168.1.4", "--chair-id", "A",
     "--mood-script", "scenarios/moods/station.yaml"],
])
def test_plain_mqtt_to_another_machine_is_refused_in_one_line(cmd, tmp_path):
    done = subprocess.run([sys.executable, "-m", "relaxd", *cmd, "--out", str(tmp_path)]
                          if cmd[0] == "--simulate" else [sys.executable, "-m", "relaxd", *cmd],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                               "RELAXD_OVERVIEW_STATE_DIR": str(tmp_path)})
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "plain MQTT only" in done.stderr
