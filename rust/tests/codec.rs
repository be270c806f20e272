//! Codec unit tests over small schemas.
mod common;
