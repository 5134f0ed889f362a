//! End-to-end tests of mixup, CutMix (`data.augment.mixup`, `data.augment.cutmix`) and
//! `train.freeze`: their validation messages with the YAML line, short training runs and the
//! preview grid.

mod common;
use common::*;

/// The quick start with `extra` appended to its `data.augment` and `train` sections.
fn spec(augment: &str, train: &str) -> String {
    let base = std::fs::read_to_string(root().join("specs/quickstart.yaml")).unwrap();
    let base = base.replace("    flip: false\n", &format!("    flip: false\n{augment}"));
    format!("{base}{train}")
}

#[test]
fn bad_mixing_and_freeze_settings_name_their_line() {
    let dir = tempdir();
    let check = |name: &str, text: String| wrnc(&["check", &write(dir.path(), name, &text)]);
    let line = |text: &str, key: &str| text.lines().position(|l| l.contains(key)).unwrap() + 1;
    let text = spec("    mixup: {alpha: 0}\n", "");
    let r = check("a.yaml", text.clone());
    let at = format!("a.yaml:{}", line(&text, "mixup"));
    assert_usage_error(
        &r,
        &[&at, "data.augment.mixup.alpha", "must be > 0", "got 0"],
    );
    let text = spec("    cutmix: {alpha: 1.0, prob: 1.5}\n", "");
    let r = check("b.yaml", text.clone());
    let at = format!("b.yaml:{}", line(&text, "cutmix"));
    assert_usage_error(&r, &[&at, "data.augment.cutmix.prob", "in [0, 1]", "1.5"]);
    let r = check(
        "c.yaml",
        spec("    mixup: {alpha: 0.2, switch_prob: 0.3}\n", ""),
    );
    assert_usage_error(&r, &["data.augment.mixup.switch_prob", "needs both on"]);
    let text = spec(
        "    mixup: {alpha: 0.2, prob: 0.5}\n    cutmix: {alpha: 1.0, prob: 0.6}\n",
        "",
    );
    let r = check("d.yaml", text);
    assert_usage_error(&r, &["data.augment.cutmix.prob", "share one prob"]);
    let r = check("e.yaml", spec("    mixup: {alpha: 0.2, beta: 1}\n", ""));
    assert_usage_error(&r, &["beta"]);
    // The same value in both blocks is fine.
    let text = spec(
        "    mixup: {alpha: 0.2, prob: 0.5}\n    cutmix: {alpha: 1.0, prob: 0.5, switch_prob: 0.2}\n",
        "",
    );
    let r = check("f.yaml", text);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // A freeze pattern that matches nothing: its line and the closest names.
    let text = spec("", "  freeze: ['conv0.*', 'grup0.*']\n");
    let r = check("g.yaml", text.clone());
    let at = format!("g.yaml:{}", line(&text, "freeze"));
    assert_usage_error(
        &r,
        &[
            &at,
            "train.freeze[1]",
            "`grup0.*` matches no trainable parameter",
            "`group0.*`",
        ],
    );
    let r = check("h.yaml", spec("", "  freeze: ['fc.[']\n"));
    assert_usage_error(&r, &["train.freeze[0]", "not a valid glob pattern"]);
    // BN running statistics are not trainable: a pattern that matches only them is refused.
    let r = check("i.yaml", spec("", "  freeze: ['*.running_mean']\n"));
    assert_usage_error(&r, &["train.freeze[0]", "no trainable parameter"]);
}

#[test]
fn mixed_and_frozen_runs_train() {
    let dir = tempdir();
    let run = |name: &str, text: String| {
        let path = write(dir.path(), &format!("{name}.yaml"), &text);
        let out = dir.path().join(name);
        let r = wrnc(&[
            "train",
            &path,
            "--set",
            "train.epochs=1",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        (r, std::fs::read(out.join("last.safetensors")).unwrap())
    };
    let (_, plain) = run("plain", spec("", ""));
    let (_, mixed) = run(
        "mixed",
        spec("    mixup: {alpha: 0.4}\n    cutmix: {alpha: 1.0}\n", ""),
    );
    assert_ne!(mixed, plain);
    let (r, frozen) = run("frozen", spec("", "  freeze: ['conv0.*', 'group0.*']\n"));
    assert_ne!(frozen, plain);
    assert!(
        r.stderr.contains("train.freeze: ") && r.stderr.contains("trainable tensors frozen"),
        "{}",
        r.stderr
    );
}

#[test]
fn data_preview_shows_mixed_images() {
    let dir = tempdir();
    let preview = |name: &str, extra: &str| -> image::GrayImage {
        let path = write(dir.path(), &format!("{name}.yaml"), &spec(extra, ""));
        let out = dir.path().join(format!("{name}.png"));
        let r = wrnc(&[
            "data",
            "preview",
            &path,
            "-o",
            out.to_str().unwrap(),
            "--count",
            "12",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        image::open(&out).unwrap().to_luma8()
    };
    let plain = preview("plain", "");
    let mixed = preview("mixup", "    mixup: {alpha: 1.0}\n");
    let cut = preview("cutmix", "    cutmix: {alpha: 1.0}\n");
    assert_eq!(mixed.dimensions(), plain.dimensions());
    assert_ne!(mixed.as_raw(), plain.as_raw());
    assert_ne!(cut.as_raw(), plain.as_raw());
    assert_ne!(cut.as_raw(), mixed.as_raw());
}
