//! A consumer process killed with SIGKILL after processing records but before committing
//! them: the next member of its group receives those records again. Kafka only — the
//! in-process bus dies with its process.

use std::process::Command;
use std::time::Duration;

use stockcast_bus::conformance::{names, recv_n};
use stockcast_bus::{EventBus, KafkaBus, KafkaSettings, Offsets, Record};
use stockcast_testkit::process::ChildGuard;

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

    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .args([
            "kill::child_consumer",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(TOPIC, &topic)
        .env(GROUP, &group);
    let mut child = ChildGuard::spawn("child consumer", command);
    // Fails with the child's output when it exits early or does not consume 4 records.
    child.wait_for_line("CONSUMED 4", Duration::from_secs(60));
    child.kill();

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
