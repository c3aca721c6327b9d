//! The examples and the fixture as real processes: real signals, real
//! sockets, exit codes.

mod support;

use std::cell::Cell;
use std::net::TcpStream;
use std::rc::Rc;
use std::time::Duration;

use support::process::Proc;

fn events(p: &Proc) -> Vec<&str> {
    p.seen
        .iter()
        .filter_map(|l| l.strip_prefix("EVENT "))
        .collect()
}

#[test]
fn the_hooks_example_runs_handler_1_handler_2_the_server_handler_3_and_exits_0() {
    let mut p = Proc::spawn("hooks", &[], &[]);
    assert_eq!(p.wait_code(), 0, "stderr: {}", p.stderr());
    let log = p.stderr();
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from the log:\n{log}"))
    };
    let order = [
        at("Called handler 1"),
        at("Called handler 2"),
        at("Server running"),
        at("Called handler 3"),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "out of order:\n{log}"
    );
    assert_eq!(log.matches("Called handler 3").count(), 1);
}

#[test]
fn the_signals_example_exchanges_a_signal_and_an_rpc_then_exits_0() {
    signals_example(&[]);
}

#[cfg(feature = "redis")]
#[test]
#[cfg_attr(not(service_redis), ignore = "needs REDIS_URL")]
fn the_signals_example_does_the_same_on_redis() {
    let url = support::redis::url();
    let prefix = support::redis::prefix();
    let p = signals_example(&[("REDIS_URL", &url), ("BUS_PREFIX", &prefix)]);
    assert!(
        p.stderr().contains("bus: connected to redis://"),
        "{}",
        p.stderr()
    );
}

#[cfg(feature = "nats")]
#[test]
#[cfg_attr(not(service_nats), ignore = "needs NATS_URL")]
fn the_signals_example_does_the_same_on_nats() {
    let url = support::redis::nats_url();
    let prefix = support::redis::prefix();
    let p = signals_example(&[("NATS_URL", &url), ("BUS_PREFIX", &prefix)]);
    assert!(
        p.stderr().contains("bus: connected to nats://"),
        "{}",
        p.stderr()
    );
}

fn signals_example(envs: &[(&str, &str)]) -> Proc {
    // Unset unless given: the example picks Redis up from the environment.
    let mut command = std::process::Command::new(support::process::example("signals"));
    command
        .env_remove("REDIS_URL")
        .env_remove("NATS_URL")
        .env("RUST_LOG", "info");
    command.envs(envs.iter().copied());
    let mut p = Proc::start(command);
    let code = p.wait_code();
    assert_eq!(code, 0, "stderr: {}", p.stderr());
    assert!(
        p.seen
            .contains(&"stock: user_created 42 from users".to_owned()),
        "{:?}",
        p.seen
    );
    assert!(
        p.seen
            .contains(&"users: Stock.stock answered 12 apples".to_owned()),
        "{:?}",
        p.seen
    );
    // The receiver prints on its own thread: its line may come last.
    assert!(
        p.seen.contains(&"users: exchange done".to_owned()),
        "{:?}",
        p.seen
    );
    p
}

#[test]
fn the_group_example_stops_every_agent_when_one_interrupts() {
    let mut p = Proc::spawn(
        "group",
        &[],
        &[("GROUP_RUN_MS", "300"), ("HTTP_ADDR", "127.0.0.1:0")],
    );
    assert_eq!(p.wait_code(), 0, "stderr: {}", p.stderr());
    let log = p.stderr();
    for agent in ["api: pre_stop", "counter: pre_stop", "clock: pre_stop"] {
        assert_eq!(log.matches(agent).count(), 1, "{agent}:\n{log}");
    }
}

#[test]
fn the_periodic_example_runs_its_tasks_then_stops_itself_and_exits_0() {
    let mut p = Proc::spawn("periodic", &[], &[]);
    assert_eq!(p.wait_code(), 0, "stderr: {}", p.stderr());
    let log = p.stderr();
    assert!(
        log.contains("\"next_due\""),
        "the self-description is logged:\n{log}"
    );
    assert_eq!(log.matches("cron #").count(), 3, "{log}");
    assert!(log.contains("refresh #2"), "{log}");
}

/// Starts the http example on a free port; returns it and its address.
fn http(envs: &[(&str, &str)]) -> (Proc, String) {
    let mut all = vec![("HTTP_ADDR", "127.0.0.1:0")];
    all.extend_from_slice(envs);
    let mut p = Proc::spawn("http", &[], &all);
    let line = p.wait_line(|l| l.starts_with("listening on "));
    let addr = line.trim_start_matches("listening on ").to_owned();
    (p, addr)
}

#[test]
fn sigterm_drains_in_flight_requests_and_readiness_turns_503_at_once() {
    let (mut p, addr) = http(&[("HTTP_DRAIN_DELAY_MS", "1000")]);
    let base = format!("http://{addr}");
    let (statuses, ready_during_drain, finished_at_503) = actix_rt::System::new().block_on(async {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish();
        assert_eq!(
            client
                .get(format!("{base}/health/ready"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        let finished = Rc::new(Cell::new(0));
        let requests: Vec<_> = (0..20)
            .map(|_| {
                let (client, url, finished) = (
                    client.clone(),
                    format!("{base}/slow?ms=1500"),
                    finished.clone(),
                );
                actix_rt::spawn(async move {
                    let mut response = client.get(url).send().await.expect("answered");
                    let body = response.body().await.expect("body");
                    finished.set(finished.get() + 1);
                    (response.status().as_u16(), body)
                })
            })
            .collect();
        // All 20 are in the server before the signal.
        while p
            .drain_lines()
            .iter()
            .filter(|l| l.starts_with("slow request"))
            .count()
            < 20
        {
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
        p.signal("TERM");
        // The signal reaches the launcher asynchronously: ask until it shows.
        let ready = loop {
            let status = client
                .get(format!("{base}/health/ready"))
                .send()
                .await
                .expect("the listener is open during pre_stop")
                .status()
                .as_u16();
            if status != 200 {
                break status;
            }
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        };
        let finished_at_503 = finished.get();
        let mut statuses = Vec::new();
        for request in requests {
            let (status, body) = request.await.expect("request task");
            assert_eq!(body, "slept 1500 ms\n");
            statuses.push(status);
        }
        (statuses, ready, finished_at_503)
    });
    assert_eq!(ready_during_drain, 503);
    assert_eq!(finished_at_503, 0, "the slow requests were still in flight");
    assert_eq!(statuses, vec![200; 20]);
    assert_eq!(p.wait_code(), 0, "stderr: {}", p.stderr());
    assert!(
        TcpStream::connect(&addr).is_err(),
        "the port refuses connections after exit"
    );
}

#[test]
fn health_info_shows_the_address_web_serve_bound() {
    let (mut p, addr) = http(&[]);
    let body = actix_rt::System::new().block_on(async {
        let client = awc::Client::default();
        let mut response = client
            .get(format!("http://{addr}/health/info"))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 200);
        response.body().await.expect("body")
    });
    let info: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let addresses: Vec<&str> = info[0]["servers"][0]["addresses"]
        .as_array()
        .expect("a list of addresses")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(addresses, [addr.as_str()], "{info}");
    p.signal("TERM");
    assert_eq!(p.wait_code(), 0, "stderr: {}", p.stderr());
}

#[test]
fn idle_keep_alive_connections_do_not_hold_the_shutdown() {
    // A 5 s deadline: if the idle connection held the server's graceful stop
    // (actix-web waits up to 30 s), the exit code would be 5, not 0.
    let (mut p, addr) = http(&[("SHUTDOWN_DEADLINE_MS", "5000")]);
    let code = actix_rt::System::new().block_on(async {
        let client = awc::Client::default();
        let mut response = client.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.body().await.unwrap();
        // The connection now idles in the client's pool, kept alive.
        p.signal("TERM");
        loop {
            if let Some(code) = p.try_code() {
                break code;
            }
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert_eq!(code, 0, "stderr: {}", p.stderr());
}

#[test]
fn one_sigint_stops_gracefully_and_exits_0() {
    let mut p = Proc::spawn("lifecycle-fixture", &["idle"], &[]);
    p.wait_line(|l| l == "EVENT solo:ready");
    // The server prints its line once it runs; signal a running service.
    p.wait_line(|l| l == "EVENT solo:server:attempt:1");
    p.signal("INT");
    assert_eq!(p.wait_code(), 0, "stderr: {}", p.stderr());
    assert!(events(&p).ends_with(&["solo:pre_stop:begin", "solo:pre_stop:end"]));
}

#[test]
fn a_second_sigint_during_shutdown_forces_the_exit() {
    let mut p = Proc::spawn(
        "lifecycle-fixture",
        &["slow-pre-stop"],
        &[("SHUTDOWN_DEADLINE_MS", "60000")],
    );
    p.wait_line(|l| l == "EVENT solo:ready");
    p.signal("INT");
    p.wait_line(|l| l == "EVENT solo:pre_stop:begin");
    p.signal("INT");
    assert_eq!(p.wait_code(), 130, "stderr: {}", p.stderr());
    assert!(!events(&p).contains(&"solo:pre_stop:end"));
}

#[test]
fn a_failing_or_panicking_server_runs_pre_stop_and_exits_4() {
    for scenario in ["failing-server", "panicking-server"] {
        let mut p = Proc::spawn("lifecycle-fixture", &[scenario], &[]);
        assert_eq!(p.wait_code(), 4, "{scenario}: {}", p.stderr());
        assert_eq!(
            events(&p),
            [
                "solo:ready",
                "solo:server:attempt:1",
                "solo:pre_stop:begin",
                "solo:pre_stop:end"
            ],
            "{scenario}"
        );
        assert!(
            p.stderr()
                .contains("agent `Fixture`: server hook `serve` failed"),
            "the log names agent and server: {}",
            p.stderr()
        );
    }
}

#[test]
fn a_restarting_server_restarts_within_its_policy_then_gives_up() {
    let mut p = Proc::spawn("lifecycle-fixture", &["restarting-server"], &[]);
    assert_eq!(p.wait_code(), 4, "{}", p.stderr());
    assert_eq!(
        events(&p),
        [
            "solo:server:attempt:1",
            "solo:server:attempt:2",
            "solo:server:attempt:3",
            "solo:pre_stop:end"
        ]
    );
}

#[test]
fn a_hanging_pre_stop_overruns_the_deadline_exits_5_and_is_named() {
    let mut p = Proc::spawn(
        "lifecycle-fixture",
        &["hanging-pre-stop"],
        &[("SHUTDOWN_DEADLINE_MS", "300")],
    );
    p.wait_line(|l| l == "EVENT solo:ready");
    p.signal("TERM");
    // Without the deadline the process would never exit (the hook never
    // returns); `wait_code` fails the test if it hangs.
    assert_eq!(p.wait_code(), 5, "{}", p.stderr());
    assert!(
        p.stderr().contains("agent `Fixture`: pre_stop hook `stop`"),
        "the log names the hook still running: {}",
        p.stderr()
    );
}

#[test]
fn one_agents_failure_stops_the_group_and_every_pre_stop_runs() {
    let mut p = Proc::spawn("lifecycle-fixture", &["group-failure"], &[]);
    assert_eq!(p.wait_code(), 4, "{}", p.stderr());
    let events = events(&p);
    for event in [
        "broken:pre_stop:end",
        "healthy:pre_stop:begin",
        "healthy:pre_stop:end",
    ] {
        assert!(events.contains(&event), "{event} missing: {events:?}");
    }
}

/// Runs a fixture whose server ends the service with a wrapped
/// `ServerInterrupt`: a graceful stop, so `pre_stop` runs and the exit is 0.
fn wrapped_interrupt_exits_0(scenario: &str) {
    let mut p = Proc::spawn("lifecycle-fixture", &[scenario], &[]);
    let code = p.wait_code();
    assert_eq!(code, 0, "{scenario}: stderr: {}", p.stderr());
    assert_eq!(
        events(&p),
        ["solo:server:attempt:1", "solo:pre_stop:end"],
        "{scenario}"
    );
}

#[test]
fn an_interrupt_boxed_or_inside_an_io_error_ends_the_service_with_exit_0() {
    wrapped_interrupt_exits_0("interrupt-boxed");
    wrapped_interrupt_exits_0("interrupt-io");
}

#[cfg(feature = "anyhow")]
#[test]
fn an_interrupt_inside_an_anyhow_error_ends_the_service_with_exit_0() {
    wrapped_interrupt_exits_0("interrupt-anyhow");
}

/// Without the `anyhow` feature an `anyhow::Error` hides the interrupt it
/// wraps: the server counts as failed (documented on `ServerInterrupt`).
#[cfg(not(feature = "anyhow"))]
#[test]
fn without_the_anyhow_feature_an_interrupt_inside_anyhow_is_a_failure() {
    let mut p = Proc::spawn("lifecycle-fixture", &["interrupt-anyhow"], &[]);
    assert_eq!(p.wait_code(), 4, "stderr: {}", p.stderr());
}

#[test]
fn the_deadline_report_names_the_instance_that_hung() {
    let mut p = Proc::spawn("lifecycle-fixture", &["hanging-named"], &[]);
    // The two start on their own threads, in either order.
    let ready = |p: &Proc, name: &str| p.seen.iter().any(|l| l == &format!("EVENT {name}:ready"));
    while !(ready(&p, "member-1") && ready(&p, "member-2")) {
        p.wait_line(|l| l.ends_with(":ready"));
    }
    p.signal("TERM");
    assert_eq!(p.wait_code(), 5, "stderr: {}", p.stderr());
    let stderr = p.stderr();
    assert!(
        stderr.contains("agent `member-1`: pre_stop hook `stop`"),
        "{stderr}"
    );
    assert!(!stderr.contains("agent `Fixture`"), "{stderr}");
}

#[test]
fn the_queue_example_dead_letters_the_failing_mail_and_exits_0() {
    queue_example(&[]);
}

#[cfg(feature = "redis")]
#[test]
#[cfg_attr(not(service_redis), ignore = "needs REDIS_URL")]
fn the_queue_example_does_the_same_on_redis() {
    let url = support::redis::url();
    let namespace = format!("{}:", support::redis::prefix());
    queue_example(&[("REDIS_URL", &url), ("QUEUE_NAMESPACE", &namespace)]);
}

#[cfg(feature = "nats")]
#[test]
#[cfg_attr(not(service_nats), ignore = "needs NATS_URL")]
fn the_queue_example_does_the_same_on_nats_jetstream() {
    let url = support::redis::nats_url();
    let namespace = format!("{}:", support::redis::prefix());
    queue_example(&[("NATS_URL", &url), ("QUEUE_NAMESPACE", &namespace)]);
}

#[cfg(feature = "amqp")]
#[test]
#[cfg_attr(not(service_amqp), ignore = "needs AMQP_URL")]
fn the_queue_example_does_the_same_on_rabbitmq() {
    let url = support::redis::amqp_url();
    let namespace = format!("{}:", support::redis::prefix());
    queue_example(&[("AMQP_URL", &url), ("QUEUE_NAMESPACE", &namespace)]);
}

fn queue_example(envs: &[(&str, &str)]) {
    let mut command = std::process::Command::new(support::process::example("queue"));
    command
        .env_remove("REDIS_URL")
        .env_remove("AMQP_URL")
        .env_remove("NATS_URL")
        .env("RUST_LOG", "info");
    command.envs(envs.iter().copied());
    let mut p = Proc::start(command);
    assert_eq!(p.wait_code(), 0, "stderr: {}", p.stderr());
    let sent: Vec<&String> = p
        .seen
        .iter()
        .filter(|l| l.starts_with("mailer: sent"))
        .collect();
    assert_eq!(sent.len(), 2, "{:?}", p.seen);
    let dead: Vec<&String> = p
        .seen
        .iter()
        .filter(|l| l.starts_with("dead letter"))
        .collect();
    assert_eq!(dead.len(), 1, "{:?}", p.seen);
    assert!(dead[0].contains("after 3 attempts"), "{}", dead[0]);
    // The one ERROR of a clean run is the dead letter's: none from the
    // client libraries (lapin's connections close before the runtime).
    let stderr = p.stderr();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("dead-lettered"), "{errors:#?}");
    assert!(
        dead[0].contains("no such mailbox: nobody@example.com"),
        "{}",
        dead[0]
    );
}
