//! Synthetic generator: reproducible price paths for demos and load tests.
//!
//! Each symbol follows geometric Brownian motion whose volatility switches between a calm
//! and a turbulent regime (a two-state Markov chain, [`SyntheticParams::regime_switch_probability`]
//! per bar), plus Poisson jumps with normal log sizes. Drift and volatility are annual and
//! scaled to the bar: a year is 252 trading days of one 390-minute session.
//!
//! Bars open on weekdays (holidays are not modelled): daily bars at 00:00 UTC, intraday
//! bars between 14:30 and 21:00 UTC, the US regular session in winter time (daylight saving
//! is ignored so that the grid is the same every week; 60-minute bars open on the hour, from
//! 15:00). The bar's open is the previous close; high and low are drawn from the extremes of
//! a Brownian bridge between open and close, so `low <= min(open, close)` and
//! `max(open, close) <= high`. Prices are rounded to 4 decimals: real prices are quoted in
//! ticks, and rounding hides last-bit differences between platforms' `exp`, so a job resumed
//! on another machine writes the same values.
//!
//! A path is a function of (seed, symbol, interval, start): the per-symbol stream is
//! xoshiro256** seeded through SplitMix64 with the seed and an FNV-1a hash of the symbol,
//! all written out in this crate so that no dependency upgrade changes a path.

mod rng;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use self::rng::{Rng, fnv1a64};
use super::{BackfillSpec, Chunk, ChunkPosition, Source, SourceError, SourceParams, SourceRecord};
use crate::{Bar, Interval};

/// Bars per chunk of a backfill.
pub const CHUNK_BARS: usize = 10_000;

/// Trading days in a year, to scale annual drift and volatility.
pub const TRADING_DAYS_PER_YEAR: f64 = 252.0;
/// Minutes in a regular session, to scale to intraday bars.
pub const SESSION_MINUTES: f64 = 390.0;

const DAY: i64 = 86_400;
/// 14:30 UTC, seconds after midnight.
const SESSION_OPEN: i64 = 14 * 3_600 + 1_800;
/// 21:00 UTC, seconds after midnight.
const SESSION_CLOSE: i64 = 21 * 3_600;
/// The last open time a path produces: 9999-12-31, where RFC 3339 years end.
const LAST_TS: i64 = 253_402_214_400;
/// Shares traded on a calm day; bars get their share of it.
const DAILY_VOLUME: f64 = 1_000_000.0;
/// Standard deviation of the log of volume noise.
const VOLUME_NOISE: f64 = 0.25;

/// Parameters of the synthetic generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticParams {
    /// Seed; the same seed, symbol and range give the same bars.
    pub seed: u64,
    /// First open price.
    pub initial_price: f64,
    /// Annualized drift, a fraction (0.05 = 5 % a year).
    pub annual_drift: f64,
    /// Annualized volatility in the calm regime, a fraction.
    pub annual_volatility: f64,
    /// Volatility multiplier in the turbulent regime.
    pub turbulent_volatility_multiplier: f64,
    /// Probability per bar of switching regime.
    pub regime_switch_probability: f64,
    /// Expected jumps per year.
    pub jumps_per_year: f64,
    /// Standard deviation of a jump's log return.
    pub jump_volatility: f64,
}

impl Default for SyntheticParams {
    fn default() -> Self {
        Self {
            seed: 42,
            initial_price: 100.0,
            annual_drift: 0.05,
            annual_volatility: 0.2,
            turbulent_volatility_multiplier: 3.0,
            regime_switch_probability: 0.002,
            jumps_per_year: 4.0,
            jump_volatility: 0.04,
        }
    }
}

/// A parameter outside its domain.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("synthetic parameter {field} is {value}, {expected}")]
pub struct InvalidParams {
    /// The parameter.
    pub field: &'static str,
    /// Its value.
    pub value: f64,
    /// What it must be.
    pub expected: &'static str,
}

impl SyntheticParams {
    /// Checks every parameter's domain.
    pub fn validate(&self) -> Result<(), InvalidParams> {
        let checks: [(&'static str, f64, bool, &'static str); 7] = [
            (
                "initial_price",
                self.initial_price,
                self.initial_price > 0.0,
                "not a finite price > 0",
            ),
            (
                "annual_drift",
                self.annual_drift,
                self.annual_drift.abs() <= 10.0,
                "not within ±10 (1000 % a year)",
            ),
            (
                "annual_volatility",
                self.annual_volatility,
                (0.0..=10.0).contains(&self.annual_volatility),
                "not within 0 and 10",
            ),
            (
                "turbulent_volatility_multiplier",
                self.turbulent_volatility_multiplier,
                (0.0..=100.0).contains(&self.turbulent_volatility_multiplier),
                "not within 0 and 100",
            ),
            (
                "regime_switch_probability",
                self.regime_switch_probability,
                (0.0..=1.0).contains(&self.regime_switch_probability),
                "not a probability within 0 and 1",
            ),
            (
                "jumps_per_year",
                self.jumps_per_year,
                (0.0..=10_000.0).contains(&self.jumps_per_year),
                "not within 0 and 10000",
            ),
            (
                "jump_volatility",
                self.jump_volatility,
                (0.0..=1.0).contains(&self.jump_volatility),
                "not within 0 and 1",
            ),
        ];
        for (field, value, ok, expected) in checks {
            // `contains` and comparisons are false for NaN; infinities fail the bounds.
            if !(ok && value.is_finite()) {
                return Err(InvalidParams {
                    field,
                    value,
                    expected,
                });
            }
        }
        Ok(())
    }
}

fn is_weekday(day: i64) -> bool {
    // 1970-01-01 was a Thursday: (day + 3) mod 7 counts from Monday = 0.
    (day + 3).rem_euclid(7) < 5
}

/// The first bar open time of the generator's grid at or after `t` (seconds since epoch,
/// UTC): weekdays at 00:00 for daily bars, weekdays in [14:30, 21:00) UTC for intraday bars.
pub fn grid_at_or_after(t: i64, interval: Interval) -> i64 {
    let len = interval.seconds();
    let mut t = t.div_euclid(len) * len + if t.rem_euclid(len) == 0 { 0 } else { len };
    loop {
        let day = t.div_euclid(DAY);
        let time = t.rem_euclid(DAY);
        if !is_weekday(day) || time >= SESSION_CLOSE && interval.is_intraday() {
            t = (day + 1) * DAY;
            continue;
        }
        if interval.is_intraday() && time < SESSION_OPEN {
            let first = (SESSION_OPEN + len - 1) / len * len;
            return day * DAY + first;
        }
        return t;
    }
}

/// An endless, reproducible series of bars for one symbol; see the module docs.
///
/// ```
/// use stockcast_market::Interval;
/// use stockcast_market::sources::synthetic::{SyntheticParams, SyntheticPath};
///
/// let bars: Vec<_> = SyntheticPath::new("DEMO", Interval::D1, 1_704_067_200, &SyntheticParams::default())
///     .unwrap()
///     .take(5)
///     .collect();
/// assert_eq!(bars[1].open, bars[0].close);
/// ```
#[derive(Debug, Clone)]
pub struct SyntheticPath {
    symbol: String,
    interval: Interval,
    params: SyntheticParams,
    rng: Rng,
    /// Open time of the next bar.
    next_ts: i64,
    /// Log of the last close, unrounded: the path's state.
    log_price: f64,
    /// The last close as published (rounded), the next bar's open.
    close: f64,
    turbulent: bool,
    /// Bar length in years.
    dt: f64,
    /// The bar's share of a day's volume.
    volume_share: f64,
}

/// One generated bar, before it gets its symbol.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Step {
    ts: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
}

impl SyntheticPath {
    /// The path of `symbol` whose first bar is the first grid time at or after `start`.
    pub fn new(
        symbol: &str,
        interval: Interval,
        start: i64,
        params: &SyntheticParams,
    ) -> Result<Self, InvalidParams> {
        params.validate()?;
        let seed = params.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ fnv1a64(symbol.as_bytes());
        let (dt, volume_share) = match interval {
            Interval::D1 => (1.0 / TRADING_DAYS_PER_YEAR, 1.0),
            intraday => {
                let minutes = (intraday.seconds() / 60) as f64;
                (
                    minutes / (TRADING_DAYS_PER_YEAR * SESSION_MINUTES),
                    minutes / SESSION_MINUTES,
                )
            }
        };
        let close = round_price(params.initial_price);
        Ok(Self {
            symbol: symbol.to_owned(),
            interval,
            params: params.clone(),
            rng: Rng::new(seed),
            next_ts: grid_at_or_after(start, interval),
            log_price: params.initial_price.ln(),
            close,
            turbulent: false,
            dt,
            volume_share,
        })
    }

    /// Whether the path is in the turbulent regime (as of the last bar).
    pub fn is_turbulent(&self) -> bool {
        self.turbulent
    }

    fn step(&mut self) -> Option<Step> {
        let ts = self.next_ts;
        if ts > LAST_TS {
            return None;
        }
        self.next_ts = grid_at_or_after(ts + self.interval.seconds(), self.interval);
        let p = &self.params;
        let rng = &mut self.rng;
        // The draws happen in a fixed order, whatever the parameters, so a path is a
        // function of the seed alone.
        if rng.uniform() < p.regime_switch_probability {
            self.turbulent = !self.turbulent;
        }
        let sigma = if self.turbulent {
            p.annual_volatility * p.turbulent_volatility_multiplier
        } else {
            p.annual_volatility
        };
        let variance = sigma * sigma * self.dt;
        let mut x =
            (p.annual_drift - 0.5 * sigma * sigma) * self.dt + variance.sqrt() * rng.normal();
        // Jumps have mean log size -σj²/2, so they add no drift to the price itself.
        let jumps = rng.poisson(p.jumps_per_year * self.dt);
        for _ in 0..jumps {
            x += -0.5 * p.jump_volatility * p.jump_volatility + p.jump_volatility * rng.normal();
        }
        // Maximum and minimum of a Brownian bridge from 0 to x with this variance.
        let up = 0.5 * (x + (x * x - 2.0 * variance * rng.uniform_open0().ln()).sqrt());
        let down = 0.5 * (x - (x * x - 2.0 * variance * rng.uniform_open0().ln()).sqrt());
        let noise = (VOLUME_NOISE * rng.normal() - 0.5 * VOLUME_NOISE * VOLUME_NOISE).exp();

        let open = self.close;
        let log_open = self.log_price;
        self.log_price += x;
        let close = round_price(self.log_price.exp());
        // Rounding is monotone, so the bridge's order survives it; min/max guard the open,
        // which was rounded from the previous bar.
        let high = round_price((log_open + up).exp()).max(open).max(close);
        let low = round_price((log_open + down).exp()).min(open).min(close);
        let regime = if self.turbulent {
            p.turbulent_volatility_multiplier.max(1.0)
        } else {
            1.0
        };
        let volume = (DAILY_VOLUME * self.volume_share * noise * regime)
            .round()
            .max(1.0);
        self.close = close;
        Some(Step {
            ts,
            open,
            high,
            low,
            close,
            volume,
        })
    }
}

/// Four decimals, and never below one ten-thousandth (a price must be positive).
fn round_price(price: f64) -> f64 {
    ((price * 1e4).round() / 1e4).max(1e-4)
}

impl Iterator for SyntheticPath {
    type Item = Bar;

    fn next(&mut self) -> Option<Bar> {
        let step = self.step()?;
        Some(Bar {
            symbol: self.symbol.clone(),
            interval: self.interval,
            ts: step.ts,
            open: step.open,
            high: step.high,
            low: step.low,
            close: step.close,
            volume: step.volume,
        })
    }
}

/// The synthetic source.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyntheticSource;

fn synthetic_params(spec: &BackfillSpec) -> Result<&SyntheticParams, SourceError> {
    let SourceParams::Synthetic(params) = &spec.params else {
        return Err(SourceError::Fatal(format!(
            "the synthetic source was given {} parameters",
            spec.params.source_name()
        )));
    };
    params
        .validate()
        .map_err(|e| SourceError::Fatal(e.to_string()))?;
    Ok(params)
}

/// Bars of `symbol` with open times in `[from, to)`, on the path anchored at `spec.start`.
pub fn generate(
    spec: &BackfillSpec,
    params: &SyntheticParams,
    symbol: &str,
    from: i64,
    to: i64,
) -> Result<Vec<Bar>, InvalidParams> {
    let mut path = SyntheticPath::new(symbol, spec.interval, spec.start, params)?;
    let to = to.min(spec.end);
    // Bars before the chunk are generated (the state depends on them) but not built.
    while path.next_ts < from {
        if path.step().is_none() {
            return Ok(Vec::new());
        }
    }
    Ok(path.take_while(|bar| bar.ts < to).collect())
}

#[async_trait]
impl Source for SyntheticSource {
    async fn plan(&self, spec: &BackfillSpec) -> Result<Vec<Chunk>, SourceError> {
        synthetic_params(spec)?;
        if spec.symbols.is_empty() {
            return Err(SourceError::Fatal(
                "the synthetic source needs at least one symbol".to_owned(),
            ));
        }
        let mut chunks = Vec::new();
        let len = spec.interval.seconds();
        for symbol in &spec.symbols {
            let mut t = grid_at_or_after(spec.start, spec.interval);
            while t < spec.end && t <= LAST_TS {
                let start = t;
                for _ in 0..CHUNK_BARS {
                    t = grid_at_or_after(t + len, spec.interval);
                    if t >= spec.end {
                        break;
                    }
                }
                let end = t.min(spec.end);
                chunks.push(Chunk {
                    key: format!("{symbol}/{start}-{end}"),
                    symbol: Some(symbol.clone()),
                    position: ChunkPosition::Time { start, end },
                });
            }
        }
        Ok(chunks)
    }

    async fn fetch(
        &self,
        spec: &BackfillSpec,
        chunk: &Chunk,
    ) -> Result<Vec<SourceRecord>, SourceError> {
        let params = synthetic_params(spec)?.clone();
        let (ChunkPosition::Time { start, end }, Some(symbol)) = (&chunk.position, &chunk.symbol)
        else {
            return Err(SourceError::Fatal(format!(
                "synthetic chunk {:?} has no symbol and time range",
                chunk.key
            )));
        };
        if !spec.symbols.contains(symbol) {
            return Err(SourceError::Fatal(format!(
                "synthetic chunk {:?} is for {symbol:?}, which the backfill does not request",
                chunk.key
            )));
        }
        let (spec, symbol, start, end) = (spec.clone(), symbol.clone(), *start, *end);
        // Regenerating a path up to a late chunk takes milliseconds: off the async workers.
        let bars = tokio::task::spawn_blocking(move || {
            generate(&spec, &params, &symbol, start.max(spec.start), end)
        })
        .await
        .map_err(|e| SourceError::Fatal(format!("synthetic task failed: {e}")))?
        .map_err(|e| SourceError::Fatal(e.to_string()))?;
        Ok(bars.into_iter().map(SourceRecord::Bar).collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_grid_skips_weekends_and_nights() {
        // 2024-01-05 is a Friday.
        let friday = 1_704_412_800;
        assert_eq!(grid_at_or_after(friday, Interval::D1), friday);
        assert_eq!(grid_at_or_after(friday + 1, Interval::D1), friday + 3 * DAY);
        assert_eq!(
            grid_at_or_after(friday, Interval::M5),
            friday + SESSION_OPEN
        );
        assert_eq!(grid_at_or_after(friday, Interval::M60), friday + 15 * 3_600);
        assert_eq!(
            grid_at_or_after(friday + SESSION_CLOSE - 60, Interval::M1),
            friday + SESSION_CLOSE - 60
        );
        assert_eq!(
            grid_at_or_after(friday + SESSION_CLOSE, Interval::M1),
            friday + 3 * DAY + SESSION_OPEN
        );
        let bars_per_day = |interval: Interval| {
            let mut t = grid_at_or_after(friday, interval);
            let mut n = 0;
            while t < friday + DAY {
                n += 1;
                t = grid_at_or_after(t + interval.seconds(), interval);
            }
            n
        };
        assert_eq!(bars_per_day(Interval::M1), 390);
        assert_eq!(bars_per_day(Interval::M30), 13);
        assert_eq!(bars_per_day(Interval::M60), 6);
    }

    #[test]
    fn volume_is_higher_when_turbulent() {
        let params = SyntheticParams {
            regime_switch_probability: 0.01,
            ..SyntheticParams::default()
        };
        let mut path = SyntheticPath::new("VOL", Interval::D1, 0, &params).unwrap();
        let (mut calm, mut turbulent) = (Vec::new(), Vec::new());
        for _ in 0..50_000 {
            let step = path.step().unwrap();
            if path.is_turbulent() {
                turbulent.push(step.volume);
            } else {
                calm.push(step.volume);
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(calm.len() > 1_000 && turbulent.len() > 1_000);
        assert!(mean(&turbulent) > 2.0 * mean(&calm));
    }

    #[test]
    fn bad_parameters_are_named() {
        let params = SyntheticParams {
            regime_switch_probability: 1.5,
            ..SyntheticParams::default()
        };
        let err = SyntheticPath::new("X", Interval::D1, 0, &params).unwrap_err();
        assert_eq!(err.field, "regime_switch_probability");
        let params = SyntheticParams {
            initial_price: f64::NAN,
            ..SyntheticParams::default()
        };
        assert_eq!(params.validate().unwrap_err().field, "initial_price");
    }
}
