//! The conformance suite every `Store` backend must pass, unchanged. Compiled for tests only,
//! one file a role: [`agents`], [`calls`] and [`indexes`], [`transcripts`], [`org`],
//! [`webhooks`]; [`fixtures`] builds the records.
//!
//! Each check is a `pub async fn check(store: &dyn Store)` that panics (with a message) when
//! the backend misbehaves. Checks use fresh uuid-based ids and only look at their own
//! records, so they can run concurrently against one shared backend (a DynamoDB table) and
//! never assume the store is empty.
//!
//! A backend runs the whole suite with [`store_conformance_tests!`](crate::store_conformance_tests),
//! which expands to one `#[tokio::test]` per check so that a failure names the behaviour:
//!
//! ```ignore
//! #[cfg(test)]
//! mod tests {
//!     async fn temp_store() -> (EmbeddedStore, tempfile::TempDir) {
//!         let dir = tempfile::tempdir().unwrap();
//!         let store = EmbeddedStore::open(dir.path()).unwrap();
//!         (store, dir) // the guard (here the temp dir) lives as long as the test
//!     }
//!     crate::store_conformance_tests!(temp_store());
//! }
//! ```

mod agents;
mod calls;
pub mod fixtures;
mod indexes;
mod org;
mod transcripts;
mod webhooks;

pub use self::agents::*;
pub use self::calls::*;
pub use self::indexes::*;
pub use self::org::*;
pub use self::transcripts::*;
pub use self::webhooks::*;

use super::Store;

/// Expands to one `#[tokio::test]` per conformance check, run against a fresh store.
///
/// The argument is an expression that evaluates to a future (typically a call of an
/// `async fn`) yielding `(store, guard)`: `store` is any sized type implementing
/// [`Store`](crate::store::Store), and `guard` is kept alive until the check ends (a
/// `tempfile::TempDir`, a client handle, or `()`). The expression is evaluated anew for
/// every test. Outer attributes given before the expression (such as
/// `#[ignore = "needs DynamoDB"]`) are put on every generated test.
///
/// ```ignore
/// crate::store_conformance_tests!(temp_store());
/// crate::store_conformance_tests!(#[ignore = "needs DynamoDB Local"] dynamo_store());
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    (@each [$($attrs:tt)*] $factory:expr; $check:ident, $($rest:ident,)*) => {
        $($attrs)*
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let (store, _guard) = $factory.await;
            $crate::store::conformance::$check(&store).await;
        }
        $crate::store_conformance_tests!(@each [$($attrs)*] $factory; $($rest,)*);
    };
    (@each [$($attrs:tt)*] $factory:expr;) => {};
    ($(#[$meta:meta])* $factory:expr $(,)?) => {
        $crate::store_conformance_tests!(@each [$(#[$meta])*] $factory;
            ping_answers,
            agent_create_get_update,
            agent_create_twice_is_already_exists,
            agent_stale_update_is_version_conflict,
            agent_update_of_missing_is_not_found,
            agent_list_orders_by_created_at_then_id,
            agent_concurrent_updates_one_wins,
            call_create_starts_at_version_one,
            call_update_bumps_version,
            call_stale_update_is_version_conflict,
            call_double_create_is_already_exists,
            call_update_of_missing_is_not_found,
            commit_with_duplicate_event_changes_nothing,
            create_with_duplicate_event_creates_nothing,
            events_since_orders_and_filters,
            calls_by_agent_cover_every_role,
            calls_by_agent_newest_first,
            unfinished_calls_exclude_ended_oldest_first,
            transfers_by_call_and_status,
            transcripts_by_call_in_order,
            summaries_by_call_in_order,
            structured_summaries_round_trip,
            rooms_by_id_and_name_replace,
            concurrent_commits_one_wins,
            concurrent_creates_one_wins,
            unknown_ids_are_none_or_empty,
            finished_calls_left_open_stay_unfinished,
            // Organisations (src/org.rs).
            org_api_keys_create_get_list_revoke,
            org_assistants_versioned_by_org,
            org_sip_trunks_by_org,
            webhook_delivery_is_created_once,
            webhook_delivery_updates_are_conditional,
            webhook_deliveries_by_call_and_pending,
        );
    };
}

/// Runs every check in sequence against one store (for a quick smoke run of a backend).
pub async fn run_all(store: &dyn Store) {
    webhook_delivery_is_created_once(store).await;
    webhook_delivery_updates_are_conditional(store).await;
    webhook_deliveries_by_call_and_pending(store).await;
    ping_answers(store).await;
    agent_create_get_update(store).await;
    agent_create_twice_is_already_exists(store).await;
    agent_stale_update_is_version_conflict(store).await;
    agent_update_of_missing_is_not_found(store).await;
    agent_list_orders_by_created_at_then_id(store).await;
    agent_concurrent_updates_one_wins(store).await;
    call_create_starts_at_version_one(store).await;
    call_update_bumps_version(store).await;
    call_stale_update_is_version_conflict(store).await;
    call_double_create_is_already_exists(store).await;
    call_update_of_missing_is_not_found(store).await;
    commit_with_duplicate_event_changes_nothing(store).await;
    create_with_duplicate_event_creates_nothing(store).await;
    events_since_orders_and_filters(store).await;
    calls_by_agent_cover_every_role(store).await;
    calls_by_agent_newest_first(store).await;
    unfinished_calls_exclude_ended_oldest_first(store).await;
    transfers_by_call_and_status(store).await;
    transcripts_by_call_in_order(store).await;
    summaries_by_call_in_order(store).await;
    structured_summaries_round_trip(store).await;
    rooms_by_id_and_name_replace(store).await;
    concurrent_commits_one_wins(store).await;
    concurrent_creates_one_wins(store).await;
    unknown_ids_are_none_or_empty(store).await;
    finished_calls_left_open_stay_unfinished(store).await;
    org_api_keys_create_get_list_revoke(store).await;
    org_assistants_versioned_by_org(store).await;
    org_sip_trunks_by_org(store).await;
}

/// The ids of `items` (by `id`) that are in `ours`, in the order the store returned them.
fn only_ours<T>(items: &[T], ours: &[&str], id: impl Fn(&T) -> &str) -> Vec<String> {
    items
        .iter()
        .map(&id)
        .filter(|i| ours.contains(i))
        .map(str::to_owned)
        .collect()
}

/// Converts a list of `&str` to owned strings (for comparisons).
fn owned(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}
