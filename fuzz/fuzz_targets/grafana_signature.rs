//! `salve::intake::grafana::verify_signature` on arbitrary headers, body, secret and clock:
//! never panics, refuses only with a `Signature` error, and agrees with an independent HMAC:
//! a correct signature of a fresh request is accepted, anything else is refused. The input
//! layout (five lines, then the body) and the check are `salve_fuzz::grafana_signature`,
//! which the test suite also runs on the seeds and saved crashes (src/fuzz_regressions.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = salve_fuzz::grafana_signature::check(data);
});
