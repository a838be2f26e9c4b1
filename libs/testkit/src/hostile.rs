//! Hostile values for the property suites that every service runs through its real gRPC
//! server (docs/testing.md): random and extreme strings, numbers, timestamps and enums, and
//! the check every answer must pass.
//!
//! The contract under test: a refused request answers INVALID_ARGUMENT, OUT_OF_RANGE,
//! RESOURCE_EXHAUSTED, NOT_FOUND or FAILED_PRECONDITION with a message naming the field —
//! never INTERNAL or UNKNOWN, never a hang past the deadline — and changes no stored state.

use proptest::prelude::*;
use tonic::Code;

/// Cases per RPC: enough to hit every extreme several times, few enough to run in seconds.
pub const CASES: u32 = 48;

/// The proptest configuration of the suites: [`CASES`] cases, no persisted failures (the
/// seed is printed on failure), shrinking bounded so a failure reports quickly.
pub fn config() -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases: CASES,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..proptest::test_runner::Config::default()
    }
}

/// Strings a careless client or an attacker sends: empty, typical, odd unicode, control
/// characters, paths, and one of a megabyte.
pub fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[A-Z]{1,6}",
        "[a-z0-9._-]{1,12}",
        ".{0,24}",
        Just("🦀".to_owned()),
        Just("A\0B".to_owned()),
        Just("../../etc/passwd".to_owned()),
        Just("/proc/self/environ".to_owned()),
        Just("\u{202e}RTL\u{200b}".to_owned()),
        Just("X".repeat(1 << 20)),
        Just("A".repeat(257)),
    ]
}

/// Numbers at and around every edge, NaN and both infinities included.
pub fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MAX),
        Just(f64::MIN),
        Just(f64::MIN_POSITIVE),
        Just(-1.0),
        Just(1e300),
        any::<f64>(),
        -10.0..10.0f64,
    ]
}

/// 32-bit integers at the edges and in between (page sizes, versions, enums, horizons).
pub fn int32() -> impl Strategy<Value = i32> {
    prop_oneof![
        Just(0),
        Just(-1),
        Just(1),
        Just(i32::MIN),
        Just(i32::MAX),
        -10..1_100i32,
        any::<i32>(),
    ]
}

/// 64-bit integers at the edges and in between.
pub fn int64() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0),
        Just(-1),
        Just(i64::MIN),
        Just(i64::MAX),
        -10..1_100i64,
        any::<i64>(),
    ]
}

/// Seconds since epoch: the far past and future, year 1 and 9999, before 1900, near now.
pub fn seconds() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(-9_223_372_036_854_720_000),
        Just(-62_135_596_800),
        Just(253_402_300_799),
        Just(-2_208_988_800 - 86_400),
        1_600_000_000..1_800_000_000i64,
        any::<i64>(),
    ]
}

/// Timestamps with out-of-range nanos as well as extreme seconds, sometimes unset.
pub fn timestamp() -> impl Strategy<Value = Option<prost_types::Timestamp>> {
    let nanos = prop_oneof![
        Just(0),
        Just(-1),
        Just(1_000_000_000),
        Just(i32::MIN),
        Just(i32::MAX),
        0..1_000_000_000i32,
    ];
    prop_oneof![
        1 => Just(None),
        6 => (seconds(), nanos).prop_map(|(seconds, nanos)| Some(prost_types::Timestamp { seconds, nanos })),
    ]
}

/// Codes a refusal may have.
pub const REFUSALS: [Code; 5] = [
    Code::InvalidArgument,
    Code::OutOfRange,
    Code::ResourceExhausted,
    Code::NotFound,
    Code::FailedPrecondition,
];

/// Checks one answer: `Ok`, or a refusal with a code from [`REFUSALS`] whose message (for
/// INVALID_ARGUMENT and OUT_OF_RANGE) names one of `fields`. Returns whether it was refused.
pub fn check_answer<T>(
    rpc: &str,
    answer: &Result<T, tonic::Status>,
    fields: &[&str],
) -> Result<bool, TestCaseError> {
    let Err(status) = answer else {
        return Ok(false);
    };
    prop_assert!(
        REFUSALS.contains(&status.code()),
        "{rpc}: refused with {:?}: {}",
        status.code(),
        cut(status.message())
    );
    prop_assert!(
        status.message().len() <= 4_096,
        "{rpc}: a {}-byte message echoes the input",
        status.message().len()
    );
    if matches!(status.code(), Code::InvalidArgument | Code::OutOfRange) {
        prop_assert!(
            fields.iter().any(|f| status.message().contains(f)),
            "{rpc}: {:?} names none of {fields:?}: {}",
            status.code(),
            cut(status.message())
        );
    }
    Ok(true)
}

fn cut(message: &str) -> &str {
    match message.char_indices().nth(300) {
        Some((end, _)) => &message[..end],
        None => message,
    }
}
