//! MQTT topic patterns and plugin/command name patterns as grants write
//! them. The input is lines: a pattern, a topic to match, a second pattern
//! for `covers`, a device id for `{device}`.
#![no_main]

use cairn::policy::{NamePattern, TopicPattern, validate_plugin_name, validate_topic};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let pattern = lines.next().unwrap_or_default();
    let topic = lines.next().unwrap_or_default();
    let other = lines.next().unwrap_or_default();
    let device = lines.next().unwrap_or("pump-7");

    let _ = validate_topic(topic);
    let _ = validate_plugin_name(topic);
    if let Ok(parsed) = TopicPattern::parse(pattern) {
        let resolved = parsed.resolve(device);
        let _ = (parsed.has_placeholder(), parsed.has_wildcards());
        let _ = (parsed.matches(topic), resolved.matches(topic));
        if let Ok(other) = TopicPattern::parse(other) {
            // `covers` decides subscriptions against grants: a pattern it
            // says is covered must never match a topic the grant does not.
            if parsed.covers(&other) && other.matches(topic) {
                assert!(
                    parsed.matches(topic),
                    "{pattern} covers {other} but not {topic}"
                );
            }
            let _ = other.covers(&resolved);
        }
    }
    for parse in [NamePattern::parse, NamePattern::parse_plugin] {
        if let Ok(name) = parse(pattern) {
            let _ = (name.plugin_part(), name.command_part());
            let _ = name.matches_plugin(topic);
            let _ = name.matches_call(topic, other);
        }
    }
});
