//! Recipe TOML as `recipe-add` receives it: parsed, validated and read
//! (durations, sizes, CPU quota) by the recipes plugin.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Recipes arrive inside a JSON string, so they are always UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = cairn_fuzz::recipe(text);
});
