//! Conversions between the domain types and `stockcast.types.v1`.

use stockcast_proto::stockcast::types::v1 as pb;

use crate::{Bar, Interval, Rejection};
use pb::RejectReason;

impl From<Interval> for pb::Interval {
    fn from(interval: Interval) -> Self {
        match interval {
            Interval::M1 => pb::Interval::Interval1Minute,
            Interval::M5 => pb::Interval::Interval5Minutes,
            Interval::M15 => pb::Interval::Interval15Minutes,
            Interval::M30 => pb::Interval::Interval30Minutes,
            Interval::M60 => pb::Interval::Interval60Minutes,
            Interval::D1 => pb::Interval::Interval1Day,
        }
    }
}

/// The domain interval of a protobuf enum value, or why not.
pub fn interval_from_proto(value: i32) -> Result<Interval, Rejection> {
    Ok(match pb::Interval::try_from(value) {
        Ok(pb::Interval::Interval1Minute) => Interval::M1,
        Ok(pb::Interval::Interval5Minutes) => Interval::M5,
        Ok(pb::Interval::Interval15Minutes) => Interval::M15,
        Ok(pb::Interval::Interval30Minutes) => Interval::M30,
        Ok(pb::Interval::Interval60Minutes) => Interval::M60,
        Ok(pb::Interval::Interval1Day) => Interval::D1,
        Ok(pb::Interval::Unspecified) => {
            return Err(Rejection::new(
                RejectReason::InvalidInterval,
                "interval",
                "interval is unspecified",
            ));
        }
        Err(_) => {
            return Err(Rejection::new(
                RejectReason::InvalidInterval,
                "interval",
                format!("interval {value} is not a known interval"),
            ));
        }
    })
}

/// Seconds since epoch of a protobuf timestamp that must be on a whole second.
pub fn seconds_from_proto(
    ts: Option<&prost_types::Timestamp>,
    field: &'static str,
) -> Result<i64, Rejection> {
    let ts = ts.ok_or_else(|| {
        Rejection::new(
            RejectReason::MissingField,
            field,
            format!("{field} is missing"),
        )
    })?;
    if ts.nanos != 0 {
        return Err(Rejection::new(
            RejectReason::InvalidTimestamp,
            field,
            format!("{field} has {} ns; bars open on whole seconds", ts.nanos),
        ));
    }
    Ok(ts.seconds)
}

/// A protobuf timestamp of seconds since epoch.
pub fn seconds_to_proto(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

impl TryFrom<&pb::Bar> for Bar {
    type Error = Rejection;

    fn try_from(bar: &pb::Bar) -> Result<Self, Self::Error> {
        Ok(Bar {
            symbol: bar.symbol.clone(),
            interval: interval_from_proto(bar.interval)?,
            ts: seconds_from_proto(bar.ts.as_ref(), "ts")?,
            open: bar.open,
            high: bar.high,
            low: bar.low,
            close: bar.close,
            volume: bar.volume,
        })
    }
}

impl Bar {
    /// The protobuf form, naming the source it came from.
    pub fn to_proto(&self, source: &str) -> pb::Bar {
        pb::Bar {
            symbol: self.symbol.clone(),
            interval: pb::Interval::from(self.interval) as i32,
            ts: Some(seconds_to_proto(self.ts)),
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume: self.volume,
            source: source.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_round_trip_through_proto() {
        for interval in Interval::ALL {
            let bar = Bar {
                symbol: "MSFT".into(),
                interval,
                ts: 1_700_000_000 - 1_700_000_000 % 86_400,
                open: 1.0,
                high: 2.0,
                low: 0.5,
                close: 1.5,
                volume: 10.0,
            };
            let back = Bar::try_from(&bar.to_proto("test")).unwrap();
            assert_eq!(back, bar);
        }
    }

    #[test]
    fn unspecified_or_unknown_intervals_are_refused_by_field() {
        let mut bar = Bar {
            symbol: "X".into(),
            interval: Interval::M1,
            ts: 0,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: 0.0,
        }
        .to_proto("t");
        bar.interval = 0;
        assert_eq!(Bar::try_from(&bar).unwrap_err().field, "interval");
        bar.interval = 99;
        assert!(Bar::try_from(&bar).unwrap_err().reason.contains("99"));
        bar.interval = 1;
        bar.ts = None;
        assert_eq!(
            Bar::try_from(&bar).unwrap_err().code,
            RejectReason::MissingField
        );
    }
}
