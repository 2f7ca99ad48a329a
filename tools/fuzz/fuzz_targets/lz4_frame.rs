//! Any input: the LZ4 frame decoder never panics, and its output size stays within what
//! the input can decode to (LZ4 expands at most ~255-fold).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = forksnap::frame::decode(data) {
        assert!(out.len() <= data.len().saturating_mul(256) + 64);
    }
});
