//! The cluster config: one TOML file, identical on every node.
//!
//! `load` reads and validates it; every error names the file, the line, the
//! key and what would be valid (`ConfigError`'s Display).

pub mod diff;
pub mod digest;
pub mod duration;
mod error;
mod local;
mod locate;
pub mod model;
mod raw;
pub mod size;
mod trust;
mod validate;

#[cfg(test)]
mod ocf_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod witness_tests;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors};
pub use local::{LocalNodeError, by_hostname, local_node};
pub use model::*;
pub use trust::{TrustError, check as check_trusted};

use error::Issue;
use locate::Locator;

/// A valid config and what is legal but probably a mistake.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<ConfigError>,
}

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(e) => Err(ConfigErrors {
            errors: vec![ConfigError {
                file: path.to_path_buf(),
                line: 1,
                column: 1,
                key: String::new(),
                message: format!("cannot read the config file: {e}"),
                hint: None,
            }],
        }),
    }
}

/// Validates config `text`; `path` is where it came from (for messages and
/// for resolving a relative key file).
pub fn parse(text: &str, path: &Path) -> Result<Loaded, ConfigErrors> {
    parse_in(text, path, &crate::host::ocf::root())
}

/// `parse`, with OCF agents looked for under `ocf_root` rather than the
/// root `OCF_ROOT` names (tests with agents of their own).
pub(crate) fn parse_in(text: &str, path: &Path, ocf_root: &Path) -> Result<Loaded, ConfigErrors> {
    let locator = Locator::new(text);
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| ConfigErrors {
        errors: vec![error::from_toml(&e, path, &locator)],
    })?;
    let place = |issues: Vec<Issue>| {
        let mut placed: Vec<ConfigError> = issues
            .into_iter()
            .map(|i| i.locate(path, &locator))
            .collect();
        // Validation walks section by section; users read top to bottom.
        placed.sort_by_key(|e| (e.line, e.column));
        placed
    };
    match validate::validate(raw, path, ocf_root) {
        Ok(valid) => Ok(Loaded {
            config: valid.config,
            warnings: place(valid.warnings),
        }),
        Err(issues) => Err(ConfigErrors {
            errors: place(issues),
        }),
    }
}
