//! Tests of the LiveKit fake itself, driven by the official livekit-api client.
