//! The one place database errors are classified, for PostgreSQL (SQLSTATE) and SQLite
//! (primary and extended result codes).

/// What a database error means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlErrorKind {
    /// Not reachable, busy, shutting down or timed out: the same statement may succeed later.
    Unavailable,
    /// A unique or primary key already holds the row.
    AlreadyExists,
    /// Stored data cannot be decoded.
    Corrupt,
    /// Refused for good (a constraint, a bad statement, a type mismatch).
    Refused,
}

impl SqlErrorKind {
    /// Whether retrying the statement later may succeed.
    pub fn is_transient(self) -> bool {
        self == SqlErrorKind::Unavailable
    }
}

/// PostgreSQL SQLSTATEs and SQLite result codes that mean "try again later": admin or crash
/// shutdown, cannot connect now, query canceled (statement timeout); SQLite BUSY, LOCKED,
/// BUSY_RECOVERY, BUSY_SNAPSHOT, LOCKED_SHAREDCACHE, BUSY_TIMEOUT.
const UNAVAILABLE: &[&str] = &[
    "57P01", "57P02", "57P03", "57014", "5", "6", "261", "262", "517", "773",
];

/// PostgreSQL unique violation; SQLite CONSTRAINT_UNIQUE and CONSTRAINT_PRIMARYKEY.
const ALREADY_EXISTS: &[&str] = &["23505", "2067", "1555"];

/// What `error` means for the caller.
pub fn classify(error: &sqlx::Error) -> SqlErrorKind {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => SqlErrorKind::Unavailable,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // Class 08: connection exceptions.
            Some(code) if code.starts_with("08") || UNAVAILABLE.contains(&code) => {
                SqlErrorKind::Unavailable
            }
            Some(code) if ALREADY_EXISTS.contains(&code) => SqlErrorKind::AlreadyExists,
            _ => SqlErrorKind::Refused,
        },
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => SqlErrorKind::Corrupt,
        _ => SqlErrorKind::Refused,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    #[derive(Debug)]
    struct Coded(&'static str);

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "code {}", self.0)
        }
    }

    impl std::error::Error for Coded {}

    impl sqlx::error::DatabaseError for Coded {
        fn message(&self) -> &str {
            self.0
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    #[test]
    fn database_codes_of_both_dialects() {
        use SqlErrorKind::*;
        let table = [
            // PostgreSQL
            ("08006", Unavailable),
            ("08001", Unavailable),
            ("57P01", Unavailable),
            ("57P02", Unavailable),
            ("57P03", Unavailable),
            ("57014", Unavailable),
            ("23505", AlreadyExists),
            ("23503", Refused),
            ("42P01", Refused),
            ("40001", Refused),
            // SQLite
            ("5", Unavailable),
            ("6", Unavailable),
            ("261", Unavailable),
            ("262", Unavailable),
            ("517", Unavailable),
            ("773", Unavailable),
            ("2067", AlreadyExists),
            ("1555", AlreadyExists),
            ("787", Refused),
            ("19", Refused),
            ("1", Refused),
        ];
        for (code, kind) in table {
            let error = sqlx::Error::Database(Box::new(Coded(code)));
            assert_eq!(classify(&error), kind, "code {code}");
        }
    }

    #[test]
    fn errors_without_a_code() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(classify(&io), SqlErrorKind::Unavailable);
        assert_eq!(
            classify(&sqlx::Error::PoolTimedOut),
            SqlErrorKind::Unavailable
        );
        assert_eq!(
            classify(&sqlx::Error::PoolClosed),
            SqlErrorKind::Unavailable
        );
        assert_eq!(classify(&sqlx::Error::RowNotFound), SqlErrorKind::Refused);
        let decode = sqlx::Error::Decode("bad".into());
        assert_eq!(classify(&decode), SqlErrorKind::Corrupt);
    }
}
