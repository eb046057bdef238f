//! What a check is (its definition and target) and how its state follows its
//! probes' outcomes. Pure code, unit-tested natively.

use serde::{Deserialize, Serialize};

/// The longest check name (the process label `check-<name>` must fit 64 bytes).
const MAX_NAME: usize = 56;

/// A check's definition, as in `[[config.checks]]` or an `add` command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CheckSpec {
    pub name: String,
    pub target: String,
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_threshold")]
    pub failure_threshold: u32,
    #[serde(default = "default_threshold")]
    pub success_threshold: u32,
    /// For `http(s)://` targets: the one status that counts as healthy
    /// (otherwise any 2xx or 3xx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<u16>,
    /// `add` only: replace a run-time check of the same name instead of
    /// refusing it. Never stored.
    #[serde(default, skip_serializing)]
    pub replace: bool,
}

fn default_interval() -> u64 {
    10_000
}

fn default_timeout() -> u64 {
    2_000
}

fn default_threshold() -> u32 {
    1
}

/// Where a probe goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `http://…` or `https://…`: a GET through `wasi:http`.
    Http { url: String },
    /// `tcp://host:port`: a TCP connection.
    Tcp { host: String, port: u16 },
    /// `cmd:/abs/path arg…`: a process that must exit with 0.
    Cmd { exe: String, args: Vec<String> },
}

impl Target {
    pub fn parse(text: &str) -> Result<Target, String> {
        if text.starts_with("http://") || text.starts_with("https://") {
            let rest = text.split_once("://").map(|(_, rest)| rest).unwrap_or("");
            let authority = rest.split('/').next().unwrap_or("");
            if authority.is_empty() {
                return Err(format!("target `{text}` has no host"));
            }
            if text.chars().any(char::is_whitespace) {
                return Err(format!("target `{text}` contains spaces"));
            }
            return Ok(Target::Http {
                url: text.to_string(),
            });
        }
        if let Some(rest) = text.strip_prefix("tcp://") {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("target `{text}`: expected tcp://host:port"))?;
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|port| *port != 0)
                .ok_or_else(|| format!("target `{text}`: `{port}` is not a port"))?;
            if host.is_empty() || host.contains('/') || host.chars().any(char::is_whitespace) {
                return Err(format!("target `{text}`: `{host}` is not a host"));
            }
            return Ok(Target::Tcp {
                host: host.to_string(),
                port,
            });
        }
        if let Some(rest) = text.strip_prefix("cmd:") {
            let mut words = rest.split_whitespace();
            let exe = words.next().unwrap_or("");
            if !exe.starts_with('/') {
                return Err(format!(
                    "target `{text}`: expected cmd:/absolute/path followed by arguments"
                ));
            }
            return Ok(Target::Cmd {
                exe: exe.to_string(),
                args: words.map(str::to_string).collect(),
            });
        }
        let scheme = text.split(':').next().unwrap_or(text);
        Err(format!(
            "target `{text}`: unknown scheme `{scheme}` (expected http://, https://, tcp:// or cmd:)"
        ))
    }
}

impl CheckSpec {
    /// Checks the definition; returns its parsed target.
    pub fn validate(&self, tick_ms: u64) -> Result<Target, String> {
        let name = &self.name;
        let name_ok = !name.is_empty()
            && name.len() <= MAX_NAME
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
            });
        if !name_ok {
            return Err(format!(
                "check name `{name}`: use 1 to {MAX_NAME} lowercase letters, digits, `-`, `_` or `.`, starting with a letter or digit"
            ));
        }
        if self.interval_ms < tick_ms || self.interval_ms > 86_400_000 {
            return Err(format!(
                "check `{name}`: interval-ms must be from {tick_ms} to 86400000"
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > 60_000 {
            return Err(format!(
                "check `{name}`: timeout-ms must be from 1 to 60000"
            ));
        }
        for (key, value) in [
            ("failure-threshold", self.failure_threshold),
            ("success-threshold", self.success_threshold),
        ] {
            if !(1..=100).contains(&value) {
                return Err(format!("check `{name}`: {key} must be from 1 to 100"));
            }
        }
        let target = Target::parse(&self.target)?;
        if self.expect_status.is_some() && !matches!(target, Target::Http { .. }) {
            return Err(format!(
                "check `{name}`: expect-status applies to http:// and https:// targets only"
            ));
        }
        if let Some(status) = self.expect_status
            && !(100..=599).contains(&status)
        {
            return Err(format!(
                "check `{name}`: expect-status must be from 100 to 599"
            ));
        }
        Ok(target)
    }
}

/// A check's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Unknown,
    Healthy,
    Unhealthy,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Healthy => "healthy",
            State::Unhealthy => "unhealthy",
        }
    }
}

/// What a check has seen so far; handed over in a swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Status {
    pub state: State,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last_error: Option<String>,
    pub last_latency_ms: Option<u64>,
    /// Wall-clock time of the last probe, milliseconds since the Unix epoch.
    pub last_checked_ms: Option<u64>,
}

impl Default for Status {
    fn default() -> Status {
        Status {
            state: State::Unknown,
            consecutive_failures: 0,
            consecutive_successes: 0,
            last_error: None,
            last_latency_ms: None,
            last_checked_ms: None,
        }
    }
}

impl Status {
    /// Records one probe's outcome; returns the previous state when it changed.
    pub fn record(
        &mut self,
        spec: &CheckSpec,
        outcome: &Result<(), String>,
        latency_ms: u64,
        now_ms: u64,
    ) -> Option<State> {
        self.last_latency_ms = Some(latency_ms);
        self.last_checked_ms = Some(now_ms);
        let previous = self.state;
        match outcome {
            Ok(()) => {
                self.consecutive_failures = 0;
                self.consecutive_successes = self.consecutive_successes.saturating_add(1);
                self.last_error = None;
                if self.consecutive_successes >= spec.success_threshold {
                    self.state = State::Healthy;
                }
            }
            Err(error) => {
                self.consecutive_successes = 0;
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.last_error = Some(error.clone());
                if self.consecutive_failures >= spec.failure_threshold {
                    self.state = State::Unhealthy;
                }
            }
        }
        (self.state != previous).then_some(previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(target: &str) -> CheckSpec {
        CheckSpec {
            name: "db".into(),
            target: target.into(),
            interval_ms: 1000,
            timeout_ms: 500,
            failure_threshold: 3,
            success_threshold: 2,
            expect_status: None,
            replace: false,
        }
    }

    #[test]
    fn targets_parse_by_scheme() {
        assert_eq!(
            Target::parse("http://127.0.0.1:8080/healthz"),
            Ok(Target::Http {
                url: "http://127.0.0.1:8080/healthz".into()
            })
        );
        assert!(matches!(
            Target::parse("https://example.com"),
            Ok(Target::Http { .. })
        ));
        assert_eq!(
            Target::parse("tcp://db.local:5432"),
            Ok(Target::Tcp {
                host: "db.local".into(),
                port: 5432
            })
        );
        assert_eq!(
            Target::parse("tcp://[::1]:22"),
            Ok(Target::Tcp {
                host: "::1".into(),
                port: 22
            })
        );
        assert_eq!(
            Target::parse("cmd:/usr/bin/test -e /run/x"),
            Ok(Target::Cmd {
                exe: "/usr/bin/test".into(),
                args: vec!["-e".into(), "/run/x".into()]
            })
        );
        for bad in [
            "ftp://x",
            "tcp://x",
            "tcp://x:0",
            "tcp://:80",
            "cmd:true",
            "cmd:",
            "http://",
            "",
            "x",
        ] {
            assert!(Target::parse(bad).is_err(), "accepted {bad:?}");
        }
        let err = Target::parse("ftp://x").unwrap_err();
        assert!(err.contains("unknown scheme `ftp`"), "{err}");
    }

    #[test]
    fn specs_are_validated() {
        assert!(spec("tcp://h:1").validate(200).is_ok());
        let mut bad = spec("tcp://h:1");
        bad.name = "Bad Name".into();
        assert!(bad.validate(200).is_err());
        let mut bad = spec("tcp://h:1");
        bad.interval_ms = 100;
        assert!(bad.validate(200).is_err());
        let mut bad = spec("tcp://h:1");
        bad.failure_threshold = 0;
        assert!(bad.validate(200).is_err());
        let mut bad = spec("tcp://h:1");
        bad.expect_status = Some(204);
        assert!(bad.validate(200).is_err());
        let parsed: Result<CheckSpec, _> =
            serde_json::from_str(r#"{"name":"x","target":"tcp://h:1","bogus":1}"#);
        assert!(parsed.is_err());
    }

    #[test]
    fn state_changes_only_after_thresholds() {
        let spec = spec("tcp://h:1");
        let mut status = Status::default();
        let fail = Err("refused".to_string());
        assert_eq!(status.record(&spec, &Ok(()), 1, 1), None);
        assert_eq!(status.state, State::Unknown);
        assert_eq!(status.record(&spec, &Ok(()), 1, 2), Some(State::Unknown));
        assert_eq!(status.state, State::Healthy);
        assert_eq!(status.record(&spec, &fail, 1, 3), None);
        assert_eq!(status.record(&spec, &fail, 1, 4), None);
        assert_eq!(status.state, State::Healthy);
        assert_eq!(status.consecutive_failures, 2);
        assert_eq!(status.record(&spec, &fail, 1, 5), Some(State::Healthy));
        assert_eq!(status.state, State::Unhealthy);
        assert_eq!(status.last_error.as_deref(), Some("refused"));
        assert_eq!(status.record(&spec, &Ok(()), 1, 6), None);
        assert_eq!(status.record(&spec, &Ok(()), 1, 7), Some(State::Unhealthy));
        assert_eq!(status.last_error, None);
    }
}
