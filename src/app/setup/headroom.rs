//! Before the load: whether this machine can hold each step (pgstress's descriptors and
//! threads, one source address's local ports, a local PgBouncer's descriptors), said before
//! step 1 with the first step that cannot and the setting to raise. A step past one of these
//! measures this machine's settings, not the server.

use crate::config::RunConfig;
use crate::engine::Engine;
use crate::measure::sampler::cpu::LocalPooler;
use crate::model::plan::Mode;
use crate::output::printer::Printer;
use crate::pg::request::RequestClient;
use crate::sys::memory::MAPS_PER_THREAD;

/// What one step of the run needs of this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepNeed {
    pub step: u32,
    /// Connections open at once.
    pub connections: u64,
    /// Threads the step starts at once (a burst's thread per request); 0 where the engine
    /// started its threads before step 1.
    pub threads: u64,
}

/// What this machine lets the run hold at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// pgstress's open-file limit (RLIMIT_NOFILE, raised to its hard limit), and the files
    /// each connection takes.
    pub open_files: u64,
    pub files_per_connection: u64,
    /// The local ports of one source address (`net.ipv4.ip_local_port_range`), and how many
    /// source addresses the connections spread over.
    pub ports: Option<u64>,
    pub sources: u64,
    /// The threads pgstress may still start, and the setting that bounds them.
    pub threads: (u64, &'static str),
    /// The memory maps this process may still make (`vm.max_map_count` less those it has):
    /// each thread takes `memory::MAPS_PER_THREAD`.
    pub maps: Option<u64>,
    /// A local PgBouncer's processes' open-file limits (pid, limit): the clients spread over
    /// them.
    pub pooler_files: Vec<(u32, u64)>,
}

/// Descriptors pgstress keeps beside its connections: its logs, samplers and outputs.
const FILES_BESIDES_CONNECTIONS: u64 = 64;
/// Descriptors a PgBouncer process keeps beside its clients: its server connections (20 by
/// default), listeners, log.
const POOLER_FILES_BESIDES_CLIENTS: u64 = 84;

/// Each limit the run's steps go past, from the first step that does, naming the setting.
pub fn shortfalls(steps: &[StepNeed], room: &Room) -> Vec<String> {
    let first = |over: &dyn Fn(&StepNeed) -> bool| steps.iter().find(|step| over(step)).copied();
    let files =
        |step: &StepNeed| step.connections * room.files_per_connection + FILES_BESIDES_CONNECTIONS;
    let mut lines = Vec::new();
    if let Some(step) = first(&|step| files(step) > room.open_files) {
        lines.push(format!(
            "from step {} ({} connections) pgstress needs about {} open files, but may open {} \
             (RLIMIT_NOFILE): past that, connects fail as `client` (pgstress's own limit); raise \
             `ulimit -n`",
            step.step,
            step.connections,
            files(&step),
            room.open_files
        ));
    }
    let sources = room.sources.max(1);
    if let Some(ports) = room.ports
        && let Some(step) = first(&|step| step.connections.div_ceil(sources) > ports)
    {
        lines.push(format!(
            "from step {} ({} connections over {sources} source address{}) one source address \
             needs {} local ports, but has {ports} (net.ipv4.ip_local_port_range): past that, \
             connects fail as `client` (pgstress's own limit); widen the range, or spread the \
             connections over source addresses (`--source-address 127.0.0.2,127.0.0.3`)",
            step.step,
            step.connections,
            if sources == 1 { "" } else { "es" },
            step.connections.div_ceil(sources)
        ));
    }
    let (threads, setting) = room.threads;
    if let Some(step) = first(&|step| step.threads > threads) {
        lines.push(format!(
            "from step {} ({} threads at once) pgstress may start {threads} more threads \
             ({setting}): past that, requests fail as `client` (pgstress's own limit); raise \
             {setting}",
            step.step, step.threads
        ));
    }
    let maps = |step: &StepNeed| step.threads * MAPS_PER_THREAD;
    if let Some(left) = room.maps
        && let Some(step) = first(&|step| maps(step) > left)
    {
        lines.push(format!(
            "from step {} ({} threads) pgstress needs about {} memory maps ({MAPS_PER_THREAD} a \
             thread), but may make {left} more (vm.max_map_count): past that, its threads fail \
             as `client` (pgstress's own limit); raise vm.max_map_count, or spread the load over \
             --agents",
            step.step,
            step.threads,
            maps(&step)
        ));
    }
    let processes = room.pooler_files.len() as u64;
    let fewest = room.pooler_files.iter().min_by_key(|(_, limit)| *limit);
    let share = |step: &StepNeed| step.connections.div_ceil(processes.max(1));
    if let Some(&(pid, limit)) = fewest
        && let Some(step) = first(&|step| share(step) + POOLER_FILES_BESIDES_CLIENTS > limit)
    {
        lines.push(format!(
            "from step {} ({} connections, about {} for each of the pooler's {processes} \
             process{}) the local PgBouncer's process {pid} may open {limit} files: past that it \
             refuses clients (the pooler's limit, set by this machine); raise its open-file \
             limit (LimitNOFILE, or `ulimit -n` where it starts)",
            step.step,
            step.connections,
            share(&step),
            if processes == 1 { "" } else { "es" }
        ));
    }
    lines
}

/// What each step of the run needs: its connections (the engine's own count where it knows
/// it) and, for a burst or a hold step, a thread per connection.
pub fn step_needs(config: &RunConfig, engine: &dyn Engine) -> Vec<StepNeed> {
    (1..=config.plan.steps)
        .map(|index| {
            let size = config.plan.requests_at(index);
            let connections = engine
                .concurrency(size)
                .unwrap_or_else(|| config.mode.most_connections(size));
            StepNeed {
                step: index,
                connections: u64::from(connections),
                threads: match config.mode {
                    Mode::Burst | Mode::Hold { .. } => u64::from(size),
                    _ => 0,
                },
            }
        })
        .collect()
}

/// This machine's room for the run: pgstress's own limits, and a local PgBouncer's.
pub fn room(config: &RunConfig, pooler: Option<&LocalPooler>) -> Room {
    use crate::sys::limits;
    Room {
        open_files: limits::raise_open_files_limit(),
        // The lean connection holds its socket only; the postgres crate adds its runtime's
        // epoll and eventfd.
        files_per_connection: match config.client {
            RequestClient::Lean { .. } => 1,
            RequestClient::Postgres => limits::FILES_PER_CONNECTION,
        },
        ports: limits::ephemeral_ports(),
        sources: config.source_addresses.len().max(1) as u64,
        threads: limits::thread_room(),
        maps: crate::sys::memory::maps_left(),
        // PgBouncer's processes each serve their share of the clients on their own
        // descriptors; another pooler's children would not say what one process holds.
        pooler_files: pooler
            .filter(|pooler| pooler.cores == Some(1.0))
            .map(|pooler| {
                (pooler.pids.iter())
                    .filter_map(|&pid| Some((pid, limits::open_files_of(pid)?)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Says, before the load, each limit of this machine the run's steps go past.
pub fn warn_before_the_load(
    config: &RunConfig,
    engine: &dyn Engine,
    pooler: Option<&LocalPooler>,
    printer: &mut Printer<std::io::Stdout>,
) {
    for line in shortfalls(&step_needs(config, engine), &room(config, pooler)) {
        printer.note(format!("warning: {line}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(sizes: &[u64], burst: bool) -> Vec<StepNeed> {
        (sizes.iter().enumerate())
            .map(|(i, &n)| StepNeed {
                step: i as u32 + 1,
                connections: n,
                threads: if burst { n } else { 0 },
            })
            .collect()
    }

    fn ample() -> Room {
        Room {
            open_files: 1_000_000,
            files_per_connection: 1,
            ports: Some(28_232),
            sources: 1,
            threads: (100_000, "kernel.threads-max"),
            maps: Some(1_000_000),
            pooler_files: vec![(41, 1_000_000), (42, 1_000_000)],
        }
    }

    #[test]
    fn a_machine_that_holds_every_step_says_nothing() {
        assert!(shortfalls(&steps(&[1000, 20_000], true), &ample()).is_empty());
    }

    #[test]
    fn each_limit_names_the_first_step_past_it_and_the_setting_to_raise() {
        let room = Room {
            open_files: 1000,
            ..ample()
        };
        let lines = shortfalls(&steps(&[500, 936, 937], false), &room);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0]
                .starts_with("from step 3 (937 connections) pgstress needs about 1001 open files")
                && lines[0].contains("RLIMIT_NOFILE")
                && lines[0].contains("`ulimit -n`"),
            "{lines:?}"
        );
        // 30,000 connections from one address, or spread over two.
        let lines = shortfalls(&steps(&[10_000, 30_000], false), &ample());
        assert!(
            lines[0].starts_with("from step 2 (30000 connections over 1 source address) one source address needs 30000 local ports")
                && lines[0].contains("net.ipv4.ip_local_port_range"),
            "{lines:?}"
        );
        let two = Room {
            sources: 2,
            ..ample()
        };
        assert!(shortfalls(&steps(&[30_000], false), &two).is_empty());
        // A burst's threads; a pool's were started before step 1.
        let few = Room {
            threads: (150, "kernel.pid_max"),
            ..ample()
        };
        let lines = shortfalls(&steps(&[100, 200], true), &few);
        assert!(
            lines[0].starts_with("from step 2 (200 threads at once) pgstress may start 150 more threads (kernel.pid_max)")
                && lines[0].ends_with("raise kernel.pid_max"),
            "{lines:?}"
        );
        assert!(shortfalls(&steps(&[100, 200], false), &few).is_empty());
    }

    #[test]
    fn threads_past_the_memory_maps_left_name_vm_max_map_count() {
        // 65,530 maps, 1,530 of them taken: room for 16,000 threads at 4 maps each.
        let room = Room {
            maps: Some(64_000),
            ..ample()
        };
        assert!(shortfalls(&steps(&[8_000, 16_000], true), &room).is_empty());
        let lines = shortfalls(&steps(&[8_000, 16_000, 16_001], true), &room);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("from step 3 (16001 threads) pgstress needs about 64004 memory maps (4 a thread), but may make 64000 more (vm.max_map_count)")
                && lines[0].contains("raise vm.max_map_count"),
            "{lines:?}"
        );
        // A pool's threads were started before step 1.
        assert!(shortfalls(&steps(&[20_000], false), &room).is_empty());
    }

    #[test]
    fn a_local_pgbouncers_processes_each_hold_their_share() {
        // Two processes, the second able to open 1,084 files: 1,000 clients and its own.
        let room = Room {
            pooler_files: vec![(41, 1_000_000), (42, 1084)],
            ..ample()
        };
        assert!(shortfalls(&steps(&[2000], false), &room).is_empty());
        let lines = shortfalls(&steps(&[2000, 2002], false), &room);
        assert!(
            lines[0].starts_with("from step 2 (2002 connections, about 1001 for each of the pooler's 2 processes) the local PgBouncer's process 42 may open 1084 files")
                && lines[0].contains("LimitNOFILE"),
            "{lines:?}"
        );
    }
}
