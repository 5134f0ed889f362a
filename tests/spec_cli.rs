//! End-to-end tests of the spec front end: check, summary, graph, expand, --set, validation.

mod common;
use common::*;

fn trainable(args: &[&str]) -> u64 {
    let mut a = vec!["summary", "--json"];
    a.extend_from_slice(args);
    let r = wrnc(&a);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v["params"]["trainable"].as_u64().unwrap()
}

#[test]
fn paper_parameter_counts() {
    // Table values from the paper / official code (CIFAR-10 unless noted).
    let cases: &[(&str, &[&str], u64)] = &[
        ("specs/wrn-28-10.yaml", &[], 36_479_194),
        ("specs/wrn-28-10-dropout.yaml", &[], 36_479_194),
        ("specs/wrn-28-10-c100.yaml", &[], 36_536_884),
        ("specs/wrn-40-4.yaml", &[], 8_949_210),
        ("specs/wrn-16-8.yaml", &[], 10_961_370),
        ("specs/wrn-16-4.yaml", &[], 2_748_890),
        (
            "specs/wrn-16-4.yaml",
            &["--set", "model.wrn.depth=40", "--set", "model.wrn.width=1"],
            563_930,
        ),
        (
            "specs/wrn-16-4.yaml",
            &["--set", "model.wrn.depth=10", "--set", "model.wrn.width=1"],
            77_850,
        ),
    ];
    for (spec, extra, want) in cases {
        for shortcut in ["preact", "input"] {
            let set = format!("model.wrn.shortcut={shortcut}");
            let mut args = vec![*spec, "--set", &set];
            args.extend_from_slice(extra);
            assert_eq!(trainable(&args), *want, "{spec} {extra:?} {shortcut}");
        }
    }
}

#[test]
fn wrn_50_2_has_torchvisions_parameter_count_and_names() {
    // torchvision.models.wide_resnet50_2(): sum(p.numel() for p in m.parameters()).
    let r = wrnc(&["summary", "--json", "specs/wrn-50-2-imagenet.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["params"]["trainable"], 68_883_240);
    // BN running statistics: 2 per channel of the 53 BNs (34,112 channels; torchvision also
    // has one num_batches_tracked counter per BN, which wrnc does not keep).
    assert_eq!(v["params"]["non_trainable"], 2 * 34_112);
    assert_eq!(v["input_shape"], serde_json::json!([3, 224, 224]));
    let layers = v["layers"].as_array().unwrap();
    let find = |name: &str| {
        layers
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("no layer `{name}`"))
    };
    // torchvision's module names and shapes at 224x224
    assert_eq!(
        find("conv1")["output_shape"],
        serde_json::json!([64, 112, 112])
    );
    assert_eq!(
        find("maxpool")["output_shape"],
        serde_json::json!([64, 56, 56])
    );
    assert_eq!(find("layer1.0.conv2")["params"], 128 * 128 * 9);
    assert_eq!(find("layer1.0.downsample.0")["params"], 64 * 256);
    assert_eq!(
        find("layer2.0.conv2")["output_shape"],
        serde_json::json!([256, 28, 28])
    );
    assert_eq!(
        find("layer4.2.conv3")["output_shape"],
        serde_json::json!([2048, 7, 7])
    );
    assert_eq!(find("fc")["params"], 2048 * 1000 + 1000);
    let convs = layers.iter().filter(|l| l["op"] == "conv").count();
    assert_eq!(convs, 53, "49 block convs + 4 shortcuts + the stem");
    assert!(!layers.iter().any(|l| l["name"] == "layer1.1.downsample.0"));
    // 11.4 G multiply-adds at 224x224, as torchvision documents (2 FLOPs each)
    let flops = v["forward_flops"].as_u64().unwrap();
    assert!((22_700_000_000..22_900_000_000).contains(&flops), "{flops}");
    let sizes = v["forward_flops_at_sizes"].as_array().unwrap();
    let at = |hw: usize| {
        sizes
            .iter()
            .find(|s| s["input_shape"] == serde_json::json!([3, hw, hw]))
            .unwrap()["forward_flops"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(at(224), flops);
    assert!(at(128) < at(160) && at(160) < at(224) && at(224) < at(320));

    let r = wrnc(&["summary", "specs/wrn-50-2-imagenet.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("Trainable params:"));
    assert!(line.unwrap().ends_with(" 68,883,240"), "{}", r.stdout);
    assert!(
        r.stdout.contains("Forward cost at common input sizes"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("[3, 160, 160]"), "{}", r.stdout);
    // the other forms keep their summary: no cost table
    let r = wrnc(&["summary", "specs/wrn-16-4.yaml"]);
    assert!(!r.stdout.contains("common input sizes"), "{}", r.stdout);
}

#[test]
fn wrn_imagenet_form_runs_at_any_size_with_the_same_parameters() {
    for (hw, pooled) in [(64, 16), (97, 25), (32, 8)] {
        let input = format!("model.input=[3, {hw}, {hw}]");
        let args = ["specs/wrn-50-2-imagenet.yaml", "--set", &input];
        assert_eq!(trainable(&args), 68_883_240, "{hw}");
        let r = wrnc(&["summary", "--json", args[0], args[1], args[2]]);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let pool = v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == "maxpool")
            .unwrap()
            .clone();
        assert_eq!(
            pool["output_shape"],
            serde_json::json!([64, pooled, pooled])
        );
    }
    // WRN-101-2: torchvision's wide_resnet101_2 has 126,886,696 parameters
    let args = [
        "specs/wrn-50-2-imagenet.yaml",
        "--set",
        "model.wrn.depth=101",
    ];
    assert_eq!(trainable(&args), 126_886_696);
}

#[test]
fn summary_json_has_the_documented_shape() {
    let r = wrnc(&["summary", "--json", "specs/wrn-16-4.yaml"]);
    assert_eq!(r.code, 0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["name"], "wrn-16-4");
    let p = &v["params"];
    assert_eq!(
        p["total"].as_u64().unwrap(),
        p["trainable"].as_u64().unwrap() + p["non_trainable"].as_u64().unwrap()
    );
    // BN running stats: 2 per channel of every BN. WRN-16-4: 7 BNs in groups + final.
    assert_eq!(p["non_trainable"].as_u64().unwrap(), 3616);
    let layers = v["layers"].as_array().unwrap();
    let first = &layers[0];
    assert_eq!(first["name"], "conv0");
    assert_eq!(first["op"], "conv");
    assert_eq!(first["output_shape"], serde_json::json!([16, 32, 32]));
    assert_eq!(first["params"], 3 * 16 * 9);
    let fc = layers.iter().find(|l| l["name"] == "fc").unwrap();
    assert_eq!(fc["params"], 256 * 10 + 10);
    assert_eq!(fc["output_shape"], serde_json::json!([10]));
    let sum: u64 = layers.iter().map(|l| l["params"].as_u64().unwrap()).sum();
    assert_eq!(sum, p["total"].as_u64().unwrap());
}

#[test]
fn summary_table_shows_totals() {
    let r = wrnc(&["summary", "specs/wrn-28-10.yaml"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("Trainable params:"));
    assert!(r.stdout.contains("36,479,194"));
    assert!(r.stdout.contains("group2.block3.conv1"));
    assert!(r.stdout.contains("[640, 8, 8]"));
}

#[test]
fn check_prints_resolved_defaults() {
    let dir = tempdir();
    let spec = write(
        dir.path(),
        "tiny.yaml",
        "model:\n  wrn: {depth: 10, width: 1}\n",
    );
    let r = wrnc(&["check", &spec]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_yaml::Value = serde_yaml::from_str(&r.stdout).unwrap();
    assert_eq!(v["name"].as_str(), Some("tiny"));
    assert_eq!(v["model"]["classes"].as_u64(), Some(10));
    assert_eq!(v["model"]["wrn"]["shortcut"].as_str(), Some("preact"));
    assert_eq!(
        v["data"]["root"].as_str(),
        Some("data/cifar-10-batches-bin")
    );
    assert_eq!(v["train"]["optimizer"]["nesterov"].as_bool(), Some(true));
    assert_eq!(
        v["train"]["optimizer"]["weight_decay"].as_f64(),
        Some(0.0005)
    );
    assert_eq!(v["train"]["schedule"]["gamma"].as_f64(), Some(0.2));
    assert_eq!(v["train"]["batch_size"].as_u64(), Some(128));
    assert_eq!(v["train"]["epochs"].as_u64(), Some(200));
    assert_eq!(
        v["data"]["augment"]["crop"]["mode"].as_str(),
        Some("reflect")
    );
    assert_eq!(v["export"]["opset"].as_u64(), Some(17));
    // The resolved spec is itself a valid spec giving the same network.
    let again = write(dir.path(), "again.yaml", &r.stdout);
    let r2 = wrnc(&["check", &again]);
    assert_eq!(r2.code, 0, "{}", r2.stderr);
}

#[test]
fn expand_round_trips_to_the_same_summary() {
    let dir = tempdir();
    for spec in [
        "specs/wrn-16-4.yaml",
        "specs/wrn-28-10-dropout.yaml",
        "specs/quickstart.yaml",
    ] {
        for shortcut in ["preact", "input"] {
            let set = format!("model.wrn.shortcut={shortcut}");
            let e = wrnc(&["expand", spec, "--set", &set]);
            assert_eq!(e.code, 0, "{}", e.stderr);
            assert!(e.stdout.contains("layers:"));
            assert!(!e.stdout.contains("wrn:"));
            let path = write(dir.path(), "expanded.yaml", &e.stdout);
            let a = wrnc(&["summary", "--json", spec, "--set", &set]);
            let b = wrnc(&["summary", "--json", &path]);
            assert_eq!(b.code, 0, "{}", b.stderr);
            assert_eq!(a.stdout, b.stdout, "{spec} {shortcut}");
        }
    }
}

#[test]
fn shortcut_variants_differ_in_where_the_1x1_conv_reads() {
    let pre = wrnc(&["expand", "specs/wrn-16-4.yaml"]).stdout;
    let raw = wrnc(&[
        "expand",
        "specs/wrn-16-4.yaml",
        "--set",
        "model.wrn.shortcut=input",
    ])
    .stdout;
    let after = |s: &str| {
        let i = s.find("name: group1.block0.convdim").unwrap();
        s[i..i + 200].to_string()
    };
    assert!(
        after(&pre).contains("from: group1.block0.relu0"),
        "{}",
        after(&pre)
    );
    assert!(
        after(&raw).contains("from: group0.block1.add"),
        "{}",
        after(&raw)
    );
}

#[test]
fn graph_writes_dot() {
    let dir = tempdir();
    let out = dir.path().join("g.dot");
    let r = wrnc(&["graph", "specs/wrn-16-4.yaml", "-o", out.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let dot = std::fs::read_to_string(out).unwrap();
    assert!(dot.starts_with("digraph"));
    assert!(dot.trim_end().ends_with('}'));
    // Every add has two incoming edges.
    let adds = dot.matches("\\nadd\\n").count();
    assert_eq!(adds, 6);
    let stdout = wrnc(&["graph", "specs/wrn-16-4.yaml"]).stdout;
    assert_eq!(stdout, dot);
}

#[test]
fn set_overrides_values_and_rejects_unknown_paths() {
    let r = wrnc(&[
        "check",
        "specs/wrn-16-4.yaml",
        "--set",
        "model.input=[3,32,32]",
        "--set",
        "train.epochs=7",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("epochs: 7"));
    let r = wrnc(&["check", "specs/wrn-16-4.yaml", "--set", "train.epoch=7"]);
    assert_usage_error(
        &r,
        &[
            "--set train.epoch=7",
            "unknown key `epoch`",
            "did you mean `epochs`",
        ],
    );
    let r = wrnc(&["check", "specs/wrn-16-4.yaml", "--set", "train.epochs"]);
    assert_usage_error(&r, &["KEY.PATH=VALUE"]);
    let r = wrnc(&["check", "specs/wrn-16-4.yaml", "--set", "train.epochs=[1"]);
    assert_usage_error(&r, &["not valid YAML"]);
}

const LAYERS: &str = "\
model:
  input: [1, 8, 8]
  classes: 10
  layers:
    - {op: conv, name: stem, out: 8}
    - {op: batch_norm, name: bn}
    - {op: relu, name: act}
    - {op: conv, name: c1, out: 8}
    - {op: add, name: sum, from: [c1, stem]}
    - {op: global_avg_pool, name: pool}
    - {op: flatten, name: flat}
    - {op: linear, name: fc, out: 10}
    - {op: softmax, name: prob}
data:
  dataset: digits
";

#[test]
fn generic_layers_form_builds_a_residual_net() {
    let dir = tempdir();
    let spec = write(dir.path(), "net.yaml", LAYERS);
    let r = wrnc(&["summary", "--json", &spec]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    // stem 1*8*9, bn 4*8 (2 trainable), c1 8*8*9, fc 8*10+10.
    assert_eq!(v["params"]["trainable"], 72 + 16 + 576 + 90);
    assert_eq!(v["params"]["non_trainable"], 16);
}

#[test]
fn generic_layers_take_max_pool() {
    let dir = tempdir();
    let yaml = LAYERS.replace(
        "{op: global_avg_pool, name: pool}",
        "{op: max_pool, name: mp, kernel: 3, stride: 2, padding: 1}\n    - {op: max_pool, \
         name: pool, kernel: 4}",
    );
    let spec = write(dir.path(), "net.yaml", &yaml);
    let r = wrnc(&["summary", "--json", &spec]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers[5]["op"], "max_pool");
    assert_eq!(layers[5]["output_shape"], serde_json::json!([8, 4, 4]));
    assert_eq!(layers[6]["output_shape"], serde_json::json!([8, 1, 1]));
    let r = wrnc(&["graph", &spec]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("max_pool 3x3/2 p1"), "{}", r.stdout);
}

struct Case {
    name: &'static str,
    yaml: String,
    needles: &'static [&'static str],
}

fn wrn_spec(wrn: &str, extra: &str) -> String {
    format!("model:\n  wrn: {wrn}\n{extra}")
}

#[test]
fn validation_errors_name_file_field_line_and_fix() {
    let cases = vec![
        Case {
            name: "unknown key",
            yaml: "model:\n  wrn:\n    detph: 28\n".into(),
            needles: &[
                ":3:5:",
                "model.wrn.detph",
                "unknown key `detph`",
                "did you mean `depth`",
            ],
        },
        Case {
            name: "unknown top-level section",
            yaml: "model:\n  wrn: {depth: 10}\ntrian:\n  epochs: 3\n".into(),
            needles: &[":3:1:", "unknown key `trian`", "did you mean `train`"],
        },
        Case {
            name: "syntax error",
            yaml: "model:\n  wrn: {depth: 16, width: [}\n".into(),
            needles: &[":2:", "YAML syntax error"],
        },
        Case {
            name: "type error",
            yaml: wrn_spec("{depth: 16, width: four}", ""),
            needles: &[":2:", "model.wrn.width", "expected a whole number"],
        },
        Case {
            name: "depth not 6N+4",
            yaml: wrn_spec("{depth: 27, width: 1}", ""),
            needles: &[":2:", "model.wrn.depth", "6N+4", "22 or 28"],
        },
        Case {
            name: "width < 1",
            yaml: wrn_spec("{depth: 16, width: 0}", ""),
            needles: &["model.wrn.width", "at least 1"],
        },
        Case {
            name: "dropout outside [0,1)",
            yaml: wrn_spec("{depth: 16, width: 1, dropout: 1.0}", ""),
            needles: &["model.wrn.dropout", "[0, 1)"],
        },
        Case {
            name: "classes < 2",
            yaml: wrn_spec("{depth: 16, width: 1}", "  classes: 1\n"),
            needles: &["model.classes", "at least 2"],
        },
        Case {
            name: "input too small",
            yaml: "model:\n  input: [3, 3, 3]\n  classes: 10\n  wrn: {depth: 10, width: 1}\n"
                .into(),
            needles: &["model.input"],
        },
        Case {
            name: "absurd size",
            yaml: wrn_spec("{depth: 1000, width: 1000}", ""),
            needles: &["model.wrn", "parameters", "TB", "refuses"],
        },
        Case {
            name: "both model forms",
            yaml: "model:\n  wrn: {depth: 10}\n  layers: []\n".into(),
            needles: &["model", "not both"],
        },
        Case {
            name: "unknown enum value",
            yaml: wrn_spec("{depth: 10, width: 1, shortcut: raw}", ""),
            needles: &["model.wrn.shortcut", "`preact` or `input`"],
        },
        Case {
            name: "bottleneck with the CIFAR stem",
            yaml: wrn_spec("{depth: 50, width: 2, block: bottleneck}", ""),
            needles: &["model.wrn.stem", "needs `stem: imagenet`"],
        },
        Case {
            name: "ImageNet stem with basic blocks",
            yaml: wrn_spec("{depth: 28, width: 2,\n        stem: imagenet}", ""),
            needles: &[":3:9:", "model.wrn.stem", "goes with `block: bottleneck`"],
        },
        Case {
            name: "bottleneck depth",
            yaml: wrn_spec(
                "{depth: 28, width: 2, block: bottleneck, stem: imagenet}",
                "",
            ),
            needles: &[
                "model.wrn.depth",
                "not a bottleneck depth",
                "50, 101 or 152",
            ],
        },
        Case {
            name: "bottleneck dropout",
            yaml: wrn_spec(
                "{depth: 50, block: bottleneck, stem: imagenet, dropout: 0.3}",
                "",
            ),
            needles: &["model.wrn.dropout", "basic blocks only", "use 0"],
        },
        Case {
            name: "bottleneck shortcut variant",
            yaml: wrn_spec(
                "{depth: 50, block: bottleneck, stem: imagenet, shortcut: input}",
                "",
            ),
            needles: &["model.wrn.shortcut", "basic (pre-activation) blocks only"],
        },
        Case {
            name: "unknown block",
            yaml: wrn_spec("{depth: 50, block: bottlenek}", ""),
            needles: &["model.wrn.block", "`basic` or `bottleneck`"],
        },
        Case {
            name: "bad opset",
            yaml: wrn_spec("{depth: 10, width: 1}", "export:\n  opset: 9\n"),
            needles: &[":4:3:", "export.opset", "13 to 17"],
        },
        Case {
            name: "non-increasing milestones",
            yaml: wrn_spec(
                "{depth: 10, width: 1}",
                "train:\n  schedule: {kind: multistep, milestones: [5, 3]}\n",
            ),
            needles: &["train.schedule.milestones", "increasing"],
        },
        Case {
            name: "SAM's rho with SGD",
            yaml: wrn_spec(
                "{depth: 10, width: 1}",
                "train:\n  optimizer:\n    lr: 0.1\n    rho: 0.1\n",
            ),
            needles: &[":6:5:", "train.optimizer.rho", "kind sam", "kind is sgd"],
        },
        Case {
            name: "AdamW's betas out of range",
            yaml: wrn_spec(
                "{depth: 10, width: 1}",
                "train:\n  optimizer: {kind: adamw, betas: [0.9, 1.0]}\n",
            ),
            needles: &["train.optimizer.betas[1]", "[0, 1)"],
        },
        Case {
            name: "label smoothing above 1",
            yaml: wrn_spec("{depth: 10, width: 1}", "train:\n  label_smoothing: 1.5\n"),
            needles: &[":4:3:", "train.label_smoothing", "[0, 1]"],
        },
        Case {
            name: "EMA decay 1",
            yaml: wrn_spec("{depth: 10, width: 1}", "train:\n  ema: {decay: 1.0}\n"),
            needles: &["train.ema.decay", "[0, 1)"],
        },
        Case {
            name: "EMA export without EMA",
            yaml: wrn_spec("{depth: 10, width: 1}", "export:\n  weights: ema\n"),
            needles: &[":4:3:", "export.weights", "train.ema is off"],
        },
        Case {
            name: "unknown optimiser kind",
            yaml: wrn_spec(
                "{depth: 10, width: 1}",
                "train:\n  optimizer: {kind: adam}\n",
            ),
            needles: &["train.optimizer.kind", "adamw"],
        },
    ];
    let dir = tempdir();
    for c in cases {
        let path = write(dir.path(), "case.yaml", &c.yaml);
        let r = wrnc(&["check", &path]);
        let mut needles = vec![path.as_str()];
        needles.extend_from_slice(c.needles);
        assert_eq!(r.code, 2, "case `{}`: {}", c.name, r.stderr);
        assert_usage_error(&r, &needles);
    }
}

#[test]
fn layer_errors_point_at_the_layer() {
    let dir = tempdir();
    let cases: Vec<(String, &[&str])> = vec![
        (
            LAYERS.replace("from: [c1, stem]", "from: [c1, stme]"),
            &[
                "model.layers[4].from",
                "no layer named `stme`",
                "did you mean `stem`",
            ],
        ),
        (
            LAYERS.replace("from: [c1, stem]", "from: [c1, pool]"),
            &["model.layers[4].from", "defined later", "layers[5]"],
        ),
        (
            LAYERS.replace(
                "{op: conv, name: c1, out: 8}",
                "{op: conv, name: c1, out: 4}",
            ),
            &["model.layers[4]", "same shape", "[4, 8, 8]", "[8, 8, 8]"],
        ),
        (
            LAYERS.replace("{op: relu, name: act}", "{op: relu, name: act, out: 3}"),
            &["model.layers[2]", "`out` does not apply to op `relu`"],
        ),
        (
            LAYERS.replace(
                "{op: linear, name: fc, out: 10}",
                "{op: linear, name: fc, out: 7}",
            ),
            &["model.layers", "outputs 7", "model.classes is 10"],
        ),
        (
            LAYERS.replace("op: softmax", "op: softmx"),
            &["model.layers[8].op", "did you mean `softmax`"],
        ),
        (
            LAYERS.replace(
                "{op: global_avg_pool, name: pool}",
                "{op: max_pool, name: pool, kernel: 3, padding: 2}",
            ),
            &[
                ":10:5:",
                "model.layers[5]",
                "padding may be at most half the kernel",
            ],
        ),
        (
            LAYERS.replace(
                "{op: global_avg_pool, name: pool}",
                "{op: max_pool, name: pool, kernel: 0}",
            ),
            &[":10:", "model.layers[5].kernel", "at least 1"],
        ),
        (
            LAYERS.replace(
                "{op: global_avg_pool, name: pool}",
                "{op: max_pool, name: pool, out: 4}",
            ),
            &["model.layers[5]", "`out` does not apply to op `max_pool`"],
        ),
    ];
    for (yaml, needles) in cases {
        let path = write(dir.path(), "layers.yaml", &yaml);
        let r = wrnc(&["check", &path]);
        assert_usage_error(&r, needles);
    }
}

#[test]
fn missing_file_and_bad_usage_exit_2() {
    let r = wrnc(&["check", "no/such/spec.yaml"]);
    assert_usage_error(&r, &["no/such/spec.yaml", "cannot read"]);
    let r = wrnc(&["summary"]);
    assert_eq!(r.code, 2);
    let r = wrnc(&["frobnicate"]);
    assert_eq!(r.code, 2);
}

/// Every spec in specs/ passes `wrnc check`, and where its comments state the parameter count
/// ("# 36,479,194 trainable parameters") `wrnc summary` computes that number.
#[test]
fn every_spec_in_specs_passes_check_and_has_the_parameter_count_it_states() {
    let mut specs: Vec<std::path::PathBuf> = std::fs::read_dir(root().join("specs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    specs.sort();
    assert!(specs.len() >= 12, "{specs:?}");
    let mut stated = 0;
    for path in &specs {
        let spec = format!("specs/{}", path.file_name().unwrap().to_string_lossy());
        let r = wrnc(&["check", &spec]);
        assert_eq!(r.code, 0, "{spec}: {}", r.stderr);
        let text = std::fs::read_to_string(path).unwrap();
        let count = text.lines().find_map(|l| {
            let rest = l.strip_prefix("# ")?;
            let (n, tail) = rest.split_once(' ')?;
            tail.starts_with("trainable parameters")
                .then(|| n.replace(',', "").parse::<u64>().ok())
                .flatten()
        });
        if let Some(n) = count {
            assert_eq!(trainable(&[&spec]), n, "{spec}");
            stated += 1;
        }
    }
    assert!(
        stated >= 8,
        "only {stated} specs state their parameter count"
    );
}
