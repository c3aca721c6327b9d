//! How a launcher run ends: the [`Exit`] and its process exit code.

use std::process::{ExitCode, Termination};

use crate::error::{AgentError, Stage};

/// How a [`Launcher`](crate::Launcher) run ended; its [`code`](Exit::code) is the process's
/// exit code.
///
#[doc = include_str!("../../docs/exit-codes.md")]
///
/// It is `#[non_exhaustive]`: new causes (configuration, bus, broker) will
/// be added with codes of their own, so a `match` on it needs a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Exit {
    // Declared from the mildest to the gravest: `Ord` is that order.
    /// Every agent stopped cleanly.
    Graceful,
    /// An agent's lifecycle was cut short.
    Aborted,
    /// A lifecycle hook failed.
    HookFailed,
    /// The bus could not be connected, or an agent's receivers could not
    /// subscribe.
    BusFailed,
    /// The broker could not be connected, or refused an agent's consumer.
    BrokerFailed,
    /// A server failed.
    ServerFailed,
    /// An agent's message handler or spawned future panicked.
    Crashed,
    /// The graceful stop overran the shutdown deadline.
    DeadlineExceeded,
    /// The configuration was refused: no agent started
    /// ([`deploy`](crate::deploy)).
    ConfigInvalid,
}

impl Exit {
    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            Exit::Graceful => 0,
            Exit::HookFailed => 3,
            Exit::ServerFailed => 4,
            Exit::DeadlineExceeded => 5,
            Exit::Aborted => 6,
            Exit::Crashed => 7,
            Exit::BusFailed => 8,
            Exit::BrokerFailed => 9,
            Exit::ConfigInvalid => 78,
        }
    }

    pub(super) fn of(outcome: &Result<(), AgentError>) -> Exit {
        match outcome {
            Ok(()) => Exit::Graceful,
            Err(AgentError::Aborted { .. }) => Exit::Aborted,
            Err(AgentError::Crashed { .. }) => Exit::Crashed,
            Err(AgentError::Subscribe { .. }) => Exit::BusFailed,
            Err(AgentError::Consume { .. }) => Exit::BrokerFailed,
            Err(AgentError::Failed { failures, .. }) => {
                if failures.iter().any(|f| f.stage == Stage::Server) {
                    Exit::ServerFailed
                } else {
                    Exit::HookFailed
                }
            }
        }
    }

    pub(super) fn worst(self, other: Exit) -> Exit {
        self.max(other)
    }
}

impl Termination for Exit {
    fn report(self) -> ExitCode {
        ExitCode::from(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{HookError, HookFailure};

    fn failed(stages: &[Stage]) -> Result<(), AgentError> {
        Err(AgentError::Failed {
            agent: "a",
            failures: stages
                .iter()
                .map(|&stage| HookError {
                    agent: "a",
                    stage,
                    hook: "h",
                    cause: HookFailure::Panic("x".into()),
                })
                .collect(),
        })
    }

    #[test]
    fn exit_codes_are_the_documented_ones() {
        let codes = [
            Exit::Graceful,
            Exit::HookFailed,
            Exit::ServerFailed,
            Exit::DeadlineExceeded,
            Exit::Aborted,
            Exit::Crashed,
        ]
        .map(Exit::code);
        assert_eq!(codes, [0, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn outcomes_map_to_exits() {
        assert_eq!(Exit::of(&Ok(())), Exit::Graceful);
        assert_eq!(Exit::of(&failed(&[Stage::PreStop])), Exit::HookFailed);
        assert_eq!(
            Exit::of(&failed(&[Stage::PostStart, Stage::Server])),
            Exit::ServerFailed
        );
        assert_eq!(
            Exit::of(&Err(AgentError::Aborted { agent: "a" })),
            Exit::Aborted
        );
        assert_eq!(
            Exit::of(&Err(AgentError::Crashed {
                agent: "a",
                panic: HookFailure::Panic("x".into()),
                failures: vec![],
            })),
            Exit::Crashed
        );
    }

    #[test]
    fn the_worst_exit_wins_whatever_the_order() {
        let all = [
            Exit::Graceful,
            Exit::Aborted,
            Exit::HookFailed,
            Exit::ServerFailed,
            Exit::Crashed,
            Exit::DeadlineExceeded,
        ];
        for (i, a) in all.iter().enumerate() {
            for (j, b) in all.iter().enumerate() {
                let expected = all[i.max(j)];
                assert_eq!(a.worst(*b), expected, "{a:?} vs {b:?}");
            }
        }
    }
}
