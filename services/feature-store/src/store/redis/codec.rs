//! What Redis holds and answers: a key's value (event time, then the values; see the module
//! doc of [`super`]) and the write script's answers.

use std::fmt::Write as _;

use fred::bytes::Bytes;
use fred::prelude::Value;

use super::BACKEND;
use super::commands::Group;
use crate::store::{OnlineVector, StoreError, Ts};

/// Characters of the event time at the start of every value.
pub const TIME_WIDTH: usize = 12;

/// Earliest event time a value can hold (`-` and 11 digits).
pub const MIN_EVENT_TIME: Ts = -99_999_999_999;

/// Latest event time a value can hold (12 digits).
pub const MAX_EVENT_TIME: Ts = 999_999_999_999;

/// Stores the script's answer for one group: one 1 or 0 per key, in order.
pub(super) fn record(applied: &mut [bool], group: &Group, reply: Value) -> Result<(), StoreError> {
    let Value::Array(answers) = reply else {
        return Err(StoreError::Corrupt(format!(
            "write script answered {reply:?}"
        )));
    };
    if answers.len() != group.positions.len() {
        return Err(StoreError::Corrupt(format!(
            "write script answered {} times for {} keys",
            answers.len(),
            group.positions.len()
        )));
    }
    for (&i, answer) in group.positions.iter().zip(answers) {
        applied[i] = match answer {
            Value::Integer(1) => true,
            Value::Integer(0) => false,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "write script answered {other:?} for a key"
                )));
            }
        };
    }
    Ok(())
}

/// A key's value: the event time (see the module doc), then the values.
pub(super) fn encode(event_time: Ts, values: &[f64]) -> Result<Bytes, StoreError> {
    if !(MIN_EVENT_TIME..=MAX_EVENT_TIME).contains(&event_time) {
        return Err(StoreError::Failed {
            backend: BACKEND,
            reason: format!(
                "event time {event_time} outside {MIN_EVENT_TIME}..={MAX_EVENT_TIME} seconds"
            ),
        });
    }
    let mut time = String::with_capacity(TIME_WIDTH);
    // Writing into a String cannot fail.
    let _ = write!(time, "{event_time:0width$}", width = TIME_WIDTH);
    let mut bytes = Vec::with_capacity(TIME_WIDTH + values.len() * 8);
    bytes.extend_from_slice(time.as_bytes());
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    Ok(Bytes::from(bytes))
}

/// One value of an `MGET` reply: `nil` when the key is absent (or holds another type).
pub(super) fn decode(reply: &Value) -> Result<Option<OnlineVector>, StoreError> {
    if matches!(reply, Value::Null) {
        return Ok(None);
    }
    let bytes = reply
        .as_bytes()
        .ok_or_else(|| StoreError::Corrupt(format!("online value {reply:?}")))?;
    if bytes.len() < TIME_WIDTH || !(bytes.len() - TIME_WIDTH).is_multiple_of(8) {
        return Err(StoreError::Corrupt(format!(
            "online value of {} bytes, not {TIME_WIDTH} + a multiple of 8",
            bytes.len()
        )));
    }
    let (time, values) = bytes.split_at(TIME_WIDTH);
    let event_time = std::str::from_utf8(time)
        .ok()
        .and_then(|s| s.parse::<Ts>().ok())
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "online event time {:?}",
                String::from_utf8_lossy(time)
            ))
        })?;
    let values = values
        .chunks_exact(8)
        .map(|chunk| {
            let mut le = [0u8; 8];
            le.copy_from_slice(chunk);
            f64::from_le_bytes(le)
        })
        .collect();
    Ok(Some(OnlineVector { event_time, values }))
}

#[cfg(test)]
mod tests {
    use fred::bytes_utils::Str;

    use super::*;

    #[test]
    fn values_encode_as_documented_and_decode_back() {
        let bytes = encode(1_704_153_600, &[1.0, f64::NAN]).unwrap();
        assert_eq!(&bytes[..TIME_WIDTH], b"001704153600");
        assert_eq!(&bytes[TIME_WIDTH..TIME_WIDTH + 8], &1.0f64.to_le_bytes());
        let vector = decode(&Value::Bytes(bytes)).unwrap().unwrap();
        assert_eq!(vector.event_time, 1_704_153_600);
        assert_eq!(vector.values[0], 1.0);
        assert!(vector.values[1].is_nan());

        for t in [MIN_EVENT_TIME, -3_600, -1, 0, 1, MAX_EVENT_TIME] {
            let bytes = encode(t, &[]).unwrap();
            assert_eq!(bytes.len(), TIME_WIDTH, "{t}");
            // Redis hands a valid UTF-8 value over as a string.
            let text = Str::from_inner(bytes).unwrap();
            let vector = decode(&Value::String(text)).unwrap().unwrap();
            assert_eq!((vector.event_time, vector.values), (t, Vec::new()));
        }
        assert_eq!(&encode(-3_600, &[]).unwrap()[..], b"-00000003600");
        for t in [MIN_EVENT_TIME - 1, MAX_EVENT_TIME + 1, Ts::MIN, Ts::MAX] {
            assert!(
                matches!(encode(t, &[]), Err(StoreError::Failed { .. })),
                "{t}"
            );
        }
    }

    #[test]
    fn replies_decode_or_are_corrupt() {
        assert_eq!(decode(&Value::Null).unwrap(), None);
        let corrupt = [
            Value::Integer(1),
            Value::Bytes(Bytes::from_static(b"00170415360")),
            Value::Bytes(Bytes::from_static(b"001704153600\0\0\0\0\0\0\0")),
            Value::Bytes(Bytes::from_static(b"0017041536x0")),
            Value::Array(vec![Value::Null, Value::Null]),
        ];
        for reply in corrupt {
            assert!(
                matches!(decode(&reply), Err(StoreError::Corrupt(_))),
                "{reply:?}"
            );
        }
        let group = Group {
            slot: None,
            positions: vec![2, 0],
        };
        let mut applied = vec![false; 3];
        record(
            &mut applied,
            &group,
            Value::Array(vec![Value::Integer(1), Value::Integer(0)]),
        )
        .unwrap();
        assert_eq!(applied, vec![false, false, true]);
        for reply in [
            Value::Array(vec![Value::Integer(1)]),
            Value::Array(vec![Value::Integer(1), Value::Integer(2)]),
            Value::Integer(1),
        ] {
            assert!(matches!(
                record(&mut applied, &group, reply),
                Err(StoreError::Corrupt(_))
            ));
        }
    }
}
