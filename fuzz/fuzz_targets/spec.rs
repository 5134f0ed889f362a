//! The spec parser: YAML text (and, after a line `--set`, one override per line) must load or
//! be refused with an error naming the file or the override; never panic, hang or blow up.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (src, sets) = match text.split_once("\n--set\n") {
        Some((src, sets)) => (src, sets.lines().map(str::to_string).collect::<Vec<_>>()),
        None => (&*text, Vec::new()),
    };
    match wrnc_spec::load_str(src, "fuzz.yaml", "fuzz", &sets) {
        Ok(spec) => {
            let _ = spec.resolved_yaml();
            let _ = spec.expanded_yaml();
        }
        Err(e) => {
            let m = e.to_string();
            assert!(m.contains("fuzz.yaml") || m.contains("--set"), "{m}");
        }
    }
});
