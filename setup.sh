#!/usr/bin/env bash
# One-step set-up for a fresh Debian machine (run as root or with sudo rights).
#
#   ./setup.sh run [DAEMON FLAGS...]   install everything, then run the daemon in the
#                                      foreground with the embedded local store, its
#                                      repos mounted at $TRUNKFS_MOUNT (default /srv/trunkfs)
#   ./setup.sh test [PYTEST ARGS...]   install everything, then type-check the package
#                                      (mypy) and run the test suite
#
# It installs the system packages trunkfs needs (fuse3, libfuse3-dev and
# pkg-config to build pyfuse3, Python 3.11+ with venv and headers), creates
# .venv in the checkout and installs trunkfs into it.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

mode=${1:-}
case "$mode" in
  run|test) shift ;;
  *) echo "usage: $0 run [daemon flags] | test [pytest args]" >&2; exit 2 ;;
esac

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

pkgs=(fuse3 libfuse3-dev pkg-config gcc python3 python3-venv python3-dev ca-certificates util-linux)
# chromium: the console's browser tests drive Debian's build (playwright never downloads one)
[ "$mode" = test ] && pkgs+=(restic bindfs systemd rsync attr git fio chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}" >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# setpriv starts pipeline datums as their owner inside their cgroup (pipelines/runner.py);
# util-linux has it on Debian 12, newer releases may ship it on its own
command -v setpriv >/dev/null 2>&1 ||
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends setpriv >/dev/null 2>&1 || true

# Python 3.11 or newer: the first python3 on PATH that is new enough.
. systemd/find-python.sh
[ -n "$PY" ] || { echo "setup: Python 3.11 or newer is required" >&2; exit 1; }

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  rm -rf .venv
  "$PY" -m venv .venv
fi
stamp=.venv/.trunkfs-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing trunkfs and its Python packages into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi

if [ "$mode" = run ]; then
  case " $* " in
    *" --mount "*|*" --mount="*) ;;
    *) mnt=${TRUNKFS_MOUNT:-/srv/trunkfs}
       mkdir -p "$mnt"
       set -- --mount "$mnt" "$@" ;;
  esac
  echo "setup: starting the daemon ($*); stop it with Ctrl-C or '.venv/bin/trunkfs umount'" >&2
  exec .venv/bin/trunkfs daemon "$@"
fi
export PATH="$PWD/.venv/bin:$PATH"
echo "setup: type-checking the package (mypy, configured in pyproject.toml)" >&2
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
