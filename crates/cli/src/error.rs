//! What a client command fails with: the server's answer, an input the CLI
//! refuses before any call (naming the flag, file, line or key), a file or
//! standard output it could not read or write, or a result that says the
//! command failed (rows an import rejected). One line each, for `error: `.

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The server answered the call with an error: its gRPC code and message.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// The server (or the leader it named) could not be reached.
    #[error("connecting to {target}: {reason}")]
    Connect { target: String, reason: String },
    /// A flag, argument or input the CLI refuses before calling, naming it.
    #[error("{0}")]
    Input(String),
    /// Reading or writing a file or standard output (the I/O error is its
    /// source, which `one_line` adds).
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The command ran, and its result says it failed.
    #[error("{0}")]
    Failed(String),
    /// A field of an input file that failed the domain's validation.
    #[error(transparent)]
    Invalid(#[from] switchboard_domain::ValidationError),
    /// A master file that could not be read, with where.
    #[error(transparent)]
    MasterFile(#[from] switchboard_domain::masterfile::MasterFileError),
    /// Any of these, within a file (`zone file F`, `master file F`): the
    /// file first, then what is wrong in it.
    #[error("{what}")]
    Within {
        what: String,
        #[source]
        source: Box<CliError>,
    },
    /// A view could not be written as JSON (a bug of ours, not of the input).
    #[error("encoding the output as JSON: {0}")]
    Encode(#[from] serde_json::Error),
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;

/// A failed call: its gRPC code and message, and the leader's API address
/// when the node said it is not the leader.
#[derive(Debug)]
pub struct StatusError {
    pub code: tonic::Code,
    pub message: String,
    pub leader: Option<String>,
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for StatusError {}

impl CliError {
    pub(crate) fn input(why: impl Into<String>) -> CliError {
        CliError::Input(why.into())
    }

    /// An I/O failure while `what` (reading FILE, writing the zone, ...).
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let what = what.into();
        move |source| CliError::Io { what, source }
    }

    /// Whether the reader of standard output went away: no error for a CLI
    /// whose output is piped into `head`.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// This error, said to be within `what` (a file).
    pub(crate) fn within(what: impl Into<String>) -> impl FnOnce(CliError) -> CliError {
        let what = what.into();
        move |source| CliError::Within { what, source: Box::new(source) }
    }

    /// The leader an error sends the call to, if it is a not-the-leader answer.
    pub(crate) fn leader(&self) -> Option<String> {
        match self {
            CliError::Status(s) => s.leader.clone(),
            _ => None,
        }
    }
}
