//! The ONNX reader used by `verify` and `predict`: decode with limits, structural check, model
//! info. Each returns a value or an error; none may panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match wrnc_onnx::read_model(data) {
        Ok(model) => {
            if let Err(e) = wrnc_onnx::check_structure(&model) {
                assert!(!e.to_string().trim().is_empty());
            }
            if let Err(e) = wrnc_onnx::ModelInfo::from_model(&model) {
                assert!(!e.to_string().trim().is_empty());
            }
        }
        Err(e) => assert!(!e.to_string().trim().is_empty()),
    }
});
