#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build, run and test Breakwater.
#   scripts/setup.sh          build + run dependencies (libclamav-dev libmilter-dev pkg-config)
#   scripts/setup.sh --test   also the test peers (postfix, miltertest, clamav-testfiles, swaks, ...),
#                             debootstrap, which makes the Debian root the Sendmail tests run Sendmail in,
#                             and python3-matplotlib (the replay test draws its figure)
#   scripts/setup.sh --bench  also the comparison daemons (clamav-daemon, clamav-milter, clamscan) and
#                             clamav-testfiles (the malware of the generated corpus), python3-matplotlib
#                             (the figures of `make incident`)
#   scripts/setup.sh --deb    also the packaging tools (dpkg-dev, debhelper, lintian) and, for the package
#                             test, systemd-analyze and systemd-nspawn (systemd, systemd-container)
# Idempotent: installs only the packages that are missing; runs apt-get update only when it must.
set -euo pipefail

want=(libclamav-dev libmilter-dev pkg-config)
for arg in "$@"; do
  case "$arg" in
    --test) want+=(postfix miltertest clamav-testfiles swaks python3-pytest prometheus debootstrap debian-archive-keyring python3-matplotlib) ;;
    --bench) want+=(clamav clamav-daemon clamav-milter postfix clamav-testfiles python3-matplotlib) ;;
    --deb) want+=(dpkg-dev debhelper lintian fakeroot systemd systemd-container) ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all needed Debian packages are installed"
else
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # Postfix asks how to configure itself; the tests run private instances, so "No configuration" is right.
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
  if ! $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi

if ! command -v swift >/dev/null 2>&1 && [ ! -x /opt/swift/usr/bin/swift ]; then
  echo "setup: no Swift toolchain found (swift on PATH or /opt/swift/usr/bin/swift); install Swift 6 first" >&2
  exit 1
fi
