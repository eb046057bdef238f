//! Plan TOML with the recipes sent along, as `plan-apply` receives them:
//! parsed, resolved (variables substituted), ordered into layers.
//!
//! The input is the plan, then each recipe after a line `--- <reference>`:
//!
//! ```text
//! [[components]]
//! name = "db"
//! recipe = "db.toml"
//! --- db.toml
//! [metadata]
//! ...
//! ```
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split("\n--- ");
    let plan = parts.next().unwrap_or_default();
    let recipes: BTreeMap<String, String> = parts
        .map(|part| {
            let (reference, recipe) = part.split_once('\n').unwrap_or((part, ""));
            (reference.to_string(), recipe.to_string())
        })
        .collect();
    let _ = cairn_fuzz::plan(plan, &recipes);
});
