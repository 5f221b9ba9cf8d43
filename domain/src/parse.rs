//! The one error every parser in this crate returns: it names the field and says what was wrong.

use std::fmt;

/// A value from outside was not acceptable. `field` is the name a client used (`seatNo`,
/// `amount`...), so an adapter can put it straight into its answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ParseError {
    pub field: &'static str,
    pub reason: String,
}

impl ParseError {
    pub fn new(field: &'static str, reason: impl fmt::Display) -> Self {
        Self {
            field,
            reason: reason.to_string(),
        }
    }
}
