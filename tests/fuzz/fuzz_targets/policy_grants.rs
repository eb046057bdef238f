//! Every capability's grant validation (`Grants::from_policy`) on the grant
//! tables of any policy text. Kept apart from `policy` because it reaches
//! into `host/src/caps`, whose layout changes more often than the policy API.
#![no_main]

use cairn::caps::Grants;
use cairn::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::parse(text, None) else {
        return;
    };
    match Grants::from_policy(&policy) {
        Ok(grants) => {
            let _ = grants.names();
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
