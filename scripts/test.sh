#!/usr/bin/env bash
# The whole test suite, from a fresh checkout: installs what the tests need beyond Cargo
# (tests/py/requirements.txt: LiveKit's and Twilio's Python libraries for the cross-checks;
# moto, Flask and boto3 for the DynamoDB tests; tests/node: Twilio's OpenAPI description and
# prism), starts a local DynamoDB (moto's server) and a mock of Twilio's API (prism), each on
# a free loopback port and stopped on exit, then runs every test. Arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

pip_install() {
  python3 -m pip install --disable-pip-version-check --no-input -q "$@" -r tests/py/requirements.txt
}
# A Debian-managed Python refuses global installs (PEP 668); the tests run the python3 on PATH.
pip_install || pip_install --break-system-packages

# --- A local DynamoDB: moto's server, every request handled atomically --------------------
# (tests/py/moto_dynamodb.py runs moto_server's own app; see its docstring for why it does not
# run `moto_server` itself.)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
moto_log=$(mktemp -t switchboard-moto.XXXXXX)
python3 tests/py/moto_dynamodb.py -H 127.0.0.1 -p "$port" >"$moto_log" 2>&1 &
moto_pid=$!
stop_moto() {
  kill "$moto_pid" 2>/dev/null || true
  wait "$moto_pid" 2>/dev/null || true
  rm -f "$moto_log"
}
stop_prism() { :; } # replaced below once the OpenAPI mock runs
trap 'stop_moto; stop_prism' EXIT

for _ in $(seq 1 150); do
  if ! kill -0 "$moto_pid" 2>/dev/null; then
    echo "scripts/test.sh: the local DynamoDB (moto) exited at start:" >&2
    cat "$moto_log" >&2
    exit 1
  fi
  if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
    break
  fi
  sleep 0.2
done
if ! python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
  echo "scripts/test.sh: the local DynamoDB (moto) did not listen on 127.0.0.1:$port within 30 s:" >&2
  cat "$moto_log" >&2
  exit 1
fi
echo "scripts/test.sh: local DynamoDB (moto $(python3 -c 'import moto; print(moto.__version__)')) on http://127.0.0.1:$port"

export SWITCHBOARD_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
# Fake credentials and a region for anything that reads the standard AWS chain; never a
# real account (the tests only talk to the endpoint above).
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_DYNAMODB

# --- Twilio's OpenAPI description, served by prism ------------------------------------------
# tests/node/package.json pins @twilio/cli-core (which ships Twilio's published OpenAPI
# description of the 2010-04-01 API) and @stoplight/prism-cli; `prism mock` validates every
# request the Twilio REST client sends (tests/it/twilio_lib.rs) and answers 422 to a malformed
# one. tests/node/form-arrays.js makes OpenAPI's default encoding of array fields in form
# bodies (the same name repeated) explicit, which prism needs to accept StatusCallbackEvent.
npm ci --prefix tests/node --no-audit --no-fund --loglevel=error >/dev/null
twilio_spec_dir=$(mktemp -d -t switchboard-twilio-spec.XXXXXX)
node tests/node/form-arrays.js \
  tests/node/node_modules/@twilio/cli-core/src/services/twilio-api/twilio_api_v2010.json \
  "$twilio_spec_dir/twilio_api_v2010.json"
prism_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
prism_log="$twilio_spec_dir/prism.log"
tests/node/node_modules/.bin/prism mock -p "$prism_port" -h 127.0.0.1 \
  "$twilio_spec_dir/twilio_api_v2010.json" >"$prism_log" 2>&1 &
prism_pid=$!
stop_prism() {
  kill "$prism_pid" 2>/dev/null || true
  wait "$prism_pid" 2>/dev/null || true
  rm -rf "$twilio_spec_dir"
}
for _ in $(seq 1 300); do
  if ! kill -0 "$prism_pid" 2>/dev/null; then
    echo "scripts/test.sh: prism (Twilio's OpenAPI mock) exited at start:" >&2
    cat "$prism_log" >&2
    exit 1
  fi
  if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $prism_port), 0.2)" 2>/dev/null; then
    break
  fi
  sleep 0.2
done
if ! python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $prism_port), 0.2)" 2>/dev/null; then
  echo "scripts/test.sh: prism did not listen on 127.0.0.1:$prism_port within 60 s:" >&2
  cat "$prism_log" >&2
  exit 1
fi
echo "scripts/test.sh: Twilio OpenAPI mock (prism $(tests/node/node_modules/.bin/prism --version)) on http://127.0.0.1:$prism_port"
export SWITCHBOARD_TEST_TWILIO_OPENAPI_MOCK="http://127.0.0.1:$prism_port"

cargo test --locked "$@"
