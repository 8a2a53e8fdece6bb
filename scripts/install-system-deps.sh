#!/usr/bin/env bash
# Debian packages the digital twin needs (real daemons), and PostgreSQL: its server binaries for
# the tests' throwaway clusters (tests/pgserver.py: initdb + pg_ctl as an unprivileged user, Unix
# socket only) and libpq for psycopg. Idempotent; installs only what is missing. The cluster
# Debian's package may create (`main`) is never used by Cordon nor started by this script.
set -euo pipefail
pkgs=(iproute2 nftables conntrack openssh-server openssh-client frr snmpd snmp util-linux procps python3-venv
  postgresql libpq5)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The crisis-cell view's browser tests (tests/view): Debian's Chromium and its WebDriver, driven
# by Selenium with this chromedriver (nothing downloaded at test time). Idempotent, as above.
browser=(chromium chromium-driver)
missing=()
for p in "${browser[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
