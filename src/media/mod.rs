//! The media planes the switchboard steers but never carries audio through: LiveKit rooms
//! and Twilio conferences.

pub mod livekit;
pub mod twilio;
