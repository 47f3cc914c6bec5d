//! `pgstress report`: the charts and the HTML page of a saved run.

use crate::Status;
use crate::cli::ReportArgs;
use crate::report;

pub fn report(args: &ReportArgs) -> anyhow::Result<Status> {
    let paths = report::write_report(&args.path)?;
    println!("report:  {}", paths.html.display());
    for chart in &paths.charts {
        println!("chart:   {}", chart.display());
    }
    Ok(Status::Completed)
}
