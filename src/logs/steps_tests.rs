use super::*;
use crate::test_support::step_result;

#[test]
fn header_matches_the_row_fields() {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .serialize(StepRow::of(&step_result(1, 10, 2)))
        .unwrap();
    let text = String::from_utf8(writer.into_inner().unwrap()).unwrap();
    assert_eq!(text.lines().next().unwrap(), STEPS_HEADER.join(","));
}

#[test]
fn failure_columns_follow_the_class_order() {
    let classes: Vec<&str> = FailureClass::ALL.iter().map(|c| c.name()).collect();
    assert_eq!(&STEPS_HEADER[4..12], &classes[..8]);
    // Classes added later come after the original columns, in their order.
    let client = STEPS_HEADER.iter().position(|c| *c == "client").unwrap();
    assert_eq!(&STEPS_HEADER[client..client + 2], &classes[8..10]);
    let at = |name: &str| STEPS_HEADER.iter().position(|c| *c == name);
    assert_eq!(
        at(classes[10]),
        at("peak_connected").map(|p| p + 1),
        "after the columns of the earlier versions"
    );
    assert_eq!(
        at(classes[11]),
        at("pooler_avg_wait_ms").map(|p| p + 1),
        "after the pooler's other columns"
    );
    assert_eq!(
        at(classes[12]),
        at("requests_by_node").map(|p| p + 1),
        "after the hosts' counts"
    );
}

#[test]
fn missing_values_are_empty_fields() {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    writer
        .serialize(StepRow::of(&step_result(1, 4, 4)))
        .unwrap();
    let text = String::from_utf8(writer.into_inner().unwrap()).unwrap();
    let fields: Vec<&str> = text.trim_end().split(',').collect();
    assert_eq!(fields[5], "4", "too_many_clients");
    assert_eq!(fields[18], "", "no p99 without a success: {text}");
}

#[test]
fn the_outage_columns_follow_the_earlier_ones_and_are_empty_without_one() {
    use crate::model::outage::Outage;
    use std::time::Duration;
    let at = |name: &str| STEPS_HEADER.iter().position(|c| *c == name).unwrap();
    assert_eq!(
        at("outage_start_s"),
        at("starting") + 1,
        "after the earlier columns"
    );
    assert_eq!(
        at("lost"),
        at("outage_start_s") + 11,
        "the outage's twelve, together"
    );
    let row = StepRow::of(&step_result(1, 4, 0));
    assert_eq!(
        (row.outage_start_s, row.outage_failures.as_str()),
        (None, "")
    );
    let mut step = step_result(1, 100, 0);
    let ms = Duration::from_millis;
    step.outage = Some(Outage {
        start: ms(30_010),
        first_success: Some(ms(33_100)),
        end: Some(ms(33_430)),
        failures: vec![(FailureClass::Refused, 1100), (FailureClass::Shutdown, 112)],
        gap_p99: ms(3_400),
        caused_by: Some("restart@30s".to_owned()),
        ..Outage::default()
    });
    step.lost = 2;
    let row = StepRow::of(&step);
    assert_eq!(row.outage_start_s, Some(30.01));
    assert_eq!(row.outage_end_s, Some(33.43));
    assert_eq!(row.outage_s, Some(3.42));
    assert_eq!(row.outage_gap_p99_s, Some(3.4));
    assert_eq!(row.outage_failed, Some(1212));
    assert_eq!(row.outage_failures, "refused 1100;shutdown 112");
    assert_eq!(row.outage_caused_by, "restart@30s");
    assert_eq!(row.lost, 2);
}
