//! Typed errors. Every error says *where*: a JSON pointer into the schema or the document,
//! a byte offset into the input text, or a position in the id sequence.

use std::fmt;

/// The schema could not be compiled (or a tokenizer file could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// JSON pointer into the schema where the problem is (`""` for the root).
    pub pointer: String,
    pub message: String,
}

impl SchemaError {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        SchemaError {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "schema error at the root: {}", self.message)
        } else {
            write!(f, "schema error at {}: {}", self.pointer, self.message)
        }
    }
}

impl std::error::Error for SchemaError {}

/// A document could not be encoded: it is not JSON at all (the schema-nonconforming case is
/// *not* an error: it is encoded losslessly through the generic fallback path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError {
    /// JSON pointer into the document (`""` for the root).
    pub pointer: String,
    /// Byte offset into the input text, when the input was text.
    pub offset: Option<usize>,
    pub message: String,
}

impl EncodeError {
    pub fn at(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        EncodeError {
            pointer: pointer.into(),
            offset: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "encode error")?;
        if let Some(o) = self.offset {
            write!(f, " at byte {o}")?;
        }
        if !self.pointer.is_empty() {
            write!(f, " at {}", self.pointer)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for EncodeError {}

/// An id sequence does not decode. `position` is the index of the offending id
/// (or the length of the sequence when it ended too early).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub position: usize,
    pub message: String,
}

impl DecodeError {
    pub fn new(position: usize, message: impl Into<String>) -> Self {
        DecodeError {
            position,
            message: message.into(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "decode error at id position {}: {}",
            self.position, self.message
        )
    }
}

impl std::error::Error for DecodeError {}

/// Escape one reference token of a JSON pointer (RFC 6901).
pub fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Training failed: the schema (or the vocabulary configuration), or one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TctTrainError {
    Schema(SchemaError),
    /// Index of the document and why it could not be encoded.
    Document(usize, EncodeError),
}

impl fmt::Display for TctTrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TctTrainError::Schema(e) => e.fmt(f),
            TctTrainError::Document(i, e) => write!(f, "document {i}: {e}"),
        }
    }
}

impl std::error::Error for TctTrainError {}
