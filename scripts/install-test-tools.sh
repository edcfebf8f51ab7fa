#!/usr/bin/env bash
# Install the Debian packages `make test` needs, if missing: chromium (and a basic font set) for the
# Playwright browser test, prometheus for promtool (the alert rules' checks and unit tests).
# Playwright is pointed at /usr/bin/chromium via executable_path; it never downloads a browser
# of its own (do not run `playwright install`). The prometheus server the package ships is not
# started. Idempotent: does nothing when already installed. Prints the versions.
set -euo pipefail

CHROMIUM_BIN=${CHROMIUM_BIN:-/usr/bin/chromium}
PACKAGES=(chromium fonts-liberation prometheus)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]; then
    missing+=("$pkg")
  fi
done
if [ ! -x "$CHROMIUM_BIN" ] && [ ${#missing[@]} -eq 0 ]; then
  missing=(chromium)
fi

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
  elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install-test-tools: ${missing[*]} not installed, and this is not root and has no sudo." >&2
    echo "install-test-tools: as root, run: apt-get update && DEBIAN_FRONTEND=noninteractive" \
      "apt-get install -y --no-install-recommends ${PACKAGES[*]}" >&2
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-tools: apt-get not found; install ${PACKAGES[*]} (Debian packages) by hand." >&2
    exit 1
  fi
  echo "install-test-tools: installing ${PACKAGES[*]}"
  "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq
  # Keep the packages' services (the prometheus server) from starting, as Docker images do.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod +x "$policy"
    trap '"${SUDO[@]}" rm -f "$policy"' EXIT
  fi
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
    install -y -qq --no-install-recommends "${PACKAGES[@]}"
fi

if [ ! -x "$CHROMIUM_BIN" ]; then
  echo "install-test-tools: $CHROMIUM_BIN is still missing after installing ${PACKAGES[*]}" >&2
  exit 1
fi
# Debian's launcher script prints a harmless '[: ...: unexpected operator' on stderr when
# /dev/shm is mounted twice (its findmnt check gets two lines); keep that out of the output.
"$CHROMIUM_BIN" --version 2>/dev/null
promtool --version 2>&1 | head -1
