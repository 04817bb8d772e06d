//! The media planes the switchboard steers but never carries audio through: LiveKit rooms.

pub mod livekit;
