//! The one error type of the runtime: every failure says which file, tensor, key or argument
//! is at fault, so the CLI can print it as a single `error:` line.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A malformed or hostile file: bad magic, out-of-bounds offsets, impossible counts.
    #[error("{path}: {msg}")]
    Format {
        /// The file (or `<memory>` for in-memory buffers).
        path: PathBuf,
        /// What is wrong and where.
        msg: String,
    },
    /// A metadata key that is missing or has the wrong type or value.
    #[error("metadata key `{key}`: {msg}")]
    Metadata {
        /// The GGUF metadata key.
        key: String,
        /// What was expected and what was found.
        msg: String,
    },
    /// A tensor that is missing or whose type or shape does not fit the architecture.
    #[error("tensor `{name}`: {msg}")]
    Tensor {
        /// The tensor name as stored in the file.
        name: String,
        /// What was expected and what was found.
        msg: String,
    },
    /// A bad request from the caller: out-of-range token ids, empty input, impossible lengths.
    #[error("{0}")]
    Invalid(String),
    /// A failure talking to the Hugging Face Hub (or a mirror): what went wrong and what to do.
    #[error("{0}")]
    Hub(String),
    /// The caller cancelled the operation.
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    /// Shorthand for a format error on a file.
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }
    /// Shorthand for a metadata error.
    pub fn metadata(key: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Metadata {
            key: key.into(),
            msg: msg.into(),
        }
    }
    /// Shorthand for a tensor error.
    pub fn tensor(name: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Tensor {
            name: name.into(),
            msg: msg.into(),
        }
    }
    /// Shorthand for an invalid-request error.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
    /// Shorthand for an I/O error on a path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
