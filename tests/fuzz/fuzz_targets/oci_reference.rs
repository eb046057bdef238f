//! OCI references (`oci://HOST/REPO:TAG@sha256:...`) and digests as the CLI,
//! the admin socket and the mqtt-adapter hand them to the host. A reference
//! that parses must print back to itself.
#![no_main]

use cairn::state::Digest;
use cairn::supply::oci::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(digest) = Digest::parse(text) {
        assert_eq!(digest.as_str(), text);
        let _ = Digest::from_hex(digest.hex()).expect("a digest's hex is a digest");
    }
    match Reference::parse(text) {
        Ok(reference) => {
            let printed = reference.to_string();
            let again = Reference::parse(&printed).expect("a printed reference parses");
            assert_eq!(again, reference);
            let _ = reference.repository_name();
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
