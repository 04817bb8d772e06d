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
  livekit_check.py drive-services URL KEY SECRET
      Drives the SIP, agent dispatch and egress services at URL with the SDK's LiveKitAPI
      (an outbound trunk, a dial-out to +15550001234 that must answer and one to
      +15550004860 that must be refused, an agent dispatch, an audio recording started and
      stopped) and prints what the SDK returned as JSON.

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


async def _drive_services(api, url: str, key: str, secret: str) -> dict:
    from livekit.protocol import agent_dispatch, egress, sip  # noqa: PLC0415

    out: dict = {}
    lkapi = api.LiveKitAPI(url, key, secret)
    try:
        trunk = await lkapi.sip.create_outbound_trunk(
            sip.CreateSIPOutboundTrunkRequest(
                trunk=sip.SIPOutboundTrunkInfo(
                    name="py", address="py.example.com", numbers=["+15550009999"]
                )
            )
        )
        out["trunk"] = trunk.sip_trunk_id
        answered = await lkapi.sip.create_sip_participant(
            sip.CreateSIPParticipantRequest(
                sip_trunk_id=trunk.sip_trunk_id,
                sip_call_to="+15550001234",
                room_name="py-sip",
                participant_identity="py-callee",
                wait_until_answered=True,
            )
        )
        out["answered"] = {
            "identity": answered.participant_identity,
            "room": answered.room_name,
            "sipCallId": answered.sip_call_id,
        }
        try:
            await lkapi.sip.create_sip_participant(
                sip.CreateSIPParticipantRequest(
                    sip_trunk_id=trunk.sip_trunk_id,
                    sip_call_to="+15550004860",
                    room_name="py-sip",
                    participant_identity="py-busy",
                    wait_until_answered=True,
                )
            )
            out["busy"] = None
        except Exception as exc:  # noqa: BLE001 - the SDK's error is what we report
            out["busy"] = {
                "type": type(exc).__name__,
                "code": getattr(exc, "code", None),
                "metadata": dict(getattr(exc, "metadata", {}) or {}),
            }
        dispatch = await lkapi.agent_dispatch.create_dispatch(
            agent_dispatch.CreateAgentDispatchRequest(
                agent_name="py-agent", room="py-sip", metadata='{"k":"v"}'
            )
        )
        listed = await lkapi.agent_dispatch.list_dispatch("py-sip")
        out["dispatch"] = {"id": dispatch.id, "listed": [d.agent_name for d in listed]}
        started = await lkapi.egress.start_room_composite_egress(
            egress.RoomCompositeEgressRequest(
                room_name="py-sip",
                audio_only=True,
                file_outputs=[
                    egress.EncodedFileOutput(
                        file_type=egress.EncodedFileType.OGG,
                        filepath="py/rec.ogg",
                        s3=egress.S3Upload(
                            bucket="py-bucket",
                            region="us-east-1",
                            access_key="py-key",
                            secret="py-secret",
                        ),
                    )
                ],
            )
        )
        stopped = await lkapi.egress.stop_egress(
            egress.StopEgressRequest(egress_id=started.egress_id)
        )
        ended = await lkapi.egress.list_egress(egress.ListEgressRequest(room_name="py-sip"))
        out["egress"] = {
            "id": started.egress_id,
            "stoppedStatus": egress.EgressStatus.Name(stopped.status),
            "locations": [f.location for e in ended.items for f in e.file_results],
        }
        await lkapi.agent_dispatch.delete_dispatch(dispatch.id, "py-sip")
        await lkapi.sip.delete_trunk(sip.DeleteSIPTrunkRequest(sip_trunk_id=trunk.sip_trunk_id))
    finally:
        await lkapi.aclose()
    return out


def drive_services(api, url: str, key: str, secret: str) -> int:
    import asyncio  # noqa: PLC0415

    print(json.dumps(asyncio.run(_drive_services(api, url, key, secret))))
    return 0


def main(argv) -> int:
    usage = __doc__ or ""
    if len(argv) < 2:
        print(usage, file=sys.stderr)
        return 2
    command, args = argv[1], argv[2:]
    expected = {"verify-token": 3, "sign-webhook": 2, "verify-webhook": 3, "drive-services": 3}
    if command not in expected or len(args) != expected[command]:
        print(usage, file=sys.stderr)
        return 2
    api = _load_api()
    try:
        if command == "verify-token":
            return verify_token(api, *args)
        if command == "drive-services":
            return drive_services(api, *args)
        body = sys.stdin.buffer.read()
        if command == "sign-webhook":
            return sign_webhook(api, args[0], args[1], body)
        return verify_webhook(api, args[0], args[1], args[2], body)
    except Exception as exc:  # noqa: BLE001 - any failure of the SDK is a verification failure
        print(f"{command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
