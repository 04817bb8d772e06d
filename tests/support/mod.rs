//! Test support: the LiveKit and Twilio fakes, the OpenAI-compatible LLM fake, the local DynamoDB
//! settings and the `spawn_app()` helper.
#![allow(dead_code)]

pub mod app;
pub mod dynamo;
pub mod livekit;
pub mod llm;
pub mod load;
pub mod twilio;
