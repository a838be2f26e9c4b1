//! The registry conformance suite (`support/cases`) on each registry.

/// On the local directory registry (SQLite audit log, in-process bus).
mod local {
    use crate::support::harness::Kind;

    crate::registry_conformance!(Kind::Local);
}

/// On a real MLflow tracking server (`scripts/deps.sh up mlflow`), with the audit log in
/// PostgreSQL and events on Kafka.
mod mlflow {
    use crate::support::harness::Kind;

    crate::registry_conformance!(Kind::Mlflow);
}
