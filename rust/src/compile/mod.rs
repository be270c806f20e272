//! Schema compiler: JSON Schema -> codec graph.
pub mod atoms;
pub mod build;
pub mod header;
pub mod ir;
pub mod store;

pub use build::compile;
pub use ir::{Graph, INF};
