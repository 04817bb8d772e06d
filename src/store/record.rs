//! What both backends know of the records they keep: each record's entity name (in errors),
//! id and creation time, the order listings return (oldest first, then by id), an
//! organisation's share of a listing, and the version an optimistic update writes.

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::model::org::{ApiKeyRecord, Assistant, SipTrunk};
use crate::model::webhook::WebhookDelivery;
use crate::model::{Agent, Summary, Transcript, Transfer};

/// A record kept by id and listed oldest first.
pub(crate) trait Record {
    /// The entity's name in errors (`agent`, `webhook delivery`, ...).
    const ENTITY: &'static str;
    /// Its id.
    fn id(&self) -> &str;
    /// When it was created.
    fn created_at(&self) -> DateTime<Utc>;
    /// Listing order: creation time, then id.
    fn order_key(&self) -> (DateTime<Utc>, &str) {
        (self.created_at(), self.id())
    }
}

/// A record under optimistic concurrency: every update must name the version it read.
pub(crate) trait Versioned: Record {
    /// The version (0 for a record stored before versions, 1 once created).
    fn version(&self) -> u64;
    /// Sets the version.
    fn set_version(&mut self, version: u64);
}

/// A record owned by an organisation.
pub(crate) trait OrgRecord: Record {
    /// Its organisation.
    fn org_id(&self) -> &str;
}

macro_rules! record {
    ($ty:ty, $entity:literal, $id:ident) => {
        impl Record for $ty {
            const ENTITY: &'static str = $entity;
            fn id(&self) -> &str {
                &self.$id
            }
            fn created_at(&self) -> DateTime<Utc> {
                self.created_at
            }
        }
    };
    ($ty:ty, $entity:literal, $id:ident, org) => {
        record!($ty, $entity, $id);
        impl OrgRecord for $ty {
            fn org_id(&self) -> &str {
                &self.org_id
            }
        }
    };
}

/// Implements [`Versioned`] for records whose version is their `version` field.
macro_rules! versioned {
    ($($ty:ty),*) => {
        $(impl Versioned for $ty {
            fn version(&self) -> u64 {
                self.version
            }
            fn set_version(&mut self, version: u64) {
                self.version = version;
            }
        })*
    };
}

record!(Agent, "agent", agent_id);
record!(Transfer, "transfer", transfer_id);
record!(Transcript, "transcript", transcript_id);
record!(Summary, "summary", summary_id);
record!(WebhookDelivery, "webhook delivery", delivery_id);
record!(ApiKeyRecord, "api key", key_id, org);
record!(Assistant, "assistant", assistant_id, org);
record!(SipTrunk, "sip trunk", trunk_id, org);
versioned!(Agent, Assistant, WebhookDelivery);

/// Sorts records oldest first, then by id.
pub(crate) fn oldest_first<T: Record>(records: &mut [T]) {
    records.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
}

/// The records of one organisation (`Some`) or of all (`None`), oldest first.
pub(crate) fn of_org<T: OrgRecord>(mut records: Vec<T>, org_id: Option<&str>) -> Vec<T> {
    records.retain(|r| org_id.is_none_or(|o| r.org_id() == o));
    oldest_first(&mut records);
    records
}

/// The version after `version`; a backend error in the (unreachable) case of overflow.
pub(crate) fn bumped(entity: &str, id: &str, version: u64) -> Result<u64, StoreError> {
    version.checked_add(1).ok_or_else(|| {
        StoreError::backend(
            format!("updating {entity} {id}"),
            format!("{entity} version overflowed u64"),
        )
    })
}

/// The version an update expecting version `expected` writes over a record stored with
/// version `stored` (`None`: no such record): `NotFound`, `VersionConflict`, or the next one.
pub(crate) fn next_version(
    entity: &'static str,
    id: &str,
    stored: Option<u64>,
    expected: u64,
) -> Result<u64, StoreError> {
    match stored {
        None => Err(StoreError::NotFound {
            entity,
            id: id.to_owned(),
        }),
        Some(v) if v != expected => Err(StoreError::VersionConflict {
            entity,
            id: id.to_owned(),
            expected,
        }),
        Some(_) => bumped(entity, id, expected),
    }
}
