//! The pictures of a real run: charts that decode and are not blank, an HTML page that parses,
//! says the verdict and lists every step, `pgstress report` redrawing it byte for byte, a
//! real browser rendering it, and `pgstress compare` drawing two runs' charts side by side.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const CHARTS: [&str; 4] = ["failures", "wall", "latency", "cpu"];
/// Debian's package; the browser test fails (never skips) without it.
const CHROMIUM: &str = "/usr/bin/chromium";
/// A headless screenshot takes seconds; past this the browser is stuck.
const BROWSER_DEADLINE: Duration = Duration::from_secs(60);

/// Runs a small ramp against the shared cluster and returns the run's file prefix.
fn small_run(logs: &Path, steps: &str) -> PathBuf {
    pgstress_run(logs)
        .args(["--dsn", &shared_dsn(), "--steps", steps, "--step", "5"])
        .assert()
        .success();
    let summary = log_file(logs, "_summary.json");
    let name = summary.to_str().unwrap();
    PathBuf::from(name.strip_suffix("_summary.json").unwrap())
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", prefix.display()))
}

/// Width, height and the number of distinct colours of a PNG.
fn decode_png(path: &Path) -> (u32, u32, usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    let channels = frame.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> =
        pixels[..frame.buffer_size()].chunks(channels).collect();
    (frame.width, frame.height, colours.len())
}

/// The data points drawn in `colour` (`#1F77B4`): the filled circles of a series. Axes, grid,
/// legend and notes draw none, so a chart without data has none.
fn data_points(svg: &str, colour: &str) -> usize {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{e}"));
    doc.descendants()
        .filter(|n| n.has_tag_name("circle"))
        .filter(|n| {
            n.attribute("fill")
                .is_some_and(|f| f.eq_ignore_ascii_case(colour))
        })
        .count()
}

/// The series colours of the charts (src/report/plot.rs), as SVG writes them.
const BLUE: &str = "#1F77B4";
const ORANGE: &str = "#FF7F0E";
const GREEN: &str = "#2CA02C";
const PURPLE: &str = "#9467BD";

#[test]
fn run_draws_charts_that_decode_and_are_not_blank() {
    let logs = tempfile::tempdir().unwrap();
    let prefix = small_run(logs.path(), "3");
    for chart in CHARTS {
        let (width, height, colours) = decode_png(&with_suffix(&prefix, &format!("_{chart}.png")));
        assert_eq!((width, height), (1000, 600), "{chart}");
        assert!(colours > 1, "{chart}.png is blank");
        let svg = std::fs::read_to_string(with_suffix(&prefix, &format!("_{chart}.svg"))).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{chart}.svg: {e}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        // Each series has a point per step (3): the data is drawn, not only the axes.
        let series: &[&str] = match chart {
            "wall" => &[BLUE],
            "latency" => &[BLUE, GREEN, ORANGE, PURPLE],
            "cpu" => &[BLUE, ORANGE, GREEN],
            _ => &[],
        };
        for colour in series {
            let points = data_points(&svg, colour);
            assert!(
                points == 3 || points == 6,
                "{chart}.svg: {points} points in {colour}, not a series of 3 (or a mean and a peak)"
            );
        }
        if chart == "failures" {
            assert!(
                svg.contains("no request failed"),
                "{chart}.svg says why it is empty"
            );
        }
    }
}

#[test]
fn report_says_the_verdict_and_has_one_row_per_step() {
    let logs = tempfile::tempdir().unwrap();
    let prefix = small_run(logs.path(), "3");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(with_suffix(&prefix, "_summary.json")).unwrap(),
    )
    .unwrap();
    let verdict = summary["verdict_text"][0].as_str().unwrap();

    let html = std::fs::read_to_string(with_suffix(&prefix, "_report.html")).unwrap();
    let doc = roxmltree::Document::parse_with_options(
        &html,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("the report is not well-formed: {e}"));
    let first_paragraph = doc
        .descendants()
        .find(|n| n.has_tag_name("p"))
        .and_then(|p| p.text())
        .unwrap();
    assert_eq!(first_paragraph, verdict);
    let steps_table = doc
        .descendants()
        .find(|n| n.has_tag_name("table") && n.attribute("class") == Some("steps"))
        .expect("a table of steps");
    let rows = steps_table
        .descendants()
        .filter(|n| n.has_tag_name("tbody"))
        .flat_map(|body| body.children().filter(|n| n.has_tag_name("tr")))
        .count();
    assert_eq!(rows, 3);
    let inline_charts = doc.descendants().filter(|n| n.has_tag_name("svg")).count();
    assert_eq!(inline_charts, 4);
    assert!(
        !html.contains("src=") && !html.contains("<link"),
        "the page fetches nothing"
    );
}

#[test]
fn report_command_redraws_the_same_html_from_the_logs() {
    let logs = tempfile::tempdir().unwrap();
    let prefix = small_run(logs.path(), "2");
    let html_path = with_suffix(&prefix, "_report.html");
    let written = std::fs::read(&html_path).unwrap();
    std::fs::remove_file(&html_path).unwrap();
    for chart in CHARTS {
        std::fs::remove_file(with_suffix(&prefix, &format!("_{chart}.png"))).unwrap();
    }

    assert_cmd::Command::cargo_bin("pgstress")
        .unwrap()
        .arg("report")
        .arg(&prefix)
        .assert()
        .success()
        .stdout(predicates::str::contains("_report.html"));
    assert!(
        std::fs::read(&html_path).unwrap() == written,
        "the redrawn HTML differs"
    );
    for chart in CHARTS {
        assert!(
            with_suffix(&prefix, &format!("_{chart}.png")).exists(),
            "{chart}.png"
        );
    }

    // The steps CSV names the same run.
    assert_cmd::Command::cargo_bin("pgstress")
        .unwrap()
        .arg("report")
        .arg(with_suffix(&prefix, "_steps.csv"))
        .assert()
        .success();
    assert!(std::fs::read(&html_path).unwrap() == written);
}

#[test]
fn a_steps_log_copied_alone_is_drawn_with_its_breaking_point() {
    // A server that takes 17 connections: the step of 20 breaks it.
    let (_guard, dsn) = small_server();
    let logs = tempfile::tempdir().unwrap();
    pgstress_run(logs.path())
        .args([
            "--dsn",
            &dsn,
            "--steps",
            "2",
            "--step",
            "10",
            "--no-stop",
            "--no-report",
            "--query",
            "SELECT $1::text FROM pg_sleep(0.3)",
        ])
        .assert()
        .success();
    let elsewhere = tempfile::tempdir().unwrap();
    let steps = log_file(logs.path(), "_steps.csv");
    let copied = elsewhere.path().join(steps.file_name().unwrap());
    std::fs::copy(&steps, &copied).unwrap();

    assert_cmd::Command::cargo_bin("pgstress")
        .unwrap()
        .arg("report")
        .arg(&copied)
        .assert()
        .success();
    let prefix = PathBuf::from(copied.to_str().unwrap().strip_suffix("_steps.csv").unwrap());
    let html = std::fs::read_to_string(with_suffix(&prefix, "_report.html")).unwrap();
    assert!(html.contains("steps log alone"), "{html}");
    assert!(
        html.contains("breaking point: 20 requests (step 2); capacity: 10 requests"),
        "{html}"
    );
    for chart in CHARTS {
        let (width, _, colours) = decode_png(&with_suffix(&prefix, &format!("_{chart}.png")));
        assert!(width > 0 && colours > 2, "{chart}.png is blank");
    }
}

#[test]
fn report_of_a_run_that_is_not_there_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let output = assert_cmd::Command::cargo_bin("pgstress")
        .unwrap()
        .arg("report")
        .arg(dir.path().join("01012026_000000"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let error = one_line_error(&output.stderr);
    assert!(error.contains("01012026_000000_summary.json"), "{error}");
}

#[test]
fn no_report_and_a_pipe_mean_no_pictures_and_no_bars() {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args([
            "--dsn",
            &shared_dsn(),
            "--steps",
            "2",
            "--step",
            "5",
            "--no-report",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("step  1/2"), "{stdout}");
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains('\r'),
        "bars on a pipe: {stdout:?}"
    );
    assert!(!stdout.contains("report:"), "{stdout}");
    let pictures = std::fs::read_dir(logs.path())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name().into_string().unwrap();
            name.ends_with(".png") || name.ends_with(".svg") || name.ends_with(".html")
        })
        .count();
    assert_eq!(pictures, 0);
}

/// Runs headless Chromium on `page` with `args`; its exit status and what it printed.
fn chromium(profile: &Path, args: &[String], page: &Path) -> (std::process::ExitStatus, String) {
    let out = profile.join("stdout");
    let mut browser = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1200,2000",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.join("data").display()
        ))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + BROWSER_DEADLINE;
    let status = loop {
        if let Some(status) = browser.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = browser.kill();
            let _ = browser.wait();
            panic!("chromium did not finish within {BROWSER_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status, std::fs::read_to_string(out).unwrap_or_default())
}

/// Pixels of a PNG within 8 of `rgb` on each channel.
fn pixels_near(path: &Path, rgb: [u8; 3]) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    pixels[..frame.buffer_size()]
        .chunks(frame.color_type.samples())
        .filter(|p| p.len() >= 3 && (0..3).all(|i| p[i].abs_diff(rgb[i]) <= 8))
        .count()
}

#[test]
fn report_renders_in_a_headless_browser() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "this test renders the report in a real browser: install Debian's `chromium` \
         (apt-get install -y chromium; .ci/run does it)"
    );
    let logs = tempfile::tempdir().unwrap();
    let prefix = small_run(logs.path(), "2");
    let page = with_suffix(&prefix, "_report.html");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(with_suffix(&prefix, "_summary.json")).unwrap(),
    )
    .unwrap();
    let verdict = summary["verdict_text"][0].as_str().unwrap();

    // The page the browser loaded is the report, not its "file not found" page.
    let profile = tempfile::tempdir().unwrap();
    let (status, dom) = chromium(profile.path(), &["--dump-dom".to_owned()], &page);
    assert!(status.success(), "chromium --dump-dom: {status}");
    assert!(
        dom.contains(verdict),
        "the rendered page says the verdict: {dom}"
    );
    assert!(
        dom.contains("class=\"steps\""),
        "and has its table of steps"
    );

    let profile = tempfile::tempdir().unwrap();
    let shot = logs.path().join("screenshot.png");
    let (status, _) = chromium(
        profile.path(),
        &[format!("--screenshot={}", shot.display())],
        &page,
    );
    assert!(status.success(), "chromium --screenshot: {status}");
    let (width, height, colours) = decode_png(&shot);
    assert_eq!((width, height), (1200, 2000));
    assert!(
        colours > 10,
        "the screenshot is (nearly) blank: {colours} colours"
    );
    // The charts' series are on screen: their blue, which no browser page of its own uses.
    assert!(
        pixels_near(&shot, [31, 119, 180]) > 50,
        "no chart series in the screenshot"
    );
}

/// A burst run and a pool run of 2 steps of 5 requests, without their own reports: the
/// folders that hold them, and the burst run's prefix then the pool run's steps CSV.
fn burst_and_pool_runs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let logs = tempfile::tempdir().unwrap();
    let modes: [(&str, &[&str]); 2] = [
        ("burst", &["--mode", "burst"]),
        ("pool", &["--mode", "pool", "--workers", "3"]),
    ];
    for (folder, mode) in modes {
        pgstress_run(&logs.path().join(folder))
            .args(["--dsn", &shared_dsn(), "--steps", "2", "--step", "5"])
            .args(mode)
            .arg("--no-report")
            .assert()
            .success();
    }
    let burst = log_file(&logs.path().join("burst"), "_summary.json");
    let burst = PathBuf::from(
        burst
            .to_str()
            .unwrap()
            .strip_suffix("_summary.json")
            .unwrap(),
    );
    let pool = log_file(&logs.path().join("pool"), "_steps.csv");
    (logs, burst, pool)
}

#[test]
fn the_steps_table_shows_each_modes_wait() {
    let (_logs, burst, pool) = burst_and_pool_runs();
    for run in [burst.clone(), pool.clone()] {
        assert_cmd::Command::cargo_bin("pgstress")
            .unwrap()
            .arg("report")
            .arg(&run)
            .assert()
            .success();
    }
    let html = |run: &Path| {
        let name = run.to_str().unwrap();
        let prefix = name.strip_suffix("_steps.csv").unwrap_or(name);
        std::fs::read_to_string(format!("{prefix}_report.html")).unwrap()
    };
    // A burst request waits from the release until its thread runs: its latency counts it.
    let burst_html = html(&burst);
    assert!(burst_html.contains("<th>wait p99 ms</th>"), "{burst_html}");
    assert!(
        burst_html.contains("late start after the release"),
        "{burst_html}"
    );
    let pool_html = html(&pool);
    assert!(pool_html.contains("<th>wait p99 ms</th>"), "{pool_html}");
    assert!(
        pool_html.contains("pool mode, 2 steps of 5 to 10 requests queued at once"),
        "{pool_html}"
    );
}

fn pgstress_compare(runs: &[&Path], extra: &[&std::ffi::OsStr]) -> std::process::Output {
    assert_cmd::Command::cargo_bin("pgstress")
        .unwrap()
        .arg("compare")
        .args(runs)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn compare_draws_one_line_per_run() {
    let (_logs, burst, pool) = burst_and_pool_runs();
    let out = tempfile::tempdir().unwrap();
    // A folder that is not there yet: compare makes it.
    let charts = out.path().join("charts");
    let output = pgstress_compare(&[&burst, &pool], &["--out".as_ref(), charts.as_os_str()]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stem = burst.file_name().unwrap().to_string_lossy().into_owned();
    for chart in CHARTS {
        let png = charts.join(format!("compare_{stem}_{chart}.png"));
        assert!(
            stdout.contains(&format!("chart:   {}", png.display())),
            "{stdout}"
        );
        let (width, height, colours) = decode_png(&png);
        assert_eq!((width, height), (1000, 600), "{chart}");
        assert!(colours > 1, "{} is blank", png.display());
        let svg_path = charts.join(format!("compare_{stem}_{chart}.svg"));
        let svg = std::fs::read_to_string(&svg_path).unwrap();
        // A line per run, a point per step of each (2).
        for colour in [BLUE, ORANGE] {
            assert_eq!(
                data_points(&svg, colour),
                2,
                "{} draws run {colour}'s steps",
                svg_path.display()
            );
        }
        let svg =
            std::fs::read_to_string(charts.join(format!("compare_{stem}_{chart}.svg"))).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{chart}.svg: {e}"));
        let text: String = doc.descendants().filter_map(|n| n.text()).collect();
        assert!(
            text.contains("A burst") && text.contains("B pool"),
            "{chart}.svg names both runs: {text}"
        );
    }
}

#[test]
fn compare_with_no_charts_prints_the_table_only() {
    let (_logs, burst, pool) = burst_and_pool_runs();
    let out = tempfile::tempdir().unwrap();
    let output = pgstress_compare(
        &[&burst, &pool],
        &[
            "--no-charts".as_ref(),
            "--out".as_ref(),
            out.path().as_os_str(),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("p99_ms"), "the table: {stdout}");
    // The host's CPU and pgstress's own, each under its own name.
    let header = stdout.lines().find(|l| l.contains("p99_ms")).unwrap();
    let columns: Vec<&str> = header.split_whitespace().collect();
    for column in ["host_cpu", "pgstress", "server_cpu"] {
        assert!(columns.contains(&column), "{header}");
    }
    assert!(!stdout.contains("chart:"), "{stdout}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}
