//! Store failures, sorted once, where they happen, into what the worker should do about them.

use std::fmt;

/// The one classification of store failures that the rest of the worker acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Throttling, timeouts, connection trouble, a busy database: will pass; retry soon.
    Transient,
    /// The store as a whole cannot work (table missing, access denied, disk full): no event
    /// can succeed until an operator fixes it; retry slowly, blame no event.
    Systemic,
    /// The store refuses this one change and always will.
    Permanent,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::Systemic => "systemic",
            ErrorKind::Permanent => "permanent",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub struct StoreError {
    pub kind: ErrorKind,
    /// What failed and, for systemic errors, how to fix it. Never holds credentials.
    pub message: String,
    /// The settings cannot work as given (no AWS credentials anywhere, say): a person must
    /// change them, waiting will not help. Systemic for the worker, which keeps retrying
    /// slowly; a command that meets it exits with the configuration error code.
    pub configuration: bool,
}

impl StoreError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
            configuration: false,
        }
    }

    /// A store that cannot work with the configuration given.
    pub fn configuration(message: impl Into<String>) -> StoreError {
        StoreError {
            configuration: true,
            ..StoreError::new(ErrorKind::Systemic, message)
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.configuration {
            write!(f, "store configuration error: {}", self.message)
        } else {
            write!(f, "{} store error: {}", self.kind, self.message)
        }
    }
}
