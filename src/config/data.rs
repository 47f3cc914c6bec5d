//! Parameter files: every `*.csv` of a folder, read once before the run, drawn from at random.

use std::path::{Path, PathBuf};

use rand::Rng;
use rand::seq::IndexedRandom;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DataError {
    #[error("cannot read data folder {dir}: {cause}; give a folder of *.csv files with --data")]
    Folder { dir: PathBuf, cause: std::io::Error },
    #[error("no *.csv file in {dir}; put parameter files there or give another folder with --data")]
    NoFiles { dir: PathBuf },
    #[error("cannot read {file}: {message}")]
    Read { file: PathBuf, message: String },
    #[error("{file} has no value in column {column}; check --column (zero-based) or the file")]
    NoValues { file: PathBuf, column: usize },
    #[error(
        "the *.csv files in {dir} total {total_mib} MiB, more than a quarter of the memory available \
         ({available_mib} MiB); pgstress reads every value before the run: sample them into a smaller \
         file (e.g. shuf -n 100000 big.csv > sample.csv) and give its folder with --data"
    )]
    TooLarge {
        dir: PathBuf,
        total_mib: u64,
        available_mib: u64,
    },
}

/// Refuses data that would not fit comfortably in memory once read (values as strings take
/// two to four times their bytes in a file).
pub fn check_fits(dir: &Path, total_bytes: u64, available_bytes: u64) -> Result<(), DataError> {
    if total_bytes > available_bytes / 4 {
        return Err(DataError::TooLarge {
            dir: dir.to_owned(),
            total_mib: total_bytes >> 20,
            available_mib: available_bytes >> 20,
        });
    }
    Ok(())
}

fn available_memory() -> u64 {
    match sysinfo::System::new() {
        Ok(mut system) => {
            system.refresh_memory();
            system.available_memory()
        }
        Err(_) => u64::MAX,
    }
}

/// One parameter file's values.
#[derive(Debug)]
pub struct ParamFile {
    pub path: PathBuf,
    pub values: Vec<String>,
    /// The file's line of each value, so that a bad one can be named where it is.
    pub lines: Vec<u64>,
}

/// One value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleValue<'a> {
    pub value: &'a str,
    pub file: &'a Path,
    pub line: u64,
}

/// All parameter files of a run.
#[derive(Debug)]
pub struct ParamData {
    files: Vec<ParamFile>,
}

impl ParamData {
    /// Reads every `*.csv` in `dir` (no header), keeping column `column` of each row.
    pub fn load(dir: &Path, column: usize) -> Result<Self, DataError> {
        Self::load_skipping(dir, column, false)
    }

    /// As `load`, reading past each file's first row when `skip_header` is set.
    pub fn load_skipping(dir: &Path, column: usize, skip_header: bool) -> Result<Self, DataError> {
        let entries = std::fs::read_dir(dir).map_err(|cause| DataError::Folder {
            dir: dir.to_owned(),
            cause,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "csv"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(DataError::NoFiles {
                dir: dir.to_owned(),
            });
        }
        let total_bytes = paths
            .iter()
            .filter_map(|p| p.metadata().ok())
            .map(|m| m.len())
            .sum();
        check_fits(dir, total_bytes, available_memory())?;
        let files = paths
            .into_iter()
            .map(|path| {
                read_column(&path, column, skip_header).map(|(values, lines)| ParamFile {
                    path,
                    values,
                    lines,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ParamData { files })
    }

    pub fn files(&self) -> &[ParamFile] {
        &self.files
    }

    /// The first `per_file` values of each file, where a header row or a value of the wrong
    /// kind shows first.
    pub fn first_values(&self, per_file: usize) -> Vec<SampleValue<'_>> {
        self.files
            .iter()
            .flat_map(|file| {
                file.values
                    .iter()
                    .zip(&file.lines)
                    .take(per_file)
                    .map(|(value, line)| SampleValue {
                        value,
                        file: &file.path,
                        line: *line,
                    })
            })
            .collect()
    }

    pub fn total_values(&self) -> usize {
        self.files.iter().map(|f| f.values.len()).sum()
    }

    /// One step's parameters: one file picked at random, one random value per request,
    /// as the original did.
    pub fn draw_step<R: Rng + ?Sized>(&self, requests: usize, rng: &mut R) -> Vec<String> {
        let file = self
            .files
            .choose(rng)
            .expect("load() guarantees at least one file");
        (0..requests)
            .map(|_| {
                file.values
                    .choose(rng)
                    .expect("load() guarantees values")
                    .clone()
            })
            .collect()
    }
}

fn read_column(
    path: &Path,
    column: usize,
    skip_header: bool,
) -> Result<(Vec<String>, Vec<u64>), DataError> {
    let read_error = |message: String| DataError::Read {
        file: path.to_owned(),
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(path)
        .map_err(|err| read_error(err.to_string()))?;
    let mut values = Vec::new();
    let mut lines = Vec::new();
    for record in reader.records().skip(usize::from(skip_header)) {
        let record =
            record.map_err(|err| read_error(format!("{err}; the file must be UTF-8 CSV")))?;
        if let Some(value) = record.get(column) {
            values.push(value.to_owned());
            lines.push(record.position().map_or(0, |p| p.line()));
        }
    }
    if values.is_empty() {
        return Err(DataError::NoValues {
            file: path.to_owned(),
            column,
        });
    }
    Ok((values, lines))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn reads_the_chosen_column_of_every_csv() {
        let dir = folder(&[
            ("a.csv", "x,1\ny,2\n"),
            ("b.csv", "z,3\n"),
            ("notes.txt", "ignored\n"),
        ]);
        let data = ParamData::load(dir.path(), 1).unwrap();
        assert_eq!(data.files().len(), 2);
        assert_eq!(data.files()[0].values, vec!["1", "2"]);
        assert_eq!(data.total_values(), 3);
    }

    #[test]
    fn a_step_draws_from_one_file() {
        let dir = folder(&[("a.csv", "a1\na2\n"), ("b.csv", "b1\nb2\n")]);
        let data = ParamData::load(dir.path(), 0).unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..20 {
            let values = data.draw_step(10, &mut rng);
            assert_eq!(values.len(), 10);
            let prefix = &values[0][..1];
            assert!(values.iter().all(|v| v.starts_with(prefix)), "{values:?}");
        }
    }

    #[test]
    fn values_with_quotes_survive() {
        let dir = folder(&[("q.csv", "\"it's \"\"quoted\"\"\"\n")]);
        let data = ParamData::load(dir.path(), 0).unwrap();
        assert_eq!(data.files()[0].values, vec!["it's \"quoted\""]);
    }

    #[test]
    fn missing_folder_names_it() {
        let err = ParamData::load(Path::new("/no/such/dir"), 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/no/such/dir"), "{err}");
    }

    #[test]
    fn empty_folder_and_empty_file_are_errors() {
        let empty = folder(&[]);
        assert!(matches!(
            ParamData::load(empty.path(), 0),
            Err(DataError::NoFiles { .. })
        ));
        let blank = folder(&[("e.csv", "")]);
        assert!(matches!(
            ParamData::load(blank.path(), 0),
            Err(DataError::NoValues { .. })
        ));
    }

    #[test]
    fn missing_column_is_an_error() {
        let dir = folder(&[("a.csv", "x\ny\n")]);
        let err = ParamData::load(dir.path(), 3).unwrap_err().to_string();
        assert!(err.contains("column 3"), "{err}");
    }

    #[test]
    fn data_larger_than_a_quarter_of_memory_is_refused() {
        let dir = Path::new("/data");
        assert!(check_fits(dir, 100 << 20, 1 << 30).is_ok());
        let err = check_fits(dir, 300 << 20, 1 << 30).unwrap_err().to_string();
        assert!(
            err.contains("300 MiB") && err.contains("1024 MiB") && err.contains("/data"),
            "{err}"
        );
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.csv"), [0xff, 0xfe, b'\n']).unwrap();
        let err = ParamData::load(dir.path(), 0).unwrap_err().to_string();
        assert!(err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn first_values_name_their_file_and_line_and_a_header_can_be_skipped() {
        let dir = folder(&[("a.csv", "url_hash\nab12\ncd34\n")]);
        let data = ParamData::load(dir.path(), 0).unwrap();
        let first: Vec<(&str, u64)> = data
            .first_values(2)
            .iter()
            .map(|s| (s.value, s.line))
            .collect();
        assert_eq!(first, vec![("url_hash", 1), ("ab12", 2)]);
        assert!(data.first_values(1)[0].file.ends_with("a.csv"));
        let skipped = ParamData::load_skipping(dir.path(), 0, true).unwrap();
        assert_eq!(skipped.first_values(1)[0].value, "ab12");
        assert_eq!(skipped.total_values(), 2);
    }
}
