//! Hostile inputs through the binary (issue 6): each is refused quickly, with a clear message
//! and the right exit code, inside a 1 GiB address space (`ulimit -v`), so an unbounded
//! allocation would fail the test instead of exhausting the machine.

mod common;

use common::{assert_usage_error, root, tempdir, wrnc_limited, Run};
use std::path::Path;
use std::time::Duration;
use wrnc_onnx::MetaKey;

/// Address space allowed to every run here.
const VM_KIB: u64 = 1 << 20;
/// Wall time allowed to every refusal (generous for a slow, busy CI machine; each takes well
/// under a second normally).
const QUICK: Duration = Duration::from_secs(10);

fn refused(dir: &Path, args: &[&str], code: i32, needles: &[&str]) -> Run {
    let (r, took) = wrnc_limited(dir, args, VM_KIB);
    assert!(took < QUICK, "{args:?} took {took:?}");
    if code == 2 {
        assert_usage_error(&r, needles);
    } else {
        assert_eq!(r.code, code, "{args:?}: stderr:\n{}", r.stderr);
        assert!(!r.stderr.contains("panicked") && !r.stderr.contains("internal error"));
        for n in needles {
            assert!(r.stderr.contains(n), "missing `{n}` in:\n{}", r.stderr);
        }
    }
    r
}

/// Creates `dir/name` as a sparse file of `len` bytes (nothing is written) and returns its
/// path.
fn sparse_file(dir: &Path, name: &str, len: u64) -> String {
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().set_len(len).unwrap();
    path.display().to_string()
}

fn spec(name: &str) -> String {
    root().join("specs").join(name).display().to_string()
}

#[test]
fn the_limit_leaves_room_for_real_work() {
    // The limit itself does not break a normal command.
    let tmp = tempdir();
    let (r, _) = wrnc_limited(tmp.path(), &["summary", &spec("wrn-28-10.yaml")], VM_KIB);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn yaml_bombs_are_refused() {
    let tmp = tempdir();
    let d = tmp.path();
    // Billion laughs: 9 levels of 9 aliases would expand to 387 million strings.
    let mut laughs = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (prev, cur) in "abcdefgh".chars().zip("bcdefghi".chars()) {
        let refs = vec![format!("*{prev}"); 9].join(", ");
        laughs.push_str(&format!("{cur}: &{cur} [{refs}]\n"));
    }
    laughs.push_str("model: {wrn: {depth: 10, width: 1}}\n");
    let f = common::write(d, "laughs.yaml", &laughs);
    refused(d, &["check", &f], 2, &["laughs.yaml", "repetition limit"]);

    // Deep flow nesting, just under the 1 MiB size limit (took minutes before the nesting
    // check; serde_yaml's scanner is quadratic in it).
    let deep = format!("model: {}{}\n", "[".repeat(500_000), "]".repeat(500_000));
    let f = common::write(d, "deep.yaml", &deep);
    refused(
        d,
        &["check", &f],
        2,
        &["deep.yaml:1:", "nested more than 128 levels"],
    );
    // The same through --set (whose values are YAML too).
    let set = format!("model={}{}", "{a: ".repeat(20_000), "}".repeat(20_000));
    refused(
        d,
        &["check", &spec("quickstart.yaml"), "--set", &set],
        2,
        &["--set", "nested"],
    );
    // Deep block nesting.
    let block: String = (0..1000)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect();
    let f = common::write(d, "block.yaml", &block);
    refused(
        d,
        &["check", &f],
        2,
        &["block.yaml", "nested more than 128 levels"],
    );
}

#[test]
fn oversized_specs_and_models_are_refused() {
    let tmp = tempdir();
    let d = tmp.path();
    // A 100 MB spec (sparse: nothing is written) is refused before it is read.
    let f = sparse_file(d, "big.yaml", 100 << 20);
    refused(
        d,
        &["check", &f],
        2,
        &["big.yaml", "104857600 bytes", "at most 1048576"],
    );

    // 10^12 parameters: refused with the count before anything is allocated, also by train.
    let wide = ["--set", "model.wrn.width=1655"];
    for cmd in ["summary", "check", "train", "init"] {
        let s = spec("wrn-28-10.yaml");
        let mut args = vec![cmd, s.as_str(), wide[0], wide[1]];
        let out = d.join("w.safetensors").display().to_string();
        let run_dir = d.join("run").display().to_string();
        match cmd {
            "init" => args.extend(["-o", &out]),
            "train" => args.extend(["--out", &run_dir, "--device", "cpu"]),
            _ => {}
        }
        refused(
            d,
            &args,
            2,
            &["model.wrn", "1,0", "parameters", "refuses more than"],
        );
    }
    assert!(!d.join("run").exists() && !d.join("w.safetensors").exists());
}

#[test]
fn bad_dataset_files_are_refused() {
    let tmp = tempdir();
    let d = tmp.path();
    let data = d.join("cifar");
    std::fs::create_dir(&data).unwrap();
    let record = |label: u8| {
        let mut r = vec![label];
        r.extend(std::iter::repeat_n(7u8, 3072));
        r
    };
    for f in wrnc_data::cifar::CIFAR10_TRAIN_FILES
        .iter()
        .chain([&wrnc_data::cifar::CIFAR10_TEST_FILE])
    {
        std::fs::write(data.join(f), [record(1), record(2)].concat()).unwrap();
    }
    let s = spec("wrn-16-4.yaml");
    let root_set = format!("data.root={}", data.display());
    let out = d.join("run").display().to_string();
    let args = [
        "train", &s, "--set", &root_set, "--out", &out, "--device", "cpu",
    ];
    // 0 bytes.
    std::fs::write(data.join("data_batch_3.bin"), []).unwrap();
    refused(
        d,
        &args,
        1,
        &["data_batch_3.bin", "size 0 bytes", "3073-byte records"],
    );
    // Not a whole number of records.
    std::fs::write(
        data.join("data_batch_3.bin"),
        [record(1), vec![0; 5]].concat(),
    )
    .unwrap();
    refused(
        d,
        &args,
        1,
        &["data_batch_3.bin", "3078 bytes", "3073-byte"],
    );
    // A label beyond the classes.
    std::fs::write(data.join("data_batch_3.bin"), record(10)).unwrap();
    refused(d, &args, 1, &["data_batch_3.bin", "label"]);
    // Nothing was committed to the run directory.
    assert!(!d.join("run/state.json").exists());
}

#[test]
fn bad_weights_files_are_refused() {
    let tmp = tempdir();
    let d = tmp.path();
    let header = |json: &str| {
        let mut b = (json.len() as u64).to_le_bytes().to_vec();
        b.extend(json.as_bytes());
        b
    };
    // The header claims 4 GB of data; the file has 16 bytes.
    let mut claims =
        header(r#"{"x":{"dtype":"F32","shape":[1000000000],"data_offsets":[0,4000000000]}}"#);
    claims.extend([0u8; 16]);
    std::fs::write(d.join("claims.safetensors"), claims).unwrap();
    // The header length field claims 2^60 bytes.
    let mut huge = (1u64 << 60).to_le_bytes().to_vec();
    huge.extend(b"{}");
    std::fs::write(d.join("huge.safetensors"), huge).unwrap();
    let s = spec("quickstart.yaml");
    let out = d.join("out.onnx").display().to_string();
    let run_dir = d.join("run").display().to_string();
    for (file, what) in [
        ("claims.safetensors", "not a valid safetensors weights file"),
        ("huge.safetensors", "header too large"),
    ] {
        let w = d.join(file).display().to_string();
        refused(
            d,
            &["export", &s, "--weights", &w, "-o", &out],
            2,
            &[file, what],
        );
        refused(
            d,
            &[
                "train", &s, "--init", &w, "--out", &run_dir, "--device", "cpu",
            ],
            2,
            &[file, what],
        );
        refused(
            d,
            &["eval", &s, "--weights", &w, "--device", "cpu"],
            2,
            &[file, what],
        );
    }
    assert!(!d.join("out.onnx").exists());
}

#[test]
fn hostile_onnx_files_are_refused() {
    use wrnc_onnx::proto::{
        GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
        ValueInfoProto,
    };
    let tmp = tempdir();
    let d = tmp.path();
    let model = |meta: &[(&str, &str)], init: Vec<TensorProto>| ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        metadata_props: meta
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: Some(k.to_string()),
                value: Some(v.to_string()),
            })
            .collect(),
        // Structurally valid (input -> Relu -> logits, probabilities), so that every check
        // past the structural one is reached.
        graph: Some(GraphProto {
            initializer: init,
            input: vec![ValueInfoProto {
                name: Some("input".into()),
                ..Default::default()
            }],
            node: ["logits", "probabilities"]
                .iter()
                .map(|out| NodeProto {
                    input: vec!["input".into()],
                    output: vec![out.to_string()],
                    name: Some(format!("relu_{out}")),
                    op_type: Some("Relu".into()),
                    ..Default::default()
                })
                .collect(),
            output: ["logits", "probabilities"]
                .iter()
                .map(|o| ValueInfoProto {
                    name: Some(o.to_string()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let write = |name: &str, m: &ModelProto| {
        let p = d.join(name);
        std::fs::write(&p, wrnc_onnx::to_bytes(m)).unwrap();
        p.display().to_string()
    };
    // An initializer declaring 2^60 floats with 8 bytes of data.
    let huge = write(
        "huge.onnx",
        &model(
            &[(MetaKey::InputShape.as_str(), "[1, 8, 8]")],
            vec![TensorProto {
                dims: vec![1 << 20, 1 << 20, 1 << 20],
                data_type: Some(1),
                name: Some("w".into()),
                raw_data: Some(vec![0; 8]),
                ..Default::default()
            }],
        ),
    );
    // Metadata asking for 10^12 class labels, or a 2^48-value input image.
    let classes = write(
        "classes.onnx",
        &model(
            &[
                (MetaKey::InputShape.as_str(), "[1, 8, 8]"),
                (MetaKey::NumClasses.as_str(), "1000000000000"),
            ],
            vec![],
        ),
    );
    let shape = write(
        "shape.onnx",
        &model(
            &[(MetaKey::InputShape.as_str(), "[65536, 65536, 65536]")],
            vec![],
        ),
    );
    // A 3 GiB file (sparse), over the 2 GiB protobuf limit.
    let big = sparse_file(d, "big.onnx", 3 << 30);
    // Valid weights for verify.
    let s = spec("quickstart.yaml");
    let w = d.join("w.safetensors").display().to_string();
    let (r, _) = wrnc_limited(d, &["init", &s, "-o", &w], VM_KIB);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for (file, needles) in [
        (
            &huge,
            &["huge.onnx", "declares 1152921504606846976 elements"][..],
        ),
        (
            &classes,
            &[
                "classes.onnx",
                MetaKey::NumClasses.as_str(),
                "1000000000000",
            ][..],
        ),
        (
            &shape,
            &["shape.onnx", MetaKey::InputShape.as_str(), "too large"][..],
        ),
        (&big, &["big.onnx", "3221225472 bytes", "limit"][..]),
    ] {
        refused(d, &["predict", file, "no-such-image.png"], 2, needles);
        refused(
            d,
            &["verify", file, "--spec", &s, "--weights", &w],
            2,
            needles,
        );
    }
}
