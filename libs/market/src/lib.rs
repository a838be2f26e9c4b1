//! Market data for stockcast: [`Bar`] and [`Interval`], the [`Validator`] every bar passes
//! before it is accepted, the [`sources`] bars come from, and conversions to and from the
//! protobuf contracts ([`convert`]).

mod bar;
pub mod convert;
pub mod sources;
mod validate;

pub use bar::{Bar, Interval, ParseIntervalError};
pub use validate::{
    DEFAULT_SYMBOL_PATTERN, MIN_TS, Rejection, ValidationSettings, Validator, cut, echo, format_ts,
};
