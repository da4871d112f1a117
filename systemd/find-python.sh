# Sourced by setup.sh and systemd/install.sh: sets PY to the first Python 3.11
# or newer (with venv) on PATH, or to "" when there is none.
PY=""
for cand in python3 python3.13 python3.12 python3.11 /usr/bin/python3; do
  if command -v "$cand" >/dev/null 2>&1 &&
     "$cand" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    PY=$(command -v "$cand"); break
  fi
done
