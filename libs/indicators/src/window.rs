//! Fixed-capacity ring buffer shared by the rolling indicators.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// The last `cap` values pushed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Window {
    cap: usize,
    values: VecDeque<f64>,
}

impl Window {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            values: VecDeque::with_capacity(cap),
        }
    }

    /// Appends `v`; returns the value that fell out once the window is full.
    pub(crate) fn push(&mut self, v: f64) -> Option<f64> {
        let evicted = if self.values.len() == self.cap {
            self.values.pop_front()
        } else {
            None
        };
        self.values.push_back(v);
        evicted
    }

    pub(crate) fn is_full(&self) -> bool {
        self.values.len() == self.cap
    }

    /// The oldest value held.
    pub(crate) fn front(&self) -> Option<f64> {
        self.values.front().copied()
    }
}

impl Window {
    /// Sum of the values held, oldest first.
    pub(crate) fn sum(&self) -> f64 {
        self.values.iter().sum()
    }
}
