//! The audit store conformance suite on SQLite and PostgreSQL.

mod postgres;
mod sqlite;
