//! The request budget Alpha Vantage imposes: calls per minute and calls per UTC day.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use tokio::time::Instant;

/// The calls of one UTC day are spent; the next call is possible after `retry_after`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the daily budget of {calls_per_day} Alpha Vantage calls is spent")]
pub struct DailyBudgetSpent {
    /// Calls allowed per UTC day.
    pub calls_per_day: u32,
    /// Time until the next UTC midnight, when the budget renews.
    pub retry_after: Duration,
}

/// Limits calls to `calls_per_window` in any sliding window (a minute in production) and to
/// `calls_per_day` per UTC day, for every fetch that shares it.
///
/// Callers wait for a window slot (asynchronously, first come first served) but never for
/// the next day: [`acquire`](Self::acquire) fails at once when the day is spent, so a
/// backfill job can pause instead of holding a task for hours.
#[derive(Debug)]
pub struct RequestBudget {
    calls_per_window: u32,
    window: Duration,
    calls_per_day: u32,
    /// Held while a caller waits for a slot, so waiters are served in arrival order.
    turn: tokio::sync::Mutex<()>,
    /// Never held across an await.
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Send times of the calls within the last window, oldest first.
    recent: VecDeque<Instant>,
    /// The UTC day `spent_today` counts.
    day: NaiveDate,
    spent_today: u32,
}

impl RequestBudget {
    /// A budget of `calls_per_minute` and `calls_per_day` (both at least 1).
    pub fn new(calls_per_minute: u32, calls_per_day: u32) -> Self {
        Self::with_window(calls_per_minute, Duration::from_secs(60), calls_per_day)
    }

    /// A budget whose short window is `window` instead of a minute (tests shorten it).
    pub fn with_window(calls_per_window: u32, window: Duration, calls_per_day: u32) -> Self {
        Self {
            calls_per_window: calls_per_window.max(1),
            window,
            calls_per_day,
            turn: tokio::sync::Mutex::new(()),
            state: Mutex::new(State {
                recent: VecDeque::new(),
                day: Utc::now().date_naive(),
                spent_today: 0,
            }),
        }
    }

    /// Takes one call from the budget, waiting for a slot in the window if needed.
    pub async fn acquire(&self) -> Result<(), DailyBudgetSpent> {
        let _turn = self.turn.lock().await;
        loop {
            let wait = {
                let mut state = self.state();
                let now = Instant::now();
                self.refresh(&mut state, now, Utc::now());
                if state.spent_today >= self.calls_per_day {
                    return Err(self.spent(Utc::now()));
                }
                if (state.recent.len() as u64) < u64::from(self.calls_per_window) {
                    state.recent.push_back(now);
                    state.spent_today += 1;
                    return Ok(());
                }
                match state.recent.front() {
                    Some(oldest) => (*oldest + self.window).saturating_duration_since(now),
                    None => Duration::ZERO,
                }
            };
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                "alpha vantage minute budget spent, waiting"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Marks the rest of today's budget as spent, because Alpha Vantage said so.
    pub fn exhaust_day(&self) -> DailyBudgetSpent {
        let mut state = self.state();
        let now = Utc::now();
        self.refresh(&mut state, Instant::now(), now);
        state.spent_today = state.spent_today.max(self.calls_per_day);
        self.spent(now)
    }

    /// Calls left `(in the current window, today)`.
    pub fn status(&self) -> (u32, u32) {
        let mut state = self.state();
        self.refresh(&mut state, Instant::now(), Utc::now());
        let in_window = u32::try_from(state.recent.len()).unwrap_or(u32::MAX);
        let left_day = self.calls_per_day.saturating_sub(state.spent_today);
        let left_window = self
            .calls_per_window
            .saturating_sub(in_window)
            .min(left_day);
        (left_window, left_day)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every point a panic could occur, so a poisoned lock
        // is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets calls older than the window and the counts of past days.
    fn refresh(&self, state: &mut State, now: Instant, utc: DateTime<Utc>) {
        while let Some(oldest) = state.recent.front() {
            if *oldest + self.window <= now {
                state.recent.pop_front();
            } else {
                break;
            }
        }
        let today = utc.date_naive();
        if today != state.day {
            state.day = today;
            state.spent_today = 0;
        }
    }

    fn spent(&self, now: DateTime<Utc>) -> DailyBudgetSpent {
        DailyBudgetSpent {
            calls_per_day: self.calls_per_day,
            retry_after: until_next_utc_midnight(now),
        }
    }
}

/// Time from `now` to the next 00:00 UTC.
pub fn until_next_utc_midnight(now: DateTime<Utc>) -> Duration {
    now.date_naive()
        .succ_opt()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .and_then(|midnight| (midnight.and_utc() - now).to_std().ok())
        .unwrap_or(Duration::from_secs(86_400))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_minute_window_slides() {
        let budget = RequestBudget::new(2, 100);
        let start = Instant::now();
        budget.acquire().await.unwrap();
        tokio::time::advance(Duration::from_secs(10)).await;
        budget.acquire().await.unwrap();
        assert_eq!(budget.status(), (0, 98));

        // The third call waits until the first leaves the window, 60 s after it was made.
        budget.acquire().await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(60));
        // The fourth waits for the second, made at 10 s.
        budget.acquire().await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(70));
        assert_eq!(budget.status(), (0, 96));

        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(budget.status(), (2, 96));
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_arrival_order() {
        let budget = std::sync::Arc::new(RequestBudget::new(1, 100));
        budget.acquire().await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for n in 0..3 {
            let budget = budget.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                budget.acquire().await.unwrap();
                tx.send((n, Instant::now())).unwrap();
            });
            tokio::task::yield_now().await;
        }
        drop(tx);
        let mut order = Vec::new();
        while let Some((n, _)) = rx.recv().await {
            order.push(n);
        }
        assert_eq!(order, vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn a_spent_day_fails_at_once_with_the_time_to_midnight() {
        let budget = RequestBudget::new(10, 2);
        budget.acquire().await.unwrap();
        budget.acquire().await.unwrap();
        let before = until_next_utc_midnight(Utc::now());
        let spent = budget.acquire().await.unwrap_err();
        assert_eq!(spent.calls_per_day, 2);
        assert!(spent.retry_after <= before, "{spent:?} vs {before:?}");
        assert!(before - spent.retry_after < Duration::from_secs(5));
        assert_eq!(budget.status(), (0, 0));
    }

    #[tokio::test]
    async fn exhausting_the_day_blocks_further_calls() {
        let budget = RequestBudget::new(10, 25);
        budget.acquire().await.unwrap();
        budget.exhaust_day();
        assert_eq!(budget.status(), (0, 0));
        assert!(budget.acquire().await.is_err());
    }

    #[test]
    fn midnight_is_counted_in_utc() {
        let now = DateTime::parse_from_rfc3339("2024-03-10T22:30:00-05:00")
            .unwrap()
            .with_timezone(&Utc);
        // 03:30 UTC on the 11th: 20 h 30 min to go.
        assert_eq!(
            until_next_utc_midnight(now),
            Duration::from_secs(20 * 3600 + 30 * 60)
        );
    }
}
