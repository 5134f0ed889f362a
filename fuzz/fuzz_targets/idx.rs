//! The IDX reader (Fashion-MNIST, MNIST): any file, plain or gzipped, is read as images or
//! labels whose count matches the header, or refused naming the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("wrnc-fuzz-idx-{}.idx", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let gz = data.starts_with(&[0x1f, 0x8b]);
    match wrnc_data::idx::read_idx_images(&path) {
        Ok(img) => {
            assert_eq!(img.pixels.len(), img.count() * img.rows * img.cols);
            assert!(gz || img.pixels.len() + 16 == data.len());
        }
        Err(e) => assert!(e.to_string().contains("wrnc-fuzz-idx"), "{e}"),
    }
    match wrnc_data::idx::read_idx_labels(&path) {
        Ok(labels) => assert!(gz || labels.len() + 8 == data.len()),
        Err(e) => assert!(e.to_string().contains("wrnc-fuzz-idx"), "{e}"),
    }
});
