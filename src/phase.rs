//! Where an agent is in its lifecycle.

use std::fmt;

/// Where an agent is in its lifecycle.
///
/// It is `#[non_exhaustive]`: a `match` on it needs a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum Phase {
    /// `pre_start` and `post_start` hooks are running; messages wait.
    Starting,
    /// All start hooks are done; the agent handles messages.
    Running,
    /// `pre_stop` hooks are running.
    Stopping,
    /// The lifecycle is over.
    Stopped,
}

impl Phase {
    /// The phase in lower case, as the health endpoints and reports show it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
        }
    }

    /// The phase stored as `self as u8` (for atomics shared across threads).
    pub(crate) const fn from_u8(value: u8) -> Phase {
        match value {
            0 => Phase::Starting,
            1 => Phase::Running,
            2 => Phase::Stopping,
            _ => Phase::Stopped,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Phase;

    #[test]
    fn a_phase_survives_its_round_trip_through_u8() {
        for phase in [
            Phase::Starting,
            Phase::Running,
            Phase::Stopping,
            Phase::Stopped,
        ] {
            assert_eq!(Phase::from_u8(phase as u8), phase);
        }
        assert_eq!(Phase::Running.to_string(), "running");
    }
}
