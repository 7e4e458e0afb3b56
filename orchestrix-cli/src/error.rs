//! Why a command failed, and the exit code that says so (ADR 0041).

use orchestrix::StoreError;

/// A failed command: what went wrong, said for a person, and its exit code
/// ([`Failure::exit_code`]).
///
/// | code | variant |
/// | --- | --- |
/// | 1 | [`Failure::Store`]: the store or the input answered with an error |
/// | 2 | [`Failure::Usage`]: bad arguments or URL |
/// | 3 | [`Failure::Connect`]: the store cannot be reached or refused the credentials |
/// | 4 | [`Failure::NotFound`]: no such stream, dead letter, file or database |
/// | 5 | [`Failure::Refused`]: not confirmed, or the target holds other data |
/// | 6 | [`Failure::Verification`]: `verify` found a violation, or a copy did not verify |
/// | 7 | [`Failure::Timeout`]: no projection runner acknowledged a pause in time |
/// | 130 | [`Failure::Interrupted`]: Ctrl-C |
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The store or the input answered with an error.
    #[error("{0}")]
    Store(String),
    /// Bad arguments or URL.
    #[error("{0}")]
    Usage(String),
    /// The store cannot be reached or refused the credentials.
    #[error("{0}")]
    Connect(String),
    /// No such stream, dead letter, file or database.
    #[error("{0}")]
    NotFound(String),
    /// A mutating command was not confirmed, or the target holds data the
    /// command must not touch.
    #[error("{0}")]
    Refused(String),
    /// A check found a violation.
    #[error("{0}")]
    Verification(String),
    /// No runner acknowledged a pause in time (ADR 0050).
    #[error("{0}")]
    Timeout(String),
    /// Interrupted by Ctrl-C.
    #[error("interrupted")]
    Interrupted,
}

impl Failure {
    /// The process exit code of this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Store(_) => 1,
            Self::Usage(_) => 2,
            Self::Connect(_) => 3,
            Self::NotFound(_) => 4,
            Self::Refused(_) => 5,
            Self::Verification(_) => 6,
            Self::Timeout(_) => 7,
            Self::Interrupted => 130,
        }
    }

    /// The same failure with `secrets` replaced by `***` in its message.
    pub(crate) fn redacted(self, secrets: &[String]) -> Self {
        let hide = |text: String| redact(&text, secrets);
        match self {
            Self::Store(m) => Self::Store(hide(m)),
            Self::Usage(m) => Self::Usage(hide(m)),
            Self::Connect(m) => Self::Connect(hide(m)),
            Self::NotFound(m) => Self::NotFound(hide(m)),
            Self::Refused(m) => Self::Refused(hide(m)),
            Self::Verification(m) => Self::Verification(hide(m)),
            Self::Timeout(m) => Self::Timeout(hide(m)),
            Self::Interrupted => Self::Interrupted,
        }
    }
}

/// `text` with every non-empty secret replaced by `***`.
pub(crate) fn redact(text: &str, secrets: &[String]) -> String {
    secrets.iter().filter(|s| !s.is_empty()).fold(text.to_owned(), |text, secret| text.replace(secret.as_str(), "***"))
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => Self::Connect(error.to_string()),
            other => {
                let message = other.to_string();
                if message.contains("does not exist") && message.contains("relation") {
                    Self::Store(format!(
                        "{message}\nthe database has no Orchestrix tables in this schema: run `orchestrix migrate` first"
                    ))
                } else {
                    Self::Store(message)
                }
            }
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Self {
        Self::Store(format!("I/O error: {error}"))
    }
}
