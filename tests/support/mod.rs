//! Test support: the LiveKit fake and the `spawn_app()` helper.
#![allow(dead_code)]

pub mod app;
pub mod livekit;
