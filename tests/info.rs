//! An agent's self-description.

use std::future::Future;

use microagent::prelude::*;
use microagent::{AgentInfo, HooksInfo};

#[derive(Default, MicroAgent)]
#[microagent(name = "mailer")]
struct Mailer {
    // Never described: it is state, not declaration.
    password: String,
}

#[microagent::hooks]
impl Mailer {
    #[on(pre_start)]
    async fn connect(&mut self) {}

    #[on(pre_start)]
    fn warm(&mut self) {}

    #[on(pre_stop)]
    fn disconnect(&mut self) {}

    #[on(server, restarts = 3, within = 60, backoff = 0.5)]
    fn smtp(&self) -> impl Future<Output = ()> {
        async {}
    }

    #[periodic(period = 5.0, timeout = 1.5, start_after = 2)]
    async fn refresh(&mut self) {}

    #[cron("0 */4 * * *", timeout = 30.0)]
    fn report(&mut self) {}

    #[cron("@daily", tz = "local")]
    async fn rotate(&mut self) {}
}

#[test]
fn info_lists_every_declaration_and_no_state() {
    let agent = Mailer {
        password: "hunter2".into(),
    };
    let info: AgentInfo = agent.info();
    assert_eq!(info.name, "mailer");
    assert_eq!(
        info.hooks,
        HooksInfo {
            pre_start: vec!["connect", "warm"],
            post_start: vec![],
            pre_stop: vec!["disconnect"],
        }
    );
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(
        json["servers"],
        serde_json::json!([{
            "name": "smtp",
            "restart": {"restarts": 3, "within": 60.0, "backoff": 0.5},
            "addresses": []
        }])
    );
    assert_eq!(
        json["periodic"],
        serde_json::json!([{
            "name": "refresh", "period": 5.0, "timeout": 1.5, "start_after": 2.0,
            "runs": {"ok": 0, "failed": 0, "panicked": 0, "timed_out": 0, "skipped": 0, "last_failure": null}
        }])
    );
    assert_eq!(json["cron"][0]["name"], "report");
    assert_eq!(json["cron"][0]["expression"], "0 */4 * * *");
    assert_eq!(json["cron"][0]["timezone"], "utc");
    assert_eq!(json["cron"][1]["timezone"], "local");
    // The next due time is a future instant, at minute 0 of an hour divisible by 4.
    let next = chrono::DateTime::parse_from_rfc3339(json["cron"][0]["next_due"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert!(next > chrono::Utc::now());
    assert_eq!(chrono::Timelike::minute(&next), 0);
    assert_eq!(chrono::Timelike::hour(&next) % 4, 0);
    assert!(
        !json.to_string().contains("hunter2"),
        "no state in the description"
    );
    drop(agent.password);
}

#[test]
fn info_is_also_available_over_the_agents_address() {
    let (direct, remote) = microagent::run(async {
        let agent = Mailer::default();
        let direct = agent.info();
        let (addr, handle) = microagent::start(agent);
        let remote = addr.send(GetInfo).await.unwrap();
        handle.stop();
        handle.await.unwrap();
        (direct, remote)
    });
    assert_eq!(direct.hooks, remote.hooks);
    assert_eq!(direct.servers, remote.servers);
    assert_eq!(direct.periodic, remote.periodic);
    assert_eq!(direct.cron.len(), remote.cron.len());
}

#[test]
fn the_description_needs_no_instance() {
    let from_type = Mailer::describe();
    let from_instance = Mailer::default().info();
    assert_eq!(from_type.name, "mailer");
    assert_eq!(from_type.hooks, from_instance.hooks);
    assert_eq!(from_type.servers, from_instance.servers);
    assert_eq!(from_type.periodic, from_instance.periodic);
    assert_eq!(from_type.cron.len(), 2);
}

#[test]
fn starting_an_agent_outside_a_system_says_what_to_call_instead() {
    let panic = std::panic::catch_unwind(|| microagent::start(Mailer::default()))
        .expect_err("no System runs here");
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(
        message.contains("microagent::run") && message.contains("Launcher"),
        "{message}"
    );
}
