//! What the samplers saw beside a step: CPU shares and the server's own statistics.

/// One sample, covering the time since the previous reading.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuSample {
    /// Milliseconds since the run started.
    pub elapsed_ms: u64,
    pub step: u32,
    pub requests: u32,
    /// Busy share of all the host's cores.
    pub host_cpu_pct: f64,
    /// This process's share of all the host's cores.
    pub process_cpu_pct: f64,
    /// The server's share of all the host's cores; None when the server is not local.
    pub server_cpu_pct: Option<f64>,
}

/// A whole step's CPU, from cumulative counters read at its start and its end: exact however
/// short the step, where samples of a 20 ms step would be a tick or two.
#[derive(Debug, Clone, PartialEq)]
pub struct StepCpu {
    /// The host, this process and the server over the step, as in a sample.
    pub cpu: CpuSample,
    /// How long pgstress's threads waited for a CPU in the step, summed over the threads.
    pub client_wait_ms: Option<f64>,
    /// How busy pgstress's CPUs were over the step, whoever ran on them, in percent.
    pub client_cpus_busy_pct: Option<f64>,
}

/// One sample: pgstress's own sessions on the server when it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerStatsSample {
    pub step: u32,
    pub connections: u32,
    pub active: u32,
}

/// What the server saw during one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerStatsSummary {
    pub connections_peak: u32,
    pub active_peak: u32,
}

impl ServerStatsSummary {
    pub fn of(samples: &[ServerStatsSample]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        Some(ServerStatsSummary {
            connections_peak: samples.iter().map(|s| s.connections).max().unwrap_or(0),
            active_peak: samples.iter().map(|s| s.active).max().unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_keeps_the_peaks() {
        let sample = |connections, active| ServerStatsSample {
            step: 1,
            connections,
            active,
        };
        let summary = ServerStatsSummary::of(&[sample(4, 4), sample(9, 3), sample(2, 1)]).unwrap();
        assert_eq!(summary.connections_peak, 9);
        assert_eq!(summary.active_peak, 4);
        assert_eq!(ServerStatsSummary::of(&[]), None);
    }
}
