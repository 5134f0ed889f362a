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
