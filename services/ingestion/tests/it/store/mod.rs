//! The store conformance suite (`support::store_cases`), once per implementation.

mod postgres;
mod sqlite;
