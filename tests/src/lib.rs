//! End-to-end tests across real stockcast processes live in `tests/tests/`.
