//! Pictures of a run: four charts (PNG and SVG) and one self-contained HTML page, next to the
//! run's logs. They are drawn from the saved `<ts>_summary.json` alone, both at the end of a
//! run and by `pgstress report`, so an old run redraws exactly as it was first drawn.

mod charts;
pub mod comparison;
mod html;
mod legend;
pub mod load;
mod plot;
mod series;
mod timeline;

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::logs::schema;

pub use charts::ChartKind;
pub use html::escape;
pub use load::SavedRun;
pub use plot::{Picture, png, svg};

#[derive(Debug, Error)]
pub enum ReportError {
    #[error(
        "'{path}' is not a run: give a run's file prefix like logs/11282026_111515, \
         or its _summary.json or _steps.csv"
    )]
    NotARun { path: PathBuf },
    #[error(
        "cannot read {path}: {cause}; the report is drawn from the run's _summary.json, \
         check the run's prefix"
    )]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot read {path} as a pgstress summary: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot draw the {chart} chart: {message}")]
    Chart {
        chart: &'static str,
        message: String,
    },
    #[error("cannot write {path}: {cause}; check that the logs folder is writable")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// The files a report wrote.
#[derive(Debug, Clone)]
pub struct ReportPaths {
    pub html: PathBuf,
    /// PNG then SVG of each chart, in `ChartKind::ALL` order.
    pub charts: Vec<PathBuf>,
}

/// Draws the charts and the HTML page of the run whose summary (or steps CSV, or file prefix)
/// is given, beside it: `<ts>_<chart>.png`, `<ts>_<chart>.svg` and `<ts>_report.html`.
pub fn write_report(summary: &Path) -> Result<ReportPaths, ReportError> {
    let prefix = load::run_prefix(summary)?;
    let summary_path = load::summary_path(&prefix);
    let steps_path = schema::with_suffix(&prefix, schema::STEPS_LOG);
    let run = if !summary_path.exists() && steps_path.exists() {
        SavedRun::from_steps_log(&steps_path)?
    } else {
        SavedRun::load(&summary_path)?
    };
    let mut chart_paths = Vec::new();
    let mut svgs = Vec::new();
    for kind in ChartKind::ALL {
        let chart_error = |message| ReportError::Chart {
            chart: kind.name(),
            message,
        };
        let chart = charts::RunChart { kind, run: &run };
        let png = plot::png(&chart).map_err(chart_error)?;
        let svg = plot::svg(&chart).map_err(chart_error)?;
        let png_path = schema::chart_path(&prefix, kind.name(), "png");
        let svg_path = schema::chart_path(&prefix, kind.name(), "svg");
        write(&png_path, &png)?;
        write(&svg_path, svg.as_bytes())?;
        chart_paths.extend([png_path, svg_path]);
        svgs.push((kind, svg));
    }
    let html_path = schema::with_suffix(&prefix, schema::REPORT_PAGE);
    let outages = timeline::section(&summary_path);
    write(&html_path, html::page(&run, &svgs, &outages).as_bytes())?;
    Ok(ReportPaths {
        html: html_path,
        charts: chart_paths,
    })
}

/// The line a run prints after drawing its report. A report that cannot be drawn is a
/// warning, not an error: the run's logs are already on disk and the exit status stands.
pub fn after_run(summary: &Path) -> String {
    match write_report(summary) {
        Ok(paths) => format!("report:  {}", paths.html.display()),
        Err(err) => {
            format!("warning: no report ({err}); the logs are intact, retry with `pgstress report`")
        }
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    crate::logs::files::replace(path, bytes).map_err(|cause| ReportError::Write {
        path: path.to_owned(),
        cause,
    })
}
