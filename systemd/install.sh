#!/usr/bin/env bash
# Install and enable the trunkfs systemd service (run as root from the checkout).
#
# The service runs as root, so it must not run code that users can change: a
# regular (non-editable) install of this checkout goes into the root-owned venv
# /opt/trunkfs, and the unit starts /opt/trunkfs/bin/trunkfs. Run it again after
# pulling changes to update the installed copy. The system packages it needs
# (fuse3, libfuse3-dev, pkg-config, gcc, python3-venv, python3-dev) are what
# ./setup.sh installs.
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
top=$(dirname "$here")
prefix=/opt/trunkfs
[ "$(id -u)" = 0 ] || { echo "run as root: sudo $0" >&2; exit 1; }

. "$here/find-python.sh"
[ -n "$PY" ] || { echo "install: Python 3.11 or newer with venv is required (./setup.sh installs it)" >&2; exit 1; }

umask 022
[ -x "$prefix/bin/python" ] || "$PY" -m venv "$prefix"
# build from a private copy: nothing is written into the checkout as root, and
# what gets installed is what was copied (the symlinks trunkfs/<part> stay relative)
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
tar -C "$top" --exclude=./.venv --exclude=./.git --exclude='*.egg-info' --exclude=./build -cf - . | tar -C "$src" -xf -
"$prefix/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$prefix/bin/python" -m pip install -q --no-cache-dir --upgrade "$src"
chown -R root:root "$prefix"
chmod -R go-w "$prefix"

ln -sf "$prefix/bin/trunkfs" /usr/local/bin/trunkfs
install -D -m 0644 "$here/trunkfs.service" /etc/systemd/system/trunkfs.service
install -D -m 0644 "$here/trunkfs.tmpfiles.conf" /usr/lib/tmpfiles.d/trunkfs.conf
[ -f /etc/trunkfs/config.toml ] || install -D -m 0644 "$here/config.toml" /etc/trunkfs/config.toml
systemd-tmpfiles --create /usr/lib/tmpfiles.d/trunkfs.conf
systemctl daemon-reload
systemctl enable trunkfs.service
systemctl restart trunkfs.service   # picks up a new copy when run again
echo "trunkfs is running from $prefix: mount at /srv/trunkfs, socket /run/trunkfs/trunkfs.sock"
