//! The JUnit report of a synthetic run, read back as XML.

use super::*;
use crate::test_support::{ci_report, ci_run, run_facts};

#[test]
fn a_case_per_step_and_gate_failed_where_not_handled_or_breached() {
    let facts = run_facts(3, 100);
    let (steps, verdict, gates) = ci_run();
    let xml = render(&ci_report(&facts, &steps, &verdict, &gates));
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let suite = doc.root_element();
    assert_eq!(suite.tag_name().name(), "testsuite");
    let attribute = |name: &str| suite.attribute(name).unwrap();
    assert_eq!(
        ["tests", "failures", "errors", "skipped"].map(attribute),
        ["5", "2", "0", "1"]
    );
    assert_eq!(attribute("timestamp"), "2026-11-29T09:22:53");
    assert_eq!(attribute("hostname"), "ci-runner");
    assert_eq!(attribute("time"), "2.500");
    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let names: Vec<&str> = cases.iter().map(|c| c.attribute("name").unwrap()).collect();
    assert_eq!(
        names,
        [
            "step 1: 100 concurrent requests",
            "step 2: 200 concurrent requests",
            "step 3: 300 concurrent requests",
            "capacity<50",
            "failure-rate>0.01"
        ]
    );
    let child = |at: usize| cases[at].first_element_child().map(|n| n.tag_name().name());
    assert_eq!(
        (0..5).map(child).collect::<Vec<_>>(),
        [
            None,
            Some("failure"),
            Some("skipped"),
            None,
            Some("failure")
        ]
    );
    let broken = cases[1].first_element_child().unwrap();
    let message = broken.attribute("message").unwrap();
    assert!(
        message.starts_with("not handled: 30 of 200 failed (30 too_many_clients)"),
        "{message}"
    );
    let skipped = cases[2].first_element_child().unwrap();
    assert_eq!(
        skipped.attribute("message"),
        Some("stopped after step 2: --stop-failure-rate 0.1")
    );
    assert_eq!(cases[4].attribute("classname"), Some(GATES_CLASS));
}

#[test]
fn the_settings_are_properties_and_the_verdict_the_output() {
    let facts = run_facts(3, 100);
    let (steps, verdict, gates) = ci_run();
    let xml = render(&ci_report(&facts, &steps, &verdict, &gates));
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let property = |name: &str| {
        doc.descendants()
            .filter(|n| n.has_tag_name("property"))
            .find(|n| n.attribute("name") == Some(name))
            .and_then(|n| n.attribute("value"))
            .map(str::to_owned)
    };
    assert_eq!(property("plan.mode").as_deref(), Some("burst"));
    assert_eq!(property("server.max_connections").as_deref(), Some("100"));
    // The query's quotes and comparison survive as its own text.
    assert_eq!(
        property("plan.query").as_deref(),
        Some("SELECT 1 WHERE 1 < 2 AND 'a' = \"a\"")
    );
    assert_eq!(
        property("gate capacity<50").as_deref(),
        Some("held: capacity is 100")
    );
    assert_eq!(property("plan.data"), None, "no value, no property");
    let out = doc
        .descendants()
        .find(|n| n.has_tag_name("system-out"))
        .and_then(|n| n.text())
        .unwrap();
    assert!(
        out.starts_with("breaking point: 200 concurrent requests (step 2)"),
        "{out}"
    );
    assert!(out.contains("gate breached: failure-rate>0.01"), "{out}");
}

#[test]
fn markup_and_control_characters_cannot_break_the_xml() {
    assert_eq!(
        escape("a<b & \"c\" 'd'>"),
        "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;"
    );
    assert_eq!(escape("one\ntwo\u{1}\u{7}"), "one&#10;two");
    assert_eq!(escape_text("'one'\n<two>"), "'one'\n&lt;two&gt;");
}
