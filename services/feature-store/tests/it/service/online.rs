//! Online features: every status, request order with duplicates, names and version resolution.

use super::*;

/// Publishes a recent series, one that ended in 2020 and a short recent one, then checks
/// every status, request order with duplicates, names and version resolution.
async fn online_statuses(svc: &Service) -> Vec<Bar> {
    let view = View::compile(&default_view()).unwrap();
    // The last bar opens yesterday and closes today at 00:00, well within the 4-day max age.
    let recent = starting_at(series("RECENT", 60, 1.0), today() - 60 * DAY);
    let old = series("OLD", 60, 2.0);
    let young = starting_at(series("YOUNG", 10, 3.0), today() - 10 * DAY);
    svc.publish(&interleave(&[recent.clone(), old.clone(), young.clone()]))
        .await;
    await_online(&svc.client, &view, &[&recent, &old, &young]).await;

    let mut client = svc.client();
    let asked = ["RECENT", "NOPE", "OLD", "YOUNG", "RECENT"];
    let r = online(&mut client, "default", 0, &asked).await;
    assert_eq!(r.feature_view, "default");
    assert_eq!(
        r.feature_view_version, 1,
        "version 0 resolves to the current one"
    );
    assert_eq!(r.feature_names, view.names);
    let symbols: Vec<&str> = r.vectors.iter().map(|v| v.symbol.as_str()).collect();
    assert_eq!(
        symbols, asked,
        "request order, duplicates answered each time"
    );

    let last = |s: &[Bar]| view.compute(s).pop().unwrap();
    let (present, missing, stale, warming, again) = (
        &r.vectors[0],
        &r.vectors[1],
        &r.vectors[2],
        &r.vectors[3],
        &r.vectors[4],
    );

    assert_eq!(status_of(present), pb::FeatureStatus::Present);
    assert_eq!(
        present.event_time.unwrap().seconds,
        view.event_time(recent.last().unwrap().ts)
    );
    assert!(same_bits(&present.values, &last(&recent)));
    assert!(present.present.is_empty(), "every value present");
    assert_eq!(present, again);

    assert_eq!(status_of(missing), pb::FeatureStatus::NotFound);
    assert!(missing.event_time.is_none());
    assert!(missing.values.is_empty() && missing.present.is_empty());

    assert_eq!(status_of(stale), pb::FeatureStatus::Stale);
    assert_eq!(
        stale.event_time.unwrap().seconds,
        view.event_time(old.last().unwrap().ts)
    );
    assert!(
        same_bits(&stale.values, &last(&old)),
        "stale values are returned"
    );

    assert_eq!(status_of(warming), pb::FeatureStatus::WarmingUp);
    let want = last(&young);
    let mask: Vec<bool> = want.iter().map(|v| !v.is_nan()).collect();
    assert!(mask.contains(&true) && mask.contains(&false), "{mask:?}");
    assert_eq!(
        warming.present, mask,
        "false exactly for the absent features"
    );
    assert_eq!(warming.values.len(), view.names.len());
    for (i, (got, ok)) in warming.values.iter().zip(&mask).enumerate() {
        if *ok {
            assert_eq!(got.to_bits(), want[i].to_bits(), "{}", view.names[i]);
        } else {
            assert!(got.is_nan(), "{} is absent: NaN, got {got}", view.names[i]);
        }
    }

    // The explicit version answers the same (NaN compared by its bits).
    let explicit = online(&mut client, "default", 1, &asked).await;
    assert_eq!(explicit.feature_view_version, 1);
    let key = |v: &pb::FeatureVector| {
        let bits: Vec<u64> = v.values.iter().map(|x| x.to_bits()).collect();
        (
            v.symbol.clone(),
            v.status,
            v.event_time,
            bits,
            v.present.clone(),
        )
    };
    let keys = |r: &pb::GetOnlineFeaturesResponse| r.vectors.iter().map(key).collect::<Vec<_>>();
    assert_eq!(keys(&explicit), keys(&r));
    recent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_features_report_present_stale_warming_up_and_not_found() {
    let svc = Service::start(real_settings("fs-svc-online", vec![default_view()])).await;
    online_statuses(&svc).await;
    let settings = svc.settings.clone();
    svc.stop().await.expect("clean stop");
    drop_schema(&settings).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_features_on_the_embedded_backends() {
    let (settings, deps) = embedded("fs-svc-embedded", vec![default_view()]).await;
    let svc = Service::start_on(settings, deps).await;
    let recent = online_statuses(&svc).await;
    // Historical reads work on SQLite too: the span of the recent symbol is one row per bar.
    let mut client = svc.client();
    let rows = span_rows(&mut client, "default", 0, &["RECENT"]).await;
    let view = View::compile(&default_view()).unwrap();
    assert_rows_exact(&view, &rows, &[&recent]);
    svc.stop().await.expect("clean stop");
}
