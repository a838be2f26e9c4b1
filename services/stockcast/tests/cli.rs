//! The `stockcast` binary's command line as users type it: help, config errors and
//! `--print-config`. What runs services end to end is in the `stockcast-e2e` package
//! (`tests/tests/it`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::process::{Command, Output, Stdio};

fn stockcast(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stockcast"));
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run stockcast")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_explains_the_commands() {
    let out = stockcast(&["--help"], &[]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for word in ["demo", "serve", "embedded"] {
        assert!(help.contains(word), "help lacks {word:?}:\n{help}");
    }
}

#[test]
fn an_invalid_config_value_exits_64_naming_the_key() {
    let out = stockcast(
        &["serve", "ingestion"],
        &[("STOCKCAST_INGESTION__SERVER__REQUEST_TIMEOUT_MS", "soon")],
    );
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("server.request_timeout_ms"), "{stderr}");
}

#[test]
fn an_unknown_key_exits_64_naming_it() {
    let out = stockcast(&["serve", "inference", "--set", "server.grpc_adr=1"], &[]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("grpc_adr"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn print_config_shows_the_layered_values() {
    let out = stockcast(
        &[
            "serve",
            "feature-store",
            "--print-config",
            "--set",
            "server.concurrency_limit=7",
        ],
        &[("STOCKCAST_FEATURE_STORE__TELEMETRY__LOG_FORMAT", "json")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config = text(&out.stdout);
    assert!(config.contains("concurrency_limit = 7"), "{config}");
    assert!(
        config.contains("grpc_addr = \"127.0.0.1:50052\""),
        "per-service default port:\n{config}"
    );
    assert!(config.contains("log_format = \"json\""), "{config}");
}

#[test]
fn print_config_into_a_closed_pipe_exits_cleanly() {
    // `stockcast serve … --print-config | head -0`: the reader is gone before anything is
    // written.
    let mut child = Command::new(env!("CARGO_BIN_EXE_stockcast"))
        .args(["serve", "ingestion", "--print-config"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(status.success(), "{status}: {stderr}");
}
