//! Schema compiler: JSON Schema -> codec graph.
pub mod atoms;
pub mod build;
pub mod header;
pub mod ir;
pub mod store;
#[cfg(test)]
mod tests;
pub mod text;

pub use build::{compile, compile_with};
pub use ir::{Graph, INF};
pub use store::RefSiblings;
pub use text::parse_schema_text;
