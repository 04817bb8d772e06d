//! Test support: the LiveKit and Twilio fakes, the local DynamoDB settings and the `spawn_app()` helper.
#![allow(dead_code)]

pub mod app;
pub mod dynamo;
pub mod livekit;
pub mod load;
pub mod twilio;
