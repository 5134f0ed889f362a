//! The weights (safetensors) loader: parses or returns an error; what parses round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match wrnc_ir::Weights::from_bytes(data) {
        Ok(w) => {
            for t in w.tensors.values() {
                let n = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                assert_eq!(n, Some(t.data.len()));
            }
            let again = wrnc_ir::Weights::from_bytes(&w.to_bytes().unwrap()).unwrap();
            assert_eq!(again.tensors.len(), w.tensors.len());
        }
        Err(m) => assert!(!m.trim().is_empty()),
    }
});
