//! Turning sqlx errors into the domain's.

use intake_domain::StoreError;

/// A failure to reach the database (retryable: 503), a value the database refuses (400), or
/// anything else (500).
pub(crate) fn classify(error: sqlx::Error) -> StoreError {
    if is_unavailable(&error) {
        StoreError::Unavailable(error.into())
    } else if is_data_exception(&error) {
        StoreError::Refused(error.into())
    } else {
        StoreError::Unknown(error.into())
    }
}

/// SQLSTATE class 22: a value out of range, an unsupported escape and the like. Validation
/// should stop these first; this keeps any that slip through from becoming a 500.
fn is_data_exception(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22")))
}

fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 57P0x: the server is shutting down or starting;
            // 53300: too many connections.
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }),
        _ => false,
    }
}
