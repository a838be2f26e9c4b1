//! An MLflow that accepts connections and never answers: the proxy spends no more than the
//! call's deadline (or its own request timeout) on it, then answers from its cache, or with
//! DEADLINE_EXCEEDED / UNAVAILABLE when it has nothing cached — never CANCELLED, which is
//! what the server says when it cuts a call that ran past its limit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::support::harness::{
    Harness, Kind, Spec, fetch, model_name, register, resolve, set, sha256,
};
use stockcast_model_registry_proxy::registry::{
    ArtifactFormat, MlflowRegistry, MlflowSettings, Registry,
};
use stockcast_proto::stockcast::registry::v1 as pb;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tonic::Code;

/// A TCP stand-in for MLflow: forwards to `upstream` until hung, then holds every
/// connection (new and already open) without a byte of answer.
struct StandIn {
    addr: SocketAddr,
    hang: watch::Sender<bool>,
}

impl StandIn {
    async fn start(upstream: Option<SocketAddr>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (hang, hung) = watch::channel(upstream.is_none());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let mut hung = hung.clone();
                tokio::spawn(async move {
                    if !*hung.borrow() {
                        let mut server = TcpStream::connect(upstream.unwrap()).await.unwrap();
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
                            _ = hung.wait_for(|h| *h) => {}
                        }
                    }
                    // Hung: the connection stays open and nothing is ever sent.
                    std::future::pending::<()>().await;
                    drop(client);
                });
            }
        });
        Self { addr, hang }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn hang(&self) {
        self.hang.send_replace(true);
    }
}

/// Default MLflow client settings (5 s per call, 2 retries: 15 s and more in all), so that
/// only the request's budget can keep calls within the server's 3 s limit; the circuit
/// breaker stays closed, so that every call meets the hang (an open breaker answers
/// UNAVAILABLE at once, which is right but not what is tested here).
fn settings(url: &str) -> MlflowSettings {
    MlflowSettings {
        tracking_uri: url.to_owned(),
        breaker_failures: 1_000,
        ..MlflowSettings::default()
    }
}

async fn proxy_on(url: &str) -> Harness {
    let registry: Arc<dyn Registry> = Arc::new(MlflowRegistry::new(&settings(url)).unwrap());
    Harness::start_with_bus(
        Kind::Local,
        registry,
        None,
        Duration::ZERO,
        tempfile::tempdir().unwrap(),
        &|s| s.server.request_timeout_ms = 3_000,
    )
    .await
}

fn with_deadline<T>(message: T, deadline: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(deadline);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_mlflow_gets_deadline_exceeded_or_unavailable_never_cancelled() {
    let stand_in = StandIn::start(None).await;
    let h = proxy_on(&stand_in.url()).await;
    let mut client = h.client.clone();

    // The caller's deadline comes first: DEADLINE_EXCEEDED.
    let error = client
        .resolve_model(with_deadline(
            pb::ResolveModelRequest {
                uri: "models:/daily-return@champion".into(),
            },
            Duration::from_millis(1_500),
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::DeadlineExceeded, "{error:?}");
    assert!(error.message().contains("deadline"), "{error:?}");

    // No deadline, or a later one: the server's request timeout comes first: UNAVAILABLE.
    for deadline in [None, Some(Duration::from_secs(30))] {
        let message = pb::ResolveModelRequest {
            uri: "models:/daily-return/1".into(),
        };
        let request = match deadline {
            Some(deadline) => with_deadline(message, deadline),
            None => tonic::Request::new(message),
        };
        let error = client.resolve_model(request).await.unwrap_err();
        assert_eq!(error.code(), Code::Unavailable, "{deadline:?}: {error:?}");
    }
    let error = fetch(&mut client, "models:/daily-return/latest", 0, 0)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    let error = client
        .list_models(pb::ListModelsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    let error = client
        .list_model_versions(with_deadline(
            pb::ListModelVersionsRequest {
                name: "daily-return".into(),
                ..Default::default()
            },
            Duration::from_secs(1),
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::DeadlineExceeded, "{error:?}");
    let error = client
        .set_alias(set("daily-return", "champion", 1, "during the hang"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_alias_is_served_when_mlflow_hangs() {
    let url = stockcast_testkit::MLFLOW.require();
    let upstream: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("MLflow's URL is http://<ip>:<port>");
    let stand_in = StandIn::start(Some(upstream)).await;
    let h = proxy_on(&stand_in.url()).await;
    let name = model_name("hung");
    let (_, bytes) = register(
        &*h.registry,
        &name,
        Spec {
            format: ArtifactFormat::MlflowOnnx,
            ..Spec::default()
        },
    )
    .await;
    let mut client = h.client.clone();
    client
        .set_alias(set(&name, "champion", 1, "before the hang"))
        .await
        .unwrap();
    let uri = format!("models:/{name}@champion");
    let fresh = resolve(&mut client, &uri).await.unwrap();
    assert!(!fresh.served_from_cache);

    stand_in.hang();

    for deadline in [None, Some(Duration::from_secs(2))] {
        let message = pb::ResolveModelRequest { uri: uri.clone() };
        let request = match deadline {
            Some(deadline) => with_deadline(message, deadline),
            None => tonic::Request::new(message),
        };
        let cached = client
            .resolve_model(request)
            .await
            .unwrap_or_else(|e| panic!("{deadline:?}: {e:?}"))
            .into_inner();
        assert!(cached.served_from_cache, "{deadline:?}");
        assert!(cached.cached_at.is_some());
        let version = cached.version.unwrap();
        assert_eq!(version.model.unwrap().version, 1);
        assert_eq!(version.sha256, sha256(&bytes));
    }
    let (header, got, _) = fetch(&mut client, &uri, 0, 0).await.unwrap();
    assert!(header.served_from_cache);
    assert_eq!(got, bytes);

    // What was never resolved has no cached answer.
    let error = resolve(&mut client, &format!("models:/{name}/latest"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    h.stop().await;
}
