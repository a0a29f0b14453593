# Sourced by scripts/test.sh: provides the headless Chromium the web chat tests drive (tests/Sluice.WebChat.Tests).
#   sluice_chromium_ensure  installs Debian's chromium if /usr/bin/chromium is missing (as root; otherwise it says
#                           the command to run) and exports SLUICE_TEST_CHROMIUM=/usr/bin/chromium.
# An SLUICE_TEST_CHROMIUM already set by the caller is used as it is. Playwright never downloads a browser here.

sluice_chromium_ensure() {
  if [ -n "${SLUICE_TEST_CHROMIUM:-}" ]; then
    if [ ! -x "$SLUICE_TEST_CHROMIUM" ]; then
      echo "error: SLUICE_TEST_CHROMIUM is '$SLUICE_TEST_CHROMIUM', which is not an executable file." >&2
      return 1
    fi
    echo "== using the Chromium in SLUICE_TEST_CHROMIUM ($SLUICE_TEST_CHROMIUM) =="
    return 0
  fi

  local chromium=/usr/bin/chromium
  if [ ! -x "$chromium" ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "error: Chromium not found at $chromium (the web chat tests need it); install it with" >&2
      echo "       'sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium' and run again." >&2
      return 1
    fi
    echo "== chromium not found: apt-get update && apt-get install -y chromium =="
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
    if [ ! -x "$chromium" ]; then
      echo "error: installed the chromium package but $chromium is missing." >&2
      return 1
    fi
  fi

  export SLUICE_TEST_CHROMIUM=$chromium
  echo "== using $("$chromium" --version 2>/dev/null || echo chromium) at $chromium =="
}
