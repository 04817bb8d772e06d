#!/usr/bin/env python3
"""Independent cross-check of Twilio webhook signatures and Access Tokens with Twilio's
official Python library (the `twilio` package).

Usage (one JSON document on stdin, one on stdout):
  twilio_check.py signatures
      stdin:  {"token": AUTH_TOKEN, "cases": [{"url": URL, "params": [[name, value], ...],
               "ours": SIGNATURE}, or {"url": URL, "body": JSON_BODY, "ours": SIGNATURE}, ...]}
      stdout: [{"python": RequestValidator.compute_signature(url, params),
                "accepts_ours": RequestValidator.validate(url, params or body, ours)}, ...]
      Repeated names are passed as a multi-valued dict (like Flask's MultiDict).
  twilio_check.py token
      stdin:  {"account_sid", "key_sid", "secret", "identity", "app_sid" (or null),
               "params" (object), "incoming_allow", "ttl", "now", "ours": JWT}
      stdout: {"python": {"header": ..., "payload": ...}  # AccessToken + VoiceGrant, minted
                                                          # with the clock set to `now`
               "ours": {"header": ..., "payload": ...}}   # our JWT, verified with PyJWT and
                                                          # twilio's AccessToken.from_jwt

Exit status: 0 on success, 1 when a check fails (e.g. PyJWT refuses our token), 2 on usage
errors or when the twilio package is missing (pip install -r tests/py/requirements.txt).
"""

import json
import sys
import time


class MultiDict(dict):
    """name -> [values]; iterating gives the names, getall() the values (Flask's MultiDict)."""

    def getall(self, name):
        return self[name]


def _load():
    try:
        import jwt  # noqa: PLC0415 - PyJWT, a dependency of twilio
        from twilio.jwt.access_token import AccessToken  # noqa: PLC0415
        from twilio.jwt.access_token.grants import VoiceGrant  # noqa: PLC0415
        from twilio.request_validator import RequestValidator  # noqa: PLC0415
    except ImportError as exc:
        print(
            f"the twilio package is not installed ({exc}); run: "
            "python3 -m pip install -r tests/py/requirements.txt",
            file=sys.stderr,
        )
        sys.exit(2)
    return jwt, AccessToken, VoiceGrant, RequestValidator


def signatures(doc, RequestValidator):
    validator = RequestValidator(doc["token"])
    out = []
    for case in doc["cases"]:
        if "body" in case:
            python = validator.compute_signature(case["url"], {})
            accepts = validator.validate(case["url"], case["body"], case["ours"])
        else:
            params = MultiDict()
            for name, value in case["params"]:
                params.setdefault(name, []).append(value)
            python = validator.compute_signature(case["url"], params)
            accepts = validator.validate(case["url"], params, case["ours"])
        out.append({"python": python, "accepts_ours": accepts})
    return out


def token(doc, jwt, AccessToken, VoiceGrant):
    real_time = time.time
    time.time = lambda: float(doc["now"])
    try:
        access = AccessToken(
            doc["account_sid"], doc["key_sid"], doc["secret"], identity=doc["identity"], ttl=doc["ttl"]
        )
        access.add_grant(
            VoiceGrant(
                incoming_allow=doc["incoming_allow"],
                outgoing_application_sid=doc["app_sid"],
                outgoing_application_params=doc["params"] or None,
            )
        )
        minted = access.to_jwt()
    finally:
        time.time = real_time
    python = {
        "header": jwt.get_unverified_header(minted),
        "payload": jwt.decode(minted, doc["secret"], algorithms=["HS256"]),
    }
    ours = doc["ours"]
    # Twilio's own decoder (signature, exp and nbf checked), then PyJWT for the payload.
    AccessToken.from_jwt(ours, doc["secret"])
    theirs = {
        "header": jwt.get_unverified_header(ours),
        "payload": jwt.decode(ours, doc["secret"], algorithms=["HS256"]),
    }
    return {"python": python, "ours": theirs}


def main(argv):
    if len(argv) != 2 or argv[1] not in ("signatures", "token"):
        print(__doc__, file=sys.stderr)
        return 2
    jwt, AccessToken, VoiceGrant, RequestValidator = _load()
    doc = json.load(sys.stdin)
    try:
        if argv[1] == "signatures":
            result = signatures(doc, RequestValidator)
        else:
            result = token(doc, jwt, AccessToken, VoiceGrant)
    except Exception as exc:  # noqa: BLE001 - any failure of the library is a failed check
        print(f"{argv[1]} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
