//! Any text into the master-file reader: it returns records or an error,
//! never panics, and what it accepts survives a write and a second read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_domain::masterfile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(records) = masterfile::parse(text, Some("fuzz.example.test.")) else { return };
    let written = masterfile::write("fuzz.example.test.", &records);
    match masterfile::parse(&written, None) {
        Ok(again) => assert_eq!(again, records, "write then read changed the records:\n{written}"),
        Err(e) => panic!("the writer's output does not read back: {e}\n{written}"),
    }
});
