//! One suite of behavioural tests for [`intake_domain::EventStore`] and
//! [`intake_domain::TokenStore`], written once against the traits and run against every
//! implementation: the PostgreSQL store (in `intake-storage`'s tests, a fresh database per case)
//! and the in-memory one (in this crate's tests).
//!
//! Each case is a public `async fn` taking the store under test. The macros
//! [`for_each_event_store_case!`] and [`for_each_token_store_case!`] name every case, so a
//! runner expands one test per case and a case added here runs against every store. What only
//! one store can show (concurrent writers, the database's own columns) stays in that store's
//! tests.

pub mod cloudevents;
pub mod events;
pub mod schemas;
pub mod tokens;

/// Calls `$run!(case, case, …)` with the name of every [`events`] case.
#[macro_export]
macro_rules! for_each_event_store_case {
    ($run:ident) => {
        $run!(
            a_new_key_stores_the_event_under_the_given_id,
            a_retry_with_the_same_key_returns_the_original_event,
            a_key_reused_with_another_payload_names_the_original_and_stores_nothing,
            keys_are_scoped_to_their_tenant,
            a_stored_event_reads_back_as_sent,
            occurred_at_reads_back_at_microsecond_precision_in_utc,
            another_tenants_or_an_unknown_event_is_not_found,
            a_batch_stores_each_new_event_under_its_id_in_request_order,
            a_batch_deduplicates_against_earlier_events_and_reports_reused_keys,
            a_key_repeated_within_a_batch_behaves_like_a_retry,
            keys_in_a_batch_are_scoped_to_the_tenant,
            a_thousand_items_go_in_one_batch,
            the_feed_pages_through_events_in_insertion_order,
            a_retry_does_not_add_to_the_feed,
            the_feed_filters_by_event_type,
            tenants_see_only_their_own_feed,
            an_event_reads_back_with_the_schema_version_it_was_checked_against,
            a_cloudevent_keeps_its_context,
        );
    };
}

/// Calls `$run!(case, case, …)` with the name of every [`schemas`] case.
#[macro_export]
macro_rules! for_each_schema_store_case {
    ($run:ident) => {
        $run!(
            versions_count_from_one_and_an_unchanged_schema_creates_nothing,
            a_delete_stops_validation_keeps_history_and_the_numbering_continues,
            a_type_without_a_schema_has_nothing,
            tenants_have_their_own_schemas,
        );
    };
}

/// Calls `$run!(case, case, …)` with the name of every [`tokens`] case.
#[macro_export]
macro_rules! for_each_token_store_case {
    ($run:ident) => {
        $run!(
            a_created_token_is_found_by_the_hash_of_its_secret,
            a_revoked_token_is_no_longer_found_but_still_listed,
            an_unknown_token_cannot_be_revoked,
            tokens_are_listed_newest_first,
            a_token_keeps_its_own_rate_limit,
        );
    };
}
