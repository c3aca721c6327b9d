//! The shop example (examples/shop) run the three ways the README gives,
//! as real processes over real HTTP: in one process in-process, in one
//! process on Redis, and split in two processes sharing Redis, where
//! SIGTERM to both loses no accepted order's mail.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use support::net::{free_addr, http};
use support::process::{example, without_configuration, Proc, HANG};

/// Places an order, retrying while the shop is not up yet (503: the stock
/// has not subscribed); the final status and body.
fn order(addr: &str, item: &str, quantity: u32, email: &str) -> (u16, String) {
    let body = format!(r#"{{"item": "{item}", "quantity": {quantity}, "email": "{email}"}}"#);
    let start = Instant::now();
    loop {
        match http(addr, "POST", "/orders", &body) {
            Some((503, _)) | None => {}
            Some(answer) => return answer,
        }
        assert!(start.elapsed() < HANG, "the shop never took an order");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The order id in `{"order": "..."}`.
fn order_id(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    value["order"].as_str().expect("an order id").to_owned()
}

/// The order ids in `mailer: order ID (...)` lines.
fn mailed(lines: &[String]) -> BTreeSet<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("mailer: order "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The shop with `args` and `envs`, and no other `MICROAGENT_*` variable.
fn shop(args: &[&str], envs: &[(&str, String)]) -> Proc {
    let mut command = Command::new(example("shop"));
    without_configuration(&mut command)
        .args(args)
        .env("RUST_LOG", "warn");
    for (name, value) in envs {
        command.env(name, value);
    }
    Proc::start(command)
}

fn config(name: &str) -> String {
    format!("{}/examples/shop/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Variables that put a run on `REDIS_URL` under names of its own.
fn on_redis(url: &str, prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MICROAGENT_BUS__URL", url.to_owned()),
        ("MICROAGENT_BUS__PREFIX", prefix.to_owned()),
        ("MICROAGENT_BROKER__URL", url.to_owned()),
        ("MICROAGENT_BROKER__NAMESPACE", format!("{prefix}:")),
    ]
}

/// A good order is mailed; one to an address without `@` ends in the dead
/// letters; one for more than the stock has is refused; SIGTERM ends the
/// process with 0.
fn takes_orders(mut proc: Proc, api: &str) {
    proc.wait_line(|l| l.starts_with("api: listening"));
    let (status, body) = order(api, "apple", 2, "ann@example.com");
    assert_eq!(status, 201, "{body}");
    let id = order_id(&body);
    proc.wait_line(|l| {
        l.starts_with(&format!(
            "mailer: order {id} (2 apple) mailed to ann@example.com"
        ))
    });

    let (status, body) = order(api, "pear", 1, "bob");
    assert_eq!(status, 201, "{body}");
    let bad = order_id(&body);
    let start = Instant::now();
    loop {
        let (_, dead) = http(api, "GET", "/mail/dead", "").expect("the api answers");
        if dead.contains(&bad) {
            assert!(dead.contains("no mailbox at `bob`"), "{dead}");
            assert!(dead.contains(r#""attempts":2"#), "{dead}");
            break;
        }
        assert!(start.elapsed() < HANG, "never dead-lettered: {dead}");
        std::thread::sleep(Duration::from_millis(20));
    }

    let (status, body) = order(api, "pear", 50, "ann@example.com");
    assert_eq!(
        (status, body.as_str()),
        (409, r#"{"error":"only 9 pear left"}"#)
    );

    proc.signal("TERM");
    assert_eq!(proc.wait_code(), 0, "{}", proc.stderr());
    assert!(
        !proc
            .seen
            .iter()
            .any(|l| l.contains(&format!("order {bad} ("))),
        "the bad mail was sent: {:?}",
        proc.seen
    );
}

#[test]
fn one_process_in_process() {
    let api = free_addr();
    let proc = shop(&[], &[("MICROAGENT_AGENT__API__BIND", api.clone())]);
    takes_orders(proc, &api);
}

#[test]
#[cfg_attr(not(service_redis), ignore = "needs REDIS_URL")]
fn one_process_on_redis() {
    let url = support::redis::url();
    let api = free_addr();
    let mut envs = on_redis(&url, &support::redis::prefix());
    envs.push(("MICROAGENT_AGENT__API__BIND", api.clone()));
    let proc = shop(&["--config", &config("redis.toml")], &envs);
    takes_orders(proc, &api);
}

#[test]
#[cfg_attr(not(service_redis), ignore = "needs REDIS_URL")]
fn two_processes_share_redis_and_sigterm_loses_nothing() {
    let url = support::redis::url();
    let prefix = support::redis::prefix();
    let (api, health) = (free_addr(), free_addr());
    let mut back_envs = on_redis(&url, &prefix);
    // A slow mail server: mails are still on their way at the SIGTERM.
    back_envs.push(("MICROAGENT_AGENT__MAILER__PAUSE", "0.02".to_owned()));
    back_envs.push(("MICROAGENT_HTTP", health.clone()));
    let mut front_envs = on_redis(&url, &prefix);
    front_envs.push(("MICROAGENT_AGENT__API__BIND", api.clone()));
    let mut back = shop(&["--config", &config("back.toml")], &back_envs);
    let mut front = shop(&["--config", &config("front.toml")], &front_envs);
    front.wait_line(|l| l.starts_with("api: listening"));

    // A request to the first process is mailed by the second.
    let (status, body) = order(&api, "apple", 1, "ann@example.com");
    assert_eq!(status, 201, "{body}");
    let first = order_id(&body);
    back.wait_line(|l| l.starts_with(&format!("mailer: order {first} ")));

    // More orders, then SIGTERM to both while mails are on their way.
    let mut accepted = BTreeSet::from([first]);
    for _ in 0..30 {
        let (status, body) = order(&api, "apple", 1, "ann@example.com");
        assert_eq!(status, 201, "{body}");
        accepted.insert(order_id(&body));
    }
    back.signal("TERM");
    front.signal("TERM");
    assert_eq!(back.wait_code(), 0, "{}", back.stderr());
    assert_eq!(front.wait_code(), 0, "{}", front.stderr());
    assert!(front.seen.iter().all(|l| !l.starts_with("mailer:")));

    // What the first back did not mail waits in Redis for the next one.
    let mut all = mailed(&back.seen);
    back_envs.retain(|(name, _)| *name != "MICROAGENT_HTTP");
    let health = free_addr();
    back_envs.push(("MICROAGENT_HTTP", health.clone()));
    let mut next = shop(&["--config", &config("back.toml")], &back_envs);
    let start = Instant::now();
    while !accepted.is_subset(&all) {
        assert!(
            start.elapsed() < HANG,
            "never mailed: {:?}",
            accepted.difference(&all).collect::<Vec<_>>()
        );
        let line = next.wait_line(|l| l.starts_with("mailer: order "));
        all.extend(mailed(&[line]));
    }
    // Up (its signal handlers installed) before the SIGTERM.
    let start = Instant::now();
    while http(&health, "GET", "/health/ready", "").map(|(status, _)| status) != Some(200) {
        assert!(start.elapsed() < HANG, "never ready: {}", next.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let left_over = all.len() - mailed(&back.seen).len();
    eprintln!("mailed after the SIGTERM, by the next process: {left_over}");
    next.signal("TERM");
    assert_eq!(next.wait_code(), 0, "{}", next.stderr());
}
