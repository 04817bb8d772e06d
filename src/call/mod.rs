//! Calls: the pure [`machine::CallMachine`], the [`actor::CallActor`] that carries out its
//! effects, and the [`registry::Registry`] that supervises actors and routes queued calls.

pub mod actor;
pub mod machine;
pub mod notice;
pub mod registry;
