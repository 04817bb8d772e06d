//! Calls: the pure [`machine::CallMachine`], the [`actor::CallActor`] that carries out its
//! effects, the [`registry::Registry`] that supervises actors and routes queued calls, and
//! the [`service::CallService`] every transport goes through.

pub mod actor;
pub mod machine;
pub mod notice;
pub mod registry;
pub mod service;
