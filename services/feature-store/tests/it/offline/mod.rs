//! The offline store: the conformance suite on SQLite and on PostgreSQL, and what only one
//! of them has (a file that survives a reopen, migrations applied once per schema).

mod cases;
mod postgres;
mod sqlite;
