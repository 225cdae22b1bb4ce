#!/usr/bin/env bash
# Install, update or uninstall relaxd as a systemd service on Raspberry Pi OS Bookworm.
# Safe to run again: an update is the same command. See deploy/README.md.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: sudo deploy/install.sh [--dry-run] [--root DIR] [--uninstall] [--station-only]
                              [--with-bridge] [--with-overview]

  (no option)   install or update: apt packages, the relaxd user, /opt/relaxd/venv,
                /etc/relaxd (config.yaml and scenarios are never overwritten), the unit,
                then enable and (re)start the service
  --with-bridge    also this chair's bridge to the clinic's MQTT broker: the user
                   relaxd-bridge and relaxd-bridge.service (fill the clinic: section of
                   config.yaml, then enable it)
  --with-overview  also the clinic overview on this machine: the user relaxd-overview,
                   /etc/relaxd-overview and relaxd-overview.service (then enable it)
  --uninstall   remove the services, units and /opt/relaxd; keep /etc/relaxd (configuration)
                and /var/lib/relaxd (session records)
  --dry-run     print every step, change nothing
  --root DIR    write files under DIR instead of /; system steps (apt, user, venv, pip,
                systemctl) are printed, not run (for tests)
  --station-only  the chair has no display of its own (a tablet at the chair): no kiosk,
                and a tablet may Start (ui.network_start); a Lite image is station-only anyway
EOF
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=""
DRY_RUN=0
UNINSTALL=0
WITH_BRIDGE=0
WITH_OVERVIEW=0
STATION_ONLY=0
while (($#)); do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --with-bridge) WITH_BRIDGE=1 ;;
        --with-overview) WITH_OVERVIEW=1 ;;
        --station-only) STATION_ONLY=1 ;;
        --root)
            [[ $# -ge 2 && -n $2 ]] || { echo "install.sh: --root needs a folder" >&2; exit 2; }
            ROOT=$(mkdir -p "$2" && cd "$2" && pwd)
            shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

APT_PACKAGES=(python3-venv python3-pip python3-picamera2 python3-systemd python3-lgpio
              libportaudio2 sqlite3)
PREFIX=$ROOT/opt/relaxd
VENV=$PREFIX/venv
ETC=$ROOT/etc/relaxd
STATE=$ROOT/var/lib/relaxd
UNIT=$ROOT/etc/systemd/system/relaxd.service
UI_UNIT=$ROOT/etc/systemd/system/relaxd-ui.service
BRIDGE_UNIT=$ROOT/etc/systemd/system/relaxd-bridge.service
OVERVIEW_UNIT=$ROOT/etc/systemd/system/relaxd-overview.service
OVERVIEW_ETC=$ROOT/etc/relaxd-overview
KIOSK=$ROOT/etc/xdg/autostart/relaxd-kiosk.desktop
BOOT_CONFIG=$ROOT/boot/firmware/config.txt

step() { printf '==> %s\n' "$*"; }

# A file step: always printed, run unless --dry-run.
run() {
    printf '+ %s\n' "$*"
    if ((!DRY_RUN)); then "$@"; fi
}

# A system-wide step: also only printed with --root.
system() {
    if ((DRY_RUN)) || [[ -n $ROOT ]]; then
        printf '+ %s  (not run)\n' "$*"
    else
        printf '+ %s\n' "$*"
        "$@"
    fi
}

real_system() { ((!DRY_RUN)) && [[ -z $ROOT ]]; }

# One line per problem that stops a real install: not root, not 64-bit, not Bookworm, or a
# Debian without the Pi's packages. A real run stops before touching anything; --dry-run
# reports them and goes on.
preflight_problems() {
    local codename missing=() pkg
    [[ $(id -u) -eq 0 ]] || echo "not root: run it with sudo"
    if [[ $(uname -m) == aarch64 && $(dpkg --print-architecture 2>/dev/null) != arm64 ]]; then
        echo "a 32-bit system on a 64-bit kernel: install the 64-bit Raspberry Pi OS"
    elif [[ $(uname -m) != aarch64 && $(uname -m) != x86_64 ]]; then
        echo "not a 64-bit system ($(uname -m)): install the 64-bit Raspberry Pi OS"
    fi
    # shellcheck disable=SC1091
    codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
    [[ $codename == bookworm ]] || echo "made for Raspberry Pi OS Bookworm, this is '${codename:-unknown}'"
    for pkg in python3-picamera2 python3-lgpio; do
        apt-cache show "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) ||
        echo "no ${missing[*]} in this system's apt sources: not Raspberry Pi OS (plain Debian?)"
}

prefixed() {
    local line
    while IFS= read -r line; do echo "$1$line"; done <<<"$2"
}

preflight() {
    local problems
    problems=$(preflight_problems)
    if ((DRY_RUN)); then
        step "preflight (a real run stops on any of these)"
        if [[ -n $problems ]]; then prefixed "  would stop: " "$problems"; else echo "  ok"; fi
    elif real_system && [[ -n $problems ]]; then
        prefixed "install.sh: " "$problems" >&2
        exit 1
    fi
}

install_packages() {
    step "apt packages: ${APT_PACKAGES[*]}"
    system apt-get update
    system apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"
}

install_user() {
    step "system user relaxd (groups gpio video audio)"
    local group
    for group in gpio video audio; do
        if ! real_system || ! getent group "$group" >/dev/null; then
            system groupadd --system --force "$group"
        fi
    done
    if ! real_system || ! getent passwd relaxd >/dev/null; then
        system useradd --system --user-group --home-dir /var/lib/relaxd --no-create-home \
            --shell /usr/sbin/nologin relaxd
    fi
    system usermod --append --groups gpio,video,audio relaxd
}

install_venv() {
    step "virtualenv $VENV (sees apt's picamera2, systemd and lgpio) with relaxd[pi]"
    if ! real_system || [[ ! -x $VENV/bin/python ]]; then
        system python3 -m venv --system-site-packages "$VENV"
    fi
    # Built from a copy, so no root-owned build/ or *.egg-info is left in the checkout (and no
    # stale build/lib can carry a deleted module into the update).
    local src=/tmp/relaxd-src.XXXXXX
    ((DRY_RUN)) || src=$(mktemp -d "$src")
    run cp -a "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/relaxd" "$REPO/models" \
        "$REPO/scenarios" "$src/"
    system "$VENV/bin/pip" install --upgrade --no-cache-dir "${src}[pi]"
    # The runtime before ai-edge-litert: nothing imports it any more.
    system "$VENV/bin/pip" uninstall --yes --quiet tflite-runtime
    run rm -rf "$src"
    run install -d -m 0755 "$PREFIX"
    run install -m 0644 "$REPO/deploy/README.md" "$PREFIX/README.md"
}

install_config() {
    step "configuration $ETC (existing files are kept)"
    run install -d -m 0755 "$ETC" "$ETC/scenarios"
    local src dest
    for src in "$REPO/deploy/config.yaml" "$REPO"/scenarios/*.yaml; do
        [[ -e $src ]] || continue
        if [[ $src == */config.yaml ]]; then dest=$ETC/config.yaml; else dest=$ETC/scenarios/${src##*/}; fi
        if [[ -e $dest ]]; then
            if cmp -s "$src" "$dest"; then
                echo "  kept $dest"
            else
                echo "  kept $dest (edited; the shipped version is $src)"
            fi
        else
            run install -m 0644 "$src" "$dest"
        fi
    done
    # model.delegate "auto" chose between two runtimes; with ai-edge-litert alone it is xnnpack.
    if [[ -e $ETC/config.yaml ]] && grep -Eq '^[[:space:]]*delegate:[[:space:]]*auto\b' "$ETC/config.yaml"; then
        echo "  $ETC/config.yaml: model.delegate auto -> xnnpack"
        run sed -i -E 's/^([[:space:]]*delegate:[[:space:]]*)auto\b/\1xnnpack/' "$ETC/config.yaml"
    fi
}

# The firmware's gpio= line for the actuator pins, from relaxd's own configuration reader, run
# from this source tree (it needs only Python and PyYAML: it works before the virtualenv exists,
# and with --root or --dry-run). A dry run with no installed configuration reads the shipped one.
# Anything but the one gpio= line (a problem in the file, no PyYAML) stops the install.
boot_pins_line() {
    local config=$ETC/config.yaml python=python3 out
    [[ -e $config ]] || config=$REPO/deploy/config.yaml
    real_system && python=$VENV/bin/python
    if ! "$python" -c 'import yaml' 2>/dev/null; then
        echo "install.sh: $python has no PyYAML (sudo apt install python3-yaml)" >&2
        exit 1
    fi
    if out=$(PYTHONPATH=$REPO "$python" -m relaxd config boot-pins --config "$config" 2>&1) &&
        [[ $out =~ ^gpio=[0-9,]+=op,d[lh]$ ]]; then
        echo "$out"
        return
    fi
    prefixed "install.sh: boot pins not written: " "${out#relaxd: }" >&2
    exit 1
}

# The actuator pins are driven off by the firmware from boot, before relaxd (or anything) runs.
install_boot_pins() {
    local line
    line=$(boot_pins_line)
    step "actuator pins off from boot: $line in $BOOT_CONFIG"
    if ((DRY_RUN)); then
        echo "+ write the relaxd block of $BOOT_CONFIG  (not run)"
        return
    fi
    mkdir -p "${BOOT_CONFIG%/*}"
    touch "$BOOT_CONFIG"
    sed -i '/^# BEGIN relaxd/,/^# END relaxd/d' "$BOOT_CONFIG"
    printf '# BEGIN relaxd: actuator pins off from boot (deploy/install.sh)\n%s\n# END relaxd\n' \
        "$line" >>"$BOOT_CONFIG"
}

install_state() {
    step "state directory $STATE (session records)"
    run install -d -m 0750 "$STATE"
    system chown relaxd:relaxd "$STATE"
}

install_unit() {
    step "systemd unit $UNIT"
    run install -d -m 0755 "${UNIT%/*}"
    run install -m 0644 "$REPO/deploy/relaxd.service" "$UNIT"
}

# The caregiver station: its user, unit, kiosk (desktop image only) and ui.enabled. All of it is
# in place before relaxd starts (start_services): a relaxd started without the drop-in would
# start a session on any face and have no control socket for the station's STOP.
install_station() {
    step "caregiver station: user relaxd-ui, $UI_UNIT, $UNIT.d/station.conf (ui.enabled)"
    if ! real_system || ! getent passwd relaxd-ui >/dev/null; then
        system useradd --system --user-group --home-dir /var/lib/relaxd-ui --no-create-home \
            --shell /usr/sbin/nologin relaxd-ui
    fi
    system usermod --append --groups relaxd relaxd-ui
    system usermod --append --groups relaxd-ui relaxd
    # ui.enabled defaults to on where this drop-in sets RELAXD_STATION=1 (config.yaml kept).
    run install -d -m 0755 "$UNIT.d"
    echo "+ write $UNIT.d/station.conf (Environment=RELAXD_STATION=1)"
    if ((!DRY_RUN)); then
        printf '[Service]\nEnvironment=RELAXD_STATION=1\n' >"$UNIT.d/station.conf"
    fi
    run install -m 0644 "$REPO/deploy/relaxd-ui.service" "$UI_UNIT"
    install_certificate
    if station_only; then
        station_only_dropin
    else
        run rm -f "$UI_UNIT.d/station-only.conf"
        install_kiosk
    fi
}

# The certificate for tablets on the clinic network (used once ui.listen names an address):
# the chair's names and addresses in its subjectAltName, valid 397 days (relaxd check warns a
# month ahead). Made when there is none, or in place of one without a subjectAltName (the old
# 10-year one, which browsers reject even when trusted); a clinic's own is kept.
install_certificate() {
    if real_system && [[ -f $ETC/ui.crt ]] \
            && openssl x509 -in "$ETC/ui.crt" -noout -ext subjectAltName 2>/dev/null | grep -q :; then
        return
    fi
    step "station certificate: $ETC/ui.crt (relaxd ui renew-cert; check its fingerprint on tablets)"
    system "$PREFIX/venv/bin/relaxd" ui renew-cert --config "$ETC/config.yaml" \
        --cert "$ETC/ui.crt" --key "$ETC/ui.key"
    system chown root:relaxd-ui "$ETC/ui.key" "$ETC/ui.crt"
    system chmod 0640 "$ETC/ui.key"
    system chmod 0644 "$ETC/ui.crt"
}

# No display at the chair (--station-only, or an image without a desktop): the tablet is the
# chair's station, beside the child, so it may Start (ui.network_start's default, set by the
# station's drop-in; config.yaml is kept and can still say otherwise).
station_only() {
    ((STATION_ONLY)) && return 0
    real_system && [[ ! -d /usr/share/wayland-sessions && ! -d /usr/share/xsessions ]]
}

station_only_dropin() {
    step "station only (no display at the chair): $UI_UNIT.d/station-only.conf (ui.network_start)"
    run install -d -m 0755 "$UI_UNIT.d"
    echo "+ write $UI_UNIT.d/station-only.conf (Environment=RELAXD_NETWORK_START=1)"
    if ((!DRY_RUN)); then
        printf '[Service]\nEnvironment=RELAXD_NETWORK_START=1\n' >"$UI_UNIT.d/station-only.conf"
    fi
}

# A system user of its own, without a home or a shell (its state: the unit's StateDirectory).
service_user() {
    if ! real_system || ! getent passwd "$1" >/dev/null; then
        system useradd --system --user-group --home-dir "/var/lib/$1" --no-create-home \
            --shell /usr/sbin/nologin "$1"
    fi
}

# The chair's bridge to the clinic's broker (--with-bridge): it reads the control socket and the
# session records as a member of the relaxd group; it starts once the clinic: section names a
# broker, a chair id and its credentials.
install_bridge() {
    step "clinic bridge: user relaxd-bridge, $BRIDGE_UNIT"
    service_user relaxd-bridge
    system usermod --append --groups relaxd relaxd-bridge
    run install -m 0644 "$REPO/deploy/relaxd-bridge.service" "$BRIDGE_UNIT"
}

# The clinic overview (--with-overview): its own user, its broker credentials in
# /etc/relaxd-overview (the CA and password are the clinic's: not made here).
install_overview() {
    step "clinic overview: user relaxd-overview, $OVERVIEW_ETC, $OVERVIEW_UNIT"
    service_user relaxd-overview
    run install -d -m 0750 "$OVERVIEW_ETC"
    system chown root:relaxd-overview "$OVERVIEW_ETC"
    run install -m 0644 "$REPO/deploy/relaxd-overview.service" "$OVERVIEW_UNIT"
}

# The clinic's units: each needs the clinic's broker, CA and credentials first, so a new one is
# left for the administrator to enable; one already running is restarted (an update).
start_clinic() {
    local unit
    for unit in relaxd-bridge relaxd-overview; do
        [[ $unit == relaxd-bridge ]] && ((!WITH_BRIDGE)) && continue
        [[ $unit == relaxd-overview ]] && ((!WITH_OVERVIEW)) && continue
        if ! real_system || systemctl is-active --quiet "$unit"; then
            system systemctl restart "$unit"
        fi
    done
    if ((WITH_BRIDGE)); then
        echo "  bridge: fill the clinic: section of /etc/relaxd/config.yaml (broker, chair_id,"
        echo "  room, ca, password_file), then: sudo systemctl enable --now relaxd-bridge"
    fi
    if ((WITH_OVERVIEW)); then
        echo "  overview: ca.pem and broker-password in /etc/relaxd-overview, its --broker in the"
        echo "  unit, sudo relaxd overview-user NAME --role nurse, then:"
        echo "  sudo systemctl enable --now relaxd-overview"
    fi
}

# relaxd (re)started with its unit, the station's drop-in and its groups all in place, then the
# station beside it.
start_services() {
    step "start relaxd, then the station"
    system systemctl daemon-reload
    if ! real_system; then
        echo "  (restart only when relaxd is already running, to pick up an update)"
    fi
    if ! real_system || systemctl is-active --quiet relaxd; then
        system systemctl restart relaxd
    fi
    system systemctl enable --now relaxd
    system systemctl enable relaxd-ui
    system systemctl restart relaxd-ui
    echo "  accounts: sudo -u relaxd-ui /opt/relaxd/venv/bin/relaxd ui set-pin (the kiosk) and"
    echo "  ... relaxd ui add-user NAME --role caregiver|therapist (tablets, over TLS only)"
    start_clinic
}

# Raspberry Pi OS with desktop (Wayland, labwc or wayfire): Chromium full-screen on the touch
# display for the user who logs in automatically. The Lite image has no desktop: station only.
install_kiosk() {
    step "kiosk: $KIOSK (Chromium on the touch display at login)"
    run install -d -m 0755 "${KIOSK%/*}"
    if ((!DRY_RUN)); then
        cat >"$KIOSK" <<'DESKTOP'
[Desktop Entry]
Type=Application
Name=relaxd caregiver station
Exec=chromium-browser --kiosk --noerrdialogs --disable-infobars --ozone-platform=wayland --app=http://127.0.0.1:8080/
X-GNOME-Autostart-enabled=true
DESKTOP
    fi
}

uninstall() {
    step "stop and remove the service"
    local unit
    for unit in relaxd-bridge relaxd-overview; do
        if ! real_system || [[ -e $ROOT/etc/systemd/system/$unit.service ]]; then
            system systemctl disable --now "$unit"
        fi
    done
    run rm -f "$BRIDGE_UNIT" "$OVERVIEW_UNIT"
    if ! real_system || [[ -e $UI_UNIT ]]; then
        system systemctl disable --now relaxd-ui
    fi
    run rm -f "$UI_UNIT" "$KIOSK" "$UNIT.d/station.conf" "$UI_UNIT.d/station-only.conf"
    if ! real_system || [[ -e $UNIT ]]; then
        system systemctl disable --now relaxd
    fi
    run rm -f "$UNIT"
    system systemctl daemon-reload
    step "remove $PREFIX (virtualenv)"
    run rm -rf "$VENV" "$PREFIX/README.md"
    if [[ -d $PREFIX ]]; then run rmdir "$PREFIX"; fi
    step "kept: $ETC (configuration), $STATE (session records), user relaxd"
    echo "  remove them by hand if wanted: sudo rm -r /etc/relaxd /var/lib/relaxd; sudo userdel relaxd"
    echo "  (and, if installed, /etc/relaxd-overview, /var/lib/relaxd-bridge, /var/lib/relaxd-overview"
    echo "  and the users relaxd-bridge, relaxd-overview)"
}

preflight
if ((UNINSTALL)); then
    uninstall
else
    install_packages
    install_user
    install_venv
    install_config
    install_state
    install_boot_pins
    install_unit
    install_station
    if ((WITH_BRIDGE)); then install_bridge; fi
    if ((WITH_OVERVIEW)); then install_overview; fi
    start_services
    step "done: systemctl status relaxd relaxd-ui; journalctl -u relaxd -f"
fi
