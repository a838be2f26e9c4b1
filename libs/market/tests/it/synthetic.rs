//! The synthetic generator: reproducible, valid, chunk-order independent, and with the
//! volatility it was asked for.

use stockcast_market::sources::synthetic::{
    CHUNK_BARS, SyntheticParams, SyntheticPath, SyntheticSource, TRADING_DAYS_PER_YEAR,
};
use stockcast_market::sources::{BackfillSpec, ChunkPosition, Source, SourceParams, SourceRecord};
use stockcast_market::{Bar, Interval, ValidationSettings, Validator};

/// 2000-01-01T00:00:00Z.
const Y2000: i64 = 946_684_800;
const DAY: i64 = 86_400;

fn path(symbol: &str, interval: Interval, params: &SyntheticParams, n: usize) -> Vec<Bar> {
    SyntheticPath::new(symbol, interval, Y2000, params)
        .unwrap()
        .take(n)
        .collect()
}

fn spec(symbols: &[&str], interval: Interval, end: i64, params: SyntheticParams) -> BackfillSpec {
    BackfillSpec {
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        interval,
        start: Y2000 + 3_600,
        end,
        params: SourceParams::Synthetic(params),
    }
}

#[test]
fn the_same_seed_gives_the_same_bars_and_another_seed_others() {
    let params = SyntheticParams::default();
    let a = path("AAPL", Interval::M5, &params, 5_000);
    assert_eq!(a, path("AAPL", Interval::M5, &params, 5_000));
    let other_seed = SyntheticParams {
        seed: params.seed + 1,
        ..params.clone()
    };
    let b = path("AAPL", Interval::M5, &other_seed, 5_000);
    assert_eq!(a.len(), b.len());
    assert!(a.iter().zip(&b).skip(1).all(|(x, y)| x.close != y.close));
    // Symbols get their own streams.
    let c = path("MSFT", Interval::M5, &params, 5_000);
    assert_ne!(a[10].close, c[10].close);
}

#[test]
fn a_path_is_pinned_to_its_seed() {
    // Golden values: if they change, every stored synthetic series changes with them, and a
    // resumed backfill would write corrections. Change them only on purpose.
    let bars = path("DEMO", Interval::D1, &SyntheticParams::default(), 3);
    assert_eq!(bars[0].open, 100.0);
    assert_eq!(bars[0].ts, Y2000 + 2 * DAY); // 2000-01-01 was a Saturday.
    let closes: Vec<f64> = bars.iter().map(|b| b.close).collect();
    assert_eq!(closes, [97.5869, 97.9111, 99.7113]);
}

#[test]
fn every_bar_is_valid_even_in_rough_weather() {
    let validator = Validator::new(&ValidationSettings::default()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let rough = SyntheticParams {
        seed: 3,
        initial_price: 5.0,
        annual_volatility: 0.8,
        turbulent_volatility_multiplier: 4.0,
        regime_switch_probability: 0.05,
        jumps_per_year: 50.0,
        jump_volatility: 0.2,
        ..SyntheticParams::default()
    };
    for params in [SyntheticParams::default(), rough] {
        for (interval, n) in [
            (Interval::D1, 6_000),
            (Interval::M1, 50_000),
            (Interval::M60, 10_000),
        ] {
            let bars = path("RUFF", interval, &params, n);
            assert_eq!(bars.len(), n);
            for pair in bars.windows(2) {
                assert_eq!(pair[1].open, pair[0].close);
                assert!(pair[1].ts > pair[0].ts);
            }
            for bar in bars.iter().filter(|b| b.ts <= now) {
                validator
                    .check(bar, now)
                    .unwrap_or_else(|r| panic!("{bar:?}: {r}"));
                assert!(bar.low > 0.0 && bar.volume > 0.0);
            }
        }
    }
}

#[test]
fn no_bar_opens_on_a_weekend_or_outside_the_session() {
    for interval in Interval::ALL {
        for bar in path("GRID", interval, &SyntheticParams::default(), 20_000) {
            let day = bar.ts.div_euclid(DAY);
            let weekday = (day + 3).rem_euclid(7); // Monday = 0
            assert!(weekday < 5, "{interval} bar on a weekend: {}", bar.ts);
            let time = bar.ts.rem_euclid(DAY);
            if interval == Interval::D1 {
                assert_eq!(time, 0);
            } else {
                assert!(
                    (14 * 3_600 + 1_800..21 * 3_600).contains(&time),
                    "{interval}: {time}"
                );
            }
        }
    }
}

#[test]
fn calm_volatility_matches_the_parameter() {
    let sigma = 0.25;
    let params = SyntheticParams {
        seed: 11,
        annual_volatility: sigma,
        annual_drift: 0.0,
        regime_switch_probability: 0.0,
        jumps_per_year: 0.0,
        ..SyntheticParams::default()
    };
    for (interval, n, bars_per_year) in [
        (Interval::D1, 40_000, TRADING_DAYS_PER_YEAR),
        (Interval::M5, 40_000, TRADING_DAYS_PER_YEAR * 78.0),
    ] {
        let bars = path("VOL", interval, &params, n + 1);
        let returns: Vec<f64> = bars
            .windows(2)
            .map(|w| (w[1].close / w[0].close).ln())
            .collect();
        let mean = returns.iter().sum::<f64>() / n as f64;
        let var = returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let annualized = (var * bars_per_year).sqrt();
        // The standard error of a sample standard deviation of n normals is σ/√(2n).
        let tolerance = 5.0 * sigma / (2.0 * n as f64).sqrt();
        assert!(
            (annualized - sigma).abs() < tolerance,
            "{interval}: annualized volatility {annualized}, expected {sigma} ± {tolerance}"
        );
    }
}

async fn fetch_all(spec: &BackfillSpec, reverse: bool) -> Vec<Bar> {
    let source = SyntheticSource;
    let mut chunks = source.plan(spec).await.unwrap();
    if reverse {
        chunks.reverse();
    }
    let mut bars = Vec::new();
    for chunk in &chunks {
        for record in source.fetch(spec, chunk).await.unwrap() {
            let SourceRecord::Bar(bar) = record else {
                panic!("{record:?}");
            };
            bars.push(bar);
        }
    }
    bars
}

#[tokio::test]
async fn chunks_fetched_in_reverse_make_the_whole_path() {
    let end = Y2000 + 200 * DAY;
    let spec = spec(
        &["AAA", "BBB"],
        Interval::M1,
        end,
        SyntheticParams::default(),
    );
    let chunks = SyntheticSource.plan(&spec).await.unwrap();
    let per_symbol = chunks
        .iter()
        .filter(|c| c.symbol.as_deref() == Some("AAA"))
        .count();
    assert!(per_symbol >= 5, "{per_symbol} chunks");
    for chunk in &chunks {
        let ChunkPosition::Time { start, end } = chunk.position else {
            panic!("{chunk:?}");
        };
        assert_eq!(
            chunk.key,
            format!("{}/{start}-{end}", chunk.symbol.as_deref().unwrap())
        );
    }

    let mut reversed = fetch_all(&spec, true).await;
    reversed.sort_by(|a, b| (&a.symbol, a.ts).cmp(&(&b.symbol, b.ts)));
    assert_eq!(reversed, fetch_all(&spec, false).await);

    for symbol in ["AAA", "BBB"] {
        let whole: Vec<Bar> = SyntheticPath::new(
            symbol,
            Interval::M1,
            spec.start,
            &SyntheticParams::default(),
        )
        .unwrap()
        .take_while(|b| b.ts < end)
        .collect();
        let fetched: Vec<Bar> = reversed
            .iter()
            .filter(|b| b.symbol == symbol)
            .cloned()
            .collect();
        assert_eq!(fetched, whole);
        assert!(whole.len() > 4 * CHUNK_BARS);
    }
}

#[tokio::test]
async fn no_symbols_or_bad_parameters_are_fatal() {
    let end = Y2000 + 10 * DAY;
    assert!(
        SyntheticSource
            .plan(&spec(&[], Interval::D1, end, SyntheticParams::default()))
            .await
            .is_err()
    );
    let bad = SyntheticParams {
        annual_volatility: -1.0,
        ..SyntheticParams::default()
    };
    let err = SyntheticSource
        .plan(&spec(&["X"], Interval::D1, end, bad))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("annual_volatility"), "{err}");
}
