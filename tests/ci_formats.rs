//! The formats CI systems and monitoring read, checked by the real tools that read them: a
//! real Prometheus (Debian's `prometheus`) scraping a short run every 100 ms, `promtool check
//! metrics` on the live exposition and on the end-of-run file, `xmllint --schema` on the JUnit
//! report against tests/junit.xsd, and the Markdown summary rendered to HTML. `.ci/run`
//! installs the tools; the tests fail, never skip, without them.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const PROMETHEUS: &str = "prometheus";
const PROMTOOL: &str = "promtool";
const XMLLINT: &str = "xmllint";
const XSD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/junit.xsd");

/// The tool, or a failure that says how to install it.
fn tool(name: &'static str, package: &str) -> &'static str {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
    assert!(
        found,
        "tests/ci_formats.rs needs `{name}`: apt-get install -y {package} (.ci/run does it)"
    );
    name
}

fn loopback_port() -> SocketAddr {
    let ip = [127, 0, 0, 1].into();
    let port = pgstress::sys::ports::free_listener_port(ip).expect("a free loopback port");
    SocketAddr::new(ip, port)
}

/// A GET over HTTP/1.0: the status, the content type and the body.
fn get(address: SocketAddr, target: &str, accept: &str) -> std::io::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {target} HTTP/1.0\r\nHost: {address}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    Ok((status, content_type, body.to_owned()))
}

/// `promtool check metrics` on an exposition: its lint's findings, if any.
fn promtool_check(exposition: &str) {
    let mut child = Command::new(tool(PROMTOOL, "prometheus"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}\n{exposition}",
        output_text(&output)
    );
}

/// A Prometheus of the test's own, killed (and its data removed) however the test ends.
struct Prometheus {
    child: Child,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `target` every 100 ms; ready to be asked once this returns.
    fn scraping(target: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 100ms\n  scrape_timeout: 100ms\n\
                 scrape_configs:\n  - job_name: pgstress\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let address = loopback_port();
        let child = Command::new(tool(PROMETHEUS, "prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let prometheus = Prometheus {
            child,
            address,
            _dir: dir,
        };
        // Ready, and scraping: its discovery hands the scrapers their targets some seconds
        // after the start (it batches updates), and a run before that would go unseen.
        let give_up = Instant::now() + Duration::from_secs(60);
        let scraping = |(status, _, body): (u16, String, String)| {
            status == 200 && body.contains(&format!("\"scrapeUrl\":\"http://{target}/metrics\""))
        };
        while !get(address, "/api/v1/targets", "*/*").is_ok_and(scraping) {
            assert!(
                Instant::now() < give_up,
                "Prometheus never scraped {target}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    /// The samples of an instant PromQL query: each one's labels and value.
    fn query(&self, promql: &str) -> Vec<(Value, f64)> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, _, body) = get(
            self.address,
            &format!("/api/v1/query?query={encoded}"),
            "*/*",
        )
        .expect("Prometheus answers");
        assert_eq!(status, 200, "{promql}: {body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        let samples = answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        samples
            .into_iter()
            .map(|s| {
                let value = s["value"][1].as_str().unwrap().parse().unwrap();
                (s["metric"].clone(), value)
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The run's totals by outcome, from its JSON summary's steps.
fn summary_totals(logs: &Path) -> [(String, f64); 4] {
    let summary = summary(logs);
    let steps = summary["steps"].as_array().unwrap();
    ["ok", "failed", "dropped", "unsent"].map(|outcome| {
        let total: u64 = steps.iter().map(|s| s[outcome].as_u64().unwrap()).sum();
        (outcome.to_owned(), total as f64)
    })
}

fn run_id(logs: &Path) -> String {
    let summary = log_file(logs, "_summary.json");
    let name = summary.file_name().unwrap().to_string_lossy().into_owned();
    name.strip_suffix("_summary.json").unwrap().to_owned()
}

#[test]
fn prometheus_scrapes_the_run_live_and_ends_with_the_summarys_totals() {
    tool(PROMTOOL, "prometheus");
    let endpoint = loopback_port();
    let prometheus = Prometheus::scraping(endpoint);
    let logs = tempfile::tempdir().unwrap();
    // A request that outlasts its deadline about a third of the time (a timeout: the server's
    // failure, which the first request alone does not make fatal), so that both outcomes and
    // a class have counts.
    let sometimes_slow = "SELECT pg_sleep(CASE WHEN random() < 0.3 THEN 1 ELSE 0 END)";
    let mut run = run_command(logs.path())
        .args(["--dsn", &shared_dsn(), "--steps", "3", "--step", "10"])
        .args([
            "--query",
            sometimes_slow,
            "--timeout",
            "300ms",
            "--pause",
            "200ms",
        ])
        .args([
            "--metrics-listen",
            &endpoint.to_string(),
            "--metrics-linger",
            "2s",
        ])
        .args(["--no-report", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While the run lingers, its exposition in both formats, as a scraper gets them.
    let give_up = Instant::now() + Duration::from_secs(60);
    let text = loop {
        if let Ok((200, _, body)) = get(endpoint, "/metrics", "*/*")
            && body
                .lines()
                .any(|l| l.starts_with("pgstress_run_complete{") && l.ends_with(" 1"))
        {
            break body;
        }
        if let Ok(Some(_)) = run.try_wait() {
            let output = run.wait_with_output().unwrap();
            panic!("the run ended before its linger: {}", output_text(&output));
        }
        assert!(Instant::now() < give_up, "the run never served its end");
        std::thread::sleep(Duration::from_millis(50));
    };
    promtool_check(&text);
    let (_, content_type, open) = get(
        endpoint,
        "/metrics",
        "application/openmetrics-text;version=1.0.0",
    )
    .unwrap();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(open.ends_with("# EOF\n"), "{open}");
    let output = run.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", output_text(&output));

    // Prometheus scraped it every 100 ms; the last counts it holds are the summary's.
    let id = run_id(logs.path());
    let expected = summary_totals(logs.path());
    assert!(expected[0].1 > 0.0 && expected[1].1 > 0.0, "{expected:?}");
    let by_outcome = format!("max_over_time(pgstress_requests_total{{run_id=\"{id}\"}}[10m])");
    let give_up = Instant::now() + Duration::from_secs(10);
    let scraped = loop {
        let mut scraped: Vec<(String, f64)> = prometheus
            .query(&by_outcome)
            .into_iter()
            .map(|(labels, value)| (labels["outcome"].as_str().unwrap().to_owned(), value))
            .collect();
        scraped.sort_by_key(|(outcome, _)| {
            ["ok", "failed", "dropped", "unsent"]
                .iter()
                .position(|o| o == outcome)
        });
        if scraped == expected || Instant::now() > give_up {
            break scraped;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let targets = get(prometheus.address, "/api/v1/targets", "*/*").map(|(_, _, body)| body);
    assert_eq!(
        scraped, expected,
        "Prometheus's counters against the summary; its scrapes: {targets:?}"
    );
    let classes =
        format!("sum(max_over_time(pgstress_request_failures_total{{run_id=\"{id}\"}}[10m]))");
    assert_eq!(
        prometheus.query(&classes)[0].1,
        expected[1].1,
        "the classes add up"
    );
    let latency = format!(
        "max_over_time(pgstress_request_latency_seconds_count{{run_id=\"{id}\",mode=\"burst\"}}[10m])"
    );
    assert_eq!(
        prometheus.query(&latency)[0].1,
        expected[0].1,
        "one latency per success"
    );
    let complete = format!("max_over_time(pgstress_run_complete{{run_id=\"{id}\"}}[10m])");
    assert_eq!(
        prometheus.query(&complete)[0].1,
        1.0,
        "the last step was scraped"
    );
    // Prometheus asks for OpenMetrics first: the run's info family is stored as OpenMetrics
    // names it (`pgstress_run`, type info), not as the text format's gauge.
    let (_, _, metadata) = get(
        prometheus.address,
        "/api/v1/metadata?metric=pgstress_run",
        "*/*",
    )
    .unwrap();
    assert!(metadata.contains("\"type\":\"info\""), "{metadata}");
}

/// The run of `small_server` breaking at its second step: 40 requests holding a connection
/// each for a second where 17 are free.
fn breaking_run(dir: &Path, dsn: &str, github_summary: &Path) -> std::process::Output {
    pgstress_run(&dir.join("logs"))
        .args(["--dsn", dsn, "--steps", "3", "--start", "5", "--step", "35"])
        .args(["--query", "SELECT pg_sleep(1)", "--no-report"])
        .args(["--fail-if", "capacity<1000", "--fail-if", "failed>100000"])
        .arg("--junit")
        .arg(dir.join("reports/junit.xml"))
        .arg("--summary-md")
        .arg(dir.join("reports/summary.md"))
        .env("GITHUB_STEP_SUMMARY", github_summary)
        .output()
        .unwrap()
}

#[test]
fn a_ci_job_reads_the_run_as_junit_markdown_and_a_metrics_file() {
    let xmllint = tool(XMLLINT, "libxml2-utils");
    let (_guard, dsn) = small_server();
    let dir = tempfile::tempdir().unwrap();
    let github_summary = dir.path().join("step_summary.md");
    std::fs::write(&github_summary, "# Build\n\n").unwrap();
    let output = breaking_run(dir.path(), &dsn, &github_summary);
    assert_eq!(output.status.code(), Some(3), "{}", output_text(&output));
    let reports = dir.path().join("reports");

    // JUnit: valid against the schema, a case per step of the plan and per gate.
    let junit = reports.join("junit.xml");
    let valid = Command::new(xmllint)
        .args(["--noout", "--schema", XSD])
        .arg(&junit)
        .output()
        .unwrap();
    assert!(valid.status.success(), "{}", output_text(&valid));
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let cases: Vec<(String, Option<String>)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|case| {
            let name = case.attribute("name").unwrap().to_owned();
            (
                name,
                case.first_element_child()
                    .map(|c| c.tag_name().name().to_owned()),
            )
        })
        .collect();
    let outcome = |kind: Option<&str>| kind.map(str::to_owned);
    assert_eq!(
        cases,
        [
            ("step 1: 5 concurrent requests".to_owned(), None),
            (
                "step 2: 40 concurrent requests".to_owned(),
                outcome(Some("failure"))
            ),
            (
                "step 3: 75 concurrent requests".to_owned(),
                outcome(Some("skipped"))
            ),
            ("capacity<1000".to_owned(), outcome(Some("failure"))),
            ("failed>100000".to_owned(), None),
        ],
        "{xml}"
    );
    assert!(
        xml.contains("too_many_clients"),
        "the failed step says why: {xml}"
    );
    assert!(
        xml.contains("breached: capacity&lt;1000: capacity is 5"),
        "{xml}"
    );

    // Markdown: the verdict and the steps, as text and as GitHub renders it.
    let markdown = std::fs::read_to_string(reports.join("summary.md")).unwrap();
    assert!(
        markdown.starts_with("## pgstress: ❌ a --fail-if gate was breached\n"),
        "{markdown}"
    );
    assert!(
        markdown.contains("**breaking point: 40 concurrent requests (step 2)"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| `capacity<1000` | ❌ breached | capacity is 5 |"),
        "{markdown}"
    );
    let html = render_markdown(&markdown);
    assert_eq!(
        html.matches("<table>").count(),
        2,
        "the gates and the steps: {html}"
    );
    assert!(
        html.contains("<h2>pgstress: ❌ a --fail-if gate was breached</h2>"),
        "{html}"
    );
    let rows = html.matches("<tr>").count();
    assert_eq!(
        rows,
        3 + 4,
        "a header and 2 gates, a header and 3 steps: {html}"
    );
    assert!(html.contains("<td>⏭️ stopped after step 2: "), "{html}");
    // GitHub's step summary: what other steps wrote, then the same summary.
    let appended = std::fs::read_to_string(&github_summary).unwrap();
    assert_eq!(appended, format!("# Build\n\n{markdown}"));

    // The metrics file beside the logs: lint-clean, and the summary's totals.
    let logs = dir.path().join("logs");
    let file = std::fs::read_to_string(log_file(&logs, "_metrics.txt")).unwrap();
    promtool_check(&file);
    let id = run_id(&logs);
    for (outcome, total) in summary_totals(&logs) {
        let series = format!(
            "pgstress_requests_total{{run_id=\"{id}\",mode=\"burst\",outcome=\"{outcome}\"}} "
        );
        let line = file.lines().find(|l| l.starts_with(&series));
        let value: f64 = line.unwrap_or_else(|| panic!("no {series}: {file}"))[series.len()..]
            .parse()
            .unwrap();
        assert_eq!(value, total, "{outcome}");
    }
    let gate = format!(
        "pgstress_gate_breached{{run_id=\"{id}\",mode=\"burst\",gate=\"capacity<1000\"}} 1"
    );
    assert!(file.contains(&gate), "{file}");
}

fn render_markdown(markdown: &str) -> String {
    let parser = pulldown_cmark::Parser::new_ext(markdown, pulldown_cmark::Options::ENABLE_TABLES);
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, parser);
    html
}

#[test]
fn an_interrupted_run_still_leaves_its_reports_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    // A pause far beyond the test's patience: Ctrl-C ends it after the first step.
    let mut run = run_command(&logs)
        .args([
            "--dsn",
            &shared_dsn(),
            "--steps",
            "3",
            "--step",
            "5",
            "--pause",
            "1h",
        ])
        .arg("--junit")
        .arg(dir.path().join("junit.xml"))
        .arg("--summary-md")
        .arg(dir.path().join("summary.md"))
        .args(["--no-report", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    wait_for_steps(&logs, 1, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    let pid = nix::unistd::Pid::from_raw(run.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let give_up = Instant::now() + Duration::from_secs(60);
    while run.try_wait().unwrap().is_none() {
        if Instant::now() > give_up {
            let _ = run.kill();
            panic!("the run did not end after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = run.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", output_text(&output));

    let xml = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let skipped: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("skipped"))
        .map(|n| n.attribute("message").unwrap())
        .collect();
    assert_eq!(skipped, ["interrupted after step 1"; 2], "{xml}");
    let markdown = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        markdown.starts_with("## pgstress: ⚠️ interrupted after 1 of 3 steps\n"),
        "{markdown}"
    );
    let file = std::fs::read_to_string(log_file(&logs, "_metrics.txt")).unwrap();
    promtool_check(&file);
    assert!(file.contains("pgstress_steps_total{"), "{file}");
}
