//! The coordinator's side of the fleet: gather the agents at the door (`door`), send each
//! its plan and wait for it to be ready.

use std::time::Duration;

use super::FleetError;
use super::door::{FleetSettings, gather};
use super::link::AgentLink;
use super::messages::{self, AgentPlan, ToAgent, ToCoordinator};

/// How long a peer has, from its connection, to introduce itself and prove the token: an agent
/// sends its hello at once and answers one challenge, milliseconds on a LAN and a few round
/// trips on any link; a peer still at it after this is not an agent.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);
/// How long an agent may take to reach its target and build its engine (a pool opens its
/// connections then).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Waits for `settings.agents` agents, proves and checks the token both ways, sends each its
/// plan (from `plan_for`, by its number from 1) and waits until all are ready. `note` is told
/// of every agent refused and every one that joined.
pub fn assemble(
    settings: &FleetSettings,
    plan_for: &dyn Fn(u32) -> AgentPlan,
    note: &mut dyn FnMut(String),
) -> Result<(Vec<AgentLink>, Vec<String>), FleetError> {
    // Agent 1 has the largest share (the first ones get one more); a hold step logs several
    // records per connection.
    let first = plan_for(1);
    let cap = messages::largest_from_agent(first.mode.most_records(first.largest_share));
    let mut links = gather(settings, HANDSHAKE_WITHIN, cap, note)?;
    let engines = send_plans(&mut links, plan_for)?;
    Ok((links, engines))
}

/// Sends every agent its plan and waits for each to be ready; an agent that refuses (its caps,
/// its target) ends the run before step 1 with its reason. Returns each one's engine line.
fn send_plans(
    links: &mut [AgentLink],
    plan_for: &dyn Fn(u32) -> AgentPlan,
) -> Result<Vec<String>, FleetError> {
    for (index, link) in links.iter_mut().enumerate() {
        link.send(&ToAgent::Plan(Box::new(plan_for(index as u32 + 1))))?;
    }
    let mut engines = Vec::new();
    for link in links.iter() {
        match link.expect(READY_WITHIN)? {
            ToCoordinator::Ready { engine } => engines.push(engine),
            ToCoordinator::Refused { reason } => {
                return Err(FleetError::Refused(format!(
                    "agent {} ({}) refused the plan: {reason}",
                    link.name, link.peer
                )));
            }
            other => {
                return Err(FleetError::Garbled {
                    peer: link.peer.clone(),
                    reason: format!("{other:?} instead of ready"),
                });
            }
        }
    }
    Ok(engines)
}
