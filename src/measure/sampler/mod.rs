//! Samplers: threads that take readings every `--sample-every` while a step runs. One generic
//! thread (this file) drives a `Probe`; the CPU probe and the server-statistics probe say what
//! a reading is.

mod counters;
pub mod cpu;
pub mod host_watch;
pub mod pooler_cpu;
pub mod pooler_view;
pub mod server_stats;

use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};

/// Which step a sample belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepTag {
    pub step: u32,
    pub requests: u32,
}

/// Something read periodically; a sample covers the time between two readings.
pub trait Probe: Send + 'static {
    type Reading: Send + Clone;
    type Sample: Send + 'static;
    /// What the step measured as a whole, from the readings at its start and its end.
    type Whole: Send + 'static;
    /// Whether a step's last window, when much shorter than the interval, is read together
    /// with the window before it. Counters that tick (the kernel counts CPU in 10 ms ticks)
    /// read as 0% or 100% over a few milliseconds; point readings lose nothing by standing alone.
    const MERGE_SHORT_TAIL: bool = false;
    fn read(&mut self) -> Self::Reading;
    /// The reading at a step's start or end, which may read more than the regular ones.
    fn read_edge(&mut self) -> Self::Reading {
        self.read()
    }
    /// The reading at a step's end, once its requests have all ended.
    fn read_end(&mut self) -> Self::Reading {
        self.read_edge()
    }
    /// The whole step, from its first reading to its last.
    fn whole(
        &mut self,
        _tag: StepTag,
        _begin: &Self::Reading,
        _end: &Self::Reading,
    ) -> Option<Self::Whole> {
        None
    }
    fn sample(
        &mut self,
        tag: StepTag,
        before: &Self::Reading,
        after: &Self::Reading,
    ) -> Option<Self::Sample>;
}

enum Command<S, W> {
    /// Begin a step; with a sender, say so once the step's first reading is taken.
    Begin(StepTag, Option<Sender<()>>),
    /// Take a reading now, out of turn.
    ReadNow,
    End(Sender<(Vec<S>, Option<W>)>),
}

/// The sampler answers within this; past it a step is logged without these samples.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(5);
/// The longest a step waits for its baseline reading (a few milliseconds on a server that
/// answers).
const BEGIN_DEADLINE: Duration = Duration::from_secs(1);
/// A probe stuck on a dead server is left behind rather than holding up the exit.
const JOIN_DEADLINE: Duration = Duration::from_secs(2);

/// Told of each sample as it is taken (live metrics), on the sampler's thread.
pub type Tap<S> = Box<dyn FnMut(&S) + Send>;

/// Handle to a sampler thread; dropping it stops the thread.
pub struct Sampler<S, W = ()> {
    commands: Option<Sender<Command<S, W>>>,
    handle: Option<JoinHandle<()>>,
}

impl<S: Send + 'static, W: Send + 'static> Sampler<S, W> {
    pub fn start<P: Probe<Sample = S, Whole = W>>(
        name: &str,
        every: Duration,
        probe: P,
    ) -> std::io::Result<Self> {
        Self::start_tapped(name, every, probe, None)
    }

    /// A sampler that also hands each sample to `tap` as soon as it is taken.
    pub fn start_tapped<P: Probe<Sample = S, Whole = W>>(
        name: &str,
        every: Duration,
        probe: P,
        tap: Option<Tap<S>>,
    ) -> std::io::Result<Self> {
        let (commands, inbox) = unbounded();
        let handle = thread::Builder::new()
            .name(name.into())
            .spawn(move || run_probe(probe, every, inbox, tap))?;
        Ok(Sampler {
            commands: Some(commands),
            handle: Some(handle),
        })
    }

    /// Starts sampling a step; the reading taken now is the baseline.
    pub fn begin_step(&self, tag: StepTag) {
        if let Some(commands) = &self.commands {
            let _ = commands.send(Command::Begin(tag, None));
        }
    }

    /// Starts sampling a step and returns once the baseline is read (or past
    /// `BEGIN_DEADLINE`: a server too slow to answer its monitor must not hold the steps up):
    /// counters that a step's first requests may move within milliseconds (a session's counts,
    /// flushed as it exits) must be read before the step starts.
    pub fn begin_step_read(&self, tag: StepTag) {
        let (reply, answer) = bounded(1);
        if let Some(commands) = &self.commands
            && commands.send(Command::Begin(tag, Some(reply))).is_ok()
        {
            let _ = answer.recv_timeout(BEGIN_DEADLINE);
        }
    }

    /// Takes a reading now, between the regular ones: a step shorter than the interval would
    /// otherwise be seen only at its end, after its connections closed.
    pub fn read_now(&self) {
        if let Some(commands) = &self.commands {
            let _ = commands.send(Command::ReadNow);
        }
    }

    /// Ends the step with one last reading (so even a step shorter than the interval has
    /// one sample) and returns the step's samples.
    pub fn end_step(&self) -> Vec<S> {
        self.end_step_whole().0
    }

    /// Ends the step and returns its samples and what it measured as a whole.
    pub fn end_step_whole(&self) -> (Vec<S>, Option<W>) {
        let (reply, answer) = bounded(1);
        match &self.commands {
            Some(commands) if commands.send(Command::End(reply)).is_ok() => answer
                .recv_timeout(ANSWER_DEADLINE)
                .unwrap_or((Vec::new(), None)),
            _ => (Vec::new(), None),
        }
    }
}

impl<S, W> Drop for Sampler<S, W> {
    fn drop(&mut self) {
        self.commands.take();
        if let Some(handle) = self.handle.take() {
            let deadline = Instant::now() + JOIN_DEADLINE;
            while !handle.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }
}

fn run_probe<P: Probe>(
    mut probe: P,
    every: Duration,
    inbox: Receiver<Command<P::Sample, P::Whole>>,
    mut tap: Option<Tap<P::Sample>>,
) {
    let _watched = crate::sys::schedstat::watch_this_thread();
    let mut current: Option<StepTag> = None;
    // The reading the step started from.
    let mut begin: Option<P::Reading> = None;
    let mut previous = (Instant::now(), probe.read());
    // The reading the step's last sample started from, while that sample is the last one.
    let mut last_start: Option<P::Reading> = None;
    let mut samples = Vec::new();
    loop {
        match inbox.recv_timeout(every) {
            Ok(Command::Begin(tag, read)) => {
                current = Some(tag);
                samples.clear();
                last_start = None;
                previous = (Instant::now(), probe.read_edge());
                begin = Some(previous.1.clone());
                if let Some(read) = read {
                    let _ = read.send(());
                }
            }
            Ok(Command::End(reply)) => {
                let mut whole = None;
                if let Some(tag) = current.take() {
                    let now = probe.read_end();
                    whole = begin
                        .take()
                        .and_then(|begin| probe.whole(tag, &begin, &now));
                    let short_tail = previous.0.elapsed() < every / 2;
                    match last_start.take() {
                        Some(start) if P::MERGE_SHORT_TAIL && short_tail && !samples.is_empty() => {
                            samples.pop();
                            samples.extend(probe.sample(tag, &start, &now));
                        }
                        _ => samples.extend(probe.sample(tag, &previous.1, &now)),
                    }
                    previous = (Instant::now(), now);
                }
                if let (Some(tap), Some(last)) = (&mut tap, samples.last()) {
                    tap(last);
                }
                let _ = reply.send((std::mem::take(&mut samples), whole));
            }
            Ok(Command::ReadNow) | Err(RecvTimeoutError::Timeout) => {
                let now = probe.read();
                let before = std::mem::replace(&mut previous, (Instant::now(), now));
                if let Some(tag) = current {
                    let count = samples.len();
                    samples.extend(probe.sample(tag, &before.1, &previous.1));
                    last_start = (samples.len() > count).then_some(before.1);
                    if let (Some(tap), true) = (&mut tap, samples.len() > count) {
                        tap(&samples[count]);
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts readings; a sample is the number of readings between two.
    struct Counter(u32);

    impl Probe for Counter {
        type Reading = u32;
        type Sample = (StepTag, u32);
        type Whole = ();
        fn read(&mut self) -> u32 {
            self.0 += 1;
            self.0
        }
        fn sample(&mut self, tag: StepTag, before: &u32, after: &u32) -> Option<(StepTag, u32)> {
            Some((tag, after - before))
        }
    }

    /// The same counter, read as a tick counter: a short last window joins the one before.
    struct TickCounter(Counter);

    impl Probe for TickCounter {
        type Reading = u32;
        type Sample = (StepTag, u32);
        type Whole = ();
        const MERGE_SHORT_TAIL: bool = true;
        fn read(&mut self) -> u32 {
            self.0.read()
        }
        fn sample(&mut self, tag: StepTag, before: &u32, after: &u32) -> Option<(StepTag, u32)> {
            self.0.sample(tag, before, after)
        }
    }

    #[test]
    fn a_short_last_window_of_a_tick_counter_joins_the_window_before() {
        // A minute's interval never runs out here: `read_now` ends a window where the test says
        // (commands are taken in order), and the step's end comes a moment later, a tail far
        // shorter than half a window whatever the machine's load.
        let every = Duration::from_secs(60);
        let tag = StepTag {
            step: 1,
            requests: 5,
        };
        // One window, then a short tail: the tail is read with the window before it.
        let ticks = Sampler::start("test", every, TickCounter(Counter(0))).unwrap();
        ticks.begin_step(tag);
        ticks.read_now();
        assert_eq!(ticks.end_step(), vec![(tag, 2)]);

        // A point reading keeps its short tail as a sample of its own.
        let points = Sampler::start("test", every, Counter(0)).unwrap();
        points.begin_step(tag);
        points.read_now();
        assert_eq!(points.end_step(), vec![(tag, 1), (tag, 1)]);
    }

    #[test]
    fn the_tap_is_handed_each_sample_as_it_is_taken() {
        let taken = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let tap: Tap<(StepTag, u32)> = {
            let taken = std::sync::Arc::clone(&taken);
            Box::new(move |sample| taken.lock().unwrap().push(*sample))
        };
        let every = Duration::from_secs(60);
        let sampler = Sampler::start_tapped("test", every, Counter(0), Some(tap)).unwrap();
        let tag = StepTag {
            step: 1,
            requests: 5,
        };
        sampler.begin_step(tag);
        sampler.read_now();
        let samples = sampler.end_step();
        assert_eq!(*taken.lock().unwrap(), samples);
    }

    #[test]
    fn a_step_begun_with_its_reading_has_it_before_the_call_returns() {
        /// Counts readings in a shared counter the test reads.
        struct Shared(std::sync::Arc<std::sync::atomic::AtomicU32>);
        impl Probe for Shared {
            type Reading = u32;
            type Sample = ();
            type Whole = ();
            fn read(&mut self) -> u32 {
                // Slow enough that a call returning before the reading would see it missing.
                thread::sleep(Duration::from_millis(20));
                1 + self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            }
            fn sample(&mut self, _: StepTag, _: &u32, _: &u32) -> Option<()> {
                None
            }
        }
        let readings = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let sampler =
            Sampler::start("test", Duration::from_secs(60), Shared(readings.clone())).unwrap();
        let tag = StepTag {
            step: 1,
            requests: 5,
        };
        sampler.begin_step_read(tag);
        // The first reading when the thread started, the step's baseline before the return.
        assert_eq!(readings.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn a_step_shorter_than_the_interval_still_has_one_sample() {
        let sampler = Sampler::start("test", Duration::from_secs(60), Counter(0)).unwrap();
        let tag = StepTag {
            step: 1,
            requests: 5,
        };
        sampler.begin_step(tag);
        let samples = sampler.end_step();
        assert_eq!(samples, vec![(tag, 1)]);
    }

    #[test]
    fn samples_between_steps_are_not_kept() {
        let sampler = Sampler::start("test", Duration::from_millis(10), Counter(0)).unwrap();
        thread::sleep(Duration::from_millis(50));
        assert!(sampler.end_step().is_empty());
        let tag = StepTag {
            step: 2,
            requests: 10,
        };
        sampler.begin_step(tag);
        thread::sleep(Duration::from_millis(50));
        let samples = sampler.end_step();
        assert!(!samples.is_empty());
        assert!(samples.iter().all(|(t, n)| *t == tag && *n == 1));
    }
}
