//! SQL for every stockcast service: database settings, opening a database by URL
//! (PostgreSQL confined to the service's own schema, or an embedded SQLite file or memory
//! database) with migrations and a start-up wait, and the one classification of database
//! errors (retry later, already exists, corrupt, refused) for both dialects.

mod classify;
mod open;
mod pool;
mod postgres;
mod settings;
mod sqlite;

pub use crate::classify::{SqlErrorKind, classify};
pub use crate::open::{Database, Migrations, open};
pub use crate::pool::SchemaPool;
pub use crate::postgres::{SetupError, drop_schema, migrate, schema_pool, valid_schema};
pub use crate::settings::{Backend, DatabaseSettings};
pub use crate::sqlite::{ExclusiveLock, lock_exclusively, sqlite_pool};
