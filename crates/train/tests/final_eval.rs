//! The last epoch's test evaluation that `train` hands back (`TrainOutcome::final_test`) is
//! the evaluation of the exported weights: what evaluating `last.safetensors` afresh gives.

mod common;

use wrnc_ir::Weights;
use wrnc_recipe::{DeviceKind, Recipe};
use wrnc_train::{evaluate_detailed, train, RunStatus, Split, TrainOptions};

fn recipe(val_size: usize) -> Recipe {
    let mut r = common::digits_recipe(2, 100, 5);
    r.data.val_size = val_size;
    r
}

fn opts(dir: &std::path::Path) -> TrainOptions {
    TrainOptions {
        resolved_spec_yaml: "name: tiny\n".into(),
        spec_name: "tiny".into(),
        ..TrainOptions::new(dir)
    }
}

#[test]
fn the_last_test_evaluation_is_that_of_the_exported_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (graph, recipe) = (common::tiny_net(), recipe(0));
    let outcome = train(&graph, &recipe, &opts(dir.path())).unwrap();
    assert_eq!(outcome.status, RunStatus::Finished);
    assert_eq!(outcome.eval_split, Split::Test);
    let kept = outcome
        .final_test
        .expect("the last epoch's test evaluation");
    let last = outcome.last.unwrap();
    assert_eq!(kept.evaluation.result.accuracy, last.val_acc);
    assert_eq!(kept.evaluation.result.loss, last.val_loss);

    let weights = Weights::load(&dir.path().join("last.safetensors")).unwrap();
    let again = evaluate_detailed(&graph, &weights, &recipe, Split::Test, DeviceKind::Cpu).unwrap();
    assert_eq!(kept.evaluation.result.count, again.evaluation.result.count);
    assert_eq!(kept.data.len(), again.data.len());
    let (a, b) = (kept.predictions.rows(), again.predictions.rows());
    assert_eq!(a.len(), b.len());
    assert!(a.len() > 100, "{} test images", a.len());
    for (p, q) in a.iter().zip(b) {
        assert_eq!(
            (p.index, p.label, p.predicted),
            (q.index, q.label, q.predicted)
        );
        assert!(
            (p.probability - q.probability).abs() < 1e-6,
            "{p:?} vs {q:?}"
        );
    }
    let rel = (kept.evaluation.result.loss - again.evaluation.result.loss).abs()
        / again.evaluation.result.loss;
    assert!(rel < 1e-6, "loss {rel:e} apart");
    assert_eq!(
        kept.predictions.class_names(),
        again.predictions.class_names()
    );
}

#[test]
fn runs_selecting_on_a_validation_split_keep_no_test_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = train(&common::tiny_net(), &recipe(300), &opts(dir.path())).unwrap();
    assert_eq!(outcome.eval_split, Split::Val);
    assert!(outcome.final_test.is_none());
}
