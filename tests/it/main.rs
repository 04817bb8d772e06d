//! The integration test binary: the real server on port 0, real sockets, and the fakes of
//! the cloud services it talks to.

#[path = "../support/mod.rs"]
mod support;

mod authz;
mod briefing;
mod browser;
mod chaos;
mod docs;
mod dynamo;
mod failures;
mod flows;
mod hostile;
mod layering;
mod lifecycle;
mod livekit_fake;
mod operations;
mod orgs;
mod outbound;
mod races;
mod recovery;
mod resources;
mod schemathesis;
mod security;
mod twilio;
mod twilio_fake;
mod twilio_lib;
mod wallboard;
mod webhooks;
