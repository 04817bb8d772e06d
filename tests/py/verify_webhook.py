#!/usr/bin/env python3
"""Verifies a switchboard end-of-call webhook the way a receiver should (docs/webhooks.md,
"Verifying a webhook"); standard library only.

    verify_webhook.py --secret S --header 't=...,v1=...' --body-file body.json \
        [--tolerance 300] [--now UNIX_SECS]

Exits 0 and prints "ok" when one v1 signature matches HMAC-SHA256(secret, "<t>.<raw body>")
and t is within the tolerance of now; exits 1 with the reason otherwise.
"""
import argparse
import hashlib
import hmac
import sys
import time


def verify(secret: str, header: str, body: bytes, tolerance: int = 300, now=None) -> None:
    """Raises ValueError unless the header signs the body; the recipe of docs/webhooks.md."""
    t, sigs = None, []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise ValueError("malformed header")
        if key == "t":
            t = int(value)
        elif key == "v1":
            sigs.append(value)
    if t is None or not sigs:
        raise ValueError("no timestamp or no v1 signature")
    now = int(time.time()) if now is None else now
    if abs(now - t) > tolerance:
        raise ValueError(f"timestamp {t} is {now - t} s away from now (replay?)")
    signed = str(t).encode() + b"." + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, s) for s in sigs):
        raise ValueError("signature mismatch")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--secret", required=True)
    p.add_argument("--header", required=True)
    p.add_argument("--body-file", required=True)
    p.add_argument("--tolerance", type=int, default=300)
    p.add_argument("--now", type=int)
    a = p.parse_args()
    with open(a.body_file, "rb") as f:
        body = f.read()
    try:
        verify(a.secret, a.header, body, a.tolerance, a.now)
    except ValueError as e:
        print(f"refused: {e}")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
