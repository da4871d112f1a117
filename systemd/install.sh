#!/usr/bin/env bash
# Install and enable the trunkfs systemd service (run as root from the checkout,
# after ./setup.sh has created .venv).
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
top=$(dirname "$here")
[ -x "$top/.venv/bin/trunkfs" ] || { echo "run ./setup.sh test (or run) first: $top/.venv/bin/trunkfs is missing" >&2; exit 1; }
ln -sf "$top/.venv/bin/trunkfs" /usr/local/bin/trunkfs
install -D -m 0644 "$here/trunkfs.service" /etc/systemd/system/trunkfs.service
install -D -m 0644 "$here/trunkfs.tmpfiles.conf" /usr/lib/tmpfiles.d/trunkfs.conf
[ -f /etc/trunkfs/config.toml ] || install -D -m 0644 "$here/config.toml" /etc/trunkfs/config.toml
systemd-tmpfiles --create /usr/lib/tmpfiles.d/trunkfs.conf
systemctl daemon-reload
systemctl enable --now trunkfs.service
echo "trunkfs is running: mount at /srv/trunkfs, socket /run/trunkfs/trunkfs.sock"
