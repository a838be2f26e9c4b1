//! CSV backfills: bad rows dead-lettered by line, re-runs idempotent, bad headers and
//! missing or outside files refused.

use super::*;

/// A Yahoo-style export: `Adj Close` differs from `Close` (stockcast stores `Close`).
const CSV_HEADER: &str = "Date,Open,High,Low,Close,Adj Close,Volume";

enum Row {
    Good(&'static str, [f64; 6]),
    /// The line, the field, the code.
    Bad(&'static str, &'static str, RejectReason),
}

fn csv_rows() -> Vec<Row> {
    use Row::{Bad, Good};
    vec![
        Good(
            "2024-01-02",
            [187.15, 188.44, 183.89, 185.64, 185.40, 82_488_700.0],
        ),
        Good(
            "2024-01-03",
            [184.22, 185.88, 183.43, 184.25, 184.01, 58_414_500.0],
        ),
        Bad(
            "2024-01-04,182.15,183.09,x180.88,181.91,181.67,71983600",
            "low",
            RejectReason::Malformed,
        ),
        Good(
            "2024-01-05",
            [181.99, 182.76, 180.17, 181.18, 180.94, 62_303_300.0],
        ),
        Good(
            "2024-01-08",
            [182.09, 185.60, 181.50, 185.56, 185.32, 59_144_500.0],
        ),
        Bad(
            "2024-01-09,183.92,180.00,184.26,183.63,183.39,42841800",
            "",
            RejectReason::InconsistentOhlc,
        ),
        Good(
            "2024-01-10",
            [184.35, 186.40, 183.92, 186.19, 185.95, 46_792_900.0],
        ),
        Bad(
            "2024-01-11,186.54,187.05,183.62,185.59,185.35,",
            "volume",
            RejectReason::MissingField,
        ),
        Good(
            "2024-01-12",
            [186.06, 186.74, 185.19, 185.92, 185.68, 40_444_700.0],
        ),
    ]
}

/// A bad line of a CSV file: its 1-based number, text, the field and code it is rejected for.
type BadLine = (i64, &'static str, &'static str, RejectReason);

/// The file text, its good bars (for `symbol`) and its bad lines.
fn csv_file(symbol: &str) -> (String, Vec<Bar>, Vec<BadLine>) {
    let mut lines = vec![CSV_HEADER.to_owned()];
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for row in csv_rows() {
        match row {
            Row::Good(date, [open, high, low, close, adj, volume]) => {
                lines.push(format!("{date},{open},{high},{low},{close},{adj},{volume}"));
                good.push(Bar {
                    symbol: symbol.to_owned(),
                    interval: Interval::D1,
                    ts: utc(&format!("{date}T00:00:00Z")),
                    open,
                    high,
                    low,
                    close,
                    volume,
                });
            }
            Row::Bad(line, field, code) => {
                lines.push(line.to_owned());
                bad.push((lines.len() as i64, line, field, code));
            }
        }
    }
    (lines.join("\n") + "\n", good, bad)
}

/// Default settings with `ingest.csv_dir` set to `dir`.
fn csv_settings(case: &str, dir: &tempfile::TempDir) -> Settings {
    settings(case, |s| s.ingest.csv_dir = dir.path().to_owned())
}

fn write_csv(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write csv");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_backfill_stores_good_rows_and_dead_letters_bad_lines_by_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (text, good, bad) = csv_file("CSVA");
    assert_eq!((good.len(), bad.len()), (6, 3));
    write_csv(&dir, "csva.csv", &text);
    let service = Service::start(csv_settings("src-csv", &dir)).await;
    let mut client = service.client.clone();

    let job_id = start(&mut client, csv_request(Path::new("csva.csv"), "CSVA")).await;
    let done = finished(&mut client, &job_id).await;
    assert_eq!(state(&done), JobState::Succeeded, "{done:?}");
    assert_eq!(counts(&done), (6, 3, 0, 0), "exact job counts: {done:?}");

    // Stored with the file's values; Close, not Adj Close.
    let rows = stored(&service, "CSVA", Interval::D1).await;
    assert_eq!(rows, good);
    let sources: Vec<_> = service
        .store
        .bars("CSVA", Interval::D1, 0, Y2100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.source)
        .collect();
    assert!(sources.iter().all(|s| s == "csv"), "{sources:?}");

    let mut consumer = service.bars_consumer().await;
    let events = bar_events(&service, consumer.as_mut()).await;
    let mut published: Vec<Bar> = events.iter().map(bar_of).collect();
    published.sort_by_key(|b| b.ts);
    assert_eq!(published, good);
    assert!(events.iter().all(|e| e.backfill_job_id == job_id));

    // Each bad line on the dead-letter topic: input csv, its line number, the line itself.
    let mut dlq = service.dlq_consumer().await;
    let letters: Vec<DeadLetterRecord> = dead_letters(&service, dlq.as_mut())
        .await
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    assert_eq!(letters.len(), 3, "{letters:?}");
    let mut wrong = Vec::new();
    for (line_no, line, field, code) in &bad {
        let Some(letter) = letters.iter().find(|l| l.reason_code == *code as i32) else {
            wrong.push(format!("line {line_no}: no dead letter with code {code:?}"));
            continue;
        };
        let origin = component(letter);
        assert_eq!(origin.input, "csv", "{letter:?}");
        assert_eq!(origin.backfill_job_id, job_id, "{letter:?}");
        assert_eq!(letter.symbol, "CSVA", "{letter:?}");
        if field.is_empty() {
            assert!(
                ["high", "low"].contains(&letter.field.as_str()),
                "{letter:?}"
            );
        } else {
            assert_eq!(letter.field, *field, "{letter:?}");
        }
        let got = (
            origin.index,
            letter.payload_type.as_str(),
            String::from_utf8_lossy(&letter.payload).into_owned(),
        );
        let want = (*line_no, "text/csv", (*line).to_owned());
        if got != want {
            wrong.push(format!(
                "line {line_no} ({code:?}): dead letter has (index, payload_type, payload) \
                 {got:?}, want {want:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "CSV dead letters must carry the 1-based line number as index and the original line \
         as text/csv payload (docs/ingestion.md: \"`csv` with the line number\"; the CSV line \
         as original payload). A row that parses but fails validation (high < low) loses \
         both: services/ingestion/src/jobs/mod.rs (`SourceRecord::Bar(bar) => (i as i64, ...)` in \
         `run`) indexes it by its position in the chunk, and ingest.rs dead-letters the \
         re-encoded protobuf Bar, because SourceRecord::Bar carries neither line nor bytes.\n{}",
        wrong.join("\n")
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_running_a_csv_backfill_finds_only_duplicates_and_publishes_nothing_new() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (text, good, bad) = csv_file("CSVR");
    write_csv(&dir, "csvr.csv", &text);
    let path = Path::new("csvr.csv");
    let service = Service::start(csv_settings("src-csv-rerun", &dir)).await;
    let mut client = service.client.clone();
    let mut consumer = service.bars_consumer().await;

    let first = start(&mut client, csv_request(path, "CSVR")).await;
    let first = finished(&mut client, &first).await;
    assert_eq!(state(&first), JobState::Succeeded, "{first:?}");
    assert_eq!(counts(&first), (6, 3, 0, 0), "{first:?}");
    assert_eq!(bar_events(&service, consumer.as_mut()).await.len(), 6);

    // Same file, new request id: a new job whose every good row is a duplicate.
    let second_id = start(&mut client, csv_request(path, "CSVR")).await;
    assert_ne!(second_id, first.job_id, "a new request id is a new job");
    let second = finished(&mut client, &second_id).await;
    assert_eq!(state(&second), JobState::Succeeded, "{second:?}");
    assert_eq!(
        counts(&second),
        (0, bad.len() as i64, good.len() as i64, 0),
        "(accepted, rejected, duplicate, corrected): {second:?}"
    );
    let again = bar_events(&service, consumer.as_mut()).await;
    assert!(again.is_empty(), "no event for a duplicate: {again:?}");
    assert_eq!(stored(&service, "CSVR", Interval::D1).await, good);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_with_a_bad_header_fails_the_job_and_a_missing_or_outside_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_csv(
        &dir,
        "no_close.csv",
        "Date,Open,High,Low,Adj Close,Volume\n2024-01-02,187.15,188.44,183.89,185.40,82488700\n",
    );
    // Readable, but outside `ingest.csv_dir`.
    let outside = tempfile::tempdir().expect("tempdir");
    let outside = write_csv(&outside, "outside.csv", &csv_file("CSVO").0);
    let service = Service::start(csv_settings("src-csv-fail", &dir)).await;
    let mut client = service.client.clone();

    let header_job = start(&mut client, csv_request(Path::new("no_close.csv"), "CSVH")).await;
    // A missing file and a file outside the directory are refused before a job exists, with
    // one message that says neither where the directory is nor whether the file exists.
    for (path, symbol) in [
        (Path::new("does_not_exist.csv"), "CSVM"),
        (outside.as_path(), "CSVO"),
    ] {
        let status = client
            .start_backfill(csv_request(path, symbol))
            .await
            .expect_err("refused up front");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status
                .message()
                .contains("is not a readable file inside the service's CSV directory")
                && !status.message().contains(&*dir.path().to_string_lossy()),
            "{}",
            status.message()
        );
    }
    let header_job = finished(&mut client, &header_job).await;
    assert_eq!(state(&header_job), JobState::Failed, "{header_job:?}");
    let error = header_job.error.to_ascii_lowercase();
    assert!(
        error.contains("no_close.csv") && error.contains("close column"),
        "names the file and the missing column: {}",
        header_job.error
    );
    assert_eq!(counts(&header_job), (0, 0, 0, 0));

    assert!(stored(&service, "CSVO", Interval::D1).await.is_empty());
    assert!(stored(&service, "CSVH", Interval::D1).await.is_empty());
    assert!(stored(&service, "CSVM", Interval::D1).await.is_empty());
    let mut consumer = service.bars_consumer().await;
    let events = bar_events(&service, consumer.as_mut()).await;
    assert!(events.is_empty(), "{events:?}");
    let mut dlq = service.dlq_consumer().await;
    let letters = dead_letters(&service, dlq.as_mut()).await;
    assert!(letters.is_empty(), "{letters:?}");
    service.stop().await;
}
