//! Configuration-driven deployment: the deploy fixture
//! (tests/fixtures/deploy.rs, agents `greeter` and `clock`) run as a real
//! process with files and variables, and `Config` / `Agents` in this
//! process.
//!
//! The in-process tests read the `MICROAGENT_*` variables as every
//! configuration does: the test run must not set any.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use microagent::config::{Agents, Config, ConfigError};
use microagent::prelude::*;
use serde::Deserialize;
use support::net::{free_addr, http};
use support::process::{example, without_configuration, Proc, HANG};

use support::TempDir as Dir;

/// The deploy fixture in `dir`, with `args` and `envs` and no other
/// `MICROAGENT_*` variable.
fn deploy(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Proc {
    let mut command = Command::new(example("deploy-fixture"));
    without_configuration(&mut command)
        .current_dir(dir)
        .args(args)
        .env("RUST_LOG", "info")
        .envs(envs.iter().copied());
    Proc::start(command)
}

/// Runs the fixture to its end: exit code, stdout lines, stderr.
fn deploy_to_end(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> (i32, Vec<String>, String) {
    let mut proc = deploy(dir, args, envs);
    let code = proc.wait_code();
    (code, proc.seen.clone(), proc.stderr())
}

/// The greeter's line.
fn greeting(lines: &[String]) -> &str {
    lines
        .iter()
        .find(|l| l.starts_with("greeter: "))
        .map_or("(no greeting)", String::as_str)
}

#[test]
fn no_file_and_no_variables_run_every_agent_in_process() {
    let dir = Dir::new("defaults");
    let (code, lines, stderr) = deploy_to_end(&dir.0, &[], &[]);
    assert_eq!(code, 0, "{stderr}");
    // The agents run on threads of their own: only each one's order holds.
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["clock: started", "clock: stopped", "greeter: hello x1"]
    );
    let clock: Vec<&String> = lines.iter().filter(|l| l.starts_with("clock")).collect();
    assert_eq!(clock, ["clock: started", "clock: stopped"]);
    assert!(
        stderr.contains("configuration: file: none; agents: all registered; bus: in-process"),
        "{stderr}"
    );
    // The logger's timestamps have milliseconds: `[2026-12-05T10:01:13.123Z INFO ...`.
    let line = stderr
        .lines()
        .find(|l| l.contains("configuration: file"))
        .unwrap_or_default();
    let stamp = line
        .trim_start_matches('[')
        .split(' ')
        .next()
        .unwrap_or_default();
    let millis = stamp.rsplit_once('.').map_or("", |(_, ms)| ms);
    assert!(
        millis.len() == 4
            && millis.ends_with('Z')
            && millis[..3].chars().all(|c| c.is_ascii_digit()),
        "{line}"
    );
}

#[test]
fn the_working_directory_file_then_the_variable_then_the_flag() {
    let dir = Dir::new("files");
    dir.file(
        "microagent.toml",
        "[agent.greeter]\ngreeting = \"from the default file\"\n",
    );
    let named = dir.file("named.toml", "[agent.greeter]\ngreeting = \"named\"\n");
    let flagged = dir.file("flagged.toml", "[agent.greeter]\ngreeting = \"flagged\"\n");
    let named = named.to_str().unwrap();
    let flagged = flagged.to_str().unwrap();

    let (code, lines, _) = deploy_to_end(&dir.0, &[], &[]);
    assert_eq!(
        (code, greeting(&lines)),
        (0, "greeter: from the default file x1")
    );

    let by_variable = [("MICROAGENT_CONFIG", named)];
    let (code, lines, _) = deploy_to_end(&dir.0, &[], &by_variable);
    assert_eq!((code, greeting(&lines)), (0, "greeter: named x1"));

    let (code, lines, _) = deploy_to_end(&dir.0, &["--config", flagged], &by_variable);
    assert_eq!((code, greeting(&lines)), (0, "greeter: flagged x1"));

    let flag = format!("--config={flagged}");
    let (code, lines, _) = deploy_to_end(&dir.0, &[&flag], &[]);
    assert_eq!((code, greeting(&lines)), (0, "greeter: flagged x1"));
}

#[test]
fn variables_override_the_file() {
    let dir = Dir::new("overrides");
    let file = dir.file(
        "deploy.toml",
        "shutdown_deadline = 5\n[agent.greeter]\ngreeting = \"file\"\ntimes = 2\n",
    );
    let overrides = [
        ("MICROAGENT_AGENT__GREETER__GREETING", "environment"),
        ("MICROAGENT_SHUTDOWN_DEADLINE", "7.5"),
    ];
    let (code, lines, stderr) =
        deploy_to_end(&dir.0, &["--config", file.to_str().unwrap()], &overrides);
    assert_eq!(code, 0, "{stderr}");
    // The variable wins for its key; the file's other keys stay.
    assert_eq!(greeting(&lines), "greeter: environment x2");
    assert!(stderr.contains("shutdown deadline: 7.5s"), "{stderr}");
}

#[test]
fn the_configuration_picks_the_agents_this_process_runs() {
    let dir = Dir::new("agents");
    // Only the clock: it runs until a signal.
    let only_clock = dir.file("clock.toml", "agents = [\"clock\"]\n");
    let mut proc = deploy(&dir.0, &["--config", only_clock.to_str().unwrap()], &[]);
    proc.wait_line(|l| l == "clock: started");
    proc.signal("TERM");
    assert_eq!(proc.wait_code(), 0, "{}", proc.stderr());
    assert_eq!(proc.seen, ["clock: started", "clock: stopped"]);

    // Only the greeter, named by a variable: it ends the group itself.
    let (code, lines, _) = deploy_to_end(&dir.0, &[], &[("MICROAGENT_AGENTS", "[greeter]")]);
    assert_eq!(code, 0);
    assert_eq!(lines, ["greeter: hello x1"]);
}

/// A configuration file's text, the variables beside it, and the error
/// they make.
type Refused = (&'static str, Vec<(&'static str, &'static str)>, String);

/// Each refused configuration: exit code 78, the exact error on stderr,
/// and no agent started.
#[test]
fn refused_configurations_exit_78_before_any_agent_starts() {
    let dir = Dir::new("refused");
    let path = dir.0.join("bad.toml");
    let shown = path.display().to_string();
    let cases: Vec<Refused> = vec![
        (
            "shutdown_dedline = 5",
            vec![],
            format!("configuration file `{shown}`: `shutdown_dedline`: unknown key `shutdown_dedline`; expected one of: agents, shutdown_deadline, http, log, bus, broker, admin, otel, metrics, agent"),
        ),
        (
            "shutdown_deadline = \"soon\"",
            vec![],
            format!("configuration file `{shown}`: `shutdown_deadline`: expected a number of seconds, 0 or more, found a string"),
        ),
        (
            "[bus]\nurl = \"redis://127.0.0.1:6379\"\nprefx = \"A\"",
            vec![],
            format!("configuration file `{shown}`: `bus.prefx`: unknown key `prefx`; expected one of: kind, url, prefix, max_payload, subscribe_timeout, reconnect_max, buffer_messages, buffer_bytes"),
        ),
        (
            "[broker]\nkind = \"redis\"",
            vec![],
            format!("configuration file `{shown}`: `broker.url`: missing: `kind = \"redis\"` needs a URL"),
        ),
        (
            "[bus]\nurl = \"amqp://guest:hunter2@127.0.0.1/\"",
            vec![],
            format!("configuration file `{shown}`: `bus.url`: expected a redis://, rediss://, redis+unix://, unix://, redis+sentinel://, redis+cluster:// or nats:// URL, found amqp://guest:***@127.0.0.1/"),
        ),
        (
            "http = \"0.0.0.0:0\"\n[admin]\ntoken = \"0123456789abcdef-secret\"",
            vec![],
            format!("configuration file `{shown}`: `admin.public`: `http` (0.0.0.0:0) is not a loopback address: the admin endpoints are served there only with `public = true`"),
        ),
        (
            "http = \"127.0.0.1:0\"\n[admin]\ntoken = \"short\"",
            vec![],
            format!("configuration file `{shown}`: `admin.token`: expected a token of 16 bytes or more"),
        ),
        (
            "[admin]\ntoken = \"0123456789abcdef-secret\"",
            vec![],
            format!("configuration file `{shown}`: `admin.token`: the admin endpoints are served on the `http` address: set it"),
        ),
        (
            "[broker]\nkind = \"rabbit\"",
            vec![],
            format!("configuration file `{shown}`: `broker.kind`: unknown value `rabbit`; expected one of: in-process, redis, amqp, nats, kafka"),
        ),
        (
            "[agent.greeter]\ngreting = \"hi\"",
            vec![],
            format!("configuration file `{shown}`: `agent.greeter.greting`: unknown key `greting`; expected one of: greeting, times, stay"),
        ),
        (
            "[agent.clock]\ninterval = 1",
            vec![],
            format!("configuration file `{shown}`: `agent.clock.interval`: this agent takes no settings (only `tasks`, its tasks' schedules)"),
        ),
        (
            "agents = [\"greeter\", \"clok\"]",
            vec![],
            "configuration: `agents` names agent `clok`, which this binary does not have (it has: greeter, clock)".to_owned(),
        ),
        (
            "[agent.greter]\ngreeting = \"hi\"",
            vec![],
            "configuration: `agent.greter` names agent `greter`, which this binary does not have (it has: greeter, clock)".to_owned(),
        ),
        (
            "",
            vec![("MICROAGENT_BROKER__CAPACITY", "lots")],
            "configuration environment variable `MICROAGENT_BROKER__CAPACITY`: `broker.capacity`: expected usize, found a string".to_owned(),
        ),
        (
            "",
            vec![("MICROAGENT_AGENT__GREETER__TIMES", "[1]")],
            "configuration environment variable `MICROAGENT_AGENT__GREETER__TIMES`: `agent.greeter.times`: expected u32, found sequence".to_owned(),
        ),
        (
            "",
            vec![("MICROAGENT_BUS__URLL", "redis://127.0.0.1")],
            "configuration environment variable `MICROAGENT_BUS__URLL`: `bus.urll`: unknown key `urll`; expected one of: kind, url, prefix, max_payload, subscribe_timeout, reconnect_max, buffer_messages, buffer_bytes".to_owned(),
        ),
    ];
    for (toml, envs, expected) in cases {
        std::fs::write(&path, toml).unwrap();
        let (code, lines, stderr) = deploy_to_end(&dir.0, &["--config", &shown], &envs);
        let refused: Vec<&str> = stderr
            .lines()
            .filter_map(|l| l.strip_prefix("microagent: "))
            .collect();
        assert_eq!(refused, [expected.as_str()], "{toml:?} {envs:?}: {stderr}");
        assert_eq!(code, 78, "{toml:?} {envs:?}");
        assert!(lines.is_empty(), "an agent started: {lines:?}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
        // Nothing printed as if it were accepted.
        assert!(!stderr.contains("configuration: file"), "{stderr}");
    }

    // A file that does not parse, and one that does not exist.
    std::fs::write(&path, "agents = [").unwrap();
    let (code, _, stderr) = deploy_to_end(&dir.0, &["--config", &shown], &[]);
    assert_eq!(code, 78);
    assert!(
        stderr.contains(&format!(
            "microagent: configuration file `{shown}`: TOML parse error at line 1, column 11"
        )),
        "{stderr}"
    );
    let missing = dir.0.join("missing.toml");
    let missing = missing.to_str().unwrap();
    let (code, _, stderr) = deploy_to_end(&dir.0, &[], &[("MICROAGENT_CONFIG", missing)]);
    assert_eq!(code, 78);
    assert_eq!(
        stderr.trim(),
        format!("microagent: configuration file `{missing}` does not exist")
    );
    let (code, _, stderr) = deploy_to_end(&dir.0, &["--config"], &[]);
    assert_eq!(
        (code, stderr.trim()),
        (78, "microagent: `--config` needs a path after it")
    );
}

/// Passwords never show in logs or errors: in a URL's userinfo, nor in
/// its query, where the redis crate reads a Unix socket's (`?pass=`; it
/// showed in 29 places).
#[test]
fn passwords_never_show_in_logs_or_errors() {
    // Nothing listens on port 1, nor on the socket: the bus cannot
    // connect, and says so.
    let cases = [
        (
            "redis://:hunter2@127.0.0.1:1",
            "amqp://guest:hunter2@127.0.0.1:1/%2f",
            [
                "redis://:***@127.0.0.1:1",
                "amqp://guest:***@127.0.0.1:1/%2f",
            ],
        ),
        (
            "redis+unix:///nowhere/redis.sock?pass=hunter2",
            "unix:///nowhere/redis.sock?db=1&pass=hunter2",
            [
                "redis+unix:///nowhere/redis.sock?pass=***",
                "unix:///nowhere/redis.sock?db=1&pass=***",
            ],
        ),
    ];
    for (bus, broker, shown) in cases {
        let dir = Dir::new("secrets");
        let file = dir.file(
            "secret.toml",
            &format!("log = \"debug\"\n[bus]\nurl = \"{bus}\"\nsubscribe_timeout = 0.5\n[broker]\nurl = \"{broker}\"\n"),
        );
        let mut proc = deploy(
            &dir.0,
            &["--config", file.to_str().unwrap()],
            &[("RUST_LOG", "")],
        );
        let code = proc.wait_code();
        let stderr = proc.stderr();
        assert_eq!(code, 8, "the bus is connected first: {stderr}");
        for url in shown {
            assert!(stderr.contains(url), "{url} in {stderr}");
        }
        assert!(!stderr.contains("hunter2"), "{stderr}");
        assert!(proc.seen.is_empty(), "an agent started: {:?}", proc.seen);
    }
}

/// `GET /health/ready`'s status on `addr`, `None` while nothing answers.
fn ready(addr: &str) -> Option<u16> {
    http(addr, "GET", "/health/ready", "").map(|(status, _)| status)
}

#[test]
fn the_http_key_serves_the_health_endpoints() {
    let dir = Dir::new("http");
    let addr = free_addr();
    let file = dir.file(
        "http.toml",
        &format!("http = \"{addr}\"\n[agent.greeter]\nstay = true\n"),
    );
    let mut proc = deploy(&dir.0, &["--config", file.to_str().unwrap()], &[]);
    proc.wait_line(|l| l == "clock: started");
    let start = Instant::now();
    while ready(&addr) != Some(200) {
        assert!(start.elapsed() < HANG, "never ready; {}", proc.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        http(&addr, "GET", "/health/live", "").map(|(status, _)| status),
        Some(200)
    );
    proc.signal("TERM");
    assert_eq!(proc.wait_code(), 0, "{}", proc.stderr());
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct Settings {
    sender: String,
    #[serde(default)]
    retries: u32,
}

#[derive(Default, MicroAgent)]
struct Quiet;

#[microagent::hooks]
impl Quiet {}

#[test]
fn a_configuration_builds_the_bus_and_broker_it_names_and_redacts_them() {
    let config = Config::from_toml(
        r#"
        shutdown_deadline = 2.5
        http = "127.0.0.1:9000"
        log = "warn"
        [bus]
        url = "redis://:hunter2@10.0.0.1:6380/2"
        prefix = "FLEET"
        buffer_messages = 500
        [broker]
        url = "amqp://app:hunter2@10.0.0.2:5672/%2f"
        durable = true
        [agent.mailer]
        sender = "shop@example.com"
        "#,
    )
    .unwrap();
    assert_eq!(config.shutdown_deadline(), Duration::from_millis(2500));
    assert_eq!(config.http(), Some("127.0.0.1:9000"));
    assert_eq!(config.log(), Some("warn"));
    assert_eq!(config.agents(), None);
    let settings: Settings = config.settings("mailer").unwrap();
    assert_eq!(
        settings,
        Settings {
            sender: "shop@example.com".into(),
            retries: 0
        }
    );
    let shown = format!(
        "{config} {config:?} {:?} {:?}",
        config.bus(),
        config.broker()
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains("bus: redis redis://:***@10.0.0.1:6380/2"),
        "{shown}"
    );
    assert!(
        shown.contains("broker: amqp amqp://app:***@10.0.0.2:5672/%2f"),
        "{shown}"
    );
    assert!(shown.contains("prefix: \"FLEET\""), "{shown}");
    // The other bound keeps its default.
    assert!(
        shown.contains("buffer: Bound { messages: 500, bytes: 33554432 }"),
        "{shown}"
    );

    // Settings an agent requires, absent: named with the key.
    let missing = Config::defaults()
        .settings::<Settings>("mailer")
        .unwrap_err();
    assert_eq!(
        missing.to_string(),
        "configuration defaults: `agent.mailer`: missing key `sender`"
    );
}

#[test]
fn agents_are_picked_by_name_and_checked() {
    let agents = Agents::new()
        .agent("quiet", Quiet::default)
        .agent_with("mailer", |_: Settings| Quiet);
    assert_eq!(agents.names().collect::<Vec<_>>(), ["quiet", "mailer"]);
    let picked = |toml: &str| {
        microagent::Launcher::from_config(&Config::from_toml(toml).unwrap(), &agents)
            .map(|launcher| format!("{launcher:?}"))
    };
    assert!(picked("agents = [\"quiet\"]")
        .unwrap()
        .contains("agents: 1"));
    assert!(picked("agents = [\"quiet\", \"quiet\"]")
        .unwrap()
        .contains("agents: 1"));
    // The mailer needs its sender.
    assert_eq!(
        picked("").unwrap_err(),
        ConfigError::Invalid {
            origin: "defaults".into(),
            key: "agent.mailer".into(),
            problem: "missing key `sender`".into()
        }
    );
    assert!(picked("[agent.mailer]\nsender = \"a@b\"")
        .unwrap()
        .contains("agents: 2"));
    assert_eq!(
        picked("agents = []").unwrap_err().to_string(),
        "configuration TOML source string: `agents`: expected at least one agent's name, found an empty list"
    );
}

#[test]
fn a_logger_installed_before_deploy_wins_and_the_configuration_s_filter_is_reported_unapplied() {
    let dir = Dir::new("own-logger");
    dir.file(
        "microagent.toml",
        "log = \"debug\"\nagents = [\"greeter\"]\n",
    );
    let (code, _, stderr) = deploy_to_end(&dir.0, &[], &[("FIXTURE_OWN_LOGGER", "1")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("a logger was installed before the configuration was read: its `log` filter (debug) is not applied"),
        "{stderr}"
    );
    // Without a logger of its own: no such warning.
    let (code, _, stderr) = deploy_to_end(&dir.0, &[], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("a logger was installed"), "{stderr}");
}

/// A periodic task declared hourly and a cron task declared yearly; the
/// periodic one stops its agent at its twentieth run.
#[derive(Default, MicroAgent)]
struct Ticker {
    ticks: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[microagent::hooks]
impl Ticker {
    #[periodic(period = 3600.0, start_after = 3600.0)]
    fn tick(&mut self, ctx: &mut microagent::Context<Self>) {
        let ticks = self.ticks.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if ticks == 20 {
            ctx.stop();
        }
    }

    #[cron("0 0 1 1 *")]
    fn yearly(&mut self) {}
}

/// `[agent.NAME.tasks.TASK]` sets a periodic task's period and first delay
/// and a cron task's expression and zone: the hourly task runs every 20 ms
/// (twenty runs, then it stops its agent), and `/health/info` shows the
/// schedules the deployment set, not the declared ones.
#[test]
fn a_deployment_sets_its_agents_task_schedules() {
    let http_addr = free_addr();
    let toml = format!(
        r#"
        http = "{http_addr}"
        [agent.ticker.tasks.tick]
        period = 0.02
        start_after = 0.0
        [agent.ticker.tasks.yearly]
        cron = "0 6 * * *"
        tz = "local"
        "#
    );
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = ticks.clone();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let agents = Agents::new().agent("ticker", move || Ticker {
            ticks: counted.clone(),
        });
        let config = Config::from_toml(&toml).unwrap();
        let launcher =
            microagent::Launcher::from_config(&config, &agents).expect("a valid configuration");
        done.send(launcher.run())
    });
    // The info while it runs (before the twentieth run stops it).
    let start = Instant::now();
    let info = loop {
        if let Some((200, body)) = http(&http_addr, "GET", "/health/info", "") {
            break serde_json::from_str::<serde_json::Value>(&body).expect("JSON");
        }
        assert!(start.elapsed() < HANG, "the health server never answered");
        std::thread::sleep(Duration::from_millis(5));
    };
    let exit = finished
        .recv_timeout(HANG)
        .expect("the hourly task ran every 20 ms");
    assert_eq!(ticks.load(std::sync::atomic::Ordering::SeqCst), 20);
    assert_eq!(exit, microagent::Exit::Graceful);
    let ticker = info
        .as_array()
        .and_then(|agents| agents.iter().find(|a| a["name"] == "Ticker"))
        .unwrap_or_else(|| panic!("no ticker in {info}"));
    assert_eq!(ticker["periodic"][0]["period"], 0.02);
    assert_eq!(ticker["periodic"][0]["start_after"], 0.0);
    assert_eq!(ticker["cron"][0]["expression"], "0 6 * * *");
    assert_eq!(ticker["cron"][0]["timezone"], "local");
}

/// A task table that names no task of the agent, gives a periodic task a
/// cron key, or a value out of range is refused, naming the key.
#[test]
fn task_schedules_in_a_deployment_are_checked() {
    let agents = Agents::new().agent("ticker", Ticker::default);
    let refused = |toml: &str| {
        microagent::Launcher::from_config(&Config::from_toml(toml).unwrap(), &agents)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let unknown = refused("[agent.ticker.tasks.tock]\nperiod = 1.0\n");
    assert!(unknown.contains("`agent.ticker.tasks.tock`"), "{unknown}");
    assert!(unknown.contains("its tasks: tick, yearly"), "{unknown}");
    let wrong = refused("[agent.ticker.tasks.tick]\ncron = \"* * * * *\"\n");
    assert!(wrong.contains("`tick` is a periodic task"), "{wrong}");
    let zero = refused("[agent.ticker.tasks.tick]\nperiod = 0.0\n");
    assert!(
        zero.contains("`period` is a number of seconds above 0"),
        "{zero}"
    );
    let bad = refused("[agent.ticker.tasks.yearly]\ncron = \"61 * * * *\"\n");
    assert!(bad.contains("invalid cron expression"), "{bad}");
    let typo = refused("[agent.ticker.tasks.tick]\nperiode = 1.0\n");
    assert!(typo.contains("periode"), "{typo}");
    let zone = refused("[agent.ticker.tasks.yearly]\ntz = \"Mars/Olympus\"\n");
    assert!(zone.contains("Mars/Olympus"), "{zone}");
    // Other keys: this agent takes no settings.
    let settings = refused("[agent.ticker]\ncolour = \"red\"\n");
    assert!(settings.contains("takes no settings"), "{settings}");
}

/// `[otel]`: read with its feature, refused without it; a protocol OTLP
/// over HTTP does not have, or a section without an endpoint, is named.
#[test]
fn the_otel_section_is_read_checked_and_redacted() {
    let toml = r#"
        [otel]
        endpoint = "http://user:hunter2@127.0.0.1:4318"
        protocol = "http/json"
        service_name = "shop"
        "#;
    #[cfg(feature = "otel")]
    {
        let config = Config::from_toml(toml).unwrap();
        let otel = config.otel().expect("an exporter");
        assert_eq!(otel.protocol(), "http/json");
        let shown = format!("{otel:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("shop"),
            "{shown}"
        );
        for (bad, key) in [
            (
                "[otel]\nendpoint = \"http://c:4318\"\nprotocol = \"grpc\"",
                "otel.protocol",
            ),
            ("[otel]\nservice_name = \"shop\"", "otel.endpoint"),
        ] {
            let error = Config::from_toml(bad).unwrap_err().to_string();
            assert!(error.contains(key), "{error}");
        }
        assert!(Config::from_toml("").unwrap().otel().is_none());
    }
    #[cfg(not(feature = "otel"))]
    {
        let error = Config::from_toml(toml).unwrap_err().to_string();
        assert!(error.contains("otel"), "{error}");
    }
    let listener = "[metrics]\nlisten = \"127.0.0.1:9100\"";
    match cfg!(all(feature = "metrics", feature = "web")) {
        true => assert_eq!(
            Config::from_toml(listener).unwrap().metrics_listen(),
            Some("127.0.0.1:9100")
        ),
        false => assert!(Config::from_toml(listener).is_err()),
    }
}

/// `[metrics] listen`: a listener serving `GET /metrics` alone, for a
/// group without health endpoints (features `metrics` and `web`).
#[cfg(feature = "metrics")]
#[test]
fn a_metrics_listener_serves_the_metrics_alone() {
    let dir = Dir::new("metrics-listener");
    let addr = free_addr();
    let envs = [
        ("MICROAGENT_AGENTS", "[clock]"),
        ("MICROAGENT_METRICS__LISTEN", addr.as_str()),
    ];
    let mut proc = deploy(&dir.0, &[], &envs);
    proc.wait_line(|l| l == "clock: started");
    let start = Instant::now();
    let (status, text) = loop {
        if let Some(answer) = http(&addr, "GET", "/metrics", "") {
            break answer;
        }
        assert!(start.elapsed() < HANG, "no listener: {}", proc.stderr());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status, 200, "{text}");
    // The clock and the listener itself run.
    assert!(
        text.lines()
            .any(|l| l == r#"microagent_agents{phase="running"} 2"#),
        "{text}"
    );
    let (status, _) = http(&addr, "GET", "/health/live", "").expect("it answers");
    assert_eq!(status, 404, "the health endpoints are not there");
    proc.signal("TERM");
    assert_eq!(proc.wait_code(), 0, "{}", proc.stderr());
}
