//! Integration tests of flan-data, one binary split by topic. Tests on real files read them from
//! `../shared/data` (relative to the repository root).

mod bad_input;
mod collection;
mod properties;
mod real_data;
mod span_corruption;
mod tokenize;

use std::path::PathBuf;

/// `/work/shared/data`, found from this crate's directory.
pub fn shared_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

/// The default spec over the shared data.
pub fn shared_spec() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("specs/shared-data.toml")
}
