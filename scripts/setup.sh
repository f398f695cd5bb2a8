#!/usr/bin/env bash
# Idempotent setup from a fresh clone: a virtualenv with scorefleet and its dev tools, the
# generated gRPC stubs, and the control-plane binaries (built from Go modules, cached by
# version under ~/.cache/scorefleet, so only the first run on a machine is slow).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "setup: Python >= 3.11 is required (found $("$PYTHON" --version))" >&2; exit 1; }
command -v go >/dev/null || { echo "setup: Go is required to build the control plane" >&2; exit 1; }

# A real Prometheus for the metrics tests (Debian's packages; no service is started).
# A real Kafka broker (Java, jars fetched by Maven below) and a real Redis for the stream tests.
missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: install ${missing[*]} (Debian: apt-get install ${missing[*]})" >&2; exit 1
  fi
fi

# The real node's images (scorefleet/dev/image.py, built lazily and cached): debootstrap for the
# Debian base, buildah for the Dockerfile, gcc + static libc for the pause binary, containerd and
# runc to import and run them; the CNI plugins, iptables and conntrack for the real node's pod
# network and Services. Building and running images needs root; without it, say so (the local
# cluster then runs kwok fake nodes only).
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for pkg in debootstrap buildah containerd runc gcc libc6-dev containernetworking-plugins \
      iptables conntrack; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    # Other sessions on the machine may hold dpkg's lock for a while: wait for it.
    apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  echo "setup: not root: the node images (debootstrap, buildah, containerd) are not set up" >&2
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
# Reinstall only when the dependency list changed.
stamp=.venv/.scorefleet-deps
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  echo "$want" > "$stamp"
fi
.venv/bin/python -m scorefleet.scorer.protogen >/dev/null
# Kafka's jars from Maven Central, cached by version outside the repo (scorefleet/dev/kafka-pom.xml).
.venv/bin/python -m scorefleet.dev.kafka fetch >/dev/null
echo "setup: python env ready in $((SECONDS - started))s" >&2
.venv/bin/python -m scorefleet.dev build >/dev/null
echo "setup: done in $((SECONDS - started))s" >&2
