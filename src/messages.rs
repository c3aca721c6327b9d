//! The messages every agent handles (`#[derive(MicroAgent)]` implements the
//! handlers). [`ServerInterrupt`](crate::ServerInterrupt), the third one,
//! lives with the server types.

use actix::Message;

use crate::info::AgentInfo;

/// Asks an agent to stop gracefully: its `pre_stop` hooks run, then it stops.
///
/// Every agent handles it (`#[derive(MicroAgent)]` implements the handler).
/// It queues behind the messages already in the agent's mailbox. During
/// start-up it takes effect once the start hooks are done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StopAgent;

impl Message for StopAgent {
    type Result = ();
}

/// Asks an agent for its [`AgentInfo`]; every agent handles it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GetInfo;

impl Message for GetInfo {
    type Result = AgentInfo;
}
