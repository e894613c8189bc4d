//! Helpers shared by the workspace-wide tests in `tests/tests/`.

use std::path::PathBuf;

/// `../shared/data` relative to the workspace root: the real data sets tests read from.
pub fn shared_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}
