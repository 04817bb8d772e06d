#!/usr/bin/env python3
"""Independent cross-check of LiveKit tokens and webhooks with LiveKit's official Python SDK.

Usage:
  livekit_check.py verify-token KEY SECRET TOKEN
      Verifies TOKEN with livekit.api.TokenVerifier and prints
      {"identity": ..., "name": ..., "video": {camelCase grants}} as JSON.
  livekit_check.py sign-webhook KEY SECRET  < body
      Prints the Authorization JWT LiveKit would send with this raw body
      (AccessToken(...).with_sha256(base64(sha256(body))).to_jwt()).
  livekit_check.py verify-webhook KEY SECRET AUTH  < body
      Verifies the raw body and its Authorization JWT with livekit.api.WebhookReceiver and
      prints the event name.

Exit status: 0 on success, 1 when verification fails, 2 on usage errors or when the
livekit-api package is missing (pip install -r tests/py/requirements.txt).
"""

import base64
import dataclasses
import hashlib
import json
import re
import sys


def _camel(name: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)


def _load_api():
    try:
        from livekit import api  # noqa: PLC0415 - imported lazily to report a clear error
    except ImportError as exc:
        print(
            f"livekit-api is not installed ({exc}); run: "
            "python3 -m pip install -r tests/py/requirements.txt",
            file=sys.stderr,
        )
        sys.exit(2)
    return api


def verify_token(api, key: str, secret: str, token: str) -> int:
    claims = api.TokenVerifier(key, secret).verify(token)
    video = {}
    if claims.video is not None:
        video = {
            _camel(k): v for k, v in dataclasses.asdict(claims.video).items() if v is not None
        }
    print(json.dumps({"identity": claims.identity, "name": claims.name, "video": video}))
    return 0


def sign_webhook(api, key: str, secret: str, body: bytes) -> int:
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    print(api.AccessToken(key, secret).with_sha256(digest).to_jwt())
    return 0


def verify_webhook(api, key: str, secret: str, auth: str, body: bytes) -> int:
    receiver = api.WebhookReceiver(api.TokenVerifier(key, secret))
    event = receiver.receive(body.decode("utf-8"), auth)
    print(event.event)
    return 0


def main(argv) -> int:
    usage = __doc__ or ""
    if len(argv) < 2:
        print(usage, file=sys.stderr)
        return 2
    command, args = argv[1], argv[2:]
    expected = {"verify-token": 3, "sign-webhook": 2, "verify-webhook": 3}
    if command not in expected or len(args) != expected[command]:
        print(usage, file=sys.stderr)
        return 2
    api = _load_api()
    try:
        if command == "verify-token":
            return verify_token(api, *args)
        body = sys.stdin.buffer.read()
        if command == "sign-webhook":
            return sign_webhook(api, args[0], args[1], body)
        return verify_webhook(api, args[0], args[1], args[2], body)
    except Exception as exc:  # noqa: BLE001 - any failure of the SDK is a verification failure
        print(f"{command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
