//! The `POST /predict` body parser alone (`predict::parse_input`), with the digits model's
//! row length as its hint: fast, so it gets many more executions than `routes`.
//! A crash is a panic or the parse allocating more than its budget.

#![no_main]

use digits_fuzz::within_budget;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    within_budget(data.len(), || {
        let _ = predict::parse_input(data, 64);
    });
});
