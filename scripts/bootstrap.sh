#!/usr/bin/env bash
# Install what TrustFleet needs on Debian 12 (as root or with sudo), then the .venv. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(softhsm2 opensc mosquitto mosquitto-clients swtpm swtpm-tools tpm2-tools libtss2-dev
          libengine-pkcs11-openssl postgresql openssl curl python3-venv
          zstd pkg-config gcc python3-dev faketime mosquitto-dev libmosquitto-dev libssl-dev
          golang-go golang-golang-x-mod-dev chromium libnss3-tools fonts-dejavu-core
          libcoap3-bin cmake libcunit1-dev autoconf automake libtool rabbitmq-server)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Debian's postgresql package may start a cluster on 5432; we never use it (tests start their own).
# Debian's rabbitmq-server package may start a system node (5672, 25672, epmd on 4369) where
# systemd runs; we never use it either (tests/support/rabbitmq.py starts its own nodes and epmd
# on free loopback ports): stop and disable that unit, by its unit name, never by process name.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null \
   && systemctl is-enabled --quiet rabbitmq-server 2>/dev/null; then
  echo "bootstrap: stopping and disabling Debian's rabbitmq-server unit (tests start their own)"
  $SUDO systemctl disable --now rabbitmq-server
fi
PY=${PYTHON:-python3}
# A .venv copied or moved from another checkout keeps that checkout's paths in its scripts'
# first lines (pytest, ruff, trustfleet would run the other tree, or nothing once it is gone).
if [ -x .venv/bin/python ] && [ -f .venv/bin/pip ] \
   && [ "$(head -n 1 .venv/bin/pip)" != "#!$(pwd)/.venv/bin/python" ]; then
  echo "bootstrap: .venv was made for $(head -n 1 .venv/bin/pip | cut -c3-); making it anew here"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.trustfleet-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing the project into .venv"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  # The development project is `trustfleet-dev` (ADR 0020); an older checkout installed this
  # tree as `trustfleet`: remove that editable install (only when it points here) first, so its
  # uninstall cannot take the console scripts the new install writes.
  stale=$(.venv/bin/python -m pip show trustfleet 2>/dev/null \
          | sed -n 's/^Editable project location: //p' || true)
  if [ -n "$stale" ] && [ "$(realpath "$stale")" = "$(realpath .)" ]; then
    echo "bootstrap: removing the editable 'trustfleet' install of this checkout (now trustfleet-dev)"
    .venv/bin/python -m pip uninstall -q -y trustfleet
  fi
  rm -rf src/trustfleet.egg-info  # its metadata (on sys.path via src/) would still say `trustfleet`
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi

# The device distribution's wheelhouse (issue 17): the device wheel's requirements as wheels, so
# the tests install the device wheel OFFLINE into a fresh venv (`pip install --no-index
# --find-links .venv/wheelhouse`). Redone when packaging/dists.toml is newer than its stamp.
# tpm2-pytss builds from source here (libtss2-dev and pkg-config are in PACKAGES).
wheelhouse=.venv/wheelhouse
if [ ! -f "$wheelhouse/.stamp" ] || [ packaging/dists.toml -nt "$wheelhouse/.stamp" ]; then
  echo "bootstrap: building the device wheelhouse in $wheelhouse"
  mapfile -t agent_requirements < <(.venv/bin/python packaging/build.py requirements agent)
  if [ ${#agent_requirements[@]} -eq 0 ]; then
    echo "bootstrap: packaging/build.py named no device requirement" >&2
    exit 1
  fi
  rm -rf "$wheelhouse"  # exactly the current requirements, nothing left from older ones
  mkdir -p "$wheelhouse"
  .venv/bin/python -m pip wheel -q -w "$wheelhouse" "${agent_requirements[@]}"
  touch "$wheelhouse/.stamp"
fi
