//! Why an event was not applied, as a stable code plus a human message.

use std::fmt;

/// Stable reason codes (SPEC.md): logs, metrics and dead letters carry them verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    TooLarge,
    InvalidJson,
    MissingField,
    InvalidField,
    StoreRejected,
    MaxDeliveries,
    /// A delivery channel refused a job for good (bad credentials, a payload it rejects).
    ChannelRejected,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::TooLarge,
        Reason::InvalidJson,
        Reason::MissingField,
        Reason::InvalidField,
        Reason::StoreRejected,
        Reason::MaxDeliveries,
        Reason::ChannelRejected,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::InvalidJson => "invalid_json",
            Reason::MissingField => "missing_field",
            Reason::InvalidField => "invalid_field",
            Reason::StoreRejected => "store_rejected",
            Reason::MaxDeliveries => "max_deliveries",
            Reason::ChannelRejected => "channel_rejected",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An event that will never be applied, however often it is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Rejection {
    pub reason: Reason,
    /// Names the field and the problem; never echoes more than a short piece of the input.
    pub message: String,
}

impl Rejection {
    pub fn new(reason: Reason, message: impl Into<String>) -> Rejection {
        Rejection {
            reason,
            message: message.into(),
        }
    }

    pub fn invalid(field: &str, problem: impl fmt::Display) -> Rejection {
        Rejection::new(Reason::InvalidField, format!("{field}: {problem}"))
    }

    pub fn missing(field: &str) -> Rejection {
        Rejection::new(Reason::MissingField, format!("{field}: required"))
    }
}
