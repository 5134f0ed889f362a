//! The training loop: data, model, optimiser and schedule wired to a checkpointed,
//! resumable run directory.

use crate::backend::Kernels;
use crate::checkpoint::{CheckpointMeta, InputNormalizer, NormalizerSource};
use crate::data::{load_run_data_with, train_batch_config, Split};
use crate::device::{device_name, select_device, set_deterministic, set_tf32};
use crate::ema::EmaState;
use crate::error::{Result, TrainError};
use crate::eval::{evaluate_model, evaluate_model_detailed, DetailedEvaluation, Tta};
use crate::init::init_weights;
use crate::lock::RunLock;
use crate::memlimit::{self, MemoryLimit};
use crate::memory::{self, DataSize, MemoryEstimate, StepPath};
use crate::mixup::{dominant_labels, mixup_targets};
use crate::model::{Mode, Model};
use crate::observer::{EpochEnd, EpochStart, Notice, Silent, StepProgress, TrainObserver};
use crate::ops::count_correct;
use crate::optim::Optimizer;
use crate::rundir::{
    self, commit, read_state, recover, truncate_steps, EpochMetrics, PartialEpoch, RunState,
    Staged, StepLog,
};
use crate::sam::step_grads_for;
use crate::schedule::LrSchedule;
use crate::step::Targets;
use crate::tape::Tape;
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use wrnc_data::{epoch_batches, num_batches};
use wrnc_ir::atomic::write_atomic;
use wrnc_ir::{Graph, Weights};
use wrnc_recipe::{DeviceKind, Precision, Recipe};

/// How to run [`train`].
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Run directory (created if needed).
    pub out_dir: PathBuf,
    /// Device override (None: the recipe's `train.device`).
    pub device: Option<DeviceKind>,
    /// Continue the run committed in `out_dir`.
    pub resume: bool,
    /// Start from these weights instead of the init rules (names and shapes checked).
    pub init_weights: Option<PathBuf>,
    /// Glob patterns over parameter names (`--init-skip`): these are initialised fresh by the
    /// init rules instead of being taken from `init_weights`.
    pub init_skip: Vec<String>,
    /// The resolved spec, written to `spec.resolved.yaml` when the run starts.
    pub resolved_spec_yaml: String,
    /// The spec's name (recorded in weights metadata and `run.json`).
    pub spec_name: String,
    /// Stop with a resumable checkpoint after the step during which this flag is set (the
    /// CLI sets it on Ctrl-C). The flag is not reset.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// Stop as if interrupted once this global step has been taken (tests, time limits).
    pub stop_after_steps: Option<u64>,
    /// The class names the spec gives (`model.labels`); None: the dataset's. Recorded in
    /// `run.json` and every weights file.
    pub class_names: Option<Vec<String>>,
}

impl TrainOptions {
    /// Defaults: recipe device, fresh run, init rules, no interrupt flag.
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        TrainOptions {
            out_dir: out_dir.into(),
            device: None,
            resume: false,
            init_weights: None,
            init_skip: Vec::new(),
            resolved_spec_yaml: String::new(),
            spec_name: String::new(),
            interrupt: None,
            stop_after_steps: None,
            class_names: None,
        }
    }

    /// Whether the interrupt flag is set.
    fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst))
    }
}

/// How a call to [`train`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// All epochs are done.
    Finished,
    /// `--resume` found a run that had already finished; nothing was trained.
    AlreadyFinished,
    /// Stopped by Ctrl-C (or `stop_after_steps`) after saving a resumable checkpoint; the
    /// CLI exits with status 130.
    Interrupted,
}

/// The result of [`train`].
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// How the run ended.
    pub status: RunStatus,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Completed epochs.
    pub epochs_done: usize,
    /// Steps of the next epoch already taken (non-zero when the run stopped inside it).
    pub batches_done: usize,
    /// Epochs the run trains in all (`train.epochs`).
    pub epochs: usize,
    /// Optimiser steps taken.
    pub global_step: u64,
    /// Best evaluation accuracy and its epoch (from 1).
    pub best: Option<(f64, usize)>,
    /// Metrics of the last completed epoch.
    pub last: Option<EpochMetrics>,
    /// The split evaluated each epoch (`test` when `data.val_size` is 0).
    pub eval_split: Split,
    /// The last epoch's test evaluation with every image's prediction, when that epoch was
    /// trained in this call and its weights are the ones exported (`last.safetensors`: no
    /// validation split, no EMA selection, f32 compute), so the report need not evaluate
    /// the same weights on the same images again.
    pub final_test: Option<DetailedEvaluation>,
}

fn settings_json(graph: &Graph, recipe: &Recipe) -> Result<serde_json::Value> {
    let ser = |v: serde_json::Result<serde_json::Value>| {
        v.map_err(|e| TrainError::Internal(format!("cannot serialise the recipe: {e}")))
    };
    let mut train = ser(serde_json::to_value(&recipe.train))?;
    if let Some(o) = train.as_object_mut() {
        o.remove("device");
        o.remove("eval_batch_size");
        // Logging only: a resumed run may turn TensorBoard files on or off.
        o.remove("tensorboard");
    }
    let mut data = ser(serde_json::to_value(&recipe.data))?;
    if let Some(o) = data.as_object_mut() {
        o.remove("root");
        o.remove("prefetch");
    }
    let params: Vec<String> = graph
        .params
        .iter()
        .map(|p| format!("{} {:?}", p.name, p.shape))
        .collect();
    // The whole network, every op attribute included: a resumed run must continue the same
    // model (dropout, shortcut kind, BN eps/momentum, strides and padding all count).
    let model = ser(serde_json::to_value(graph))?;
    Ok(serde_json::json!({ "params": params, "train": train, "data": data, "model": model }))
}

/// Most differences listed when a resume is refused.
const MAX_DIFFS: usize = 20;

/// The entries of `items` by their `name`, when every entry is an object with a unique name.
fn named(items: &[serde_json::Value]) -> Option<Vec<(&str, &serde_json::Value)>> {
    let mut out: Vec<(&str, &serde_json::Value)> = Vec::new();
    for v in items {
        let n = v.get("name")?.as_str()?;
        if out.iter().any(|(m, _)| *m == n) {
            return None;
        }
        out.push((n, v));
    }
    Some(out)
}

/// Appends `path: was X, now Y` for every leaf where `a` and `b` differ (arrays of named
/// objects, such as the graph's nodes, are labelled by name).
fn json_diff(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value as J;
    if a == b || out.len() > MAX_DIFFS {
        return;
    }
    match (a, b) {
        (J::Object(x), J::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (u, v) = (x.get(k).unwrap_or(&J::Null), y.get(k).unwrap_or(&J::Null));
                json_diff(&format!("{path}.{k}"), u, v, out);
            }
        }
        (J::Array(x), J::Array(y)) if named(x).is_some() && named(y).is_some() => {
            let (nx, ny) = (named(x).unwrap_or_default(), named(y).unwrap_or_default());
            // When entries were added or removed, the value indices of all later nodes shift:
            // report the added and removed entries and the changed attributes, not the wiring.
            let same_names = nx.len() == ny.len() && nx.iter().zip(&ny).all(|(a, b)| a.0 == b.0);
            let unwired = |v: &J| {
                let mut v = v.clone();
                if let Some(o) = v.as_object_mut().filter(|_| !same_names) {
                    o.remove("inputs");
                    o.remove("output");
                }
                v
            };
            for (n, u) in &nx {
                match ny.iter().find(|(m, _)| m == n) {
                    Some((_, v)) => {
                        json_diff(&format!("{path}[`{n}`]"), &unwired(u), &unwired(v), out)
                    }
                    None => out.push(format!("{path}[`{n}`]: was {u}, now absent")),
                }
            }
            for (m, v) in &ny {
                if !nx.iter().any(|(n, _)| n == m) {
                    out.push(format!("{path}[`{m}`]: was absent, now {v}"));
                }
            }
        }
        (J::Array(x), J::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                let label = match (u.get("name"), v.get("name")) {
                    (Some(J::String(n)), Some(J::String(m))) if n == m => format!("`{n}`"),
                    _ => i.to_string(),
                };
                json_diff(&format!("{path}[{label}]"), u, v, out);
            }
        }
        (J::Array(x), J::Array(y)) => out.push(format!(
            "{path}: was {} entries, now {} entries",
            x.len(),
            y.len()
        )),
        _ => out.push(format!("{path}: was {a}, now {b}")),
    }
}

fn settings_diff(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    if old.get("params") != new.get("params") {
        out.push("the model's parameters (names or shapes)".to_string());
    }
    for section in ["train", "data"] {
        let (a, b) = (old.get(section), new.get(section));
        let keys: std::collections::BTreeSet<String> = [a, b]
            .iter()
            .filter_map(|v| v.and_then(|v| v.as_object()))
            .flat_map(|o| o.keys().cloned())
            .collect();
        for k in keys {
            let (x, y) = (a.and_then(|v| v.get(&k)), b.and_then(|v| v.get(&k)));
            if x != y {
                out.push(format!(
                    "{section}.{k}: was {}, now {}",
                    x.map(|v| v.to_string()).unwrap_or_default(),
                    y.map(|v| v.to_string()).unwrap_or_default()
                ));
            }
        }
    }
    // State files written before the model was recorded have no "model" entry.
    if let (Some(a), Some(b)) = (old.get("model"), new.get("model")) {
        let before = out.len();
        for key in ["name", "nodes", "params"] {
            let (x, y) = (a.get(key), b.get(key));
            let null = serde_json::Value::Null;
            json_diff(
                &format!("model.{key}"),
                x.unwrap_or(&null),
                y.unwrap_or(&null),
                &mut out,
            );
        }
        // Value shapes follow from the nodes; compare them only when nothing else differs.
        if out.len() == before {
            json_diff("model", a, b, &mut out);
        }
        if out.len() > MAX_DIFFS {
            out.truncate(MAX_DIFFS);
            out.push("... (more differences not shown)".into());
        }
    }
    out
}

/// Checks that a resumed run's `settings` differ from the committed ones at most in
/// `train.epochs`; returns the change of the epoch count, if any. Any other difference, or
/// fewer epochs than the run has already trained or started, is refused.
fn epochs_change(
    dir: &Path,
    state: &RunState,
    settings: &serde_json::Value,
) -> Result<Option<rundir::EpochsChange>> {
    let epochs = |v: &serde_json::Value| {
        v.pointer("/train/epochs")
            .and_then(|e| e.as_u64())
            .map(|e| e as usize)
    };
    let (old, new) = (epochs(&state.settings), epochs(settings));
    // Compare everything but the epoch count.
    let mut before = state.settings.clone();
    if let (Some(n), Some(e)) = (new, before.pointer_mut("/train/epochs")) {
        *e = serde_json::Value::from(n);
    }
    let diff = settings_diff(&before, settings);
    if !diff.is_empty() {
        return Err(run_dir_err(
            dir,
            format!(
                "the run was started with different settings, so it cannot be resumed \
                 exactly (only train.epochs may change on resume):\n  {}",
                diff.join("\n  ")
            ),
        ));
    }
    let (Some(from), Some(to)) = (old, new) else {
        return Ok(None);
    };
    if from == to {
        return Ok(None);
    }
    let started = state.epochs_done + usize::from(state.batches_done > 0);
    if to < started {
        let what = if state.batches_done > 0 {
            format!(
                "has completed {} epochs and started epoch {started}",
                state.epochs_done
            )
        } else {
            format!("has completed {started} epochs")
        };
        return Err(run_dir_err(
            dir,
            format!(
                "train.epochs cannot become {to}: the run {what} (it was started with \
                 train.epochs {from}); choose at least {started}"
            ),
        ));
    }
    Ok(Some(rundir::EpochsChange {
        from,
        to,
        at_epoch: state.epochs_done,
        at_step: state.global_step,
    }))
}

fn run_dir_err(dir: &Path, message: impl Into<String>) -> TrainError {
    TrainError::RunDir {
        dir: dir.to_path_buf(),
        message: message.into(),
    }
}

fn validate(recipe: &Recipe) -> Result<()> {
    if recipe.train.batch_size == 0 {
        return Err(TrainError::Invalid(
            "train.batch_size must be at least 1".into(),
        ));
    }
    if recipe.export.onnx {
        rundir::check_export_file(&recipe.export.file)?;
    }
    Ok(())
}

/// The dtype the layers compute in for `precision` on `device` (parameters, BN statistics
/// and the loss stay f32). bf16 needs a CUDA device, or a CPU with AVX-512 BF16 (there the
/// Winograd convolutions' products round to bf16, `kernels::gemm_bf16`).
pub fn compute_dtype(precision: Precision, device: &Device) -> Result<DType> {
    match precision {
        Precision::F32 => Ok(DType::F32),
        Precision::Bf16 if device.is_cuda() => Ok(DType::BF16),
        Precision::Bf16 if wrnc_ir::knobs::reference_ops() => Err(TrainError::Invalid(
            "train.precision bf16 on the CPU runs on wrnc's kernels, which WRNC_REFERENCE_OPS=1 \
             turns off; unset it, or use `--set train.precision=f32`"
                .into(),
        )),
        Precision::Bf16 => match crate::kernels::gemm_bf16::unavailable_reason() {
            None => Ok(DType::BF16),
            Some(reason) => Err(TrainError::Invalid(format!(
                "train.precision bf16 needs a CUDA device or a CPU with AVX-512 BF16, but \
                 training runs on {} and {reason}; use `--set train.precision=f32`",
                device_name(device)
            ))),
        },
    }
}

/// Everything the epoch loop works on.
struct Run<'a> {
    graph: &'a Graph,
    recipe: &'a Recipe,
    opts: &'a TrainOptions,
    dir: PathBuf,
    model: Model,
    opt: Optimizer,
    /// The moving average of the weights (`train.ema`).
    ema: Option<EmaState>,
    state: RunState,
    /// The fitted input normalisation, recorded in every weights file so that an export or
    /// an evaluation uses it ([`CheckpointMeta::normalizer`]).
    normalization: Option<wrnc_data::Normalizer>,
    /// The class names, index = class id, recorded in every weights file
    /// ([`CheckpointMeta::class_names`]) and `run.json`.
    class_names: Vec<String>,
}

impl Run<'_> {
    fn outcome(&self, status: RunStatus, eval_split: Split) -> TrainOutcome {
        TrainOutcome {
            status,
            run_dir: self.dir.clone(),
            epochs_done: self.state.epochs_done,
            batches_done: self.state.batches_done,
            epochs: self.recipe.train.epochs,
            global_step: self.state.global_step,
            best: self.state.best,
            last: self.state.metrics.last().copied(),
            eval_split,
            final_test: None,
        }
    }

    /// The model's weights with `meta` plus the run's model, spec and normaliser recorded.
    fn weights(&self, meta: CheckpointMeta) -> Result<Weights> {
        let mut w = self.model.to_weights()?;
        CheckpointMeta {
            model: Some(self.graph.name.clone()),
            spec: Some(self.opts.spec_name.clone()).filter(|s| !s.is_empty()),
            normalizer: self.normalization.clone(),
            class_names: Some(self.class_names.clone()).filter(|n| !n.is_empty()),
            ..meta
        }
        .write_to(&mut w.metadata);
        Ok(w)
    }

    /// The EMA weights with the same metadata as [`Run::weights`] records.
    fn ema_weights(&self, ema: &EmaState, meta: CheckpointMeta) -> Result<Weights> {
        let mut w = self.weights(meta)?;
        w.tensors = ema.to_weights(&self.model)?.tensors;
        Ok(w)
    }

    /// Whether the best epoch and `best.safetensors` follow the EMA weights.
    fn selects_ema(&self) -> bool {
        self.ema.is_some() && selects_ema(self.recipe)
    }

    /// Commits the current state; `best` adds `best.safetensors`.
    fn checkpoint(&self, best: Option<(f64, usize, Split)>) -> Result<()> {
        let s = &self.state;
        let last = self.weights(CheckpointMeta {
            epoch: Some(s.epochs_done),
            batches_into_next_epoch: Some(s.batches_done),
            step: Some(s.global_step),
            ..CheckpointMeta::default()
        })?;
        let state_json = serde_json::to_string(&RunState {
            metrics: Vec::new(),
            ..s.clone()
        })
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
        let mut opt = Weights {
            tensors: self.opt.state(self.graph)?,
            ..Weights::default()
        };
        opt.metadata
            .insert(rundir::OPTIMIZER_STATE_KEY.into(), state_json);
        let mut files = vec![
            Staged {
                name: rundir::LAST_FILE,
                weights: last,
            },
            Staged {
                name: rundir::OPTIMIZER_FILE,
                weights: opt,
            },
        ];
        if let Some(ema) = &self.ema {
            files.push(Staged {
                name: rundir::EMA_FILE,
                weights: self.ema_weights(
                    ema,
                    CheckpointMeta {
                        epoch: Some(s.epochs_done),
                        batches_into_next_epoch: Some(s.batches_done),
                        step: Some(s.global_step),
                        ..CheckpointMeta::default()
                    },
                )?,
            });
        }
        if let Some((acc, epoch, split)) = best {
            let meta = CheckpointMeta {
                epoch: Some(epoch),
                val_accuracy: Some(acc),
                val_split: Some(split),
                step: Some(s.global_step),
                ..CheckpointMeta::default()
            };
            let weights = match &self.ema {
                Some(ema) if self.selects_ema() => self.ema_weights(ema, meta)?,
                _ => self.weights(meta)?,
            };
            files.push(Staged {
                name: rundir::BEST_FILE,
                weights,
            });
        }
        commit(&self.dir, files, s)
    }
}

/// Whether `recipe` exports (and selects its best epoch by) the EMA weights: `train.ema` on
/// and `export.weights` not `raw`.
pub fn selects_ema(recipe: &Recipe) -> bool {
    recipe.train.ema.is_some() && recipe.export.weights != Some(wrnc_recipe::ExportWeights::Raw)
}

/// The run-directory file the ONNX export reads: `best.safetensors` when the per-epoch
/// evaluation ran on a validation split, else the last weights (`ema.safetensors` when the
/// EMA is exported, `last.safetensors` otherwise).
pub fn export_weights_file(recipe: &Recipe, eval_split: Split) -> &'static str {
    if eval_split == Split::Val {
        rundir::BEST_FILE
    } else if selects_ema(recipe) {
        rundir::EMA_FILE
    } else {
        rundir::LAST_FILE
    }
}

/// Trains `graph` with `recipe` into `opts.out_dir` (see the crate docs for the files),
/// reporting nothing ([`train_with`] reports progress to an observer).
pub fn train(graph: &Graph, recipe: &Recipe, opts: &TrainOptions) -> Result<TrainOutcome> {
    train_with(graph, recipe, opts, &mut Silent)
}

/// [`train`], reporting epochs, steps and notices to `observer`.
pub fn train_with(
    graph: &Graph,
    recipe: &Recipe,
    opts: &TrainOptions,
    observer: &mut dyn TrainObserver,
) -> Result<TrainOutcome> {
    validate(recipe)?;
    if !recipe.train.freeze.is_empty() {
        let c = crate::freeze::frozen_count(graph, &recipe.train.freeze)?;
        let (tensors, params) = graph
            .params
            .iter()
            .filter(|p| p.trainable)
            .fold((0, 0), |(t, n), p| (t + 1, n + p.numel()));
        observer.notice(&Notice::Info(format!(
            "train.freeze: {} of {tensors} trainable tensors frozen ({} of {params} \
             parameters); they get no update and no optimiser state",
            c.tensors, c.params
        )));
    }
    // Everything that can refuse the run is checked before the run directory is created, so
    // that a refused run leaves nothing behind: device, precision, --init weights, data.
    let device = select_device(opts.device.unwrap_or(recipe.train.device))?;
    let compute = compute_dtype(recipe.train.precision, &device)?;
    if opts.resume && opts.init_weights.is_some() {
        return Err(TrainError::Invalid(
            "--init cannot be combined with --resume (a resumed run continues from its own \
             checkpoint)"
                .into(),
        ));
    }
    let dir = opts.out_dir.clone();
    // (An existing directory is locked first: its owner may be about to commit.)
    if opts.resume && !dir.is_dir() {
        return Err(run_dir_err(
            &dir,
            "there is no committed checkpoint to resume (state.json is missing); start \
             the run without --resume",
        ));
    }
    if opts.init_weights.is_none() && !opts.init_skip.is_empty() {
        return Err(TrainError::Invalid(
            "--init-skip needs --init WEIGHTS (it names tensors not to take from them)".into(),
        ));
    }
    let init = match &opts.init_weights {
        Some(p) => {
            let l = crate::finetune::load_init(p, graph, &opts.init_skip, recipe.train.seed)?;
            Some(l)
        }
        None => None,
    };
    let already_a_run = || {
        run_dir_err(
            &dir,
            "it already holds a run (state.json exists); pass --resume to continue it or \
             choose another output directory",
        )
    };
    // A fresh run checks its data before creating the directory; a resumed run has one
    // already and loads its data only when there are epochs left to train.
    let data = if opts.resume {
        None
    } else if dir.join(rundir::STATE_FILE).exists() {
        return Err(already_a_run());
    } else {
        Some(load_run_data_with(graph, recipe, observer)?)
    };
    // The memory the run needs, against the limits of this process, before anything big is
    // allocated and before the run directory exists.
    let estimate = check_memory(graph, recipe, &device, compute, data.as_ref())?;
    observer.memory_estimate(&estimate);
    std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    let lock = RunLock::acquire(&dir)?;
    if let Some(w) = lock.warning() {
        observer.notice(&Notice::Warning(w.to_string()));
    }
    // Temporary files of a killed earlier process (the lock is ours, so none is in flight).
    let _ = wrnc_ir::atomic::remove_stale_temps(&dir);
    set_tf32(&device, recipe.train.tf32);
    set_deterministic(&device, recipe.train.deterministic);
    let settings = settings_json(graph, recipe)?;
    let existing = read_state(&dir)?;
    // A folder dataset's val/ folder gives a validation split with val_size 0: the run's
    // run.json says which split it evaluated.
    let eval_split_guess = recorded_eval_split(&dir).unwrap_or(if recipe.data.val_size > 0 {
        Split::Val
    } else {
        Split::Test
    });

    let mut run = if opts.resume {
        let state = existing.ok_or_else(|| {
            run_dir_err(
                &dir,
                "there is no committed checkpoint to resume (state.json is missing); start \
                 the run without --resume",
            )
        })?;
        let mut state = state;
        let change = epochs_change(&dir, &state, &settings)?;
        let (last, optw) = recover(&dir, &state)?;
        if let Some(change) = change {
            // The spec first: a kill before the state is written leaves a run that the same
            // command (or `--resume` alone, which reads this spec) extends again.
            if !opts.resolved_spec_yaml.is_empty() {
                let spec_path = dir.join(rundir::SPEC_FILE);
                write_atomic(&spec_path, opts.resolved_spec_yaml.as_bytes())
                    .map_err(|e| TrainError::io(&spec_path, e))?;
            }
            state.extended.push(change);
            state.settings = settings.clone();
            rundir::write_state(&dir, &state)?;
            observer.notice(&Notice::Info(format!(
                "train.epochs changed from {} to {} after {} completed epochs: the run now \
                 trains up to epoch {}",
                change.from, change.to, change.at_epoch, change.to
            )));
        }
        let mut last = last;
        last.metadata.clear();
        let model = Model::with_precision(graph, &last, &device, DType::F32, compute)?;
        let mut opt = Optimizer::new(&recipe.train.optimizer, graph);
        opt.load_state(&model, &optw.tensors, state.global_step)?;
        let ema = match &recipe.train.ema {
            None => None,
            Some(cfg) => {
                let w = Weights::load(&dir.join(rundir::EMA_FILE))?;
                let tag = w.metadata.get(rundir::COMMIT_KEY).cloned();
                if tag.as_deref() != Some(state.commit().as_str()) {
                    return Err(run_dir_err(
                        &dir,
                        format!(
                            "{} does not belong to commit `{}` of {}; the directory was \
                             modified outside wrnc",
                            rundir::EMA_FILE,
                            state.commit(),
                            rundir::STATE_FILE
                        ),
                    ));
                }
                Some(EmaState::from_weights(cfg, &model, &w)?)
            }
        };
        let run = Run {
            graph,
            recipe,
            opts,
            dir: dir.clone(),
            model,
            opt,
            ema,
            state,
            normalization: None,
            class_names: Vec::new(),
        };
        if run.state.epochs_done >= recipe.train.epochs {
            return Ok(run.outcome(RunStatus::AlreadyFinished, eval_split_guess));
        }
        run
    } else {
        if existing.is_some() {
            return Err(already_a_run());
        }
        let weights = match init {
            Some(l) => {
                observer.notice(&Notice::Info(format!(
                    "--init: {} tensors loaded from the weights file, {} initialised fresh \
                     (--init-skip)",
                    l.loaded, l.skipped
                )));
                l.weights
            }
            None => init_weights(graph, recipe.train.seed),
        };
        let spec_path = dir.join(rundir::SPEC_FILE);
        write_atomic(&spec_path, opts.resolved_spec_yaml.as_bytes())
            .map_err(|e| TrainError::io(&spec_path, e))?;
        truncate_steps(&dir, 0)?;
        rundir::write_metrics(&dir, &[])?;
        for stale in [
            rundir::LAST_FILE,
            rundir::BEST_FILE,
            rundir::OPTIMIZER_FILE,
            rundir::EMA_FILE,
        ] {
            let _ = std::fs::remove_file(dir.join(format!("{stale}.next")));
        }
        let model = Model::with_precision(graph, &weights, &device, DType::F32, compute)?;
        let ema = match &recipe.train.ema {
            Some(cfg) => Some(EmaState::new(cfg, &model)?),
            None => None,
        };
        Run {
            graph,
            recipe,
            opts,
            dir: dir.clone(),
            model,
            ema,
            opt: Optimizer::new(&recipe.train.optimizer, graph),
            normalization: None,
            class_names: Vec::new(),
            state: RunState {
                format: 1,
                model: graph.name.clone(),
                epochs_done: 0,
                batches_done: 0,
                global_step: 0,
                partial: PartialEpoch::default(),
                best: None,
                best_commit: None,
                seed: recipe.train.seed,
                settings,
                metrics: Vec::new(),
                extended: Vec::new(),
            },
        }
    };
    train_epochs(&mut run, data, device_name(&device), observer)
}

/// Where a training step on `device` keeps its activations.
fn step_path(graph: &Graph, device: &Device, compute: DType) -> StepPath {
    if !device.is_cpu() {
        StepPath::Device
    } else if Kernels::default_for(device, compute).is_cpu_fast() && Tape::supports(graph) {
        // the convolutions apply a batch norm as they read only in f32 (Model::reader_applies_bn)
        if compute == DType::F32 {
            StepPath::Tape
        } else {
            StepPath::TapeBf16
        }
    } else {
        StepPath::Autograd
    }
}

/// Estimates the run's memory ([`memory::estimate`]; the loaded `data`, or the dataset's
/// official sizes for a resumed run that has not loaded it yet) and refuses the run when it
/// exceeds the address-space or cgroup limit of this process.
fn check_memory(
    graph: &Graph,
    recipe: &Recipe,
    device: &Device,
    compute: DType,
    data: Option<&crate::data::RunData>,
) -> Result<MemoryEstimate> {
    let path = step_path(graph, device, compute);
    let size = match data {
        Some(d) => DataSize {
            images: (d.train.len() + d.val.as_ref().map_or(0, |v| v.len()) + d.test.len()) as u64,
            values_per_image: (d.train.channels() * d.train.height() * d.train.width()) as u64,
            eval_images: d.val.as_ref().map_or(0, |v| v.len()).max(d.test.len()) as u64,
        },
        None => {
            let kind = recipe.data.dataset;
            // A folder's sizes are known only once it is read: its images are not counted.
            let (train, test) = (
                kind.train_size().unwrap_or(0),
                kind.test_size().unwrap_or(0),
            );
            DataSize {
                images: (train + test) as u64,
                values_per_image: graph.input_shape().iter().product::<usize>() as u64,
                eval_images: recipe.data.val_size.max(test) as u64,
            }
        }
    };
    let threads = crate::kernels::threads();
    let at = |batch: usize, eval_batch: usize| {
        let mut r = recipe.clone();
        r.train.batch_size = batch;
        r.train.eval_batch_size = eval_batch;
        memory::estimate(graph, &r, path, size, threads)
    };
    let (batch, eval_batch) = (recipe.train.batch_size, recipe.train.eval_batch_size);
    let estimate = at(batch, eval_batch);
    let limits: Vec<MemoryLimit> = [memlimit::address_space_limit(), memlimit::cgroup_limit()]
        .into_iter()
        .flatten()
        .collect();
    if limits.is_empty() {
        return Ok(estimate);
    }
    let threads = threads as u64;
    let fits = |e: &MemoryEstimate| memlimit::check(e, &limits, threads, "").is_ok();
    if fits(&estimate) {
        return Ok(estimate);
    }
    // The largest batch size that fits (the activations grow with it): the training batch
    // alone, else both batch sizes together.
    let largest_fitting = |f: &dyn Fn(usize) -> MemoryEstimate, from: usize| {
        let (mut lo, mut hi) = (0usize, from.max(1));
        if fits(&f(hi)) {
            return hi;
        }
        while lo + 1 < hi {
            let mid = lo + (hi - lo) / 2;
            if fits(&f(mid)) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    };
    let train_only = largest_fitting(&|b| at(b, eval_batch), batch);
    let advice = if train_only >= 1 {
        format!(
            "Use a smaller batch (`--set train.batch_size={train_only}` fits), a smaller \
             model, or raise the limit"
        )
    } else {
        match largest_fitting(&|b| at(b.min(batch), b), batch.max(eval_batch)) {
            0 => "Even a batch of 1 does not fit: use a smaller model or raise the limit".into(),
            b => format!(
                "Use smaller batches (`--set train.batch_size={} --set \
                 train.eval_batch_size={b}` fit), a smaller model, or raise the limit",
                b.min(batch)
            ),
        }
    };
    memlimit::check(&estimate, &limits, threads, &advice)?;
    Ok(estimate)
}

/// The split a run evaluated after each epoch, as its `run.json` records it.
fn recorded_eval_split(dir: &Path) -> Option<Split> {
    let text = std::fs::read_to_string(dir.join(rundir::RUN_FILE)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    serde_json::from_value(v.get("epoch_eval_split")?.clone()).ok()
}

fn write_run_json(run: &Run<'_>, data: &crate::data::RunData, device: &str) -> Result<()> {
    let split = data.epoch_eval_split();
    let info = serde_json::json!({
        "model": run.graph.name,
        "spec": run.opts.spec_name,
        "dataset": run.recipe.data.dataset,
        "classes": run.class_names,
        "train_size": data.train.len(),
        "val_size": data.val.as_ref().map(|v| v.len()).unwrap_or(0),
        "test_size": data.test.len(),
        "epoch_eval_split": split,
        "epoch_eval_note": if split == Split::Test {
            "data.val_size is 0: the val_loss/val_acc columns of metrics.csv and best.safetensors \
             use the test split"
        } else {
            "val_loss/val_acc are measured on the held-out validation split"
        },
        "device": device,
        "epochs": run.recipe.train.epochs,
        "batch_size": run.recipe.train.batch_size,
        "steps_per_epoch": num_batches(data.train.len(), run.recipe.train.batch_size,
            run.recipe.train.drop_last),
        "seed": run.recipe.train.seed,
        "threads": crate::kernels::threads(),
        "resumed_from_step": run.state.global_step,
        "extended": run.state.extended,
        "wrnc_train_version": env!("CARGO_PKG_VERSION"),
    });
    let path = run.dir.join(rundir::RUN_FILE);
    let bytes = serde_json::to_vec_pretty(&info).map_err(|e| TrainError::Invalid(e.to_string()))?;
    write_atomic(&path, &bytes).map_err(|e| TrainError::io(&path, e))
}

fn train_epochs(
    run: &mut Run<'_>,
    data: Option<crate::data::RunData>,
    device: &str,
    observer: &mut dyn TrainObserver,
) -> Result<TrainOutcome> {
    let (recipe, opts) = (run.recipe, run.opts);
    let data = match data {
        Some(d) => d,
        None => load_run_data_with(run.graph, recipe, observer)?,
    };
    run.normalization = Some(wrnc_data::Normalizer::clone(&data.norm));
    run.class_names = match &opts.class_names {
        Some(names) if names.len() != run.graph.classes() => {
            return Err(TrainError::Invalid(format!(
                "{} class names given for a model with {} classes",
                names.len(),
                run.graph.classes()
            )))
        }
        Some(names) => names.clone(),
        None => data.train.class_names().to_vec(),
    };
    let eval_split = data.epoch_eval_split();
    let eval_data = data.split(eval_split)?;
    write_run_json(run, &data, device)?;
    let cfg = train_batch_config(recipe);
    let tc = &recipe.train;
    let steps = num_batches(data.train.len(), tc.batch_size, tc.drop_last);
    if steps == 0 {
        return Err(TrainError::Invalid(format!(
            "the training split has {} images, fewer than one batch of {} with drop_last",
            data.train.len(),
            tc.batch_size
        )));
    }
    let mut log = StepLog::open(&run.dir)?;
    let seed = tc.seed;

    let schedule = LrSchedule::new(tc, steps);
    let classes = run.graph.classes();
    let mut final_test = None;
    for epoch in run.state.epochs_done..tc.epochs {
        let skip = run.state.batches_done;
        let batches = epoch_batches(
            Arc::clone(&data.train),
            Arc::clone(&data.norm),
            &cfg,
            epoch as u64,
            seed,
        )
        .map_err(|e| TrainError::Data(e.to_string()))?;
        observer.epoch_started(&EpochStart {
            epoch: epoch + 1,
            epochs: tc.epochs,
            steps,
            done: skip,
        });
        let started = Instant::now();
        let prior_secs = run.state.partial.train_seconds;
        let mut stop = false;
        for (bi, batch) in batches.enumerate().skip(skip) {
            let lr = schedule.lr(epoch, bi);
            let x = run.model.input_tensor(&batch.images, batch.len)?;
            let mode = Mode::Train {
                seed,
                step: run.state.global_step,
            };
            // A mixed batch (mixup, CutMix) learns timm's mixed, smoothed targets and is
            // scored against each image's dominant label.
            let mixed = batch.mix.map(|m| {
                let t = mixup_targets(&batch.labels, classes, m.lam, tc.label_smoothing);
                (t, dominant_labels(&batch.labels, m.lam))
            });
            let (targets, scored) = match &mixed {
                Some((t, dominant)) => (Targets::Soft(t), dominant.as_slice()),
                None => (Targets::Labels(&batch.labels), batch.labels.as_slice()),
            };
            let computed = step_grads_for(&mut run.model, &x, targets, mode, tc)?;
            let step = &computed.first;
            let value = step.loss;
            if !value.is_finite() {
                observer.steps_finished();
                return Err(TrainError::NonFinite {
                    epoch: epoch + 1,
                    step: bi + 1,
                    global_step: run.state.global_step + 1,
                    value: format!("{value}"),
                    // Only a committed state.json means a checkpoint is on disk.
                    last_good_epoch: read_state(&run.dir).ok().flatten().map(|s| s.epochs_done),
                });
            }
            run.opt
                .step_with(&mut run.model, |t| computed.grads.get(t), lr)?;
            if let Some(ema) = &mut run.ema {
                ema.update(&run.model, run.state.global_step + 1)?;
            }
            let correct = count_correct(&step.logits, scored)?;
            let s = &mut run.state;
            s.global_step += 1;
            s.batches_done = bi + 1;
            s.partial.loss_sum += value as f64 * batch.len as f64;
            s.partial.correct += correct as u64;
            s.partial.seen += batch.len as u64;
            s.partial.train_seconds = prior_secs + started.elapsed().as_secs_f64();
            log.row(s.global_step, epoch + 1, lr, value as f64)?;
            let seen = s.partial.seen as f64;
            observer.step_done(&StepProgress {
                step: bi + 1,
                global_step: s.global_step,
                batch_loss: value as f64,
                loss: s.partial.loss_sum / seen,
                accuracy: s.partial.correct as f64 / seen,
                lr,
                images_per_sec: seen / s.partial.train_seconds.max(1e-9),
            });
            stop = opts.interrupted() || opts.stop_after_steps == Some(s.global_step);
            if stop && bi + 1 < steps {
                observer.steps_finished();
                log.sync()?;
                run.checkpoint(None)?;
                return Ok(run.outcome(RunStatus::Interrupted, eval_split));
            }
            if stop {
                break;
            }
        }
        observer.steps_finished();
        let p = run.state.partial;
        // The last epoch's test evaluation of the weights `last.safetensors` receives is
        // the exported weights' one: kept with its predictions for the report.
        let exported = eval_split == Split::Test
            && export_weights_file(recipe, eval_split) == rundir::LAST_FILE
            && run.model.compute_dtype() == DType::F32;
        let ev = if exported && epoch + 1 == tc.epochs {
            let normalizer = InputNormalizer {
                normalizer: Arc::clone(&data.norm),
                source: NormalizerSource::Recorded,
            };
            let d = evaluate_model_detailed(
                &mut run.model,
                Arc::clone(&eval_data),
                normalizer,
                tc.eval_batch_size,
                eval_split,
                Tta::None,
            )?;
            let r = d.evaluation.result;
            final_test = Some(d);
            r
        } else {
            evaluate_model(
                &mut run.model,
                Arc::clone(&eval_data),
                Arc::clone(&data.norm),
                tc.eval_batch_size,
                eval_split,
            )?
        };
        let ema_ev = match &run.ema {
            Some(ema) => {
                let w = ema.to_weights(&run.model)?;
                let mut m = Model::with_precision(
                    run.graph,
                    &w,
                    run.model.device(),
                    DType::F32,
                    run.model.compute_dtype(),
                )?;
                Some(evaluate_model(
                    &mut m,
                    Arc::clone(&eval_data),
                    Arc::clone(&data.norm),
                    tc.eval_batch_size,
                    eval_split,
                )?)
            }
            None => None,
        };
        let seen = p.seen.max(1) as f64;
        let row = EpochMetrics {
            epoch: epoch + 1,
            lr: schedule.epoch_lr(epoch),
            train_loss: p.loss_sum / seen,
            train_acc: p.correct as f64 / seen,
            val_loss: ev.loss,
            val_acc: ev.accuracy,
            seconds: prior_secs + started.elapsed().as_secs_f64(),
            images_per_sec: p.seen as f64 / p.train_seconds.max(1e-9),
            ema_val_loss: ema_ev.as_ref().map(|e| e.loss),
            ema_val_acc: ema_ev.as_ref().map(|e| e.accuracy),
        };
        let selected_acc = match row.ema_val_acc {
            Some(a) if run.selects_ema() => a,
            _ => row.val_acc,
        };
        let s = &mut run.state;
        s.metrics.push(row);
        s.epochs_done = epoch + 1;
        s.batches_done = 0;
        s.partial = PartialEpoch::default();
        let improved = s.best.is_none_or(|(b, _)| selected_acc > b);
        if improved {
            s.best = Some((selected_acc, epoch + 1));
            s.best_commit = Some(s.commit());
        }
        log.sync()?;
        run.checkpoint(improved.then_some((selected_acc, epoch + 1, eval_split)))?;
        observer.epoch_finished(&EpochEnd {
            epochs: tc.epochs,
            metrics: row,
            split: eval_split,
            improved,
        });
        if stop && epoch + 1 < tc.epochs {
            return Ok(run.outcome(RunStatus::Interrupted, eval_split));
        }
    }
    let mut outcome = run.outcome(RunStatus::Finished, eval_split);
    outcome.final_test = final_test;
    Ok(outcome)
}
