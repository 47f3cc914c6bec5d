//! Reading a saved run's logs back, for `report` and `compare`.

use std::path::Path;

use super::StepRow;

/// The rows of a `<ts>_steps.csv`, refused when the file is not a steps log or holds no step.
pub fn read_steps_log(path: &Path) -> Result<Vec<StepRow>, String> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| e.to_string())?;
    let headers = reader.headers().map_err(|e| e.to_string())?;
    if !["step", "requests"]
        .iter()
        .all(|column| headers.iter().any(|h| h == *column))
    {
        return Err("not a pgstress steps log (no `step` and `requests` columns)".to_owned());
    }
    let steps = reader
        .deserialize()
        .collect::<Result<Vec<StepRow>, _>>()
        .map_err(|e| e.to_string())?;
    if steps.is_empty() {
        return Err("no step was logged: the run ended before its first step".to_owned());
    }
    Ok(steps)
}
