//! `registry-report`: tells the site registry which digests this device runs.
//!
//! A gateway running the `registry` plugin prunes what its retention does not
//! keep; what a device runs must be kept even when it is older than the
//! latest `keep`. Every `interval` (and on `report`), this plugin gathers the
//! digests in use here — every installed plugin's component, and what each
//! plugin in `ask` answers to its `in-use` command (`recipes`: container
//! images and artifacts) — and sends them to the gateway (`PUT <url>`, the
//! `in-use` path the registry plugin serves) with the `runtime` login that
//! `cairn registry device-config` hands out. Each report replaces the
//! device's last one. When a source does not answer, nothing is sent: a
//! partial report would let the gateway delete what that source runs.

mod gather;
mod settings;

use std::time::Duration;

use cairn_sdk::http::{Method, Request};
use cairn_sdk::timer::{self, TimerId};
use cairn_sdk::{CommandError, Commands, Config, ErrorCode, Event, Health, Plugin, metrics};
use serde::Serialize;
use serde::de::IgnoredAny;

use settings::Settings;

const TOPIC: &str = "registry-report/due";
/// The first report after a start, once the other plugins are up.
const FIRST_DELAY: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(20);

struct Reporter {
    settings: Settings,
    timer: Option<TimerId>,
    last: Option<Outcome>,
}

/// How the last report went.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
struct Outcome {
    ok: bool,
    at_ms: u64,
    digests: usize,
    /// Why it was not sent or not taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Reporter {
    /// Gathers and sends one report; the outcome is kept for `status` and health.
    fn report(&mut self) -> Outcome {
        let sent = gather::in_use(&self.settings.ask).and_then(|digests| {
            let count = digests.len();
            self.send(&digests).map(|()| count)
        });
        let outcome = match sent {
            Ok(digests) => Outcome {
                ok: true,
                at_ms: cairn_sdk::timer::now_ms(),
                digests,
                error: None,
            },
            Err(error) => {
                cairn_sdk::warn!("no in-use report sent to {}: {error}", self.settings.url);
                Outcome {
                    ok: false,
                    at_ms: cairn_sdk::timer::now_ms(),
                    digests: 0,
                    error: Some(error),
                }
            }
        };
        let gauge = if outcome.ok {
            outcome.digests as f64
        } else {
            -1.0
        };
        if let Err(err) = metrics::gauge_set("registry_report_digests", &[], gauge) {
            cairn_sdk::debug!("metric registry_report_digests: {err}");
        }
        self.last = Some(outcome.clone());
        outcome
    }

    fn send(&self, digests: &gather::InUse) -> Result<(), String> {
        let body = serde_json::to_vec(&serde_json::json!({
            "device": self.settings.device(),
            "digests": digests,
        }))
        .map_err(|err| err.to_string())?;
        let login = self.settings.login()?;
        let response = Request::new(Method::Put, self.settings.url.clone())
            .header("authorization", login.basic_auth())
            .header("content-type", "application/json")
            .body(body)
            .timeout(TIMEOUT)
            .send()
            .map_err(|err| format!("the gateway did not answer: {err}"))?;
        if response.is_success() {
            return Ok(());
        }
        let status = response.status;
        let text = response.bytes(4096).unwrap_or_default();
        Err(format!(
            "the gateway answered {status}: {}",
            String::from_utf8_lossy(&text).trim()
        ))
    }

    fn arm(&mut self, delay: Duration) -> Result<(), String> {
        if let Some(old) = self.timer.take() {
            let _ = timer::cancel(old);
        }
        self.timer = Some(timer::once(delay, TOPIC).map_err(|err| err.to_string())?);
        Ok(())
    }
}

impl Plugin for Reporter {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        settings.check()?;
        // A login that cannot be read is a setup error, said at install.
        settings.login()?;
        let mut reporter = Reporter {
            settings,
            timer: None,
            last: None,
        };
        reporter.arm(FIRST_DELAY)?;
        Ok(reporter)
    }

    fn health(&self) -> Health {
        match &self.last {
            Some(Outcome {
                ok: false, error, ..
            }) => Health::Degraded(error.clone().unwrap_or_default()),
            _ => Health::Ok,
        }
    }

    fn commands() -> Commands<Self> {
        Commands::new()
            .command("report", |reporter: &mut Reporter, _: IgnoredAny| {
                let outcome = reporter.report();
                match outcome.error {
                    Some(error) => Err(CommandError::new(ErrorCode::Unavailable, error)),
                    None => Ok(outcome),
                }
            })
            .command("status", |reporter: &mut Reporter, _: IgnoredAny| {
                Ok::<_, CommandError>(serde_json::json!({
                    "url": reporter.settings.url,
                    "device": reporter.settings.device(),
                    "last": reporter.last,
                }))
            })
            .command("in-use", |reporter: &mut Reporter, _: IgnoredAny| {
                gather::in_use(&reporter.settings.ask)
                    .map_err(|err| CommandError::new(ErrorCode::Unavailable, err))
            })
    }

    fn on_event(&mut self, event: Event) -> Result<(), String> {
        if event.topic == TOPIC {
            self.timer = None;
            self.report();
            self.arm(self.settings.interval())?;
        }
        Ok(())
    }
}

cairn_sdk::export_plugin!(Reporter);
