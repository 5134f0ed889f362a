//! The fuzz targets as property tests (issue 6): the spec parser, the CIFAR record reader, the
//! IDX reader (Fashion-MNIST, MNIST; plain and gzipped), the weights loader and the ONNX reader
//! used by `verify` and `predict` get random, mutated and crafted inputs. Nothing may panic, hang or allocate without bound, and every rejection is
//! an error that says what is wrong. The same targets run under cargo-fuzz (`fuzz/`,
//! `tools/fuzz.sh`); inputs that once failed live in `tests/fixtures/regressions/TARGET/` and
//! are replayed here on every run.
//!
//! `PROPTEST_CASES=N` changes the number of cases of every property (default: a few hundred,
//! a few seconds in all).

mod common;

use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wrnc_ir::Weights;
use wrnc_onnx::proto::{
    GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, ValueInfoProto,
};
use wrnc_onnx::{check_structure, read_model, MetaKey, ModelInfo};
use wrnc_recipe::DatasetKind;

/// No single input may take longer than this (generous: CI machines are slow and busy).
const SLOW: Duration = Duration::from_secs(5);

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    assert!(t.elapsed() < SLOW, "{what} took {:?}", t.elapsed());
    r
}

// ----- the targets (fuzz/fuzz_targets/*.rs run the same calls) -----

fn spec_target(src: &str, sets: &[String]) {
    match timed("load_str", || {
        wrnc_spec::load_str(src, "fuzz.yaml", "fuzz", sets)
    }) {
        Ok(spec) => {
            // Whatever loads must also print and lower to a well-formed graph.
            assert!(!spec.resolved_yaml().is_empty());
            let _ = spec.expanded_yaml();
            assert!(spec.graph.params.iter().all(|p| !p.name.is_empty()));
        }
        Err(e) => {
            let m = e.to_string();
            assert!(
                m.contains("fuzz.yaml") || m.contains("--set"),
                "error names neither the file nor the override: {m}"
            );
        }
    }
}

fn cifar_target(dir: &Path, bytes: &[u8]) {
    let path = dir.join("batch.bin");
    std::fs::write(&path, bytes).unwrap();
    for (kind, record) in [(DatasetKind::Cifar10, 3073), (DatasetKind::Cifar100, 3074)] {
        match timed("read_cifar_file", || {
            wrnc_data::cifar::read_cifar_file(&path, kind)
        }) {
            Ok(ds) => {
                assert!(!bytes.is_empty() && bytes.len().is_multiple_of(record));
                assert_eq!(ds.len(), bytes.len() / record);
            }
            Err(e) => {
                let m = e.to_string();
                assert!(m.contains("batch.bin"), "error does not name the file: {m}");
            }
        }
    }
}

fn idx_target(dir: &Path, bytes: &[u8]) {
    let path = dir.join("file.idx");
    std::fs::write(&path, bytes).unwrap();
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    match timed("read_idx_images", || wrnc_data::idx::read_idx_images(&path)) {
        Ok(img) => {
            assert_eq!(img.pixels.len(), img.count() * img.rows * img.cols);
            assert!(gz || img.pixels.len() + 16 == bytes.len());
        }
        Err(e) => {
            let m = e.to_string();
            assert!(m.contains("file.idx"), "error does not name the file: {m}");
        }
    }
    match timed("read_idx_labels", || wrnc_data::idx::read_idx_labels(&path)) {
        Ok(labels) => assert!(gz || labels.len() + 8 == bytes.len()),
        Err(e) => {
            let m = e.to_string();
            assert!(m.contains("file.idx"), "error does not name the file: {m}");
        }
    }
}

fn weights_target(bytes: &[u8]) {
    match timed("Weights::from_bytes", || Weights::from_bytes(bytes)) {
        Ok(w) => {
            for (name, t) in &w.tensors {
                let n = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                assert_eq!(n, Some(t.data.len()), "tensor {name}");
            }
            // What loads saves and loads back the same.
            let again = Weights::from_bytes(&w.to_bytes().unwrap()).unwrap();
            assert_eq!(again.tensors.len(), w.tensors.len());
        }
        Err(m) => assert!(!m.trim().is_empty(), "empty error"),
    }
}

fn onnx_target(bytes: &[u8]) {
    match timed("read_model", || read_model(bytes)) {
        Ok(model) => {
            let structure = timed("check_structure", || check_structure(&model));
            let info = timed("ModelInfo::from_model", || ModelInfo::from_model(&model));
            for e in [structure.err(), info.err()].into_iter().flatten() {
                assert!(!e.to_string().trim().is_empty(), "empty error");
            }
        }
        Err(e) => assert!(!e.to_string().trim().is_empty(), "empty error"),
    }
}

// ----- seeds and mutations -----

fn root() -> PathBuf {
    common::root()
}

fn seed_specs() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root().join("specs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    v.sort();
    v.push(
        "model:\n  layers:\n    - {op: conv, out: 4, kernel: 3, padding: 1}\n    - {op: relu}\n    \
         - {op: global_avg_pool}\n    - {op: flatten}\n    - {op: linear, out: 10}\n    \
         - {op: softmax}\ndata: {dataset: digits}\n"
            .into(),
    );
    v
}

fn tiny_spec() -> wrnc_spec::Spec {
    let sets = ["model.wrn.depth=10", "model.wrn.width=1"].map(String::from);
    wrnc_spec::load(&root().join("specs/quickstart.yaml"), &sets).unwrap()
}

fn seed_weights() -> Vec<u8> {
    let mut w = Weights::default();
    for (name, shape) in [("a.weight", vec![2, 3]), ("b.bias", vec![4]), ("c", vec![])] {
        let n = shape.iter().product::<usize>();
        let data = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
        w.tensors
            .insert(name.into(), wrnc_ir::weights::Tensor { shape, data });
    }
    w.metadata
        .insert(wrnc_train::rundir::COMMIT_KEY.into(), "epoch1".into());
    w.to_bytes().unwrap()
}

fn seed_onnx() -> &'static [u8] {
    static B: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    B.get_or_init(|| {
        let spec = tiny_spec();
        let w = wrnc_train::init_weights(&spec.graph, 0);
        let meta = wrnc_onnx::ExportMetadata {
            class_labels: (0..10).map(|i| i.to_string()).collect(),
            ..Default::default()
        };
        let m = wrnc_onnx::export(&spec.graph, &w, &Default::default(), &meta).unwrap();
        wrnc_onnx::to_bytes(&m)
    })
}

/// Byte-level edits: (kind, position, value).
type Edits = Vec<(u8, u32, u8)>;

fn edits(max: usize) -> impl Strategy<Value = Edits> {
    prop::collection::vec((0u8..6, any::<u32>(), any::<u8>()), 1..max)
}

fn mutate(seed: &[u8], edits: &Edits) -> Vec<u8> {
    const INTERESTING: [u8; 8] = [0x00, 0xff, 0x7f, 0x80, 0x01, b'[', b'&', b'*'];
    let mut b = seed.to_vec();
    for &(kind, pos, val) in edits {
        let at = if b.is_empty() {
            0
        } else {
            pos as usize % b.len()
        };
        match kind {
            0 if !b.is_empty() => b[at] ^= 1 << (val % 8),
            1 if !b.is_empty() => b[at] = INTERESTING[val as usize % 8],
            2 => b.insert(at, val),
            3 if !b.is_empty() => {
                let end = (at + 1 + val as usize).min(b.len());
                b.drain(at..end);
            }
            4 => b.truncate(at),
            _ if !b.is_empty() => {
                // Duplicate a chunk (repeats headers, records, protobuf fields).
                let end = (at + 1 + val as usize * 4).min(b.len());
                let chunk = b[at..end].to_vec();
                b.splice(at..at, chunk);
            }
            _ => b.push(val),
        }
    }
    b
}

/// Replays `tests/fixtures/regressions/TARGET/*` through `f`.
fn replay(target: &str, mut f: impl FnMut(&[u8])) -> usize {
    let dir = root().join("tests/fixtures/regressions").join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            continue;
        }
        eprintln!("replaying {}", p.display());
        f(&std::fs::read(&p).unwrap());
        n += 1;
    }
    n
}

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ----- regression corpora -----

#[test]
fn regressions_spec() {
    let n = replay("spec", |b| spec_target(&String::from_utf8_lossy(b), &[]));
    assert!(n > 0);
}

#[test]
fn regressions_cifar() {
    let tmp = common::tempdir();
    let n = replay("cifar", |b| cifar_target(tmp.path(), b));
    assert!(n > 0);
}

#[test]
fn regressions_idx() {
    let tmp = common::tempdir();
    let n = replay("idx", |b| idx_target(tmp.path(), b));
    assert!(n > 0);
}

/// The IDX seeds: the regression files that read (plain images, labels, gzipped images).
fn seed_idx() -> Vec<Vec<u8>> {
    [
        "valid-3-images.idx",
        "valid-labels.idx",
        "valid-2-images.idx.gz",
    ]
    .iter()
    .map(|f| std::fs::read(root().join("tests/fixtures/regressions/idx").join(f)).unwrap())
    .collect()
}

#[test]
fn regressions_weights() {
    assert!(replay("weights", weights_target) > 0);
}

#[test]
fn regressions_onnx() {
    assert!(replay("onnx", onnx_target) > 0);
}

#[test]
fn seeds_are_accepted() {
    for s in seed_specs() {
        wrnc_spec::load_str(&s, "seed.yaml", "seed", &[]).unwrap();
    }
    assert!(Weights::from_bytes(&seed_weights()).is_ok());
    let tmp = common::tempdir();
    let p = tmp.path().join("seed.idx");
    for (i, b) in seed_idx().iter().enumerate() {
        std::fs::write(&p, b).unwrap();
        let ok = if i == 1 {
            wrnc_data::idx::read_idx_labels(&p).is_ok()
        } else {
            wrnc_data::idx::read_idx_images(&p).is_ok()
        };
        assert!(ok, "IDX seed {i}");
    }
    let m = read_model(seed_onnx()).unwrap();
    check_structure(&m).unwrap();
    ModelInfo::from_model(&m).unwrap();
}

// ----- properties -----

/// YAML values built from the spec's own vocabulary, so that mutations reach validation.
fn yaml_value() -> impl Strategy<Value = serde_yaml::Value> {
    use serde_yaml::Value;
    const KEYS: &[&str] = &[
        "name",
        "model",
        "wrn",
        "depth",
        "width",
        "dropout",
        "layers",
        "op",
        "out",
        "kernel",
        "stride",
        "padding",
        "input",
        "classes",
        "data",
        "dataset",
        "val_size",
        "augment",
        "crop",
        "flip",
        "normalize",
        "train",
        "epochs",
        "batch_size",
        "optimizer",
        "lr",
        "momentum",
        "schedule",
        "kind",
        "milestones",
        "gamma",
        "export",
        "onnx",
        "opset",
        "seed",
        "warmup_epochs",
        "p",
        "eps",
        "mode",
        "root",
        "shortcut",
        "bias",
        "from",
        "bn_eps",
        "bn_momentum",
        "resize",
        "filter",
        "bad_images",
    ];
    const WORDS: &[&str] = &[
        "conv",
        "relu",
        "batch_norm",
        "linear",
        "softmax",
        "flatten",
        "global_avg_pool",
        "dropout",
        "add",
        "avg_pool",
        "input",
        "preact",
        "conv0",
        "relu0",
        "cifar10",
        "cifar100",
        "digits",
        "fashion_mnist",
        "mnist",
        "folder",
        "random_resized",
        "shorter_side",
        "pad",
        "skip",
        "cosine",
        "step",
        "mean_std",
        "zero",
        "reflect",
        "f32",
        "bf16",
        "cpu",
        "cuda",
        "auto",
        "",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| Value::Number(i.into())),
        (0u64..64).prop_map(|i| Value::Number(i.into())),
        any::<u64>().prop_map(|i| Value::Number(i.into())),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
            Just(1e308),
            -2.0f64..2.0
        ]
        .prop_map(|f| Value::Number(f.into())),
        prop::sample::select(WORDS).prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_yaml::Value::Sequence),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                serde_yaml::Value::Mapping(
                    kv.into_iter()
                        .map(|(k, v)| (serde_yaml::Value::String(k.into()), v))
                        .collect(),
                )
            }),
        ]
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn spec_parser_survives_mutated_specs(i in any::<prop::sample::Index>(), e in edits(12)) {
        let seeds = seed_specs();
        let seed = seeds[i.index(seeds.len())].as_bytes();
        spec_target(&String::from_utf8_lossy(&mutate(seed, &e)), &[]);
    }

    #[test]
    fn spec_parser_survives_random_documents(v in yaml_value()) {
        let text = serde_yaml::to_string(&v).unwrap();
        spec_target(&text, &[]);
    }

    #[test]
    fn spec_parser_survives_structured_specs(
        model in yaml_value(), data in yaml_value(), train in yaml_value(), depth in any::<i64>(),
        width in any::<i64>(),
    ) {
        let text = format!(
            "model: {{wrn: {{depth: {depth}, width: {width}}}}}\nextra: {}\ndata: {}\ntrain: {}\n",
            serde_json::to_string(&model).unwrap_or_default(),
            serde_json::to_string(&data).unwrap_or_default(),
            serde_json::to_string(&train).unwrap_or_default(),
        );
        spec_target(&text, &[]);
        let sets = [format!("model={}", serde_json::to_string(&model).unwrap_or_default())];
        spec_target("data: {dataset: digits}\n", &sets);
    }

    #[test]
    fn spec_parser_survives_random_layer_lists(layers in prop::collection::vec((
        prop::sample::select(vec!["conv", "batch_norm", "relu", "dropout", "add", "avg_pool",
            "global_avg_pool", "flatten", "linear", "softmax", "nope"]),
        prop::collection::vec((
            prop::sample::select(vec!["out", "kernel", "stride", "padding", "p", "eps",
                "momentum", "bias", "from", "name"]),
            prop_oneof![
                (0i64..12).prop_map(|i| i.to_string()),
                Just("18446744073709551615".to_string()),
                Just("4294967297".to_string()),
                Just("-1".to_string()),
                Just("0.5".to_string()),
                Just("1e400".to_string()),
                Just(".nan".to_string()),
                Just("input".to_string()),
                Just("[input, conv0]".to_string()),
                Just("[relu1, relu1]".to_string()),
                Just("conv0".to_string()),
            ],
        ), 0..4),
    ), 0..8), h in prop_oneof![1u64..40, Just(65536u64), Just(u64::MAX)]) {
        let mut text = format!("model:\n  input: [3, {h}, {h}]\n  classes: 10\n  layers:\n");
        for (op, keys) in &layers {
            text.push_str(&format!("    - {{op: {op}"));
            for (k, v) in keys {
                text.push_str(&format!(", {k}: {v}"));
            }
            text.push_str("}\n");
        }
        spec_target(&text, &[]);
    }

    #[test]
    fn spec_overrides_survive_random_arguments(raw in prop::collection::vec(any::<char>(), 0..40),
        key in prop::sample::select(vec!["model.wrn.depth", "train", "model.layers[0]",
            "data.augment.crop", "a..b", "model.layers[99999999999999999999]", ""])) {
        let value: String = raw.into_iter().collect();
        let seeds = seed_specs();
        spec_target(&seeds[0], &[format!("{key}={value}")]);
    }

    #[test]
    fn cifar_reader_survives_random_files(records in 0usize..3, extra in 0usize..6,
        labels in prop::collection::vec(any::<u8>(), 6), fill in any::<u8>()) {
        let tmp = common::tempdir();
        for record in [3073usize, 3074] {
            let mut b = vec![fill; records * record + extra];
            for (i, l) in labels.iter().enumerate().take(records) {
                b[i * record] = *l;
                if record == 3074 { b[i * record + 1] = l.wrapping_mul(7); }
            }
            cifar_target(tmp.path(), &b);
        }
    }

    #[test]
    fn idx_reader_survives_mutated_files(i in any::<prop::sample::Index>(), e in edits(8)) {
        let seeds = seed_idx();
        let tmp = common::tempdir();
        idx_target(tmp.path(), &mutate(&seeds[i.index(seeds.len())], &e));
    }

    #[test]
    fn idx_reader_survives_crafted_headers(magic in prop::sample::select(vec![0x801u32, 0x803,
        0x802, 0x1f8b_0803, 0]), dims in prop::collection::vec(prop::sample::select(vec![0u32, 1,
        2, 28, 0xffff, 0x7fff_ffff, u32::MAX]), 0..4), body in 0usize..64) {
        let mut b = magic.to_be_bytes().to_vec();
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b.extend(std::iter::repeat_n(7u8, body));
        let tmp = common::tempdir();
        idx_target(tmp.path(), &b);
    }

    #[test]
    fn weights_loader_survives_mutated_files(e in edits(8)) {
        weights_target(&mutate(&seed_weights(), &e));
    }

    #[test]
    fn weights_loader_survives_crafted_headers(
        tensors in prop::collection::vec((
            prop::sample::select(vec!["F32", "F16", "BF16", "I64", "U8", "BOOL", "F64", "XX"]),
            prop::collection::vec(prop_oneof![0u64..5, Just(u64::MAX), Just(1 << 40)], 0..4),
            any::<u32>(), any::<u32>(),
        ), 0..4),
        header_len_delta in -3i64..3, data in 0usize..64,
    ) {
        let entries: Vec<String> = tensors.iter().enumerate().map(|(i, (dt, shape, a, b))| {
            format!(r#""t{i}":{{"dtype":"{dt}","shape":{shape:?},"data_offsets":[{},{}]}}"#,
                a % 128, b % 128)
        }).collect();
        let header = format!("{{{}}}", entries.join(","));
        let len = (header.len() as i64 + header_len_delta).max(0) as u64;
        let mut bytes = len.to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend(std::iter::repeat_n(0x3fu8, data));
        weights_target(&bytes);
    }

    #[test]
    fn onnx_reader_survives_mutated_models(e in edits(10)) {
        onnx_target(&mutate(seed_onnx(), &e));
    }

    #[test]
    fn onnx_reader_survives_crafted_models(
        dims in prop::collection::vec(prop_oneof![-2i64..4, Just(i64::MAX), Just(1 << 31)], 0..5),
        data_type in prop_oneof![0i32..20, any::<i32>()],
        raw in prop::option::of(0usize..40), floats in 0usize..10,
        location in prop::option::of(0i32..3),
        meta in prop::collection::vec((prop::sample::select(vec![
            MetaKey::InputShape.as_str(), MetaKey::NumClasses.as_str(),
            MetaKey::ClassLabels.as_str(), MetaKey::Normalization.as_str(),
            MetaKey::Training.as_str(), "wrnc.spec"]), prop::sample::select(vec![
            "[3, 32, 32]", "[3, 65536, 65536]", "[0, 1, 1]", "[1, 2]", "1000000000000",
            "18446744073709551615", "10", "[\"a\"]", "{\"mode\":\"per_pixel_mean\",\"scale\":1,\
            \"mean_image\":[1]}", "{\"mode\":\"mean_std\",\"scale\":0,\"mean\":[],\"std\":[]}",
            "null", "", "{"])), 0..4),
        opset in prop::option::of(any::<i64>()), ir in prop::option::of(any::<i64>()),
    ) {
        let t = TensorProto {
            dims,
            data_type: Some(data_type),
            raw_data: raw.map(|n| vec![1u8; n]),
            float_data: vec![0.5; floats],
            name: Some("w".into()),
            data_location: location,
            ..Default::default()
        };
        let model = ModelProto {
            ir_version: ir,
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: opset }],
            metadata_props: meta.into_iter().map(|(k, v)| StringStringEntryProto {
                key: Some(k.into()), value: Some(v.into()) }).collect(),
            graph: Some(GraphProto {
                initializer: vec![t],
                input: vec![ValueInfoProto { name: Some("input".into()), ..Default::default() }],
                ..Default::default()
            }),
            ..Default::default()
        };
        onnx_target(&wrnc_onnx::to_bytes(&model));
    }

    #[test]
    fn every_target_survives_random_bytes(b in prop::collection::vec(any::<u8>(), 0..512)) {
        spec_target(&String::from_utf8_lossy(&b), &[]);
        weights_target(&b);
        onnx_target(&b);
    }
}
