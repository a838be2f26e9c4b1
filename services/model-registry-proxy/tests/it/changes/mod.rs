//! Alias changes: ordering against changes made in the registry directly, and the outbox.

mod api_after_direct_change;
mod outbox;
