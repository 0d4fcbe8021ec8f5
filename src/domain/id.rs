//! Identifiers that become parts of an action key.

use super::Rejection;
use std::fmt;

/// An owner, trigger user or resource id: 1..=128 bytes, no `#` (it separates the parts of
/// an action key, so an id holding one could forge another user's key), no control
/// characters, no leading or trailing whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(String);

impl Id {
    pub const MAX_BYTES: usize = 128;

    /// `field` names the event field in the rejection message.
    pub fn parse(field: &str, value: &str) -> Result<Id, Rejection> {
        if value.is_empty() {
            return Err(Rejection::invalid(field, "must not be empty"));
        }
        if value.len() > Id::MAX_BYTES {
            return Err(Rejection::invalid(
                field,
                format!("is {} bytes, at most {} allowed", value.len(), Id::MAX_BYTES),
            ));
        }
        if value.contains('#') {
            return Err(Rejection::invalid(field, "must not contain '#'"));
        }
        if value.chars().any(char::is_control) {
            return Err(Rejection::invalid(field, "must not contain control characters"));
        }
        if value.trim() != value {
            return Err(Rejection::invalid(field, "must not start or end with whitespace"));
        }
        Ok(Id(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        assert_eq!(Id::parse("owner", "user-123").unwrap().as_str(), "user-123");
        assert!(Id::parse("owner", &"x".repeat(128)).is_ok());
    }

    #[test]
    fn refuses_what_could_forge_or_break_a_key() {
        for bad in [
            "",
            "a#b",
            " user",
            "user ",
            "us\u{0}er",
            "line\nbreak",
            &"x".repeat(129),
        ] {
            let rejection = Id::parse("owner", bad).unwrap_err();
            assert_eq!(rejection.reason.code(), "invalid_field", "{bad:?}");
            assert!(rejection.message.starts_with("owner:"), "{}", rejection.message);
        }
    }
}
