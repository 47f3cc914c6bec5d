//! The run's four charts, each drawn once per backend (plot.rs): a PNG to look at and an SVG
//! to inline in the HTML report. Every chart has the requests of the step on its x axis, a
//! legend to the right of the plot (so it never hides a line) and the breaking point marked.

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::legend::{Mark, draw_legend};
use super::load::SavedRun;
use super::plot::{
    self, BLUE, Break, Chart, Drawn, GREEN, ORANGE, PLOT_WIDTH, PURPLE, Picture, builder,
    draw_breaks, draw_line, draw_lines, mesh, note, saturation_line,
};
use super::series;
use crate::model::outcome::FailureClass;

/// The breaking point of a single run; a comparison marks each run's in the run's colour.
const BREAKING: RGBColor = RGBColor(0, 0, 0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartKind {
    Failures,
    Wall,
    Latency,
    Cpu,
}

impl ChartKind {
    pub const ALL: [ChartKind; 4] = [
        ChartKind::Failures,
        ChartKind::Wall,
        ChartKind::Latency,
        ChartKind::Cpu,
    ];

    /// The file name's part: `<ts>_<name>.png`.
    pub fn name(self) -> &'static str {
        match self {
            ChartKind::Failures => "failures",
            ChartKind::Wall => "wall",
            ChartKind::Latency => "latency",
            ChartKind::Cpu => "cpu",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            ChartKind::Failures => "Failed requests per step, by failure class",
            ChartKind::Wall => "Wall time per step (gate release to last answer)",
            ChartKind::Latency => "Latency of the successful requests",
            ChartKind::Cpu => "CPU of each side over its own CPUs (mean solid, peak dashed)",
        }
    }
}

/// One of a run's charts.
pub struct RunChart<'a> {
    pub kind: ChartKind,
    pub run: &'a SavedRun,
}

impl Picture for RunChart<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Drawn {
        draw(self.kind, self.run, root)
    }
}

fn draw<DB: DrawingBackend>(
    kind: ChartKind,
    run: &SavedRun,
    root: &DrawingArea<DB, Shift>,
) -> Drawn {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (plot, legend_area) = root.split_horizontally(PLOT_WIDTH);
    let mut legend = Vec::new();
    match kind {
        ChartKind::Failures => failures(&plot, run, &mut legend)?,
        ChartKind::Wall => {
            let line = series::wall(&run.steps);
            let high = series::value_range(std::slice::from_ref(&line)).map_or(1.0, |r| r.1);
            let y = series::linear_axis(high);
            let mut chart = frame(&plot, kind, run, y.clone())?;
            mesh(&mut chart, "wall time (s)", false)?;
            draw_line(&mut chart, &line, Mark::Line(BLUE), &mut legend)?;
            draw_breaks(&mut chart, run_break(run).as_slice(), &y, &mut legend)?;
        }
        ChartKind::Latency => latency(&plot, run, &mut legend)?,
        ChartKind::Cpu => cpu(&plot, run, &mut legend)?,
    }
    draw_legend(&legend_area, &legend)
}

fn frame<'a, DB: DrawingBackend>(
    plot: &'a DrawingArea<DB, Shift>,
    kind: ChartKind,
    run: &SavedRun,
    y: Range<f64>,
) -> Result<Chart<'a, DB, RangedCoordf64>, String> {
    builder(plot, kind.title())
        .build_cartesian_2d(series::requests_axis(&run.steps), y)
        .map_err(|e| e.to_string())
}

fn failures<DB: DrawingBackend>(
    plot: &DrawingArea<DB, Shift>,
    run: &SavedRun,
    legend: &mut Vec<(String, Mark)>,
) -> Drawn {
    let stacks = series::failure_stacks(&run.steps);
    let top = run
        .steps
        .iter()
        .map(|s| f64::from(s.failed))
        .fold(0.0, f64::max);
    // At least a few requests high, so an all-clean run has whole-number ticks.
    let y = series::linear_axis(top.max(4.0));
    let mut chart = frame(plot, ChartKind::Failures, run, y.clone())?;
    mesh(&mut chart, "failed requests", true)?;
    let half = series::spacing(&run.steps) * 0.35;
    for stack in &stacks {
        let color = class_color(stack.class);
        let bars = stack.bars.iter().filter(|(_, low, high)| high > low);
        chart
            .draw_series(bars.map(|(x, low, high)| {
                Rectangle::new([(x - half, *low), (x + half, *high)], color.filled())
            }))
            .map_err(|e| e.to_string())?;
        legend.push((stack.class.name().to_owned(), Mark::Bar(color)));
    }
    if stacks.is_empty() {
        let x = series::requests_axis(&run.steps);
        note(&mut chart, "no request failed", x, y.clone())?;
    }
    draw_breaks(&mut chart, run_break(run).as_slice(), &y, legend)
}

fn latency<DB: DrawingBackend>(
    plot: &DrawingArea<DB, Shift>,
    run: &SavedRun,
    legend: &mut Vec<(String, Mark)>,
) -> Drawn {
    let lines = series::latency(&run.steps);
    let (low, high) = series::value_range(&lines).unwrap_or((0.0, 1.0));
    let colors = [BLUE, GREEN, ORANGE, PURPLE];
    if series::use_log_scale(low, high) {
        let y = series::log_axis(low, high);
        let mut chart = builder(plot, "Latency of the successful requests (log scale)")
            .build_cartesian_2d(series::requests_axis(&run.steps), y.clone().log_scale())
            .map_err(|e| e.to_string())?;
        mesh(&mut chart, "latency (ms, log scale)", false)?;
        draw_lines(&mut chart, &lines, colors, legend)?;
        draw_breaks(&mut chart, run_break(run).as_slice(), &y, legend)
    } else {
        let y = series::linear_axis(high);
        let mut chart = frame(plot, ChartKind::Latency, run, y.clone())?;
        mesh(&mut chart, "latency (ms)", false)?;
        draw_lines(&mut chart, &lines, colors, legend)?;
        draw_breaks(&mut chart, run_break(run).as_slice(), &y, legend)
    }
}

fn cpu<DB: DrawingBackend>(
    plot: &DrawingArea<DB, Shift>,
    run: &SavedRun,
    legend: &mut Vec<(String, Mark)>,
) -> Drawn {
    let sides = series::cpu(&run.steps);
    let y = 0.0..series::cpu_axis_top(&sides);
    let mut chart = frame(plot, ChartKind::Cpu, run, y.clone())?;
    mesh(&mut chart, "CPU (% of each side's own CPUs)", false)?;
    for ((mean, peak), color) in sides.iter().zip([BLUE, ORANGE, GREEN]) {
        draw_line(&mut chart, mean, Mark::Line(color), legend)?;
        draw_line(&mut chart, peak, Mark::Dashed(color), legend)?;
    }
    let x = series::requests_axis(&run.steps);
    let threshold = run.facts.plan.saturated_cpu_pct;
    for (i, at) in series::saturation_lines(&run.steps, threshold)
        .into_iter()
        .enumerate()
    {
        saturation_line(&mut chart, x.clone(), at, legend)?;
        if i > 0 {
            // The sampled estimate's own line: its sessions on CPU reach the server's cores.
            if let Some((label, _)) = legend.last_mut() {
                *label = format!("{}% est. saturation", plot::axis_number(at));
            }
        }
    }
    draw_breaks(&mut chart, run_break(run).as_slice(), &y, legend)
}

/// The run's breaking point, if it had one, in black.
fn run_break(run: &SavedRun) -> Option<Break> {
    run.breaking_requests().map(|requests| Break {
        requests,
        color: BREAKING,
        label: format!("breaking point ({requests})"),
    })
}

fn class_color(class: FailureClass) -> RGBColor {
    match class {
        FailureClass::Refused => RGBColor(140, 86, 75),
        FailureClass::TooManyClients => ORANGE,
        FailureClass::Auth => PURPLE,
        FailureClass::Timeout => RGBColor(214, 39, 40),
        FailureClass::Query => RGBColor(227, 119, 194),
        FailureClass::NoRow => RGBColor(127, 127, 127),
        FailureClass::Spawn => RGBColor(188, 189, 34),
        FailureClass::Io => RGBColor(23, 190, 207),
        FailureClass::Client => RGBColor(31, 119, 180),
        FailureClass::BadValue => RGBColor(44, 160, 44),
        FailureClass::PoolerTooManyClients => RGBColor(255, 187, 120),
        FailureClass::ReadOnly => RGBColor(140, 86, 75),
        FailureClass::PoolerQueued => RGBColor(255, 152, 150),
        FailureClass::Shutdown => RGBColor(96, 96, 160),
        FailureClass::Starting => RGBColor(160, 160, 220),
    }
}
