//! Client input echoed in error messages, cut to a readable length: a message that repeats a
//! 20,000-character value whole is unreadable, and a stock gRPC client refuses status
//! messages past its metadata limit (16 KiB in grpcio).

use std::borrow::Cow;

/// Most characters of one input value an error message repeats.
pub const MAX_ECHOED_CHARS: usize = 128;

/// `value` as an error message may repeat it: whole when it has at most
/// [`MAX_ECHOED_CHARS`] characters, otherwise its first ones followed by
/// `…(+N characters)`. Cuts on character boundaries.
///
/// ```
/// use stockcast_runtime::echo::truncate_for_message;
/// assert_eq!(truncate_for_message("models:/m/1"), "models:/m/1");
/// let long = "x".repeat(20_000);
/// assert!(truncate_for_message(&long).ends_with("…(+19872 characters)"));
/// ```
pub fn truncate_for_message(value: &str) -> Cow<'_, str> {
    let head = prefix(value, MAX_ECHOED_CHARS);
    if head.len() == value.len() {
        return Cow::Borrowed(value);
    }
    let rest = value[head.len()..].chars().count();
    Cow::Owned(format!("{head}…(+{rest} characters)"))
}

/// The first `chars` characters of `value` (all of it when shorter), cut on a character
/// boundary.
pub fn prefix(value: &str, chars: usize) -> &str {
    match value.char_indices().nth(chars) {
        None => value,
        Some((end, _)) => &value[..end],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_kept_whole() {
        assert!(matches!(truncate_for_message(""), Cow::Borrowed("")));
        let limit = "a".repeat(MAX_ECHOED_CHARS);
        assert_eq!(truncate_for_message(&limit), limit);
    }

    #[test]
    fn long_values_keep_their_head_and_say_how_much_was_cut() {
        let long = format!("models:/{}", "a".repeat(20_000));
        let cut = truncate_for_message(&long);
        assert!(cut.starts_with("models:/aaa"), "{cut}");
        assert!(cut.ends_with("…(+19880 characters)"), "{cut}");
        assert!(cut.chars().count() < MAX_ECHOED_CHARS + 30, "{cut}");
    }

    #[test]
    fn multibyte_characters_are_never_split() {
        let crabs = "🦀".repeat(MAX_ECHOED_CHARS + 5);
        let cut = truncate_for_message(&crabs);
        assert!(cut.starts_with(&"🦀".repeat(MAX_ECHOED_CHARS)), "{cut}");
        assert!(cut.ends_with("…(+5 characters)"), "{cut}");
    }
}
