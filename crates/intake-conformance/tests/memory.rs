//! The conformance suite against the in-memory stores.

use intake_domain::memory::{MemoryEventStore, MemorySchemaStore, MemoryTokenStore};

mod events {
    use super::*;

    macro_rules! run {
        ($($case:ident),* $(,)?) => {$(
            #[tokio::test]
            async fn $case() {
                intake_conformance::events::$case(&MemoryEventStore::default()).await;
            }
        )*};
    }

    intake_conformance::for_each_event_store_case!(run);
}

mod tokens {
    use super::*;

    macro_rules! run {
        ($($case:ident),* $(,)?) => {$(
            #[tokio::test]
            async fn $case() {
                intake_conformance::tokens::$case(&MemoryTokenStore::default()).await;
            }
        )*};
    }

    intake_conformance::for_each_token_store_case!(run);
}

mod schemas {
    use super::*;

    macro_rules! run {
        ($($case:ident),* $(,)?) => {$(
            #[tokio::test]
            async fn $case() {
                intake_conformance::schemas::$case(&MemorySchemaStore::default()).await;
            }
        )*};
    }

    intake_conformance::for_each_schema_store_case!(run);
}
