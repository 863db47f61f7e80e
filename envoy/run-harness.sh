#!/usr/bin/env bash
# The local harness (`make run`): the token service, the echo upstream and
# Envoy with the oauthv2info filter, all on loopback. It seeds a demo app,
# gets a real access token from the token service, prints curl commands to
# try, shows Envoy's access log, and stops everything it started on Ctrl-C.
#
# `make run` builds first (`make setup build`); to run this script alone,
# build with `make build`. NATIVE=1 (`make run NATIVE=1`, which builds the
# module too) runs Envoy with the native module dist/liboauthv2info.so and
# envoy/envoy-native.yaml instead of the Wasm filter and envoy/envoy.yaml
# (docs/native.md): the same demo and commands. Data (SQLite store, keys, logs, the Envoy config
# actually used) lives in .data/; running again reuses it.
#
# Environment (all optional):
#   LISTEN_PORT (10000)  ADMIN_PORT (9901)  TOKEN_SERVICE_PORT (8090)  UPSTREAM_PORT (8080)
#   TOKEN_SERVICE_KEY, TOKEN_SERVICE_ADMIN_KEY: the two keys; when unset, keys
#     generated once and kept in .data/service.key and .data/admin.key
#   ENVOY (.venv/bin/envoy)  DATA_DIR (.data)
#   TOKEN_SERVICE_BIN (target/release/token-service)
#   UPSTREAM_BIN (target/release/echo-upstream): the binaries to start
#   NATIVE: 1 for the native module (docs/native.md), else the Wasm filter
set -euo pipefail

cd "$(dirname "$0")/.."

LISTEN_PORT=${LISTEN_PORT:-10000}
ADMIN_PORT=${ADMIN_PORT:-9901}
TOKEN_SERVICE_PORT=${TOKEN_SERVICE_PORT:-8090}
UPSTREAM_PORT=${UPSTREAM_PORT:-8080}
ENVOY=${ENVOY:-.venv/bin/envoy}
DATA_DIR=${DATA_DIR:-.data}
TOKEN_SERVICE_BIN=${TOKEN_SERVICE_BIN:-target/release/token-service}
UPSTREAM_BIN=${UPSTREAM_BIN:-target/release/echo-upstream}
if [[ ${NATIVE:-} == 1 ]]; then
  FILTER=dist/liboauthv2info.so
  ENVOY_SOURCE=envoy/envoy-native.yaml
  STATS_PREFIX=dynamicmodulescustom.oauthv2info
  BUILD_HINT="make run NATIVE=1"
else
  FILTER=dist/oauthv2info.wasm
  ENVOY_SOURCE=envoy/envoy.yaml
  STATS_PREFIX=wasmcustom.oauthv2info
  BUILD_HINT="make run"
fi
DEMO_CLIENT_ID=demo-app

TS_URL="http://127.0.0.1:${TOKEN_SERVICE_PORT}"
PROXY_URL="http://127.0.0.1:${LISTEN_PORT}"

step() { printf '==> %s\n' "$*"; }
fail() {
  printf 'run-harness: %s\n' "$*" >&2
  exit 1
}

# ------------------------------------------------------------ prerequisites
command -v curl >/dev/null || fail "curl is needed: apt-get install curl"
for f in "$TOKEN_SERVICE_BIN" "$UPSTREAM_BIN" "$FILTER"; do
  [[ -e $f ]] || fail "$f is missing: run '$BUILD_HINT' (or 'make build' first)"
done
[[ -x $ENVOY ]] || fail "Envoy not found at $ENVOY: run 'make setup' (or set ENVOY)"
for port in "$LISTEN_PORT" "$ADMIN_PORT" "$TOKEN_SERVICE_PORT" "$UPSTREAM_PORT"; do
  [[ $port =~ ^[0-9]+$ ]] || fail "port '$port' is not a number"
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    fail "port $port is already in use on 127.0.0.1 (another harness? set LISTEN_PORT, ADMIN_PORT, TOKEN_SERVICE_PORT or UPSTREAM_PORT)"
  fi
done

mkdir -p "$DATA_DIR"

# A key from the environment, else the one kept in .data/, else a new one.
key() {
  local value=$1 file=$2
  if [[ -n $value ]]; then
    printf '%s' "$value"
  else
    if [[ ! -s $file ]]; then
      (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$file")
    fi
    cat "$file"
  fi
}
SERVICE_KEY=$(key "${TOKEN_SERVICE_KEY:-}" "$DATA_DIR/service.key")
ADMIN_KEY=$(key "${TOKEN_SERVICE_ADMIN_KEY:-}" "$DATA_DIR/admin.key")
[[ $SERVICE_KEY != "$ADMIN_KEY" ]] || fail "the service key and the admin key must differ"

# ------------------------------------------------------- process handling
PIDS=()
NAMES=()
# shellcheck disable=SC2317 # called by the trap
stop_all() {
  trap - INT TERM EXIT
  local i
  if ((${#PIDS[@]} > 0)); then
    step "stopping ${NAMES[*]}"
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
      kill "${PIDS[i]}" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
      wait "$pid" 2>/dev/null || true
    done
    step "stopped"
  fi
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME LOG COMMAND...: runs COMMAND in the background, output to LOG.
start() {
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  PIDS+=("$!")
  NAMES+=("$name")
}

# wait_for NAME LOG PID COMMAND...: polls COMMAND until it succeeds (15 s).
wait_for() {
  local name=$1 log=$2 pid=$3 i
  shift 3
  for ((i = 0; i < 150; i++)); do
    if "$@"; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      printf '%s exited; the end of %s:\n' "$name" "$log" >&2
      tail -n 20 "$log" >&2 || true
      exit 1
    fi
    sleep 0.1
  done
  printf '%s not ready after 15 s; the end of %s:\n' "$name" "$log" >&2
  tail -n 20 "$log" >&2 || true
  exit 1
}

# shellcheck disable=SC2317 # called through wait_for
http_ok() { curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; }
# shellcheck disable=SC2317 # called through wait_for
envoy_live() { [[ $(curl -fsS --max-time 1 "http://127.0.0.1:${ADMIN_PORT}/ready" 2>/dev/null) == LIVE ]]; }

# ------------------------------------------------------------ token service
step "token service on 127.0.0.1:${TOKEN_SERVICE_PORT} (store $DATA_DIR/token-service.db, log $DATA_DIR/token-service.log)"
start token-service "$DATA_DIR/token-service.log" \
  env TOKEN_SERVICE_KEY="$SERVICE_KEY" TOKEN_SERVICE_ADMIN_KEY="$ADMIN_KEY" \
  "$TOKEN_SERVICE_BIN" --listen "127.0.0.1:${TOKEN_SERVICE_PORT}" --db "$DATA_DIR/token-service.db"
wait_for "the token service" "$DATA_DIR/token-service.log" "${PIDS[-1]}" http_ok "$TS_URL/healthz"

# ------------------------------------------------------------ echo upstream
step "echo upstream on 127.0.0.1:${UPSTREAM_PORT} (log $DATA_DIR/echo-upstream.log)"
start echo-upstream "$DATA_DIR/echo-upstream.log" \
  "$UPSTREAM_BIN" --listen "127.0.0.1:${UPSTREAM_PORT}"
wait_for "the echo upstream" "$DATA_DIR/echo-upstream.log" "${PIDS[-1]}" http_ok "http://127.0.0.1:${UPSTREAM_PORT}/"

# -------------------------------------------------------------------- Envoy
# envoy/envoy.yaml (or envoy-native.yaml) with this run's ports and service
# key. Each replaced value is written once there: check that every
# replacement happened.
CONFIG="$DATA_DIR/envoy.yaml"
(
  umask 077
  sed -e "s/port_value: 10000}/port_value: ${LISTEN_PORT}}/" \
    -e "s/port_value: 9901}/port_value: ${ADMIN_PORT}}/" \
    -e "s/port_value: 8090}/port_value: ${TOKEN_SERVICE_PORT}}/" \
    -e "s/port_value: 8080}/port_value: ${UPSTREAM_PORT}}/" \
    -e "s/\"Bearer dev-service-key\"/\"Bearer ${SERVICE_KEY}\"/" \
    "$ENVOY_SOURCE" >"$CONFIG"
)
for expected in "port_value: ${LISTEN_PORT}}" "port_value: ${ADMIN_PORT}}" \
  "port_value: ${TOKEN_SERVICE_PORT}}" "port_value: ${UPSTREAM_PORT}}" "\"Bearer ${SERVICE_KEY}\""; do
  grep -qF -- "$expected" "$CONFIG" || fail "could not set '$expected' in $CONFIG: has $ENVOY_SOURCE changed shape?"
done

step "Envoy on 127.0.0.1:${LISTEN_PORT}, admin 127.0.0.1:${ADMIN_PORT} (config $CONFIG, log $DATA_DIR/envoy.log, filter $FILTER)"
# Envoy's own log goes to a file; its stdout (the access log) stays here.
# The native module is found by name in ENVOY_DYNAMIC_MODULES_SEARCH_PATH.
ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$PWD/$(dirname "$FILTER")" "$ENVOY" -c "$CONFIG" --disable-hot-restart --concurrency 2 \
  --log-path "$DATA_DIR/envoy.log" --file-flush-interval-msec 100 &
PIDS+=("$!")
NAMES+=(envoy)
wait_for "Envoy" "$DATA_DIR/envoy.log" "${PIDS[-1]}" envoy_live

# ---------------------------------------------------------- demo app, token
# The demo app's secret (and its client id, when not demo-app) is kept in
# .data/ so that a second run can reuse the app already in the store.
SECRET_FILE="$DATA_DIR/demo-app.secret"
if [[ ! -s $SECRET_FILE ]]; then
  (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$SECRET_FILE")
fi
ID_FILE="$DATA_DIR/demo-app.client-id"
CLIENT_ID=$DEMO_CLIENT_ID
if [[ -s $ID_FILE ]]; then
  CLIENT_ID=$(cat "$ID_FILE")
fi
CLIENT_SECRET=$(cat "$SECRET_FILE")

create_app() {
  curl -sS -o "$DATA_DIR/create-app.json" -w '%{http_code}' "$TS_URL/v1/apps" \
    -H "Authorization: Bearer $ADMIN_KEY" -H 'Content-Type: application/json' \
    -d "{\"name\": \"demo\", \"developer_email\": \"demo-developer@example.com\",
         \"api_products\": [\"FreeProduct\", \"Premium\"], \"attributes\": {\"tier\": \"gold\"},
         \"redirect_uris\": [\"https://demo.example.com/callback\"],
         \"client_id\": \"$1\", \"client_secret\": \"$CLIENT_SECRET\"}"
}

# get_token [scope]: a client_credentials token into $DATA_DIR/token.json.
get_token() {
  curl -sS -o "$DATA_DIR/token.json" -w '%{http_code}' "$TS_URL/oauth2/token" \
    -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials --data-urlencode "scope=${1:-READ WRITE}"
}

# The demo app's API products: VerifyAccessToken allows a call only when one
# of the app's products allows it (docs/decisions.md#api-products); these two
# allow every proxy, path and verb. Posting a product again replaces it.
for product in FreeProduct Premium; do
  status=$(curl -sS -o "$DATA_DIR/create-product.json" -w '%{http_code}' "$TS_URL/v1/apiproducts" \
    -H "Authorization: Bearer $ADMIN_KEY" -H 'Content-Type: application/json' \
    -d "{\"name\": \"$product\", \"apiResources\": [\"/\"]}")
  case $status in
    200 | 201) ;;
    *) fail "creating the API product $product answered HTTP $status: $(cat "$DATA_DIR/create-product.json")" ;;
  esac
done
step "API products FreeProduct and Premium defined (every path of every proxy)"

status=$(create_app "$CLIENT_ID")
case $status in
  201) step "demo app created: client_id $CLIENT_ID, developer demo-developer@example.com" ;;
  409) step "demo app $CLIENT_ID already in the store: reusing it" ;;
  *) fail "creating the demo app answered HTTP $status: $(cat "$DATA_DIR/create-app.json")" ;;
esac

status=$(get_token)
if [[ $status == 401 ]]; then
  # The store has a demo-app whose secret is not the one in .data/ (the
  # secret file was removed): register a fresh app rather than guess.
  CLIENT_ID="$DEMO_CLIENT_ID-$(date +%s)"
  status=$(create_app "$CLIENT_ID")
  [[ $status == 201 ]] || fail "creating the demo app answered HTTP $status: $(cat "$DATA_DIR/create-app.json")"
  printf '%s' "$CLIENT_ID" >"$ID_FILE"
  step "demo app created: client_id $CLIENT_ID (the secret of the previous demo app was lost)"
  status=$(get_token)
fi
[[ $status == 200 ]] || fail "POST /oauth2/token answered HTTP $status: $(cat "$DATA_DIR/token.json")"
TOKEN=$(sed -n 's/.*"access_token" *: *"\([^"]*\)".*/\1/p' "$DATA_DIR/token.json")
[[ -n $TOKEN ]] || fail "no access_token in $(cat "$DATA_DIR/token.json")"
step "access token issued by POST /oauth2/token (client_credentials, scope \"READ WRITE\", 3600 s): $TOKEN"
# A second token without READ, the scope VerifyReadScope requires: the
# harness's FaultRule answers it with the custom 403.
status=$(get_token WRITE)
[[ $status == 200 ]] || fail "POST /oauth2/token (scope WRITE) answered HTTP $status: $(cat "$DATA_DIR/token.json")"
WRITE_TOKEN=$(sed -n 's/.*"access_token" *: *"\([^"]*\)".*/\1/p' "$DATA_DIR/token.json")
[[ -n $WRITE_TOKEN ]] || fail "no access_token in $(cat "$DATA_DIR/token.json")"
step "access token without READ (scope \"WRITE\"): $WRITE_TOKEN"

# ------------------------------------------------------------------ ready
cat <<EOF

Ready. Try these in another terminal (the access log lines appear below):

# OAuthV2 VerifyAccessToken (VerifyReadScope: the token must hold READ): a
# Bearer token; its variables (client_id, scope) are copied into request
# headers (x-client-id, x-verified-scope)
curl -s '$PROXY_URL/hello' -H 'Authorization: Bearer $TOKEN'

# Fault rules (the configuration's fault_handling): without a token, the
# harness's own 401, a JSON body and a WWW-Authenticate header, in place of
# Apigee's (VerifyAccessToken runs unless the request carries
# ?access_token=: a step condition)
curl -si '$PROXY_URL/hello'

# ...and a token without the READ scope (InsufficientScope): the custom 403
curl -si '$PROXY_URL/hello' -H 'Authorization: Bearer $WRITE_TOKEN'

# GetOAuthV2Info: the token from ?access_token=, its variables copied into
# request headers (x-developer-email, x-scope, ...) that the echo upstream shows
curl -s '$PROXY_URL/hello?access_token=$TOKEN'

# SetOAuthV2Info, when there is a department_id (a step condition): set the
# custom attribute department.id on the token...
curl -s '$PROXY_URL/hello?access_token=$TOKEN&department_id=sales'

# ...and read it back on the next request (x-department-id)
curl -s '$PROXY_URL/hello?access_token=$TOKEN'

# An unknown token ends the request: GetOAuthV2Info's invalid_access_token
# (a 500 with Apigee's JSON body), which the same FaultRule answers with the
# custom 401
curl -si '$PROXY_URL/hello?access_token=not-a-real-token'

# The filter's counters
curl -s http://127.0.0.1:${ADMIN_PORT}/stats | grep ${STATS_PREFIX}

Envoy's log: $DATA_DIR/envoy.log. Press Ctrl-C to stop everything.
Access log (one JSON line per request):
EOF

# Wait until Ctrl-C, or until one of the processes exits on its own.
set +e
wait -n "${PIDS[@]}"
code=$?
set -e
for i in "${!PIDS[@]}"; do
  if ! kill -0 "${PIDS[i]}" 2>/dev/null; then
    printf 'run-harness: %s exited (status %s); see %s/%s.log\n' "${NAMES[i]}" "$code" "$DATA_DIR" "${NAMES[i]}" >&2
  fi
done
exit 1
