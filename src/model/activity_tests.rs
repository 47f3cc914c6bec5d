use super::*;

fn sample(events: &[(&str, u32)]) -> ActivitySample {
    ActivitySample {
        events: events.iter().map(|(e, n)| (e.to_string(), *n)).collect(),
    }
}

#[test]
fn wait_event_types_have_their_classes() {
    assert_eq!(WaitClass::of_type(None), WaitClass::Cpu);
    for class in WaitClass::ALL {
        if class != WaitClass::Cpu && class != WaitClass::Other {
            assert_eq!(WaitClass::of_type(Some(class.wait_event_type())), class);
        }
        assert_eq!(WaitClass::ALL[class.index()], class);
    }
    assert_eq!(WaitClass::of_type(Some("LWLock")), WaitClass::LwLock);
    assert_eq!(WaitClass::of_type(Some("IO")), WaitClass::Io);
    // A type no version here knows, and the CPU's name given as a type, are neither CPU.
    assert_eq!(WaitClass::of_type(Some("InjectionPoint")), WaitClass::Other);
    assert_eq!(WaitClass::of_type(Some("CPU")), WaitClass::Other);
    assert_eq!(WaitClass::of_type(Some("Other")), WaitClass::Other);
}

#[test]
fn events_are_named_and_classed_back() {
    assert_eq!(event_name(None, None), "CPU");
    assert_eq!(
        event_name(Some("Timeout"), Some("PgSleep")),
        "Timeout:PgSleep"
    );
    assert_eq!(event_name(Some("Lock"), None), "Lock");
    assert_eq!(class_of_event("CPU"), WaitClass::Cpu);
    assert_eq!(class_of_event("Timeout:PgSleep"), WaitClass::Timeout);
    assert_eq!(class_of_event("LWLock:WALWrite"), WaitClass::LwLock);
    assert_eq!(class_of_event("Lock"), WaitClass::Lock);
    assert_eq!(class_of_event("Extension:my:event"), WaitClass::Extension);
    assert_eq!(class_of_event("Nonsense"), WaitClass::Other);
}

#[test]
fn a_sample_counts_its_sessions_by_class() {
    let s = sample(&[
        ("CPU", 3),
        ("LWLock:WALWrite", 2),
        ("LWLock:BufferContent", 1),
    ]);
    assert_eq!(s.active(), 6);
    assert_eq!(s.in_class(WaitClass::Cpu), 3);
    assert_eq!(s.in_class(WaitClass::LwLock), 3);
    assert_eq!(s.in_class(WaitClass::Io), 0);
    assert_eq!(ActivitySample::default().active(), 0);
}

#[test]
fn aas_is_the_mean_over_the_samples_split_by_class() {
    // Four samples: 4 on CPU, then 2 on CPU and 2 sleeping, then nobody, then 1 on IO.
    let samples = [
        sample(&[("CPU", 4)]),
        sample(&[("CPU", 2), ("Timeout:PgSleep", 2)]),
        sample(&[]),
        sample(&[("IO:DataFileRead", 1)]),
    ];
    let aas = Activity::of(&samples).unwrap();
    assert_eq!(aas.samples, 4);
    assert_eq!(aas.mean, 9.0 / 4.0);
    assert_eq!(aas.peak, 4);
    assert_eq!(aas.on_cpu(), 1.5);
    assert_eq!(aas.cpu_peak, 4);
    assert_eq!(aas.in_class(WaitClass::Timeout), 0.5);
    assert_eq!(aas.in_class(WaitClass::Io), 0.25);
    assert_eq!(aas.in_class(WaitClass::Lock), 0.0);
    let classes: f64 = aas.by_class.iter().sum();
    assert_eq!(classes, aas.mean, "the classes add up to the AAS");
    assert_eq!(
        aas.top_events,
        vec![
            ("CPU".to_owned(), 1.5),
            ("Timeout:PgSleep".to_owned(), 0.5),
            ("IO:DataFileRead".to_owned(), 0.25)
        ]
    );
    assert_eq!(
        aas.top_events_text(),
        "CPU 1.50;Timeout:PgSleep 0.50;IO:DataFileRead 0.25"
    );
}

#[test]
fn the_busiest_events_are_kept_busiest_first_ties_by_name() {
    let samples = [sample(&[
        ("Lock:tuple", 1),
        ("LWLock:WALWrite", 5),
        ("CPU", 1),
        ("IPC:SyncRep", 1),
        ("Lock:transactionid", 2),
    ])];
    let aas = Activity::of(&samples).unwrap();
    let names: Vec<&str> = aas.top_events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["LWLock:WALWrite", "Lock:transactionid", "CPU"]);
    assert_eq!(aas.in_class(WaitClass::Lock), 3.0);
    assert_eq!(aas.in_class(WaitClass::Ipc), 1.0);
    assert_eq!(aas.cpu_peak, 1);
}

#[test]
fn no_sample_no_activity_and_an_idle_server_is_zero() {
    assert_eq!(Activity::of(&[]), None);
    let idle = Activity::of(&[sample(&[]), sample(&[])]).unwrap();
    assert_eq!((idle.samples, idle.mean, idle.peak), (2, 0.0, 0));
    assert_eq!(idle.on_cpu(), 0.0);
    assert!(idle.top_events.is_empty());
    assert_eq!(idle.top_events_text(), "");
}

#[test]
fn counters_grow_over_a_step_and_a_reset_is_unknown() {
    let begin = DatabaseCounts {
        xact_commit: Some(100),
        xact_rollback: Some(3),
        sessions: Some(10),
        sessions_abandoned: Some(1),
        sessions_fatal: Some(0),
        deadlocks: Some(0),
        temp_bytes: Some(8192),
    };
    let end = DatabaseCounts {
        xact_commit: Some(160),
        xact_rollback: Some(1),
        sessions: Some(30),
        sessions_abandoned: Some(1),
        sessions_fatal: Some(2),
        deadlocks: Some(1),
        temp_bytes: None,
    };
    let step = end.since(&begin);
    assert_eq!(
        step,
        DatabaseCounts {
            xact_commit: Some(60),
            // Went back: reset during the step.
            xact_rollback: None,
            sessions: Some(20),
            sessions_abandoned: Some(0),
            sessions_fatal: Some(2),
            deadlocks: Some(1),
            temp_bytes: None,
        }
    );
    // A server before PostgreSQL 14 has no session counters at either end.
    let old = DatabaseCounts {
        sessions: None,
        ..begin
    };
    assert_eq!(old.since(&old).sessions, None);
    assert_eq!(old.since(&old).xact_commit, Some(0));
}
