//! The cluster config: one TOML file, identical on every node.
//!
//! `load` reads and validates it; every error names the file, the line, the
//! key and what would be valid (`ConfigError`'s Display).

pub mod model;

pub use model::*;
