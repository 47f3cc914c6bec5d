//! The report's outage timeline: for each step with an outage, its successes (up) and the
//! server's failures (down) per 100 ms, the outage shaded from its first failure to the
//! throughput back (to the step's end when it never came back). Read from the summary's
//! `steps[].outage`; an inline SVG, drawn without a plotting library: bars and a band.

use std::fmt::Write;
use std::path::Path;

use serde::Deserialize;

use super::html::escape;

#[derive(Debug, Deserialize)]
struct SavedOutage {
    start: f64,
    end: Option<f64>,
    #[serde(default)]
    timeline: Vec<[u32; 2]>,
}

#[derive(Debug, Deserialize)]
struct SavedStep {
    step: u32,
    outage: Option<SavedOutage>,
}

#[derive(Debug, Deserialize)]
struct SavedSteps {
    steps: Vec<SavedStep>,
}

/// The bins' width, in seconds (docs/outages.md).
const BIN_S: f64 = 0.1;
const WIDTH: f64 = 900.0;
const HALF: f64 = 90.0;

/// The HTML section of the run's outages; empty when it had none (or no summary).
pub fn section(summary: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(summary) else {
        return String::new();
    };
    let Ok(saved) = serde_json::from_str::<SavedSteps>(&text) else {
        return String::new();
    };
    let outages: Vec<(u32, SavedOutage)> = (saved.steps.into_iter())
        .filter_map(|s| {
            s.outage
                .filter(|o| !o.timeline.is_empty())
                .map(|o| (s.step, o))
        })
        .collect();
    if outages.is_empty() {
        return String::new();
    }
    let mut html = String::from("<h2>Outages</h2>\n");
    for (step, outage) in &outages {
        let _ = writeln!(
            html,
            "<figure id=\"outage-step-{step}\">{}</figure>",
            svg(*step, outage)
        );
    }
    html
}

fn svg(step: u32, outage: &SavedOutage) -> String {
    let bins = outage.timeline.len().max(1);
    let bar = WIDTH / bins as f64;
    let most = (outage.timeline.iter())
        .flat_map(|b| b.iter())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1);
    let scale = HALF / f64::from(most);
    let x = |seconds: f64| seconds / BIN_S * bar;
    let end = outage.end.unwrap_or(bins as f64 * BIN_S);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{h}\" \
         viewBox=\"0 0 {WIDTH} {h}\">\n<title>{title}</title>\n\
         <rect x=\"{sx:.1}\" y=\"0\" width=\"{sw:.1}\" height=\"{h}\" fill=\"#f4cccc\"/>\n",
        h = 2.0 * HALF + 20.0,
        title = escape(&format!(
            "step {step}: successes (up) and failures (down) per 100 ms; outage shaded"
        )),
        sx = x(outage.start),
        sw = (x(end) - x(outage.start)).max(1.0),
    );
    for (i, [ok, failed]) in outage.timeline.iter().enumerate() {
        let left = i as f64 * bar;
        let (up, down) = (f64::from(*ok) * scale, f64::from(*failed) * scale);
        let _ = writeln!(
            svg,
            "<rect x=\"{left:.1}\" y=\"{:.1}\" width=\"{bar:.2}\" height=\"{up:.1}\" fill=\"#2ca02c\"/>\
             <rect x=\"{left:.1}\" y=\"{HALF}\" width=\"{bar:.2}\" height=\"{down:.1}\" fill=\"#d62728\"/>",
            HALF - up
        );
    }
    let _ = write!(
        svg,
        "<line x1=\"0\" y1=\"{HALF}\" x2=\"{WIDTH}\" y2=\"{HALF}\" stroke=\"#444\"/>\n\
         <text x=\"4\" y=\"{}\" font-size=\"12\">step {step}: {} s of 100 ms bins; outage {:.2} s to {}</text>\n</svg>",
        2.0 * HALF + 15.0,
        bins as f64 * BIN_S,
        outage.start,
        outage
            .end
            .map_or("the step's end".to_owned(), |end| format!("{end:.2} s")),
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_with_an_outage_gets_a_timeline_with_the_outage_shaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a_summary.json");
        let text = r#"{"steps": [{"step": 1}, {"step": 2, "outage": {"start": 0.2, "end": 0.3,
            "timeline": [[5, 0], [5, 0], [0, 5], [5, 0]]}}]}"#;
        std::fs::write(&path, text).unwrap();
        let html = section(&path);
        assert!(
            html.contains("<h2>Outages</h2>") && html.contains("outage-step-2"),
            "{html}"
        );
        assert!(!html.contains("outage-step-1"), "{html}");
        // The band runs from bin 2 to bin 3 of four: 450 to 675 of 900.
        assert!(
            html.contains("x=\"450.0\" y=\"0\" width=\"225.0\""),
            "{html}"
        );
        std::fs::write(&path, r#"{"steps": [{"step": 1}]}"#).unwrap();
        assert_eq!(section(&path), "");
    }
}
