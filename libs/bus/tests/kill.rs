//! A consumer process killed with SIGKILL after processing records but before committing
//! them: the next member of its group receives those records again. Kafka only — the
//! in-process bus dies with its process.

#![allow(clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stockcast_bus::conformance::{names, recv_n};
use stockcast_bus::{EventBus, KafkaBus, KafkaSettings, Offsets, Record};

const TOPIC: &str = "STOCKCAST_KILL_TEST_TOPIC";
const GROUP: &str = "STOCKCAST_KILL_TEST_GROUP";

fn kafka() -> KafkaBus {
    KafkaBus::new(KafkaSettings {
        brokers: stockcast_testkit::KAFKA.require(),
        ..KafkaSettings::default()
    })
    .expect("kafka client")
}

/// The child process: consumes four records, commits the first two, reports, then hangs
/// until it is killed.
#[tokio::test]
#[ignore = "run as the child process of consumer_killed_before_commit_redelivers"]
async fn child_consumer() {
    let topic = std::env::var(TOPIC).expect("topic");
    let group = std::env::var(GROUP).expect("group");
    let bus = kafka();
    let mut consumer = bus.subscribe(&group, &[&topic]).await.expect("subscribe");
    let got = recv_n(consumer.as_mut(), 4).await;
    consumer
        .commit(&Offsets::of(&got[1]))
        .await
        .expect("commit");
    println!("CONSUMED {}", got.len());
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_killed_before_commit_redelivers() {
    let bus = kafka();
    let (topic, group) = names("kill");
    bus.ensure_topic(&topic, 1).await.expect("topic");
    for i in 0..6u8 {
        bus.publish(&topic, Record::new("AAPL", vec![i]))
            .await
            .expect("publish");
    }

    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["child_consumer", "--exact", "--ignored", "--nocapture"])
        .env(TOPIC, &topic)
        .env(GROUP, &group)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child consumer");
    let stdout = child.stdout.take().expect("stdout");
    let reported = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("CONSUMED 4"))
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reported.is_finished() {
        assert!(Instant::now() < deadline, "child never reported consuming");
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("child exited early: {status}");
        }
    }
    // The report thread finished because it saw the line, or because stdout closed.
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap");
    assert!(
        reported.join().expect("join"),
        "child did not consume 4 records"
    );

    let mut next = bus.subscribe(&group, &[&topic]).await.expect("subscribe");
    let got: Vec<u8> = recv_n(next.as_mut(), 4)
        .await
        .iter()
        .map(|m| m.payload[0])
        .collect();
    assert_eq!(
        got,
        vec![2, 3, 4, 5],
        "uncommitted records come again, committed ones do not"
    );
}
