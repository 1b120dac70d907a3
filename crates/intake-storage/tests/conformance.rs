//! The conformance suite against the PostgreSQL store, each case on a fresh, migrated database.

use intake_storage::PgStore;
use sqlx::PgPool;

mod events {
    use super::*;

    macro_rules! run {
        ($($case:ident),* $(,)?) => {$(
            #[sqlx::test(migrator = "intake_storage::MIGRATOR")]
            async fn $case(pool: PgPool) {
                intake_conformance::events::$case(&PgStore::new(pool)).await;
            }
        )*};
    }

    intake_conformance::for_each_event_store_case!(run);
}

mod tokens {
    use super::*;

    macro_rules! run {
        ($($case:ident),* $(,)?) => {$(
            #[sqlx::test(migrator = "intake_storage::MIGRATOR")]
            async fn $case(pool: PgPool) {
                intake_conformance::tokens::$case(&PgStore::new(pool)).await;
            }
        )*};
    }

    intake_conformance::for_each_token_store_case!(run);
}

mod schemas {
    use super::*;

    macro_rules! run {
        ($($case:ident),* $(,)?) => {$(
            #[sqlx::test(migrator = "intake_storage::MIGRATOR")]
            async fn $case(pool: PgPool) {
                intake_conformance::schemas::$case(&PgStore::new(pool)).await;
            }
        )*};
    }

    intake_conformance::for_each_schema_store_case!(run);
}
