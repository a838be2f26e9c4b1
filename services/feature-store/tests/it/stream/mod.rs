//! The stream processor: its behaviour on the embedded and the production backends, the
//! trace across the bus, and what survives a store outage or a killed process.

mod cases;
mod embedded;
mod kill;
mod real;
mod restarts;
mod trace;
