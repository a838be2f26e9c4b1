//! Artifacts: what is cached and what is not, and the `sha256` tag.

mod cache_hygiene;
mod oversized;
mod sha256_tags;
