//! Records ↔ DynamoDB items, attribute by attribute, with the classic layout's camelCase names.
//!
//! A record is turned into its camelCase JSON object (the model's own serde names, so the
//! attributes are exactly the fields of `GET /api/...`), and every top-level field becomes
//! one attribute of the item:
//!
//! | JSON value                    | attribute                                                  |
//! |-------------------------------|------------------------------------------------------------|
//! | string                        | `S` (timestamps rewritten as RFC 3339 with 9 fraction digits) |
//! | number                        | `N`                                                        |
//! | boolean                       | `BOOL`                                                     |
//! | `null` / an absent `Option`   | no attribute (classic style: absent, not `NULL`)          |
//! | free-form JSON (`metadata`, event `data` and `audience`, the machine `state`) | `S` holding JSON text |
//!
//! Free-form JSON is kept as JSON text rather than a DynamoDB map because DynamoDB cannot
//! hold every JSON value faithfully (numbers are limited to 38 digits and 1E-130..1E+126,
//! empty map keys and set semantics differ), and the store must give back exactly what it
//! was given. Timestamps are written with a fixed number of fraction digits so that they
//! sort as text in the order they happened (the classic layout's writers wrote `toISOString()`, 3 digits; both
//! read back).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Number, Value};

use crate::store::StoreError;

/// One DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// Attributes that hold timestamps (rewritten in the canonical fixed-width form).
const TIME_FIELDS: &[&str] = &["createdAt", "endAt", "updatedAt", "endedAt", "at"];

/// Why an item could not be made or read; wrapped into [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The record did not serialise to a JSON object.
    #[error("the record is not a JSON object")]
    NotAnObject,
    /// JSON (de)serialisation failed.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// An attribute has a DynamoDB type this store never writes.
    #[error("attribute {name} has an unexpected DynamoDB type ({kind})")]
    UnexpectedType {
        /// The attribute.
        name: String,
        /// What it holds.
        kind: &'static str,
    },
    /// A number attribute does not fit a JSON number.
    #[error("attribute {name} holds the number {value:?}, which is not a JSON number")]
    BadNumber {
        /// The attribute.
        name: String,
        /// Its text.
        value: String,
    },
    /// A JSON-text attribute does not hold JSON.
    #[error("attribute {name} does not hold JSON text: {source}")]
    BadJson {
        /// The attribute.
        name: String,
        /// Why.
        source: serde_json::Error,
    },
}

/// The short name of an attribute's type, for messages.
fn kind_of(v: &AttributeValue) -> &'static str {
    match v {
        AttributeValue::S(_) => "S",
        AttributeValue::N(_) => "N",
        AttributeValue::Bool(_) => "BOOL",
        AttributeValue::Null(_) => "NULL",
        AttributeValue::M(_) => "M",
        AttributeValue::L(_) => "L",
        AttributeValue::B(_) => "B",
        AttributeValue::Ss(_) => "SS",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::Bs(_) => "BS",
        _ => "unknown",
    }
}

/// Rewrites an RFC 3339 timestamp in the canonical form (UTC, 9 fraction digits, `Z`);
/// anything else is kept as it is.
fn canonical_time(text: &str) -> String {
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => t
            .with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Nanos, true),
        Err(_) => text.to_owned(),
    }
}

/// The canonical text of an instant (what [`to_item`] writes for timestamps).
pub fn time_text(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Turns a record into an item. `json_fields` name the fields kept as JSON text.
pub fn to_item<T: Serialize>(record: &T, json_fields: &[&str]) -> Result<Item, CodecError> {
    let Value::Object(map) = serde_json::to_value(record)? else {
        return Err(CodecError::NotAnObject);
    };
    let mut item = Item::with_capacity(map.len());
    for (name, value) in map {
        if json_fields.contains(&name.as_str()) {
            let text = serde_json::to_string(&value)?;
            item.insert(name, AttributeValue::S(text));
            continue;
        }
        let attr = match value {
            Value::Null => continue,
            Value::Bool(b) => AttributeValue::Bool(b),
            Value::Number(n) => AttributeValue::N(n.to_string()),
            Value::String(s) if TIME_FIELDS.contains(&name.as_str()) => {
                AttributeValue::S(canonical_time(&s))
            }
            Value::String(s) => AttributeValue::S(s),
            nested @ (Value::Array(_) | Value::Object(_)) => {
                // Not expected for the records of this store; keep it faithfully as JSON text.
                AttributeValue::S(serde_json::to_string(&nested)?)
            }
        };
        item.insert(name, attr);
    }
    Ok(item)
}

/// Parses the text of an `N` attribute as a JSON number (integers exactly).
fn number(name: &str, text: &str) -> Result<Number, CodecError> {
    let bad = || CodecError::BadNumber {
        name: name.to_owned(),
        value: text.to_owned(),
    };
    if let Ok(u) = text.parse::<u64>() {
        return Ok(Number::from(u));
    }
    if let Ok(i) = text.parse::<i64>() {
        return Ok(Number::from(i));
    }
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .ok_or_else(bad)
}

/// Reads a record from an item. `json_fields` name the fields kept as JSON text; attributes
/// the record does not know (such as `version` or `state` of a call) are ignored by serde.
pub fn from_item<T: DeserializeOwned>(item: &Item, json_fields: &[&str]) -> Result<T, CodecError> {
    let mut map = Map::with_capacity(item.len());
    for (name, attr) in item {
        let value = match attr {
            AttributeValue::S(s) if json_fields.contains(&name.as_str()) => serde_json::from_str(s)
                .map_err(|source| CodecError::BadJson {
                    name: name.clone(),
                    source,
                })?,
            AttributeValue::S(s) => Value::String(s.clone()),
            AttributeValue::N(n) => Value::Number(number(name, n)?),
            AttributeValue::Bool(b) => Value::Bool(*b),
            AttributeValue::Null(_) => Value::Null,
            other => {
                return Err(CodecError::UnexpectedType {
                    name: name.clone(),
                    kind: kind_of(other),
                })
            }
        };
        map.insert(name.clone(), value);
    }
    Ok(serde_json::from_value(Value::Object(map))?)
}

/// A string attribute.
pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute.
pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The string value of an attribute, if it is one.
pub fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(s)) => Some(s),
        _ => None,
    }
}

/// The unsigned integer value of an attribute, if it is one.
pub fn get_u64(item: &Item, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse().ok(),
        _ => None,
    }
}

/// The integer value of an attribute, if it is one.
pub fn get_i64(item: &Item, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse().ok(),
        _ => None,
    }
}

/// DynamoDB's size of an item as it counts it against the 400 KB limit: the UTF-8 length of
/// every attribute name plus the size of every value (strings by UTF-8 length, numbers by
/// an upper bound of their encoding, 1 byte for booleans and nulls; nested values add 3
/// bytes of overhead per element, which this store never writes but counts anyway).
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        // Up to 38 significant digits in ~21 bytes; the text length is an upper bound.
        AttributeValue::N(n) => n.len().div_ceil(2) + 1,
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Ss(list) => list.iter().map(String::len).sum(),
        AttributeValue::Ns(list) => list.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        AttributeValue::Bs(list) => list.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(list) => 3 + list.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        _ => 0,
    }
}

/// Wraps a codec failure with what the store was doing.
pub fn codec_err(context: impl Into<String>) -> impl FnOnce(CodecError) -> StoreError {
    let context = context.into();
    move |e| StoreError::backend(context, e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Agent, AgentKind, AgentStatus, Call, CallStatus};
    use serde_json::json;

    fn call() -> Call {
        Call {
            call_id: "call-1".into(),
            caller_id: "caller-1".into(),
            caller_name: String::new(),
            reason: "r".into(),
            agent_a_id: Some("alice".into()),
            agent_b_id: None,
            owner_id: Some("alice".into()),
            offered_to: None,
            requested_agent_id: None,
            status: CallStatus::OnHold,
            main_room: "call-1--main".into(),
            hold_room: "call-1--hold".into(),
            open_transfer_id: None,
            last_summary_id: None,
            end_reason: None,
            created_at: DateTime::from_timestamp(1_750_000_000, 5_000_000).unwrap(),
            end_at: None,
            metadata: json!({"big": 1e300, "": [1, "x"], "neg": -7, "u": 18446744073709551615u64}),
            channel: Default::default(),
            caller_number: None,
            org_id: None,
            direction: Default::default(),
            assistant_id: None,
            outbound: None,
            recording: None,
        }
    }

    #[test]
    fn a_call_round_trips_with_seed_attribute_names_and_types() {
        let c = call();
        let item = to_item(&c, &["metadata"]).unwrap();
        assert_eq!(get_s(&item, "callId"), Some("call-1"));
        assert_eq!(get_s(&item, "agentAId"), Some("alice"));
        assert_eq!(get_s(&item, "status"), Some("on_hold"));
        assert_eq!(
            get_s(&item, "createdAt"),
            Some("2025-06-15T15:06:40.005000000Z"),
            "timestamps are fixed-width"
        );
        assert!(!item.contains_key("agentBId"), "absent options are absent");
        assert!(!item.contains_key("endAt"));
        assert_eq!(
            get_s(&item, "callerName"),
            Some(""),
            "empty strings are kept"
        );
        let back: Call = from_item(&item, &["metadata"]).unwrap();
        assert_eq!(back, c, "every field, metadata included, round-trips");
    }

    #[test]
    fn seed_items_read_with_defaults() {
        // An agent as the classic layout's writers wrote it: no kind, status or version; a 3-digit timestamp.
        let item: Item = [
            ("agentId", s("agent-seed")),
            ("name", s("Seed")),
            ("active", AttributeValue::Bool(true)),
            ("createdAt", s("2024-01-02T03:04:05.678Z")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let a: Agent = from_item(&item, &[]).unwrap();
        assert_eq!(a.agent_id, "agent-seed");
        assert_eq!(
            (a.kind, a.status, a.version),
            (AgentKind::Web, AgentStatus::Available, 0)
        );
        assert_eq!(a.created_at.timestamp_subsec_millis(), 678);
    }

    #[test]
    fn unexpected_types_and_bad_json_are_errors() {
        let mut item = to_item(&call(), &["metadata"]).unwrap();
        item.insert("metadata".into(), s("{not json"));
        assert!(matches!(
            from_item::<Call>(&item, &["metadata"]),
            Err(CodecError::BadJson { .. })
        ));
        item.insert("metadata".into(), AttributeValue::Ss(vec!["a".into()]));
        assert!(matches!(
            from_item::<Call>(&item, &["metadata"]),
            Err(CodecError::UnexpectedType { kind: "SS", .. })
        ));
    }

    #[test]
    fn item_size_counts_names_and_values() {
        let item: Item = [("ab".to_owned(), s("xyz")), ("n".to_owned(), n(12345))]
            .into_iter()
            .collect();
        assert_eq!(item_size(&item), 2 + 3 + 1 + 4);
    }
}
