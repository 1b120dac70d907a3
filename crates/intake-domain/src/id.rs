//! Public ids: a time-ordered UUID (v7) written as a prefix and 32 hex digits (`evt_…`,
//! `era_…`), defined once by [`prefixed_id!`].

/// Defines a public id type over a UUIDv7 (`generate`, `from_uuid`, `as_uuid`, `Display` as
/// prefix + 32 hex digits, `FromStr` of exactly that) and its parse error.
macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $error:ident, $prefix:literal, $what:literal) => {
        #[doc = concat!("A string that is not ", $what, " (`", $prefix, "` followed by 32 hex digits).")]
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        #[error("{0:?} is not {what} ({prefix} followed by 32 hex digits)", what = $what, prefix = $prefix)]
        pub struct $error(String);

        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(uuid::Uuid);

        impl $name {
            const PREFIX: &'static str = $prefix;

            /// A new id, made at `now`.
            pub fn generate(now: chrono::DateTime<chrono::Utc>) -> Self {
                let secs = u64::try_from(now.timestamp()).unwrap_or(0);
                let ts = uuid::Timestamp::from_unix(
                    uuid::NoContext,
                    secs,
                    now.timestamp_subsec_nanos(),
                );
                Self(uuid::Uuid::new_v7(ts))
            }

            /// Wraps a UUID read from storage.
            pub fn from_uuid(uuid: uuid::Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID behind the id.
            pub fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}{}", Self::PREFIX, self.0.simple())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let invalid = || $error(s.to_owned());
                let hex = s.strip_prefix(Self::PREFIX).ok_or_else(invalid)?;
                if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid());
                }
                uuid::Uuid::try_parse(hex).map(Self).map_err(|_| invalid())
            }
        }
    };
}

pub(crate) use prefixed_id;
