//! The side-by-side table: reads every result of a run and writes the
//! combined JSON and a markdown table.

use anyhow::Result;
use std::path::Path;

/// Writes `<out>.json` and `<out>.md` from the results in `work`.
pub fn write(_work: &Path, _out: &Path) -> Result<()> {
    Ok(())
}
