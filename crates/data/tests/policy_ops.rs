//! The augmentation policies' ops and tables against torchvision: `fixtures/augment_ops.*`
//! hold torchvision 0.29's output (`transforms.v2`, uint8 tensors, nearest interpolation) of
//! every op at a few magnitudes on a fixed RGB and grey image, and the tables its source
//! defines; `tools/gen_augment_fixtures.py` writes them.

use std::collections::BTreeMap;

use serde_json::Value;
use wrnc_data::imageops::Shape;
use wrnc_data::policy::{self, PolicyOp, Space, AUTOAUGMENT_BINS, CIFAR10, OPS, WIDE_BINS};

const JSON: &str = include_str!("fixtures/augment_ops.json");
const BIN: &[u8] = include_bytes!("fixtures/augment_ops.bin");

fn meta() -> Value {
    serde_json::from_str(JSON).unwrap()
}

fn op_named(name: &str) -> PolicyOp {
    // Every op: the 14 of RandAugment / TrivialAugment plus AutoAugment's Invert.
    OPS.iter()
        .copied()
        .chain([PolicyOp::Invert])
        .find(|o| o.name() == name)
        .unwrap_or_else(|| panic!("unknown op {name}"))
}

/// Ops whose result can move a pixel to another place (a nearest pick that differs is not a
/// 1-level difference); they must match exactly.
fn geometric(op: PolicyOp) -> bool {
    matches!(
        op,
        PolicyOp::ShearX
            | PolicyOp::ShearY
            | PolicyOp::TranslateX
            | PolicyOp::TranslateY
            | PolicyOp::Rotate
    )
}

#[test]
fn every_op_matches_torchvision_within_one_grey_level() {
    let m = meta();
    let images: BTreeMap<String, (Shape, &[u8])> = m["images"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let s: Vec<usize> = v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            let shape = Shape {
                c: s[0],
                h: s[1],
                w: s[2],
            };
            let off = v["offset"].as_u64().unwrap() as usize;
            (k.clone(), (shape, &BIN[off..off + s[0] * s[1] * s[2]]))
        })
        .collect();
    let mut worst: BTreeMap<&str, u8> = BTreeMap::new();
    let mut failures = Vec::new();
    let cases = m["cases"].as_array().unwrap();
    assert!(cases.len() > 100, "{} cases", cases.len());
    for case in cases {
        let op = op_named(case["op"].as_str().unwrap());
        let mag = case["magnitude"].as_f64().unwrap();
        let fill = case["fill"].as_u64().unwrap() as u8;
        let (shape, src) = images[case["image"].as_str().unwrap()];
        let off = case["offset"].as_u64().unwrap() as usize;
        let want = &BIN[off..off + src.len()];
        let mut got = src.to_vec();
        policy::apply_op(&mut got, shape, op, mag, fill);
        let diff = got
            .iter()
            .zip(want)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        let w = worst.entry(op.name()).or_default();
        *w = (*w).max(diff);
        let limit = if geometric(op) { 0 } else { 1 };
        if diff > limit {
            failures.push(format!(
                "{} magnitude {mag} fill {fill} on {}: max diff {diff}",
                op.name(),
                case["image"]
            ));
        }
    }
    // The per-op worst difference, for the record (`cargo test -- --nocapture`).
    for (op, d) in &worst {
        println!("{op:>12}: max diff {d}");
    }
    assert_eq!(worst.len(), 15, "every op has cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Per op name: whether it is signed, and its magnitudes (none for ops without).
type OpTable = BTreeMap<String, (bool, Option<Vec<f64>>)>;

/// torchvision's op table of one augmentation space: op names in order, the number of bins and
/// the [`OpTable`] (for a 32 x 32 image).
fn space_table(v: &Value) -> (Vec<String>, usize, OpTable) {
    let ops = v["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_string())
        .collect();
    let bins = v["bins"].as_u64().unwrap() as usize;
    let table = v["table"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, e)| {
            let mags = e["magnitudes"]
                .as_array()
                .map(|a| a.iter().map(|x| x.as_f64().unwrap()).collect());
            (k.clone(), (e["signed"].as_bool().unwrap(), mags))
        })
        .collect();
    (ops, bins, table)
}

/// Checks our magnitudes, signs and (for RandAugment and TrivialAugment) op order against
/// torchvision's table `v` of `space`.
fn check_space(v: &Value, space: Space, bins: usize, ops: &[PolicyOp]) {
    let (names, tv_bins, table) = space_table(v);
    assert_eq!(tv_bins, bins);
    let ours: Vec<&str> = ops.iter().map(|o| o.name()).collect();
    assert_eq!(names, ours, "op order");
    for op in ops {
        let (signed, mags) = &table[op.name()];
        assert_eq!(op.signed(), *signed, "{} signed", op.name());
        assert_eq!(op.has_magnitude(), mags.is_some(), "{}", op.name());
        if let Some(mags) = mags {
            assert_eq!(mags.len(), bins);
            for (bin, want) in mags.iter().enumerate() {
                let got = policy::magnitude(*op, space, bins, bin, 32, 32).unwrap();
                assert_eq!(f64::from(got), *want, "{} bin {bin}", op.name());
            }
        }
    }
}

#[test]
fn policy_tables_match_torchvision() {
    let m = meta();
    let t = &m["tables"];
    // AutoAugment CIFAR-10: 25 sub-policies of (op, probability, bin).
    let subs = t["autoaugment_cifar10"]["sub_policies"].as_array().unwrap();
    assert_eq!(subs.len(), 25);
    assert_eq!(CIFAR10.len(), 25);
    for (i, (tv, ours)) in subs.iter().zip(CIFAR10.iter()).enumerate() {
        let tv = tv.as_array().unwrap();
        assert_eq!(tv.len(), 2);
        for (step, ours) in tv.iter().zip(ours) {
            let s = step.as_array().unwrap();
            assert_eq!(s[0].as_str().unwrap(), ours.op.name(), "sub-policy {i}");
            assert_eq!(s[1].as_f64().unwrap() as f32, ours.p, "sub-policy {i}");
            match s[2].as_u64() {
                Some(bin) => assert_eq!(bin as u8, ours.bin, "sub-policy {i}"),
                None => assert!(!ours.op.has_magnitude(), "sub-policy {i}"),
            }
        }
    }
    // AutoAugment's space: our op set is its dictionary's (the order is not drawn from).
    let aa = &t["autoaugment_cifar10"]["space"];
    let (names, _, _) = space_table(aa);
    let aa_ops: Vec<PolicyOp> = names.iter().map(|n| op_named(n)).collect();
    check_space(aa, Space::Standard, AUTOAUGMENT_BINS, &aa_ops);
    check_space(&t["randaugment"]["space"], Space::Standard, WIDE_BINS, &OPS);
    check_space(&t["trivialaugment"]["space"], Space::Wide, WIDE_BINS, &OPS);
    // RandAugment's defaults.
    let d = wrnc_recipe::RandAugment::default();
    assert_eq!(t["randaugment"]["num_ops"].as_u64(), Some(d.n as u64));
    assert_eq!(t["randaugment"]["magnitude"].as_u64(), Some(d.m as u64));
    assert_eq!(wrnc_recipe::RandAugment::BINS, WIDE_BINS);
}
