#!/usr/bin/env bash
# Vendors the browser SDKs the web UI loads (no CDN, no build step) from the npm registry,
# pinned: LiveKit's JS client (ES module bundle) and Twilio's Voice SDK (browser bundle that
# sets globalThis.Twilio), each with its licence, under static/vendor/.
#
# To update: change a version below, run this script, check the pages (scripts/test.sh runs
# the Chromium end-to-end tests) and commit static/vendor/.
set -euo pipefail
cd "$(dirname "$0")/.."

LIVEKIT_CLIENT_VERSION=2.23.0
TWILIO_VOICE_SDK_VERSION=2.18.5

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() { # fetch PACKAGE VERSION -> unpacked into $work/PACKAGE/package
  local dir="$work/${1//\//_}"
  mkdir -p "$dir"
  (cd "$dir" && npm pack --silent "$1@$2" >/dev/null && tar xzf ./*.tgz)
  echo "$dir/package"
}

lk=$(fetch livekit-client "$LIVEKIT_CLIENT_VERSION")
tw=$(fetch @twilio/voice-sdk "$TWILIO_VOICE_SDK_VERSION")

out=static/vendor
rm -rf "$out/livekit-client" "$out/twilio-voice-sdk"
mkdir -p "$out/livekit-client" "$out/twilio-voice-sdk"
cp "$lk/dist/livekit-client.esm.mjs" "$out/livekit-client/livekit-client.esm.mjs"
cp "$lk/LICENSE" "$out/livekit-client/LICENSE"
cp "$tw/dist/twilio.min.js" "$out/twilio-voice-sdk/twilio.min.js"
cp "$tw/LICENSE.md" "$out/twilio-voice-sdk/LICENSE.md"
cat >"$out/VERSIONS" <<VERSIONS
# Written by scripts/vendor-browser-sdks.sh; do not edit by hand.
livekit-client $LIVEKIT_CLIENT_VERSION (dist/livekit-client.esm.mjs, Apache-2.0)
@twilio/voice-sdk $TWILIO_VOICE_SDK_VERSION (dist/twilio.min.js, see LICENSE.md)
VERSIONS
echo "vendored into $out:"
cat "$out/VERSIONS"
