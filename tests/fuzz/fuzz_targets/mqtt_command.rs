//! What the mqtt-adapter plugin receives from the broker: a command topic
//! (the first line of the input) and its payload (the rest), decoded and
//! answered as the adapter does, up to the host calls.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Topics are UTF-8 (MQTT requires it); payloads are any bytes.
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (topic, payload) = data.split_at(split);
    let payload = payload.strip_prefix(b"\n").unwrap_or(payload);
    let Ok(topic) = std::str::from_utf8(topic) else {
        return;
    };
    let reply = cairn_fuzz::mqtt_command(topic, payload);
    // The adapter's replies are JSON, always.
    assert!(serde_json::from_slice::<serde_json::Value>(&reply).is_ok());
    let _ = cairn_fuzz::protocol::as_json(payload);
});
