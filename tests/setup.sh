#!/usr/bin/env bash
# Installs the real servers the tests start (pinned versions), so that `cargo test`
# can run them: the README's test command is `bash tests/setup.sh && cargo test --release`.
#
# - @tus/server + @tus/file-store (npm, pinned in tests/tus-server/package-lock.json);
# - S3 servers (tests/protocols/s3.rs): s3rver (npm, tests/s3rver/package-lock.json),
#   moto in a virtualenv (PyPI, tests/moto/requirements.txt; with boto3 for the bench),
#   s3s-fs (crates.io, pinned below, built into tests/s3s/: the server that checks
#   SigV4 signatures);
# - gcp-storage-emulator in a virtualenv (PyPI, tests/gcs/requirements.txt) and Azurite
#   (npm, tests/azurite/package-lock.json), for the GCS and Azure tests;
# - nginx (WebDAV PUT target), nftables (blackholes) and dnsmasq (a name server) from
#   Debian, for the network-namespace tests in tests/netfaults.rs; xfsprogs and
#   btrfs-progs, for the power-cut tests on loop devices (tests/powercut/). These need root: as
#   another user, or on a machine without apt-get, they are left out and those tests
#   print SKIPPED (under CI=true they fail instead).
set -euo pipefail
cd "$(dirname "$0")/.."

NGINX_VERSION='1.22.1-9*'
S3S_FS_VERSION='0.14.1'
NFTABLES_VERSION='1.0.6-2*'
DNSMASQ_VERSION='2.90-4*'
XFSPROGS_VERSION='6.1.0-1*'
BTRFS_PROGS_VERSION='6.2-1*'

have_all() {
  command -v nginx >/dev/null && command -v nft >/dev/null && command -v dnsmasq >/dev/null &&
    command -v mkfs.xfs >/dev/null && command -v mkfs.btrfs >/dev/null
}

if ! have_all || ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # Never start a service while installing: the tests start their own.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
      trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq
    pkgs=("nginx=$NGINX_VERSION" "nftables=$NFTABLES_VERSION" "dnsmasq-base=$DNSMASQ_VERSION"
      "xfsprogs=$XFSPROGS_VERSION" "btrfs-progs=$BTRFS_PROGS_VERSION")
    command -v npm >/dev/null || pkgs+=(nodejs npm)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  else
    echo "tests/setup.sh: not root or no apt-get: nginx, nftables, dnsmasq, xfsprogs and btrfs-progs not installed" >&2
  fi
fi

if command -v npm >/dev/null; then
  npm ci --prefix tests/tus-server
  npm ci --prefix tests/s3rver
  npm ci --prefix tests/azurite
else
  echo "tests/setup.sh: npm missing: the tus, s3rver and Azure tests will be skipped" >&2
fi

if [ ! -x tests/moto/venv/bin/moto_server ] || ! cmp -s tests/moto/requirements.txt tests/moto/venv/requirements.txt; then
  python3 -m venv tests/moto/venv
  tests/moto/venv/bin/pip install --quiet --disable-pip-version-check -r tests/moto/requirements.txt
  cp tests/moto/requirements.txt tests/moto/venv/requirements.txt
fi

if [ ! -x tests/gcs/venv/bin/gcp-storage-emulator ] || ! cmp -s tests/gcs/requirements.txt tests/gcs/venv/requirements.txt; then
  python3 -m venv tests/gcs/venv
  tests/gcs/venv/bin/pip install --quiet --disable-pip-version-check -r tests/gcs/requirements.txt
  cp tests/gcs/requirements.txt tests/gcs/venv/requirements.txt
fi

if ! tests/s3s/bin/s3s-fs --version 2>/dev/null | grep -q " $S3S_FS_VERSION\$"; then
  cargo install --quiet --locked "s3s-fs@$S3S_FS_VERSION" --features binary --root tests/s3s
fi
