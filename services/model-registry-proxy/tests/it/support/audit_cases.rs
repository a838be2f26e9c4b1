//! The audit store conformance suite: every case runs on SQLite and on PostgreSQL.

use std::sync::Arc;

use stockcast_model_registry_proxy::audit::{
    AuditFilter, AuditStore, Change, ChangeKind, KnownAliases, Origin,
};

/// Runs every case of the suite as its own test on the store `$store` (an expression
/// giving `(Arc<dyn AuditStore>, impl Fn(&str) -> future of Result)`, the second running a
/// raw SQL statement).
#[macro_export]
macro_rules! audit_conformance {
    ($store:expr) => {
        #[tokio::test]
        async fn records_in_order_and_tracks_known_aliases() {
            $crate::support::audit_cases::records_in_order_and_tracks_known_aliases($store.await.0)
                .await;
        }
        #[tokio::test]
        async fn filters_combine_and_pages_follow_ids() {
            $crate::support::audit_cases::filters_combine_and_pages_follow_ids($store.await.0)
                .await;
        }
        #[tokio::test]
        async fn the_outbox_cursor_returns_unpublished_entries_once_marked() {
            use $crate::support::audit_cases as cases;
            cases::the_outbox_cursor_returns_unpublished_entries_once_marked($store.await.0).await;
        }
        #[tokio::test]
        async fn entries_cannot_be_changed_or_removed() {
            let (store, exec) = $store.await;
            $crate::support::audit_cases::entries_cannot_be_changed_or_removed(store, exec).await;
        }
    };
}

/// Runs a raw SQL statement on the store's database (to try what the store never does).
pub type Exec =
    Box<dyn Fn(&'static str) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>>;

/// An [`Exec`] on `pool`.
pub fn executor<DB: sqlx::Database>(pool: sqlx::Pool<DB>) -> Exec
where
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
{
    Box::new(move |sql: &'static str| {
        let pool = pool.clone();
        Box::pin(async move {
            sqlx::raw_sql(sql)
                .execute(&pool)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    })
}

pub fn change(model: &str, alias: &str, from: i64, to: i64, actor: &str, at_ms: i64) -> Change {
    Change {
        occurred_at_ms: at_ms,
        actor: actor.to_owned(),
        kind: if to == 0 {
            ChangeKind::AliasDeleted
        } else {
            ChangeKind::AliasSet
        },
        model: model.to_owned(),
        alias: alias.to_owned(),
        from_version: from,
        to_version: to,
        reason: format!("{actor} moved {alias}"),
        origin: if actor == "mlflow" {
            Origin::Poll
        } else {
            Origin::Api
        },
    }
}

const T0: i64 = 1_767_225_600_000; // 2026-01-01 00:00 UTC

pub async fn records_in_order_and_tracks_known_aliases(store: Arc<dyn AuditStore>) {
    let a = store
        .record(&change("m", "champion", 0, 1, "alice", T0))
        .await
        .unwrap();
    let b = store
        .record(&change("m", "champion", 1, 2, "bob", T0 + 1))
        .await
        .unwrap();
    let c = store
        .record(&change("m", "shadow", 0, 3, "mlflow", T0 + 2))
        .await
        .unwrap();
    assert!(a.id < b.id && b.id < c.id);
    assert_eq!(
        b.change,
        change("m", "champion", 1, 2, "bob", T0 + 1),
        "read back as written"
    );
    let known: KnownAliases = store.known_aliases().await.unwrap();
    assert_eq!(
        known.into_iter().collect::<Vec<_>>(),
        vec![
            (("m".to_owned(), "champion".to_owned()), 2),
            (("m".to_owned(), "shadow".to_owned()), 3)
        ]
    );
    store
        .record(&change("m", "champion", 2, 0, "carol", T0 + 3))
        .await
        .unwrap();
    let known = store.known_aliases().await.unwrap();
    assert_eq!(known.len(), 1);
    assert!(!known.contains_key(&("m".to_owned(), "champion".to_owned())));
    let all = store
        .list(&AuditFilter {
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].change.actor, "carol", "newest first");
    assert_eq!(all[0].change.kind, ChangeKind::AliasDeleted);
    assert_eq!(all[3].change.origin, Origin::Api);
    assert_eq!(all[1].change.origin, Origin::Poll);
}

pub async fn filters_combine_and_pages_follow_ids(store: Arc<dyn AuditStore>) {
    for (i, (model, alias, actor)) in [
        ("m1", "champion", "alice"),
        ("m1", "shadow", "alice"),
        ("m2", "champion", "bob"),
        ("m1", "champion", "bob"),
        ("m1", "champion", "alice"),
    ]
    .into_iter()
    .enumerate()
    {
        let i = i as i64;
        store
            .record(&change(model, alias, i, i + 1, actor, T0 + i * 60_000))
            .await
            .unwrap();
    }
    let list = |filter: AuditFilter| {
        let store = store.clone();
        async move {
            store
                .list(&filter)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.change.to_version)
                .collect::<Vec<_>>()
        }
    };
    let base = AuditFilter {
        limit: 100,
        ..AuditFilter::default()
    };
    assert_eq!(
        list(AuditFilter {
            model: Some("m1".into()),
            alias: Some("champion".into()),
            ..base.clone()
        })
        .await,
        vec![5, 4, 1]
    );
    assert_eq!(
        list(AuditFilter {
            actor: Some("bob".into()),
            ..base.clone()
        })
        .await,
        vec![4, 3]
    );
    // [start, end): minutes 1 and 2, not 3.
    assert_eq!(
        list(AuditFilter {
            start_ms: Some(T0 + 60_000),
            end_ms: Some(T0 + 3 * 60_000),
            ..base.clone()
        })
        .await,
        vec![3, 2]
    );
    let first = store
        .list(&AuditFilter {
            limit: 2,
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    let next = list(AuditFilter {
        before_id: Some(first[1].id),
        limit: 2,
        ..base.clone()
    })
    .await;
    assert_eq!(next, vec![3, 2]);
    assert!(
        list(AuditFilter {
            model: Some("nope".into()),
            ..base
        })
        .await
        .is_empty()
    );
}

pub async fn the_outbox_cursor_returns_unpublished_entries_once_marked(store: Arc<dyn AuditStore>) {
    assert!(store.unpublished(10).await.unwrap().is_empty());
    let a = store
        .record(&change("m", "a", 0, 1, "x", T0))
        .await
        .unwrap();
    let b = store
        .record(&change("m", "b", 0, 1, "x", T0))
        .await
        .unwrap();
    let c = store
        .record(&change("m", "c", 0, 1, "x", T0))
        .await
        .unwrap();
    let ids = |entries: Vec<stockcast_model_registry_proxy::audit::AuditEntry>| {
        entries.into_iter().map(|e| e.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.unpublished(2).await.unwrap()),
        vec![a.id, b.id],
        "oldest first"
    );
    store.mark_published(b.id).await.unwrap();
    assert_eq!(ids(store.unpublished(10).await.unwrap()), vec![c.id]);
    // Marking an older id never moves the cursor back.
    store.mark_published(a.id).await.unwrap();
    assert_eq!(ids(store.unpublished(10).await.unwrap()), vec![c.id]);
    store.mark_published(c.id).await.unwrap();
    assert!(store.unpublished(10).await.unwrap().is_empty());
}

pub async fn entries_cannot_be_changed_or_removed(store: Arc<dyn AuditStore>, exec: Exec) {
    store
        .record(&change("m", "a", 0, 1, "x", T0))
        .await
        .unwrap();
    let update = exec("UPDATE audit_log SET actor = 'mallory'")
        .await
        .unwrap_err();
    assert!(update.contains("append-only"), "{update}");
    let delete = exec("DELETE FROM audit_log").await.unwrap_err();
    assert!(delete.contains("append-only"), "{delete}");
    let entries = store
        .list(&AuditFilter {
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].change.actor, "x");
}
