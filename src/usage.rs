//! Usage errors: a command given a value or a combination it cannot use. The CLI exits 2
//! for them, as for an invalid spec; runtime failures (I/O, data, training) exit 1.

/// A value or combination of options the command cannot use; the message says which and
/// what to give instead.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// An `anyhow::Error` holding a `UsageError`, for `bail!(usage(...))` and `?`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

/// Whether `e` (or any error it wraps) is a usage error.
pub fn is_usage(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<UsageError>())
}
