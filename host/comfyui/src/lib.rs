//! placeholder
pub mod graph;
pub mod nodes;
