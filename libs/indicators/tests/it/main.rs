//! The indicators against golden vectors (TA-Lib and exact rational arithmetic) and streaming
//! against batch computation. The fixtures are in `tests/golden/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod golden;
mod levels;
mod streaming;
