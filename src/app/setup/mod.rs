//! What a run sets up before its first step, by what it sets up: what runs on this machine
//! beside the load (`local`), the request and the engine (`load`), whether this machine holds
//! each step (`headroom`), and what the header says (`facts`).

mod facts;
mod headroom;
mod load;
mod local;

pub use facts::{
    demo_data, describe_data, describe_target, detected_pooler, node_names, plan_facts,
    server_source,
};
pub use headroom::warn_before_the_load;
pub use load::{build_engine, quiet_request_panics, request_spec};
pub use local::{
    describe_pooler, load_target, open_monitor, pooler_side, start_console, start_pooler,
    start_throwaway,
};
