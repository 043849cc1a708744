//! `salve::intake::generic::parse` on arbitrary bytes: never panics, and the result keeps the
//! invariants in `salve_fuzz::check_parser`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    salve_fuzz::check_parser(body, salve::intake::generic::parse);
});
