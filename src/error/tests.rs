//! Unit tests of the error types: messages, sources, downcasts.
use super::*;

fn failure(hook: &'static str, stage: Stage, msg: &str) -> HookError {
    HookError {
        agent: "Mailer",
        stage,
        hook,
        cause: HookFailure::error(msg.to_owned()),
    }
}

#[test]
fn hook_error_names_agent_stage_hook_and_cause_once() {
    let e = failure("connect", Stage::PreStart, "refused");
    assert_eq!(
        e.to_string(),
        "agent `Mailer`: pre_start hook `connect` failed: refused"
    );
    // The message has the cause; a chain printer must not repeat it.
    assert!(std::error::Error::source(&e).is_none());
}

#[derive(Debug, thiserror::Error)]
#[error("timed out after {0} s")]
struct Timeout(u32, #[source] std::io::Error);

#[test]
fn the_hooks_own_error_can_be_downcast_and_keeps_its_source() {
    let inner = Timeout(3, std::io::Error::other("no route"));
    let e = HookError {
        agent: "Mailer",
        stage: Stage::PreStart,
        hook: "connect",
        cause: HookFailure::error(inner),
    };
    let HookFailure::Error(boxed) = &e.cause else {
        panic!("an error, not a panic")
    };
    assert_eq!(boxed.downcast_ref::<Timeout>().map(|t| t.0), Some(3));
    assert_eq!(e.cause.to_string(), "timed out after 3 s");
    assert_eq!(
        std::error::Error::source(&e.cause).map(ToString::to_string),
        Some("no route".to_owned())
    );
}

#[test]
fn agent_error_lists_every_failure() {
    let e = AgentError::Failed {
        agent: "Mailer",
        failures: vec![
            failure("notify", Stage::PostStart, "down"),
            failure("flush", Stage::PreStop, "disk full"),
        ],
    };
    assert_eq!(e.agent(), "Mailer");
    assert_eq!(e.failures().len(), 2);
    assert_eq!(
        e.to_string(),
        "agent `Mailer`: post_start hook `notify` failed: down; \
         agent `Mailer`: pre_stop hook `flush` failed: disk full"
    );
}

#[test]
fn panic_payloads_keep_their_message() {
    let f = HookFailure::from_panic(Box::new("boom"));
    assert!(f.is_panic());
    assert_eq!(f.to_string(), "panicked: boom");
    let f = HookFailure::from_panic(Box::new(String::from("owned boom")));
    assert_eq!(f.to_string(), "panicked: owned boom");
    let f = HookFailure::from_panic(Box::new(42_u8));
    assert_eq!(f.to_string(), "panicked: <non-string panic payload>");
}
