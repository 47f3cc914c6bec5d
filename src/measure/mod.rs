//! What a step measured: aggregation of its requests and the samplers that run beside it.

pub mod concurrency;
pub mod outage;
pub mod sampler;
pub mod stats;
