#!/bin/sh
# Build (once) and cache a Debian 13 chroot with GIMP 3 + python3-numpy for the GIMP e2e test.
# Usage (as root): .ci/gimp-chroot.sh [ROOT]   default ROOT: .ci-cache/gimp-trixie
# Prints the chroot path on stdout; export it as CSR_GIMP_ROOT for tests/test_gimp_e2e.py.
set -eu
cd "$(dirname "$0")/.."
ROOT=${1:-${CSR_GIMP_ROOT:-$PWD/.ci-cache/gimp-trixie}}
STAMP="$ROOT/.csr-gimp-ready"
if [ -f "$STAMP" ]; then echo "$ROOT"; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "gimp-chroot: must run as root" >&2; exit 1; }

# The Debian mirror the host itself uses (one-line or deb822 sources), else deb.debian.org.
MIRROR=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
  grep -v '^\s*#' | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ' || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}

if ! command -v debootstrap >/dev/null; then  # apt's list lock does not wait: retry while another apt runs
  for try in 1 2 3 4 5 6; do
    apt-get -o DPkg::Lock::Timeout=600 update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq debootstrap >/dev/null && break
    sleep 20
  done
  command -v debootstrap >/dev/null || { echo "gimp-chroot: could not install debootstrap" >&2; exit 1; }
fi
TMP="$ROOT.partial"
if grep -qsE " ($ROOT|$TMP)[/ ]" /proc/mounts; then  # never rm -rf through a bind mount of the repo
  echo "gimp-chroot: something is still mounted under $ROOT; unmount it first" >&2; exit 1
fi
rm -rf "$TMP"; mkdir -p "$(dirname "$ROOT")"
echo "gimp-chroot: debootstrap trixie from $MIRROR" >&2
debootstrap --variant=minbase trixie "$TMP" "$MIRROR" >&2
echo "deb $MIRROR trixie main" > "$TMP/etc/apt/sources.list"
chroot "$TMP" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive sh -c \
  'apt-get update -qq && apt-get install -y -qq --no-install-recommends gimp python3-numpy && apt-get clean' >&2
chroot "$TMP" env -i PATH=/usr/bin:/bin gimp-console-3.0 --version >&2
rm -rf "$ROOT"; mv "$TMP" "$ROOT"; touch "$STAMP"
echo "$ROOT"
