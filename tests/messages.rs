//! Messages that must send the user the right way (issue 12, item 19): paths named once, a
//! `--set` blamed for its own errors, words instead of Rust type names, a line for every key,
//! list indices written either way, did-you-mean across sections, punctuation.

mod common;

use common::{assert_usage_error, tempdir, write, wrnc};

const QUICKSTART: &str = "specs/quickstart.yaml";

/// A small spec in the generic `layers:` form.
const LAYERS: &str = "\
model:
  input: [1, 8, 8]
  classes: 10
  layers:
  - op: conv
    out: 2
  - op: global_avg_pool
  - op: flatten
  - op: linear
data:
  dataset: digits
";

/// The one error line of a run (stderr without its trailing newline).
fn error_line(r: &common::Run) -> &str {
    r.stderr.trim_end()
}

#[test]
fn an_unknown_key_is_named_once() {
    let dir = tempdir();
    let spec = write(dir.path(), "foo.yaml", "foo:\n  foo: 1\n");
    let r = wrnc(&["check", &spec]);
    assert_usage_error(&r, &[]);
    assert_eq!(
        error_line(&r),
        format!(
            "error: {spec}:1:1: foo: unknown key `foo`. Valid keys here: `name`, `model`, \
             `data`, `train` or `export`"
        )
    );
    let r = wrnc(&["check", QUICKSTART, "--set", "foo.foo=1"]);
    assert_usage_error(&r, &["error: --set foo.foo=1: foo: unknown key `foo`."]);
    assert!(!r.stderr.contains("foo.foo:"), "{}", r.stderr);
}

#[test]
fn enum_and_key_errors_are_punctuated() {
    let r = wrnc(&["check", QUICKSTART, "--set", "train.schedule.kind=foo"]);
    assert_usage_error(
        &r,
        &[
            "train.schedule.kind: `foo` is not a valid value. Valid values: `multistep`, \
           `cosine` or `constant`",
        ],
    );
    let r = wrnc(&["check", QUICKSTART, "--set", "data.normalize=meanstd"]);
    assert_usage_error(
        &r,
        &["`meanstd` is not a valid value; did you mean `mean_std`? Valid values:"],
    );
}

#[test]
fn type_errors_speak_words_not_rust() {
    let cases: &[(&str, &str)] = &[
        (
            "train.epochs=abc",
            "train.epochs: expected a whole number (0, 1, 2, ...), got the text \"abc\"",
        ),
        (
            "train.epochs=-1",
            "train.epochs: expected a whole number (0, 1, 2, ...), got the number `-1`",
        ),
        (
            "model.wrn.dropout=x",
            "model.wrn.dropout: expected a number, got the text \"x\"",
        ),
        (
            "model.wrn=3",
            "model.wrn: expected a mapping (`key: value` entries), got the number `3`",
        ),
        (
            "train.schedule=cosine",
            "train.schedule: expected a mapping with a `kind:` key, got the text \"cosine\"",
        ),
        (
            "model.wrn.shortcut=3",
            "model.wrn.shortcut: expected one of `preact` or `input`, got the number `3`",
        ),
        (
            "train.optimizer.nesterov=3",
            "train.optimizer.nesterov: expected `true` or `false`, got the number `3`",
        ),
        ("name=[1]", "name: expected text, got a list"),
        (
            "train.seed=99999999999999999999999",
            "the number 99999999999999999999999 is too large (at most 18446744073709551615",
        ),
    ];
    for (set, message) in cases {
        let r = wrnc(&["check", QUICKSTART, "--set", set]);
        assert_usage_error(&r, &[&format!("error: --set {set}: "), message]);
        for rust in [
            "usize", "f64", "struct ", "enum ", "u128", "Value::", "Some(",
        ] {
            assert!(!r.stderr.contains(rust), "{set}: `{rust}` in {}", r.stderr);
        }
    }
}

#[test]
fn keys_that_are_not_names_are_reported_at_their_line() {
    let dir = tempdir();
    let cases = [
        (
            "model:\n  wrn: {depth: 10, width: 1}\n  1: x\n",
            ":3:3: model:",
            "the number `1`",
        ),
        (
            "model:\n  wrn: {depth: 10, width: 1}\n  [a]: b\n",
            ":3:3: model:",
            "a list",
        ),
        (
            "train:\n  true: c\nmodel:\n  wrn: {depth: 10}\n",
            ":2:3: train:",
            "the boolean `true`",
        ),
        ("name: x\n7: y\n", ":2:1: (top level):", "the number `7`"),
    ];
    for (i, (yaml, at, what)) in cases.iter().enumerate() {
        let spec = write(dir.path(), &format!("k{i}.yaml"), yaml);
        let r = wrnc(&["check", &spec]);
        assert_usage_error(
            &r,
            &[&format!(
                "{spec}{at} a key must be a name (text such as `epochs`), not {what}"
            )],
        );
        assert!(!r.stderr.contains('?'), "{}", r.stderr);
    }
}

#[test]
fn set_reaches_list_items_by_dotted_index_too() {
    let dir = tempdir();
    let spec = write(dir.path(), "net.yaml", LAYERS);
    for set in ["model.layers.0.out=32", "model.layers[0].out=32"] {
        let r = wrnc(&["check", &spec, "--set", set]);
        assert_eq!(r.code, 0, "{set}: {}", r.stderr);
        assert!(r.stdout.contains("out: 32"), "{set}: {}", r.stdout);
    }
    // An error in the value names the `--set` argument, not a line of the file.
    let r = wrnc(&["check", &spec, "--set", "model.layers.0.out=x"]);
    assert_usage_error(
        &r,
        &["error: --set model.layers.0.out=x: model.layers[0].out: expected a whole number"],
    );
    assert!(!r.stderr.contains("net.yaml"), "{}", r.stderr);
    let r = wrnc(&["check", QUICKSTART, "--set", "model.layers.0.out=3"]);
    assert_usage_error(
        &r,
        &["cannot use index [0]: `model.layers` is not a list in this spec"],
    );
}

#[test]
fn unknown_keys_suggest_the_key_in_another_section() {
    let cases = [
        (
            "train.lr=0.1",
            "unknown key `lr`; did you mean `train.optimizer.lr`?",
        ),
        (
            "epochs=3",
            "unknown key `epochs`; did you mean `train.epochs`?",
        ),
        (
            "data.padding=2",
            "did you mean `data.augment.crop.padding`?",
        ),
        ("model.optimiser=1", "did you mean `train.optimizer`?"),
    ];
    for (set, hint) in cases {
        let r = wrnc(&["check", QUICKSTART, "--set", set]);
        assert_usage_error(&r, &[&format!("error: --set {set}: "), hint]);
    }
    let dir = tempdir();
    let spec = write(
        dir.path(),
        "lr.yaml",
        "model:\n  wrn: {depth: 10, width: 1}\ntrain:\n  lr: 0.1\n",
    );
    let r = wrnc(&["check", &spec]);
    assert_usage_error(
        &r,
        &[&format!(
            "{spec}:4:3: train.lr: unknown key `lr`; did you mean `train.optimizer.lr`?"
        )],
    );
}

#[test]
fn tiny_nets_print_their_flops_in_a_unit_that_shows_them() {
    let dir = tempdir();
    let spec = write(dir.path(), "net.yaml", LAYERS);
    let r = wrnc(&["summary", &spec]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // conv 2*9*64 + linear 2*10 ...: a few thousand FLOPs, not "0.000 GFLOP".
    assert!(
        r.stdout
            .contains("Forward FLOPs/image:              2,344  (2.344 kFLOP)"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("0.000 GFLOP"), "{}", r.stdout);
}

/// The `doc_string` of an ONNX file.
fn onnx_doc(path: &std::path::Path) -> String {
    let m = wrnc_onnx::read_model(&std::fs::read(path).unwrap()).unwrap();
    m.doc_string.unwrap_or_default()
}

#[test]
fn the_onnx_description_says_what_the_network_is_and_outputs_get_their_folder() {
    let dir = tempdir();
    let spec = write(dir.path(), "net.yaml", LAYERS);
    // Outputs in folders that do not exist yet: created.
    let w = dir.path().join("new/weights/w.safetensors");
    common::init(&spec, &w, &[]);
    let onnx = dir.path().join("out/deep/net.onnx");
    let r = common::export(&spec, &w, &onnx, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = onnx_doc(&onnx);
    assert!(
        doc.starts_with("net: network of 4 layers (1 convolution, 1 linear) exported by wrnc"),
        "{doc}"
    );
    assert!(!doc.contains("Wide Residual"), "{doc}");
    let dot = dir.path().join("dot/net.dot");
    let r = wrnc(&["graph", &spec, "-o", common::utf8(&dot)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::read_to_string(&dot)
        .unwrap()
        .starts_with("digraph"));

    // A WRN is named as one.
    let w = dir.path().join("q.safetensors");
    common::init(QUICKSTART, &w, &[]);
    let onnx = dir.path().join("q.onnx");
    let r = common::export(QUICKSTART, &w, &onnx, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        onnx_doc(&onnx).starts_with("quickstart: Wide Residual Network WRN-10-2 exported by"),
        "{}",
        onnx_doc(&onnx)
    );
}

#[test]
fn an_output_that_cannot_be_written_is_named_as_the_output() {
    let dir = tempdir();
    let spec = write(dir.path(), "net.yaml", LAYERS);
    let file = write(dir.path(), "plain-file", "x");
    let w = dir.path().join("w.safetensors");
    common::init(&spec, &w, &[]);
    let under_file = format!("{file}/sub/out");
    let cases: Vec<Vec<&str>> = vec![
        vec!["init", &spec, "-o", &under_file],
        vec![
            "export",
            &spec,
            "--weights",
            common::utf8(&w),
            "-o",
            &under_file,
        ],
        vec!["graph", &spec, "-o", &under_file],
    ];
    for args in cases {
        let r = wrnc(&args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!(
                "error: cannot write output {under_file}: cannot create"
            )),
            "{args:?}: {}",
            r.stderr
        );
    }
    let in_file = format!("{file}/out");
    let r = wrnc(&["init", &spec, "-o", &in_file]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "error: cannot write output {in_file}: {file} is a file, not a folder"
        )),
        "{}",
        r.stderr
    );
}

#[test]
fn an_offline_fetch_explains_the_archive_option() {
    let dir = tempdir();
    let data = dir.path().join("data");
    // A proxy that refuses every connection: the download fails at once, network or not.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wrnc"))
        .args(["data", "fetch", "cifar10", "--dir", common::utf8(&data)])
        .env("HTTPS_PROXY", "http://127.0.0.1:1")
        .env("ALL_PROXY", "http://127.0.0.1:1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "install that file here with `wrnc data fetch cifar10 --archive \
             cifar-10-binary.tar.gz --dir {}`",
            data.display()
        )),
        "{stderr}"
    );
}

#[test]
fn a_missing_cifar_folder_lists_its_files_once() {
    let dir = tempdir();
    let root = dir.path().join("nothing-here");
    let run = dir.path().join("run");
    let r = common::train(
        "specs/wrn-16-4.yaml",
        &run,
        &["--set", &format!("data.root={}", root.display())],
    );
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "dataset directory {} has none of the cifar10 files (data_batch_1.bin, \
             data_batch_2.bin, data_batch_3.bin, data_batch_4.bin, data_batch_5.bin, \
             test_batch.bin)",
            root.display()
        )),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr.matches("test_batch.bin").count(),
        1,
        "{}",
        r.stderr
    );
}

#[test]
fn a_run_file_without_a_commit_is_described_in_words() {
    let dir = tempdir();
    let run = dir.path().join("run");
    // Killed at the second state.json write: epoch 1 committed, the run resumable.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wrnc"))
        .args(["train", QUICKSTART, "--out", common::utf8(&run), "--quiet"])
        .args(["--set", "train.epochs=2"])
        .env("WRNC_FAULT", "kill:state.json:2")
        .current_dir(common::root())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    // last.safetensors replaced by weights that no run wrote.
    common::init(QUICKSTART, &run.join("last.safetensors"), &[]);
    let r = wrnc(&["train", "--resume", "--out", common::utf8(&run)]);
    assert_usage_error(
        &r,
        &["last.safetensors records no commit, but state.json records commit `epoch1-"],
    );
    assert!(
        !r.stderr.contains("None") && !r.stderr.contains("Some("),
        "{}",
        r.stderr
    );
}

#[test]
fn set_values_are_blamed_for_their_own_errors() {
    let dir = tempdir();
    let spec = write(dir.path(), "net.yaml", LAYERS);
    // A list item set by `--set` makes the whole list wrong: the `--set` is named.
    let r = wrnc(&["check", &spec, "--set", "model.input[0]=3"]);
    assert_usage_error(&r, &["error: --set model.input[0]=3: model.input: "]);
    assert!(!r.stderr.contains("net.yaml"), "{}", r.stderr);
    // A key that is not a name inside a `--set` value.
    let r = wrnc(&["check", QUICKSTART, "--set", "train={1: x}"]);
    assert_usage_error(
        &r,
        &[
            "error: --set train={1: x}: train: a key must be a name (text such as `epochs`), \
           not the number `1`",
        ],
    );
}

#[test]
fn a_file_that_is_not_weights_is_said_to_be_so() {
    let dir = tempdir();
    let garbage = write(
        dir.path(),
        "garbage.bin",
        "this is not a weights file at all",
    );
    let r = wrnc(&["eval", QUICKSTART, "--weights", &garbage]);
    assert_usage_error(
        &r,
        &[&format!(
            "error: {garbage}: not a valid safetensors weights file: header too large: the \
             file does not start as safetensors weights do"
        )],
    );
    // (An ONNX file given as weights: tests/hostile_deploy.rs.)
}
