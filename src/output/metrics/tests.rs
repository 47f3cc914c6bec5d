use std::time::Duration;

use super::endpoint::{exposition, prefers_openmetrics};
use super::*;
use crate::judge::verdict::{Judging, Verdict};
use crate::model::outcome::Failure;

fn labels() -> RunLabels {
    RunLabels {
        run_id: "11292026_092253".to_owned(),
        mode: "burst".to_owned(),
        version: "0.1.0".to_owned(),
        load_unit: "concurrent requests".to_owned(),
        steps_planned: 3,
        max_connections: 100,
        usable_connections: 96,
    }
}

fn ok(ms: u64) -> RequestRecord {
    RequestRecord {
        start_offset: Some(Duration::ZERO),
        queue_wait: None,
        connect: Some(Duration::from_millis(1)),
        query: Some(Duration::from_millis(1)),
        latency: Duration::from_millis(ms),
        outcome: Ok(()),
        node: None,
        client: None,
    }
}

fn failed(class: FailureClass) -> RequestRecord {
    RequestRecord::failed_without_running(Failure::new(class, "no"), Duration::from_millis(5))
}

/// The value of the one sample line of `text` that starts with `series` (name and labels).
fn value(text: &str, series: &str) -> f64 {
    let line = text
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn end(metrics: &RunMetrics, run: &StepRun, step: u32) {
    let result = StepResult::from_run(step, run.records.len() as u32, run, &[], &[]);
    let judging = Judging {
        steps_planned: 3,
        unit: "concurrent requests",
        ..Judging::default()
    };
    let verdict = Verdict::judge(std::slice::from_ref(&result), &judging, None);
    let handled = crate::judge::verdict::handled(&result, &judging);
    metrics.end_step(&StepEnd {
        run,
        result: &result,
        handled,
        verdict: &verdict,
    });
}

const LABELS: &str = "run_id=\"11292026_092253\",mode=\"burst\"";

#[test]
fn the_totals_are_the_steps_whatever_was_seen_live() {
    let metrics = RunMetrics::new(&labels());
    metrics.begin_step(1, 4, 4, Some(4));
    // Two of the four seen as they ended; the timeout pgstress filled in and a spawn failure
    // come only with the step's records, one of which repeats a fingerprint seen live.
    metrics.record_ended(&ok(3));
    metrics.record_ended(&failed(FailureClass::Refused));
    metrics.step_progress(2);
    let text = metrics.text();
    let in_flight = format!("pgstress_requests_in_flight{{{LABELS}}}");
    assert_eq!(value(&text, &in_flight), 2.0);
    let run = StepRun {
        records: vec![
            ok(3),
            failed(FailureClass::Refused),
            ok(3),
            failed(FailureClass::Timeout),
        ],
        dropped: 1,
        unsent: 2,
        wall: Duration::from_millis(100),
        ..StepRun::default()
    };
    end(&metrics, &run, 1);
    let text = metrics.text();
    let requests = |outcome: &str| {
        value(
            &text,
            &format!("pgstress_requests_total{{{LABELS},outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(
        [
            requests("ok"),
            requests("failed"),
            requests("dropped"),
            requests("unsent")
        ],
        [2.0, 2.0, 1.0, 2.0]
    );
    let failures = |class: &str, side: &str| {
        value(
            &text,
            &format!(
                "pgstress_request_failures_total{{{LABELS},class=\"{class}\",side=\"{side}\"}}"
            ),
        )
    };
    assert_eq!(failures("refused", "server"), 1.0);
    assert_eq!(failures("timeout", "server"), 1.0);
    assert_eq!(
        failures("spawn", "client"),
        0.0,
        "every class from the start"
    );
    let latency_count = format!("pgstress_request_latency_seconds_count{{{LABELS}}}");
    assert_eq!(value(&text, &latency_count), 2.0);
    let bucket = format!("pgstress_request_latency_seconds_bucket{{{LABELS},le=\"0.00315\"}}");
    assert_eq!(value(&text, &bucket), 2.0, "3 ms is within 3.15 ms");
    assert_eq!(value(&text, &in_flight), 0.0);
    let broken = format!("pgstress_breaking_point_step{{{LABELS}}}");
    assert_eq!(value(&text, &broken), 1.0, "the server failed two");
}

#[test]
fn both_formats_carry_the_same_families_and_the_gates_once_finished() {
    let metrics = RunMetrics::new(&labels());
    metrics.begin_step(1, 2, 2, None);
    end(
        &metrics,
        &StepRun {
            records: vec![ok(2), ok(4)],
            wall: Duration::from_millis(10),
            ..StepRun::default()
        },
        1,
    );
    metrics.finish(&[
        ("capacity<200".to_owned(), Some("capacity is 2".to_owned())),
        ("failed>0".to_owned(), None),
    ]);
    let text = metrics.text();
    let open = metrics.openmetrics();
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(!text.contains("# EOF"));
    // Counters: `_total` in the family's name for Prometheus, in the samples' for OpenMetrics.
    assert!(
        text.contains("# TYPE pgstress_requests_total counter"),
        "{text}"
    );
    assert!(open.contains("# TYPE pgstress_requests counter"), "{open}");
    assert!(
        open.contains("# UNIT pgstress_request_latency_seconds seconds"),
        "{open}"
    );
    let gate = |text: &str, gate: &str| {
        value(
            text,
            &format!("pgstress_gate_breached{{{LABELS},gate=\"{gate}\"}}"),
        )
    };
    assert_eq!(gate(&text, "capacity<200"), 1.0);
    assert_eq!(gate(&open, "failed>0"), 0.0);
    assert_eq!(
        value(&text, &format!("pgstress_run_complete{{{LABELS}}}")),
        1.0
    );
    let info = format!(
        "pgstress_run_info{{{LABELS},version=\"0.1.0\",load_unit=\"concurrent requests\"}}"
    );
    assert_eq!(value(&text, &info), 1.0);
    let p99 = format!("pgstress_last_step_latency_seconds{{{LABELS},percentile=\"99\"}}");
    assert_eq!(
        value(&text, &p99),
        0.004001,
        "HDR's 3 digits, as the summary's"
    );
}

#[test]
fn samples_set_each_sides_share_of_the_host() {
    let metrics = RunMetrics::new(&labels());
    metrics.cpu_sample(&CpuSample {
        elapsed_ms: 100,
        step: 1,
        requests: 10,
        host_cpu_pct: 50.0,
        process_cpu_pct: 10.0,
        server_cpu_pct: Some(40.0),
        pooler_cpu_pct: None,
    });
    metrics.server_sample(&ServerStatsSample {
        step: 1,
        connections: 7,
        active: 3,
        activity: None,
    });
    let text = metrics.text();
    let cpu = |side: &str| {
        value(
            &text,
            &format!("pgstress_cpu_ratio{{{LABELS},side=\"{side}\"}}"),
        )
    };
    assert_eq!(
        [cpu("host"), cpu("pgstress"), cpu("server")],
        [0.5, 0.1, 0.4]
    );
    assert!(
        !text.contains("cpu_ratio{run_id=\"11292026_092253\",mode=\"burst\",side=\"pooler\"}"),
        "no pooler, no series"
    );
    let active = format!("pgstress_server_sessions{{{LABELS},state=\"active\"}}");
    assert_eq!(value(&text, &active), 3.0);
}

#[test]
fn prometheus_gets_openmetrics_and_curl_the_text_format() {
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert!(prefers_openmetrics(prometheus));
    assert!(!prefers_openmetrics("*/*"));
    assert!(!prefers_openmetrics(""));
    assert!(!prefers_openmetrics("text/plain;version=0.0.4"));
    assert!(!prefers_openmetrics(
        "text/plain, application/openmetrics-text;q=0.5"
    ));
    let (before_the_run, content_type) = exposition(None, prometheus);
    assert_eq!(
        (before_the_run.as_str(), content_type),
        ("# EOF\n", OPENMETRICS_CONTENT_TYPE)
    );
    assert_eq!(exposition(None, "*/*"), (String::new(), TEXT_CONTENT_TYPE));
}

/// A GET or another method over HTTP/1.0 to a local endpoint: the status line and the rest.
fn ask(address: std::net::SocketAddr, method: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address)?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

#[test]
fn the_endpoint_serves_nothing_until_the_run_then_its_metrics_and_only_to_reads() {
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let port = crate::sys::ports::free_listener_port(ip).unwrap();
    let endpoint = endpoint::MetricsEndpoint::bind((ip, port).into()).unwrap();
    let address = endpoint.address();
    let before = ask(address, "GET", "/metrics").unwrap();
    assert!(before.starts_with("HTTP/1.0 200"), "{before}");
    assert!(
        before.ends_with("\r\n\r\n"),
        "an empty exposition: {before}"
    );
    endpoint.serve(std::sync::Arc::new(RunMetrics::new(&labels())));
    let during = ask(address, "GET", "/metrics?x=1").unwrap();
    assert!(
        during.contains("Content-Type: text/plain; version=0.0.4"),
        "{during}"
    );
    assert!(during.contains("pgstress_steps_planned{"), "{during}");
    assert!(
        ask(address, "POST", "/metrics")
            .unwrap()
            .starts_with("HTTP/1.0 405")
    );
    assert!(
        ask(address, "GET", "/other")
            .unwrap()
            .starts_with("HTTP/1.0 404")
    );
    drop(endpoint);
    assert!(
        ask(address, "GET", "/metrics").is_err(),
        "closed with the endpoint"
    );
}
