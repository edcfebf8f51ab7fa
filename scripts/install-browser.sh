#!/usr/bin/env bash
# Install Debian's chromium (and a basic font set) for the Playwright browser tests, if missing.
# Playwright is pointed at /usr/bin/chromium via executable_path; it never downloads a browser
# of its own (do not run `playwright install`). Idempotent: does nothing when already installed.
# Prints the chromium version.
set -euo pipefail

CHROMIUM_BIN=${CHROMIUM_BIN:-/usr/bin/chromium}
PACKAGES=(chromium fonts-liberation)

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
    echo "install-browser: ${missing[*]} not installed, and this is not root and has no sudo." >&2
    echo "install-browser: as root, run: apt-get update && DEBIAN_FRONTEND=noninteractive" \
      "apt-get install -y --no-install-recommends ${PACKAGES[*]}" >&2
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: apt-get not found; install ${PACKAGES[*]} (Debian packages) by hand." >&2
    exit 1
  fi
  echo "install-browser: installing ${PACKAGES[*]}"
  "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
    install -y -qq --no-install-recommends "${PACKAGES[@]}"
fi

if [ ! -x "$CHROMIUM_BIN" ]; then
  echo "install-browser: $CHROMIUM_BIN is still missing after installing ${PACKAGES[*]}" >&2
  exit 1
fi
# Debian's launcher script prints a harmless '[: ...: unexpected operator' on stderr when
# /dev/shm is mounted twice (its findmnt check gets two lines); keep that out of the output.
"$CHROMIUM_BIN" --version 2>/dev/null
