//! Twilio: REST client, webhook signatures, Access Tokens and TwiML.
//!
//! A self-contained library for the Twilio bridging; the call actor and the HTTP
//! webhooks use it, nothing here knows about calls or transfers.
//!
//! - [`signature`]: `X-Twilio-Signature` computation and verification (form and JSON bodies).
//! - [`token`]: Access Tokens with a Voice grant for the browser Voice SDK.
//! - [`twiml`]: the TwiML documents of `twiml/`, rendered with quick-xml so every value is
//!   escaped.
//! - [`rest`]: the typed REST client (calls, conference participants) with retries.

pub mod rest;
pub mod signature;
pub mod token;
pub mod twiml;
