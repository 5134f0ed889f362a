//! The CIFAR record reader: any file is read as whole records or refused naming the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wrnc_recipe::DatasetKind;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("wrnc-fuzz-cifar-{}.bin", std::process::id()));
    std::fs::write(&path, data).unwrap();
    for (kind, record) in [(DatasetKind::Cifar10, 3073), (DatasetKind::Cifar100, 3074)] {
        match wrnc_data::cifar::read_cifar_file(&path, kind) {
            Ok(ds) => assert_eq!(ds.len() * record, data.len()),
            Err(e) => assert!(e.to_string().contains("wrnc-fuzz-cifar"), "{e}"),
        }
    }
});
