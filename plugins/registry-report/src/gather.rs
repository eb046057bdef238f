//! What this device runs, by digest, with who uses each.

use std::collections::BTreeMap;

use cairn_sdk::{commands, plugins};
use serde::Deserialize;

/// Digest → users.
pub type InUse = BTreeMap<String, Vec<String>>;

#[derive(Deserialize)]
struct Answer {
    digests: InUse,
}

/// Every installed plugin's component, and what each plugin in `ask` says it
/// uses; an error when any source does not answer.
pub fn in_use(ask: &[String]) -> Result<InUse, String> {
    let mut all = InUse::new();
    let installed = plugins::list().map_err(|err| format!("cannot list the plugins: {err}"))?;
    for plugin in installed {
        all.entry(plugin.digest)
            .or_default()
            .push(format!("plugin {} {}", plugin.name, plugin.version));
    }
    for source in ask {
        let answer: Answer = commands::call_json(source, "in-use", &())
            .map_err(|err| format!("{source} did not say what it uses: {err}"))?;
        for (digest, users) in answer.digests {
            all.entry(digest).or_default().extend(users);
        }
    }
    for users in all.values_mut() {
        users.sort();
        users.dedup();
    }
    Ok(all)
}
