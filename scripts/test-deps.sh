#!/usr/bin/env bash
# Installs what the test suite starts by itself: nats-server, prometheus (the server that
# scrapes the worker, and promtool for the alert rules' tests), the pinned dynalite
# (a DynamoDB-compatible server on Node.js), the pinned web-push-testing (a Web Push
# service), the pinned sockudo (a Pusher-protocol server) and the pinned aiosmtpd (an SMTP
# server on Python). Safe to run again; does nothing when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "error: $1 is missing; install it (Debian/Ubuntu: sudo apt-get install $2) and run again" >&2
    exit 1
  fi
  echo "installing $2 with apt-get" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

command -v nats-server >/dev/null || apt_install nats-server nats-server
# Debian's package (2.42 on bookworm) provides both /usr/bin/prometheus and /usr/bin/promtool.
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || apt_install prometheus prometheus
command -v node >/dev/null || apt_install node nodejs
command -v npm >/dev/null || apt_install npm npm
# tests/fcm.rs and tests/apns.rs generate their RSA and P-256 keys with the openssl CLI.
command -v openssl >/dev/null || apt_install openssl openssl

# dynalite and web-push-testing, exactly as pinned in tests/dynalite/package-lock.json.
lock=tests/dynalite/package-lock.json
stamp=tests/dynalite/node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ] || [ ! -f tests/dynalite/node_modules/web-push-testing/package.json ]; then
  echo "installing the pinned dynalite and web-push-testing (npm ci)" >&2
  npm ci --prefix tests/dynalite --no-audit --no-fund --loglevel=error
fi

# sockudo, the Pusher-protocol server tests/pusher.rs sends to (tests/support/sockudo.rs is
# written against this release's environment variables). Built from crates.io: its build
# needs protoc. Only the local adapter: no Redis, NATS or database clients to build.
sockudo_version=5.2.0
sockudo="${CARGO_HOME:-$HOME/.cargo}/bin/sockudo"
if [ ! -x "$sockudo" ] || [ "$("$sockudo" --version 2>/dev/null)" != "sockudo $sockudo_version" ]; then
  command -v protoc >/dev/null || apt_install protoc protobuf-compiler
  echo "installing sockudo $sockudo_version (cargo install; takes several minutes)" >&2
  cargo install sockudo --version "$sockudo_version" --locked --no-default-features --features local
fi

# aiosmtpd, the SMTP server tests/email.rs sends to (it stores each message as a file), in a
# venv of its own at a fixed place the tests look in (tests/support/aiosmtpd.rs; override
# with AIOSMTPD_PYTHON). Needs python3 with venv.
aiosmtpd_version=1.4.6
aiosmtpd_venv="${XDG_DATA_HOME:-$HOME/.local/share}/notification-worker/aiosmtpd"
if [ "$("$aiosmtpd_venv/bin/python" -c 'import aiosmtpd; print(aiosmtpd.__version__)' 2>/dev/null)" != "$aiosmtpd_version" ]; then
  command -v python3 >/dev/null || apt_install python3 python3
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv python3-venv
  echo "installing aiosmtpd $aiosmtpd_version in $aiosmtpd_venv" >&2
  python3 -m venv "$aiosmtpd_venv"
  "$aiosmtpd_venv/bin/python" -m pip install --quiet --disable-pip-version-check "aiosmtpd==$aiosmtpd_version"
fi
