//! A binary's `main` in one call: configuration, logging, launcher, run.

use crate::config::{Agents, Config};
use crate::launcher::{Exit, Launcher};

/// Runs what this process's configuration picks of `agents`, until the
/// group stops: reads the configuration ([`Config::load`]: `--config`,
/// `MICROAGENT_CONFIG` or `microagent.toml`, under the `MICROAGENT_*`
/// variables), starts logging with its filter, logs it (passwords
/// redacted), and runs the [`Launcher`] it builds.
///
/// A configuration that is refused is printed on stderr and ends the
/// process with [`Exit::ConfigInvalid`] (78) before any agent starts.
///
/// ```no_run
/// use microagent::prelude::*;
/// use microagent::config::Agents;
///
/// #[derive(Default, MicroAgent)]
/// struct Stock;
///
/// #[microagent::hooks]
/// impl Stock {}
///
/// fn main() -> microagent::Exit {
///     microagent::deploy(Agents::new().agent("stock", Stock::default))
/// }
/// ```
pub fn deploy(agents: Agents) -> Exit {
    let launcher = Config::load().and_then(|config| {
        config.init_logging();
        let launcher = Launcher::from_config(&config, &agents)?;
        // Only once every part of it was accepted (agents' settings too).
        log::info!(target: crate::LOG_TARGET, "configuration: {config}");
        Ok(launcher)
    });
    match launcher {
        Ok(launcher) => launcher.run(),
        Err(e) => {
            eprintln!("microagent: {e}");
            Exit::ConfigInvalid
        }
    }
}
