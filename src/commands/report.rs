//! `wrnc report RUN_DIR [-o FILE] [--device ...]`: the run's HTML report. This module gathers
//! the numbers (the run directory's files, the exported weights evaluated on the test split, a
//! tract check of the ONNX file) and `wrnc_report::render` draws them.

use super::common::thousands;
use super::deploy::DeviceArg;
use crate::exit::UsageError;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use wrnc_ir::Weights;
use wrnc_recipe::DeviceKind;
use wrnc_report::{ClassResults, ClassRow, EpochRow, Mistake, RunReport, StepRow, Thumbnail};
use wrnc_train::{rundir, DetailedEvaluation, Split};

/// Most mistakes shown as thumbnails.
const MISTAKES_SHOWN: usize = 16;

/// Test images the ONNX file is run on (tract against Candle).
const VERIFY_IMAGES: usize = 8;

/// Absolute tolerance of that check (as `wrnc verify`'s default).
const VERIFY_ATOL: f32 = 1e-4;

/// Arguments of `wrnc report`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run directory (written by `wrnc train`).
    run_dir: PathBuf,
    /// Output file (default: RUN_DIR/report.html).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Device of the test-split evaluation.
    #[arg(long, value_enum)]
    device: Option<DeviceArg>,
}

/// Runs the command.
pub fn run(a: Args) -> Result<ExitCode> {
    let out = a
        .output
        .clone()
        .unwrap_or_else(|| a.run_dir.join(rundir::REPORT_FILE));
    write_report(&a.run_dir, &out, a.device.map(Into::into), None)?;
    println!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes the report of the run in `dir` to `dir/report.html` and returns its path (what
/// `wrnc train` calls at the end of a run, with the exported weights' test evaluation when it
/// has measured it).
pub fn write_for_run(
    dir: &Path,
    device: Option<DeviceKind>,
    test_eval: Option<wrnc_train::DetailedEvaluation>,
) -> Result<PathBuf> {
    let out = dir.join(rundir::REPORT_FILE);
    write_report(dir, &out, device, test_eval)?;
    Ok(out)
}

fn write_report(
    dir: &Path,
    out: &Path,
    device: Option<DeviceKind>,
    test_eval: Option<wrnc_train::DetailedEvaluation>,
) -> Result<()> {
    let report = gather(dir, device, test_eval)?;
    let html = wrnc_report::render(&report)?;
    wrnc_ir::atomic::write_atomic(out, html.as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))
}

/// Reads a CSV file of the run directory: its rows as fields, the header checked.
fn csv(dir: &Path, name: &str, header: &str) -> Result<Vec<(usize, Vec<String>)>> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines();
    // Later columns may follow (e.g. the EMA's with `train.ema`).
    let known = |l: &str| l == header || l.starts_with(&format!("{header},"));
    if !lines.next().is_some_and(known) {
        return Err(UsageError(format!(
            "{} does not start with the header `{header}`; is {} a wrnc run directory?",
            path.display(),
            dir.display()
        ))
        .into());
    }
    Ok(lines
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| (i + 2, l.split(',').map(str::to_string).collect()))
        .collect())
}

fn field<T: std::str::FromStr>(path: &str, line: usize, row: &[String], i: usize) -> Result<T> {
    row.get(i)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            UsageError(format!(
                "{path} line {line}: column {} is not a number",
                i + 1
            ))
        })
        .map_err(Into::into)
}

fn read_epochs(dir: &Path) -> Result<Vec<EpochRow>> {
    let name = rundir::METRICS_FILE;
    csv(dir, name, rundir::METRICS_HEADER)?
        .into_iter()
        .map(|(l, r)| {
            Ok(EpochRow {
                epoch: field(name, l, &r, 0)?,
                lr: field(name, l, &r, 1)?,
                train_loss: field(name, l, &r, 2)?,
                train_acc: field(name, l, &r, 3)?,
                val_loss: field(name, l, &r, 4)?,
                val_acc: field(name, l, &r, 5)?,
                seconds: field(name, l, &r, 6)?,
                images_per_sec: field(name, l, &r, 7)?,
            })
        })
        .collect()
}

fn read_steps(dir: &Path) -> Result<Vec<StepRow>> {
    let name = rundir::STEPS_FILE;
    csv(dir, name, rundir::STEPS_HEADER)?
        .into_iter()
        .map(|(l, r)| {
            Ok(StepRow {
                step: field(name, l, &r, 0)?,
                epoch: field(name, l, &r, 1)?,
                lr: field(name, l, &r, 2)?,
                loss: field(name, l, &r, 3)?,
            })
        })
        .collect()
}

/// `seconds` as `1h 02m 03s`, `2m 03.4s` or `3.4 s`.
fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s >= 3600.0 {
        format!(
            "{}h {:02}m {:02.0}s",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64,
            s % 60.0
        )
    } else if s >= 60.0 {
        format!("{}m {:04.1}s", (s / 60.0) as u64, s % 60.0)
    } else {
        format!("{s:.1} s")
    }
}

/// The per-class results and most confident mistakes of an evaluation.
fn class_results(d: &DetailedEvaluation, weights_file: &str) -> (ClassResults, Vec<Mistake>) {
    let p = &d.predictions;
    let r = &d.evaluation.result;
    let names = p.class_names();
    let results = ClassResults {
        weights_file: weights_file.to_string(),
        split: r.split.name().to_string(),
        count: r.count,
        accuracy: r.accuracy,
        top5: p.top5(),
        class_names: names.to_vec(),
        confusion_matrix: p.confusion_matrix(),
        per_class: p
            .per_class()
            .into_iter()
            .map(|c| ClassRow {
                name: c.name,
                precision: c.precision,
                recall: c.recall,
                f1: c.f1,
                support: c.support,
            })
            .collect(),
    };
    let name = |c: u32| {
        names
            .get(c as usize)
            .cloned()
            .unwrap_or_else(|| c.to_string())
    };
    let mistakes = p
        .most_confident_mistakes(MISTAKES_SHOWN)
        .into_iter()
        .filter_map(|m| {
            Some(Mistake {
                index: m.index,
                truth: name(m.label),
                predicted: name(m.predicted),
                probability: m.probability,
                image: Thumbnail {
                    channels: d.data.channels(),
                    height: d.data.height(),
                    width: d.data.width(),
                    pixels: d.data.image(m.index)?.to_vec(),
                },
            })
        })
        .collect();
    (results, mistakes)
}

/// Runs the ONNX file with tract on the first test images and compares its logits with
/// Candle's on the same weights; one sentence with the result.
fn onnx_check(
    onnx: &Path,
    graph: &wrnc_ir::Graph,
    weights: &Weights,
    d: &DetailedEvaluation,
) -> Result<String> {
    let n = VERIFY_IMAGES.min(d.data.len());
    if n == 0 {
        return Ok("not checked (the test split is empty)".into());
    }
    let norm = &d.evaluation.normalizer.normalizer;
    let mut x = Vec::new();
    for i in 0..n {
        x.extend(norm.apply(d.data.image(i).unwrap_or_default())?);
    }
    let [c, h, w] = [d.data.channels(), d.data.height(), d.data.width()];
    let tract = wrnc_verify::TractModel::load(onnx, Some(n))?;
    // A file with test-time augmentation has probabilities only; Candle computes the same.
    let (onnx_out, candle) = match tract.tta() {
        wrnc_recipe::ExportTta::None => (
            tract.run(&x, [n, c, h, w])?.0,
            wrnc_train::predict_logits(graph, weights, &x, n)?,
        ),
        wrnc_recipe::ExportTta::Flip => (
            tract.run_probabilities(&x, [n, c, h, w])?,
            wrnc_train::predict_probabilities(graph, weights, &x, n, wrnc_train::Tta::Flip)?,
        ),
    };
    let cmp = wrnc_verify::compare(&onnx_out, &candle, graph.classes())?;
    Ok(format!(
        "{} on {n} test images (tract against Candle): max abs diff {:.2e}, top-1 agreement \
         {}/{} (tolerance {VERIFY_ATOL:e}); `wrnc verify` checks more",
        if cmp.max_abs_diff <= VERIFY_ATOL {
            "ok"
        } else {
            "MISMATCH"
        },
        cmp.max_abs_diff,
        cmp.top1_agree,
        cmp.samples
    ))
}

/// Everything the report shows, read from the run directory `dir` and measured (the exported
/// weights' test evaluation only when `test_eval` does not already hold it).
pub fn gather(
    dir: &Path,
    device: Option<DeviceKind>,
    test_eval: Option<wrnc_train::DetailedEvaluation>,
) -> Result<RunReport> {
    let spec_path = dir.join(rundir::SPEC_FILE);
    if !spec_path.is_file() {
        return Err(UsageError(format!(
            "{} is not a wrnc run directory ({} is missing)",
            dir.display(),
            rundir::SPEC_FILE
        ))
        .into());
    }
    let spec = wrnc_spec::load(&spec_path, &[])?;
    let recipe = spec.recipe();
    let epochs = read_epochs(dir)?;
    let steps = read_steps(dir)?;
    let run_json = super::common::read_run_json(dir);
    let eval_split = super::common::epoch_eval_split(&run_json, &recipe);
    // The weights `wrnc train` exports (best on the validation split, else the last ones;
    // the EMA's with `train.ema`).
    let weights_file = wrnc_train::export_weights_file(&recipe, eval_split);
    let device = device.unwrap_or(recipe.train.device);
    let weights = Weights::load_for(&dir.join(weights_file), &spec.graph);
    let eval = match (&weights, test_eval) {
        (Ok(_), Some(known)) => Ok(known),
        (Ok(w), None) => {
            wrnc_train::evaluate_detailed(&spec.graph, w, &recipe, Split::Test, device)
                .map_err(|e| format!("the test split could not be evaluated: {e}"))
        }
        (Err(e), _) => Err(format!("{weights_file} could not be read: {e}")),
    };
    let mut report = RunReport {
        title: spec.graph.name.clone(),
        eval_split: eval_split.name().to_string(),
        epochs,
        steps,
        spec_yaml: std::fs::read_to_string(&spec_path).unwrap_or_default(),
        ..RunReport::default()
    };
    let onnx_path = dir.join(&recipe.export.file);
    let onnx_info = wrnc_onnx::read_model_file(&onnx_path, &wrnc_onnx::ReadLimits::default())
        .ok()
        .and_then(|m| wrnc_onnx::ModelInfo::from_model(&m).ok());
    let recorded_test = onnx_info
        .as_ref()
        .and_then(|i| i.training.as_ref())
        .and_then(|t| t.test_accuracy);
    match eval_split {
        Split::Test | Split::Train => report.notes.push(format!(
            "This run has no validation split (data.val_size is 0): the per-epoch evaluation \
             ran on the test set, so the \"best\" epoch (best.safetensors) was chosen on the \
             test set and its accuracy is optimistic. The export and the test results below \
             use {weights_file}, which was not chosen on the test set."
        )),
        Split::Val => report.notes.push(format!(
            "The per-epoch curves use the validation split, and the best epoch was chosen on \
             it; the test results below are the exported weights ({weights_file}) evaluated \
             once on the test set{}.",
            recorded_test
                .map(|t| format!(
                    " (the ONNX file's `training` metadata records test accuracy {:.2}%)",
                    t * 100.0
                ))
                .unwrap_or_default()
        )),
    }
    let mut verify = format!("{} not found", onnx_path.display());
    match &eval {
        Ok(d) => {
            let (classes, mistakes) = class_results(d, weights_file);
            report.classes = Some(classes);
            report.mistakes = mistakes;
            if let (Some(_), Ok(w)) = (&onnx_info, &weights) {
                verify = onnx_check(&onnx_path, &spec.graph, w, d)
                    .unwrap_or_else(|e| format!("the check failed: {e:#}"));
            }
        }
        Err(why) => report.classes_missing = Some(why.clone()),
    }
    if onnx_info.is_some() && eval.is_err() {
        verify = "not checked (no test images)".into();
    }

    let st = spec.graph.stats();
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "unknown".into(),
        v => v.to_string(),
    };
    let wall: f64 = report.epochs.iter().map(|e| e.seconds).sum();
    let done = report.epochs.last().map_or(0, |e| e.epoch);
    let facts = &mut report.facts;
    let mut fact = |k: &str, v: String| facts.push((k.to_string(), v));
    fact("run directory", dir.display().to_string());
    fact("model", spec.graph.name.clone());
    fact(
        "dataset",
        format!(
            "{} (train {}, val {}, test {})",
            s(&run_json["dataset"]),
            s(&run_json["train_size"]),
            s(&run_json["val_size"]),
            s(&run_json["test_size"])
        ),
    );
    fact("evaluated each epoch", eval_split.name().to_string());
    fact("device", s(&run_json["device"]));
    fact("threads", s(&run_json["threads"]));
    fact(
        "versions",
        format!(
            "trained by wrnc {}; report by wrnc {}",
            s(&run_json["wrnc_train_version"]),
            env!("CARGO_PKG_VERSION")
        ),
    );
    fact("seed", s(&run_json["seed"]));
    fact(
        "epochs",
        format!(
            "{} of {} (batch size {}, {} steps per epoch)",
            done,
            recipe.train.epochs,
            recipe.train.batch_size,
            s(&run_json["steps_per_epoch"])
        ),
    );
    fact("training wall time", duration(wall));
    fact(
        "parameters",
        format!(
            "{} ({} trainable)",
            thousands(st.total),
            thousands(st.trainable)
        ),
    );
    fact("forward FLOPs per image", thousands(st.forward_flops));
    match &onnx_info {
        Some(i) => {
            let t = i.training.as_ref();
            fact(
                "ONNX file",
                format!(
                    "{} (opset {}, IR version {}, from {})",
                    onnx_path.display(),
                    i.opset,
                    i.ir_version,
                    i.metadata
                        .get(wrnc_onnx::MetaKey::WeightsFile.as_str())
                        .map(String::as_str)
                        .unwrap_or("unknown weights")
                ),
            );
            if let Some(acc) = t.and_then(|t| t.test_accuracy) {
                fact(
                    "test accuracy recorded in the ONNX file",
                    format!("{:.2}%", acc * 100.0),
                );
            }
        }
        None => fact("ONNX file", "none".into()),
    }
    fact("ONNX verify", verify);
    Ok(report)
}
