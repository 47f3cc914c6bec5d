//! Hold mode's options and their defaults.

use super::*;

#[test]
fn hold_mode_takes_every_and_duration_and_source_addresses_a_list() {
    let config = merge(
        &[
            "--mode",
            "hold",
            "--every",
            "50s",
            "--duration",
            "2m",
            "--source-address",
            "127.0.0.2,127.0.0.3",
            "--source-address",
            "127.0.0.4",
        ],
        "",
    )
    .unwrap();
    assert_eq!(
        config.mode,
        Mode::Hold {
            every: Duration::from_secs(50),
            duration: Duration::from_secs(120),
        }
    );
    assert_eq!(config.source_addresses.len(), 3);
    // A value per held connection: the values say the step's size (an agent's share too).
    assert_eq!(config.mode.values_for(10), 10);
    let twice = merge(&["--source-address", "127.0.0.2,127.0.0.2"], "").unwrap_err();
    assert!(twice.contains("listed twice"), "{twice}");
    let every = merge(&["--every", "1s"], "").unwrap_err();
    assert!(every.contains("--mode hold"), "{every}");
    let file = merge(
        &[],
        "mode = \"hold\"\nsource-address = [\"127.0.0.2\"]\nevery = \"5s\"",
    )
    .unwrap();
    assert_eq!(file.source_addresses.len(), 1);
}

#[test]
fn hold_modes_stated_defaults_are_the_ones_applied() {
    let span = |d: Duration| humantime::format_duration(d).to_string();
    let Mode::Rate { duration, .. } = merge(&["--mode", "rate"], "").unwrap().mode else {
        panic!("rate")
    };
    let hold = merge(&["--mode", "hold"], "").unwrap();
    let Mode::Hold {
        every,
        duration: held_for,
    } = hold.mode
    else {
        panic!("{:?}", hold.mode)
    };
    assert_eq!(
        stated_default("duration"),
        format!(
            "rate {}; hold {}; pool none",
            span(duration),
            span(held_for)
        )
    );
    assert_eq!(stated_default("every"), span(every));
    assert_eq!(hold.stack_size, 128 * 1024);
    assert!(hold.source_addresses.is_empty());
    assert_eq!(
        stated_default("source-address"),
        "the system's choice",
        "no address bound"
    );
}
