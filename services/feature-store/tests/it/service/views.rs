//! The view catalog in pages, and the refusal of a changed definition under a served version.

use super::*;

fn momentum() -> ViewSpec {
    ViewSpec {
        name: "momentum".to_owned(),
        version: 1,
        current: false,
        description: "Short-term momentum".to_owned(),
        interval: stockcast_market::Interval::D1,
        max_age: std::time::Duration::from_secs(2 * DAY as u64),
        online_ttl: None,
        features: vec![
            FeatureSpec {
                name: "rsi_7".into(),
                indicator: "rsi".into(),
                params: [("period".to_owned(), "7".to_owned())].into(),
            },
            FeatureSpec {
                name: "ret_3".into(),
                indicator: "log_return".into(),
                params: [("bars".to_owned(), "3".to_owned())].into(),
            },
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feature_views_are_listed_in_pages_and_described() {
    let settings = real_settings(
        "fs-svc-views",
        vec![momentum(), default_v2(), default_view()],
    );
    let svc = Service::start(settings.clone()).await;
    let mut c = svc.client();
    let list = |size: i32, token: String, all: bool| pb::ListFeatureViewsRequest {
        page_size: size,
        page_token: token,
        all_versions: all,
    };
    let current = c
        .list_feature_views(list(0, String::new(), false))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<(String, i32, bool)> = current
        .views
        .iter()
        .map(|v| (v.name.clone(), v.version, v.current))
        .collect();
    assert_eq!(
        ids,
        [("default".into(), 1, true), ("momentum".into(), 1, true)],
        "current versions only, by name"
    );
    assert!(current.next_page_token.is_empty());

    // Every version, one per page.
    let mut token = String::new();
    let mut seen = Vec::new();
    loop {
        let page = c
            .list_feature_views(list(1, token, true))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.views.len(), 1);
        seen.push((
            page.views[0].name.clone(),
            page.views[0].version,
            page.views[0].current,
        ));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen,
        [
            ("default".into(), 1, true),
            ("default".into(), 2, false),
            ("momentum".into(), 1, true)
        ]
    );
    let two = c
        .list_feature_views(list(2, String::new(), true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(two.views.len(), 2);
    let rest = c
        .list_feature_views(list(2, two.next_page_token.clone(), true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.views.len(), 1);
    assert_eq!(rest.views[0].name, "momentum");
    assert!(rest.next_page_token.is_empty());

    // The default view, described.
    let get = |name: &str, version: i32| pb::GetFeatureViewRequest {
        name: name.to_owned(),
        version,
    };
    let v = c
        .get_feature_view(get("default", 0))
        .await
        .unwrap()
        .into_inner()
        .view
        .unwrap();
    assert_eq!((v.version, v.current), (1, true));
    assert_eq!(v.warmup_bars, 50);
    // Recorded when the version was first served: by this test's service, moments ago.
    let created = v.created_at.expect("created_at").seconds;
    assert!(
        (chrono::Utc::now().timestamp() - created).abs() < 600,
        "created_at {created}"
    );
    assert_eq!(v.max_age.unwrap().seconds, 4 * DAY);
    assert_eq!(
        v.interval,
        stockcast_proto::stockcast::types::v1::Interval::from(stockcast_market::Interval::D1)
            as i32
    );
    let lookback = |name: &str| {
        v.features
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name}"))
            .lookback_bars
    };
    assert_eq!(lookback("log_return_1"), 2);
    assert_eq!(lookback("log_return_20"), 21);
    assert_eq!(lookback("close_sma_50"), 50);
    assert_eq!(lookback("rsi_14"), 15);
    assert_eq!(lookback("macd_line"), 34);
    assert_eq!(lookback("atr_14"), 15);
    assert_eq!(lookback("hl_range"), 1);
    let names: Vec<&str> = v.features.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, View::compile(&default_view()).unwrap().names);
    let rsi = v.features.iter().find(|f| f.name == "rsi_14").unwrap();
    assert_eq!(rsi.indicator, "rsi");
    assert_eq!(rsi.params.get("period").map(String::as_str), Some("14"));

    let v2 = c
        .get_feature_view(get("default", 2))
        .await
        .unwrap()
        .into_inner()
        .view
        .unwrap();
    assert_eq!((v2.version, v2.current, v2.features.len()), (2, false, 5));
    assert_eq!(v2.description, "Returns and trend only");
    assert_eq!(v2.warmup_bars, 50, "close_sma_50 is among the first five");
    let m = c
        .get_feature_view(get("momentum", 0))
        .await
        .unwrap()
        .into_inner()
        .view
        .unwrap();
    assert_eq!(m.warmup_bars, 8);
    assert_eq!(m.max_age.unwrap().seconds, 2 * DAY);
    assert_status(
        c.get_feature_view(get("default", 3)).await,
        Code::NotFound,
        "version 3",
    );

    svc.stop().await.expect("clean stop");
    drop_schema(&settings).await;
}

// ---------------------------------------------------------------------------------------
// 6. a changed definition needs a new version

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_definition_under_a_served_version_is_refused_at_start() {
    let mut settings = real_settings("fs-svc-changed", vec![default_view()]);
    Service::start(settings.clone())
        .await
        .stop()
        .await
        .expect("first start");

    let mut changed = default_view();
    changed.features[6]
        .params
        .insert("period".into(), "21".into());
    settings.views = vec![changed.clone()];
    let deps = Deps::from_settings(&settings, &stockcast_runtime::Shutdown::new())
        .await
        .expect("backends");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let result = tokio::time::timeout(
        DEADLINE,
        stockcast_feature_store::serve(
            listener,
            settings.clone(),
            deps,
            stockcast_runtime::Shutdown::new(),
        ),
    )
    .await
    .expect("serve returns at once");
    let message = result.expect_err("a changed v1 is refused").to_string();
    assert!(message.contains("default:v1"), "{message}");
    assert!(
        message.contains("declare the change as a new version"),
        "{message}"
    );

    // The same change as version 2 is served next to the unchanged version 1.
    changed.version = 2;
    changed.current = false;
    settings.views = vec![default_view(), changed];
    let svc = Service::start(settings.clone()).await;
    let mut c = svc.client();
    let v2 = c
        .get_feature_view(pb::GetFeatureViewRequest {
            name: "default".into(),
            version: 2,
        })
        .await
        .unwrap()
        .into_inner()
        .view
        .unwrap();
    assert_eq!(
        v2.features[6].params.get("period").map(String::as_str),
        Some("21")
    );
    svc.stop().await.expect("clean stop");
    drop_schema(&settings).await;
}
