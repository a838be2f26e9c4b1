//! Cases: bad requests get precise errors in the project's words; names fit every backend;
//! listings page.

use stockcast_proto::stockcast::registry::v1 as pb;
use tonic::Code;

use super::{NO_POLL, resolve};
use crate::support::harness::{Harness, Kind, Spec, fetch, model_name, register, set, sha256};

pub async fn bad_requests_get_precise_errors(kind: Kind) {
    let h = Harness::start(kind, NO_POLL).await;
    let name = model_name("errors");
    register(&*h.registry, &name, Spec::default()).await;
    let mut client = h.client.clone();
    let cases: Vec<(pb::SetAliasRequest, Code, String)> = vec![
        (
            set(&name, "champion", 1, " "),
            Code::InvalidArgument,
            "reason is empty".into(),
        ),
        (
            set(&name, "latest", 1, "r"),
            Code::InvalidArgument,
            // The message names the field once.
            "alias \"latest\" is reserved".into(),
        ),
        (
            set(&name, "champion", 0, "r"),
            Code::InvalidArgument,
            "version 0 must be >= 1".into(),
        ),
        (
            set("no/such", "champion", 1, "r"),
            Code::InvalidArgument,
            "name: model name \"no/such\" contains '/'".into(),
        ),
        (
            set(&name, "champion", 9, "r"),
            Code::NotFound,
            String::new(),
        ),
        (
            set(&format!("{name}-missing"), "champion", 1, "r"),
            Code::NotFound,
            String::new(),
        ),
    ];
    for (request, code, text) in cases {
        let error = client.set_alias(request.clone()).await.unwrap_err();
        assert_eq!(error.code(), code, "{request:?}: {error:?}");
        assert!(error.message().contains(&text), "{request:?}: {error:?}");
        assert!(!error.message().contains("alias: alias"), "{error:?}");
    }
    let missing = client
        .delete_alias(pb::DeleteAliasRequest {
            name: name.clone(),
            alias: "nope".into(),
            reason: "cleanup".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(
        missing.message().contains("no alias \"nope\""),
        "{missing:?}"
    );
    for (uri, code, text) in [
        (
            "runs:/abc/model",
            Code::InvalidArgument,
            "must start with \"models:/\"",
        ),
        (
            &*format!("models:/{name}"),
            Code::InvalidArgument,
            "names no version",
        ),
        (&*format!("models:/{name}/7"), Code::NotFound, ""),
        (&*format!("models:/{name}@absent"), Code::NotFound, ""),
        (&*format!("models:/{name}-missing/1"), Code::NotFound, ""),
    ] {
        let error = resolve(&h, uri).await.unwrap_err();
        assert_eq!(error.code(), code, "{uri}: {error:?}");
        assert!(error.message().contains(text), "{uri}: {error:?}");
    }
    let page = client
        .list_models(pb::ListModelsRequest {
            page_size: 5000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(page.code(), Code::InvalidArgument);
    assert!(page.message().contains("page_size 5000"), "{page:?}");
    h.stop().await;
}

pub async fn errors_name_the_model_in_the_projects_words(kind: Kind) {
    let h = Harness::start(kind, NO_POLL).await;
    let name = model_name("words");
    register(&*h.registry, &name, Spec::default()).await;
    let missing = format!("{name}-missing");
    for (uri, text) in [
        (
            format!("models:/{name}@absent"),
            format!("model {name:?} has no alias \"absent\""),
        ),
        (
            format!("models:/{missing}@champion"),
            format!("model {missing:?} does not exist"),
        ),
        (
            format!("models:/{name}/7"),
            format!("model {name:?} has no version 7"),
        ),
        (
            format!("models:/{missing}/1"),
            format!("model {missing:?} does not exist"),
        ),
        (
            format!("models:/{missing}/latest"),
            format!("model {missing:?} does not exist"),
        ),
    ] {
        let error = resolve(&h, &uri).await.unwrap_err();
        assert_eq!(error.code(), Code::NotFound, "{uri}: {error:?}");
        assert_eq!(error.message(), text, "{uri}");
    }
    let mut client = h.client.clone();
    let error = client
        .set_alias(set(&name, "champion", 9, "r"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "{error:?}");
    assert!(
        error
            .message()
            .contains(&format!("model {name:?} has no version 9")),
        "{error:?}"
    );

    // URI errors name the field once.
    let error = resolve(&h, "runs:/abc/model").await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error
            .message()
            .starts_with("uri \"runs:/abc/model\" must start with"),
        "{error:?}"
    );
    // Echoed input is cut: a 20,000-character URI does not come back whole.
    for uri in [
        format!("models:/{}", "a".repeat(20_000)),
        format!("models:/{name}@{}", "a".repeat(20_000)),
        format!("runs:/{}", "a".repeat(20_000)),
        format!("models:/{name}/{}", "x".repeat(20_000)),
    ] {
        let error = resolve(&h, &uri).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
        assert!(error.message().len() < 1_000, "{}", error.message().len());
        assert!(error.message().contains("characters"), "{error:?}");
    }
    let error = client
        .list_model_versions(pb::ListModelVersionsRequest {
            name: name.clone(),
            page_token: "t".repeat(20_000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(error.message().len() < 1_000, "{}", error.message().len());
    h.stop().await;
}

pub async fn model_names_fit_every_backend(kind: Kind) {
    let h = Harness::start(kind, NO_POLL).await;
    // The longest name is usable end to end: registry, artifact cache, audit log, events.
    let unique = model_name("long");
    let name = format!("{unique}{}", "n".repeat(255 - unique.len()));
    assert_eq!(name.len(), 255);
    let (_, bytes) = register(&*h.registry, &name, Spec::default()).await;
    let mut client = h.client.clone();
    client
        .set_alias(set(&name, "champion", 1, "the longest name"))
        .await
        .unwrap();
    let uri = format!("models:/{name}@champion");
    assert_eq!(resolve(&h, &uri).await.unwrap().sha256, sha256(&bytes));
    let (_, got, _) = fetch(&mut client, &uri, 0, 0).await.unwrap();
    assert_eq!(got, bytes);

    // One more character is refused up front, by every call, without a server path.
    let too_long = format!("{name}n");
    let error = resolve(&h, &format!("models:/{too_long}/1"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(
        error
            .message()
            .contains("model name has 256 characters, at most 255"),
        "{error:?}"
    );
    let error = client
        .set_alias(set(&too_long, "champion", 1, "r"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    let error = client
        .list_model_versions(pb::ListModelVersionsRequest {
            name: too_long.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(!error.message().contains("/tmp"), "{error:?}");
    h.stop().await;
}

pub async fn lists_models_and_versions_in_pages(kind: Kind) {
    let h = Harness::start(kind, NO_POLL).await;
    let prefix = model_name("list");
    for suffix in ["a", "b", "c"] {
        register(&*h.registry, &format!("{prefix}-{suffix}"), Spec::default()).await;
    }
    register(&*h.registry, &format!("{prefix}-b"), Spec::default()).await;
    let mut client = h.client.clone();
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_models(pb::ListModelsRequest {
                name_prefix: prefix.clone(),
                page_size: 2,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        names.extend(
            page.models
                .iter()
                .map(|m| (m.name.clone(), m.latest_version)),
        );
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(
        names,
        vec![
            (format!("{prefix}-a"), 1),
            (format!("{prefix}-b"), 2),
            (format!("{prefix}-c"), 1)
        ]
    );
    let first = client
        .list_model_versions(pb::ListModelVersionsRequest {
            name: format!("{prefix}-b"),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first.versions[0].model.as_ref().unwrap().version,
        2,
        "newest first"
    );
    let second = client
        .list_model_versions(pb::ListModelVersionsRequest {
            name: format!("{prefix}-b"),
            page_size: 1,
            page_token: first.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.versions[0].model.as_ref().unwrap().version, 1);
    let missing = client
        .list_model_versions(pb::ListModelVersionsRequest {
            name: format!("{prefix}-zzz"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    h.stop().await;
}
