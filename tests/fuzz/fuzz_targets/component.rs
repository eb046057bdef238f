//! Plugin files: `supply::inspect` validates any bytes as a WebAssembly
//! component (wasmparser) and reads its imports, exports and the JSON
//! metadata of its `cairn-plugin` custom section.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = cairn::supply::inspect(data) {
        let _ = info.identity();
    }
});
