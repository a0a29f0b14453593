# Sourced by scripts/test.sh: provides Debian's nginx for the scale-out tests (three gateways behind a load balancer).
#   sluice_nginx_ensure  installs nginx if it is missing and exports SLUICE_TEST_NGINX (the binary). The tests write
#                        their own configuration (the gateways' ports are only known once they listen) and start and
#                        stop their own nginx on loopback ports, as docs/deploy.md configures it; nothing is left
#                        running and Debian's own nginx service is not started.
# An SLUICE_TEST_NGINX already set by the caller is used as it is.

sluice_nginx_find_bin() {
  local candidate
  # Debian installs it in /usr/sbin, which is not on every user's PATH.
  for candidate in "$(command -v nginx 2>/dev/null || true)" /usr/sbin/nginx /usr/local/sbin/nginx; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      export SLUICE_TEST_NGINX=$candidate
      return 0
    fi
  done
  return 1
}

sluice_nginx_ensure() {
  if [ -n "${SLUICE_TEST_NGINX:-}" ]; then
    echo "== using the nginx in SLUICE_TEST_NGINX ($SLUICE_TEST_NGINX) =="
    return 0
  fi

  if ! sluice_nginx_find_bin; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "error: nginx not found; install it with 'sudo apt-get install -y nginx-light' (or nginx) and run again." >&2
      return 1
    fi
    echo "== nginx not found: apt-get install -y nginx =="
    apt-get update -qq
    # policy-rc.d 101: the package must not start Debian's own nginx on port 80 (the tests run their own).
    local policy=/usr/sbin/policy-rc.d created_policy=""
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null || true
    if [ -n "$created_policy" ]; then
      rm -f "$policy"
    fi
    if ! sluice_nginx_find_bin; then
      echo "error: installed nginx but found no nginx binary." >&2
      return 1
    fi
  fi
  echo "== nginx: $("$SLUICE_TEST_NGINX" -v 2>&1) =="
}
