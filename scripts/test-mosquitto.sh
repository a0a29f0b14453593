# Sourced by scripts/test.sh: provides a throwaway MQTT broker (Debian's mosquitto) for the MQTT tests.
#   sluice_mqtt_start  installs mosquitto if it is missing, starts it on a free 127.0.0.1 port with a temporary
#                      config (anonymous, no persistence) and exports SLUICE_TEST_MQTT=127.0.0.1:PORT and
#                      SLUICE_TEST_MOSQUITTO (the binary; some tests start and restart their own brokers with it).
#   sluice_mqtt_stop   stops it and deletes its directory (safe to call twice, and when nothing was started).
# An SLUICE_TEST_MQTT already set by the caller is used as it is and nothing is started.

SLUICE_MQTT_DIR=""
SLUICE_MQTT_PID=""

sluice_mqtt_find_bin() {
  local candidate
  # Debian installs the broker in /usr/sbin, which is not on every user's PATH.
  for candidate in "$(command -v mosquitto 2>/dev/null || true)" /usr/sbin/mosquitto /usr/local/sbin/mosquitto; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      export SLUICE_TEST_MOSQUITTO=$candidate
      return 0
    fi
  done
  return 1
}

sluice_mqtt_start() {
  if [ -n "${SLUICE_TEST_MQTT:-}" ]; then
    echo "== using the MQTT broker in SLUICE_TEST_MQTT ($SLUICE_TEST_MQTT) =="
    sluice_mqtt_find_bin || true
    return 0
  fi

  local started=$SECONDS
  if ! sluice_mqtt_find_bin; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "error: mosquitto not found; install it with 'sudo apt-get install -y mosquitto' and run again." >&2
      return 1
    fi
    echo "== mosquitto not found: apt-get update && apt-get install -y mosquitto =="
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
    if ! sluice_mqtt_find_bin; then
      echo "error: installed mosquitto but found no mosquitto binary." >&2
      return 1
    fi
  fi

  SLUICE_MQTT_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sluice-mqtt.XXXXXX")
  chmod 755 "$SLUICE_MQTT_DIR"

  local attempt port waited
  for attempt in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 30000))
    # Skip ports something already listens on.
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      continue
    fi
    cat >"$SLUICE_MQTT_DIR/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
CONF
    chmod 644 "$SLUICE_MQTT_DIR/mosquitto.conf"
    echo "== starting mosquitto ($("$SLUICE_TEST_MOSQUITTO" -h 2>/dev/null | head -n 1 | sed 's/^mosquitto //')) on 127.0.0.1:$port =="
    "$SLUICE_TEST_MOSQUITTO" -c "$SLUICE_MQTT_DIR/mosquitto.conf" >"$SLUICE_MQTT_DIR/broker.log" 2>&1 &
    SLUICE_MQTT_PID=$!
    waited=0
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
      if ! kill -0 "$SLUICE_MQTT_PID" 2>/dev/null; then
        break
      fi
      waited=$((waited + 1))
      if [ "$waited" -ge 100 ]; then
        break
      fi
      sleep 0.1
    done
    if kill -0 "$SLUICE_MQTT_PID" 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      export SLUICE_TEST_MQTT="127.0.0.1:$port"
      echo "== mosquitto ready on $SLUICE_TEST_MQTT in $((SECONDS - started)) s =="
      return 0
    fi
    tail -n 5 "$SLUICE_MQTT_DIR/broker.log" >&2 || true
    kill "$SLUICE_MQTT_PID" 2>/dev/null || true
    wait "$SLUICE_MQTT_PID" 2>/dev/null || true
    SLUICE_MQTT_PID=""
  done
  echo "error: mosquitto did not start (broker log above)." >&2
  return 1
}

sluice_mqtt_stop() {
  if [ -n "$SLUICE_MQTT_PID" ]; then
    echo "== stopping mosquitto =="
    kill "$SLUICE_MQTT_PID" 2>/dev/null || true
    wait "$SLUICE_MQTT_PID" 2>/dev/null || true
    SLUICE_MQTT_PID=""
  fi
  if [ -n "$SLUICE_MQTT_DIR" ]; then
    rm -rf "$SLUICE_MQTT_DIR"
    SLUICE_MQTT_DIR=""
  fi
}
