//! `stockcast demo` as users run it: the addresses it takes and prints, the files it leaves,
//! the history it generates, and how long it takes to stop.

use std::path::Path;
use std::time::Duration;

use stockcast_proto::stockcast::features::v1 as fpb;
use stockcast_proto::stockcast::features::v1::feature_store_service_client::FeatureStoreServiceClient;
use stockcast_testkit::process::ChildGuard;

/// `stockcast demo ARGS…` with its temporary files under `tmpdir`.
fn start_demo(args: &[&str], tmpdir: &Path) -> ChildGuard {
    let mut command = super::stockcast();
    command
        .arg("demo")
        .args(args)
        .env("TMPDIR", tmpdir)
        .env("NO_COLOR", "1");
    ChildGuard::spawn("demo", command)
}

/// The `key=value` field of a log line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        + key.len()
        + 1;
    line[start..].split_whitespace().next().unwrap()
}

fn demo_dirs(tmpdir: &Path) -> Vec<String> {
    std::fs::read_dir(tmpdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("stockcast-demo-"))
        .collect()
}

const LOCAL: [&str; 4] = [
    "--grpc-addr",
    "127.0.0.1:0",
    "--metrics-addr",
    "127.0.0.1:0",
];

#[test]
fn the_demo_starts_every_service_and_stops_after_its_duration() {
    let out = super::stockcast()
        .args([
            "demo",
            "--duration",
            "1s",
            "--base-port",
            "0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run stockcast demo");
    let logs = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{logs}\n{stderr}");
    assert!(logs.contains("stockcast demo ready"), "{logs}");
    for service in [
        "ingestion",
        "feature-store",
        "inference",
        "model-registry-proxy",
        "risk-metrics",
    ] {
        assert!(logs.contains(service), "{service} missing from\n{logs}");
    }
    assert!(logs.contains("stockcast demo stopped"), "{logs}");
    assert!(
        logs.contains("backfill done"),
        "the demo generates bars:\n{logs}"
    );
    // The feature store consumed them and serves the default view for every demo symbol.
    let served = logs
        .lines()
        .filter(|l| l.contains("online features") && l.contains("DEMO."))
        .count();
    assert_eq!(served, 5, "the demo serves features:\n{logs}");
    assert!(!logs.contains("NOT_FOUND"), "{logs}");
}

#[test]
fn the_demo_takes_serve_style_addresses_and_prints_the_ports_it_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = start_demo(&[&LOCAL[..], &["--no-data"]].concat(), tmp.path());
    demo.wait_for_line("stockcast demo ready", Duration::from_secs(60));
    let mut ports = Vec::new();
    for _ in 0..5 {
        let line = demo.wait_for_line("grpc=127.0.0.1:", Duration::from_secs(10));
        ports.push(field(&line, "grpc").to_owned());
    }
    let metrics = demo.wait_for_line("prometheus metrics on /metrics", Duration::from_secs(10));
    let metrics = field(&metrics, "metrics").to_owned();
    for addr in ports.iter().chain([&metrics]) {
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        assert_ne!(addr.port(), 0, "the bound port is printed, not 0");
    }
    // What is printed is what answers.
    let mut stream = std::net::TcpStream::connect(&metrics).expect("metrics answer");
    std::io::Write::write_all(&mut stream, b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    for addr in &ports {
        std::net::TcpStream::connect(addr).expect("a service answers on its printed port");
    }
    demo.signal("TERM");
    assert!(demo.exit_within(Duration::from_secs(30)).is_some());
}

#[test]
fn the_demo_removes_its_files_on_sigint_and_sigterm_unless_kept() {
    for signal in ["INT", "TERM"] {
        let tmp = tempfile::tempdir().unwrap();
        let mut demo = start_demo(&[&LOCAL[..], &["--no-data"]].concat(), tmp.path());
        demo.wait_for_line("stockcast demo ready", Duration::from_secs(60));
        assert_eq!(demo_dirs(tmp.path()).len(), 1, "the demo's files are there");
        demo.signal(signal);
        let status = demo.exit_within(Duration::from_secs(30));
        let logs = demo.logs();
        assert!(status.is_some_and(|s| s.success()), "{status:?}\n{logs}");
        assert_eq!(
            demo_dirs(tmp.path()),
            Vec::<String>::new(),
            "SIG{signal} left the demo's directory behind\n{logs}"
        );
    }

    let tmp = tempfile::tempdir().unwrap();
    let keep = tmp.path().join("kept");
    let mut demo = start_demo(
        &[
            &LOCAL[..],
            &["--no-data", "--keep-data", keep.to_str().unwrap()],
        ]
        .concat(),
        tmp.path(),
    );
    demo.wait_for_line("stockcast demo ready", Duration::from_secs(60));
    demo.signal("TERM");
    assert!(demo.exit_within(Duration::from_secs(30)).is_some());
    assert!(
        keep.join("models").is_dir(),
        "--keep-data keeps the local registry"
    );
    assert!(demo_dirs(tmp.path()).is_empty(), "no temporary directory");
}

/// The generated history ends with the last completed daily bar, so the newest vector's event
/// time (the close of its last bar) is not after now.
#[test]
fn the_demo_history_ends_at_the_last_completed_bar() {
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = start_demo(&LOCAL, tmp.path());
    let line = demo.wait_for_line("online features", Duration::from_secs(120));
    let now = chrono::Utc::now();
    let event_time = line
        .split("event_time=")
        .nth(1)
        .unwrap()
        .split(" UTC")
        .next()
        .unwrap();
    let event_time = chrono::NaiveDateTime::parse_from_str(event_time, "%Y-%m-%d %H:%M:%S")
        .unwrap()
        .and_utc();
    assert!(event_time <= now, "vector dated {event_time}, after {now}");
    assert!(
        now - event_time <= chrono::Duration::days(4),
        "the history reaches the last completed bar (weekends aside): {event_time}"
    );
}

/// A client reading a historical-features stream slowly does not hold the demo past its
/// shutdown grace: the demo cuts the stream, as `serve` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_stream_does_not_hold_the_demo_past_its_grace() {
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = start_demo(&LOCAL, tmp.path());
    let mut feature_store = None;
    for i in 0..5 {
        let line = demo.wait_for_line("grpc=127.0.0.1:", Duration::from_secs(60));
        if i == 1 {
            feature_store = Some(field(&line, "grpc").to_owned());
        }
    }
    demo.wait_for_line("online features", Duration::from_secs(120));
    let addr = feature_store.unwrap();
    let mut client = FeatureStoreServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .max_encoding_message_size(64 << 20);
    // 200,000 point-in-time rows (about 40 MB of answer): far more than socket and HTTP/2
    // buffers hold while the client does not read.
    let now = chrono::Utc::now().timestamp();
    let rows: Vec<fpb::EntityRow> = (0..200_000)
        .map(|i| fpb::EntityRow {
            symbol: format!("DEMO.{}", (b'A' + (i % 5) as u8) as char),
            timestamp: Some(prost_types::Timestamp {
                seconds: now - (i % 700) * 86_400,
                nanos: 0,
            }),
        })
        .collect();
    let request = fpb::GetHistoricalFeaturesRequest {
        feature_view: "default".to_owned(),
        entities: Some(fpb::get_historical_features_request::Entities::EntityRows(
            fpb::EntityRows { rows },
        )),
        max_rows_per_chunk: 100,
        ..Default::default()
    };
    let mut stream = client
        .get_historical_features(request)
        .await
        .unwrap()
        .into_inner();
    // The client reads a message every 50 ms: slowly, but it keeps the stream alive.
    stream.message().await.unwrap().expect("a first message");
    let reader = tokio::spawn(async move {
        while let Ok(Some(_)) = stream.message().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    demo.signal("TERM");
    // Grace 5 s plus the drain delay: well within a minute.
    let status = demo.exit_within(Duration::from_secs(60));
    let logs = demo.logs();
    assert!(
        status.is_some(),
        "the demo still runs a minute after SIGTERM while a stream is open:\n{logs}"
    );
    reader.abort();
}
