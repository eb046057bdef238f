//! Policy files as the daemon and `cairn policy check` read them: any text
//! through `Policy::parse`, then what the host reads back from a parsed
//! policy (its grant tables re-read with spans, error positions).
#![no_main]

use std::path::Path;

use cairn::policy::{Policy, format_duration, format_size, parse_duration, parse_size};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A policy file that is not UTF-8 is refused before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Policy::parse(text, Some(Path::new("/etc/cairn/policies/fuzz.toml"))) {
        Ok(policy) => {
            // Limits are shown with `format_*` (`cairn policy check`, errors),
            // which promise text that parses back to the same value.
            let limits = &policy.limits;
            assert_eq!(parse_size(&format_size(limits.memory)), Ok(limits.memory));
            for d in [
                limits.call_timeout,
                limits.restart_backoff,
                limits.restart_backoff_max,
                limits.soak,
            ] {
                assert_eq!(parse_duration(&format_duration(d)), Ok(d));
            }
            let _ = policy.check_known_grants(&["log", "kv", "mqtt"]);
            for grant in policy.grants.values() {
                // What each capability does with its slice, minus its types.
                if let Err(error) = grant.parse::<toml::Table>() {
                    let _ = error.to_string();
                }
            }
        }
        Err(error) => {
            let _ = (error.to_string(), error.line(), error.file());
        }
    }
});
