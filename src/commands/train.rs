//! `wrnc train SPEC [--out DIR] [--device ...] [--resume] [--init WEIGHTS] [--quiet]`, or
//! `wrnc train --resume --out DIR` (the spec is the run's own `spec.resolved.yaml`).

use super::common::SpecArgs;
use super::deploy::{export_metadata, DeviceArg};
use crate::exit::UsageError;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use wrnc_ir::Weights;
use wrnc_onnx::{ExportOptions, MetaKey, ModelInfo, TrainingSummary};
use wrnc_train::{
    rundir, DecodeProgress, EpochEnd, EpochStart, FolderReport, Notice, RunStatus, Split,
    StepProgress, TrainError, TrainObserver, TrainOptions, TrainOutcome,
};

/// Arguments of `wrnc train`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The spec file (YAML); optional with `--resume --out DIR`, which reads the run's
    /// `spec.resolved.yaml`. A run directory here stands for its `spec.resolved.yaml`:
    /// `--resume RUN_DIR` continues that run, `RUN_DIR --out NEW_DIR` trains its recipe anew.
    spec: Option<PathBuf>,
    /// Override a spec value: `--set key.path=value` (value parsed as YAML; repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Run directory (default: runs/<spec name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Device: auto (CUDA when built in and present, else CPU), cpu or cuda.
    #[arg(long, value_enum)]
    device: Option<DeviceArg>,
    /// Continue the run stopped in the run directory, exactly where it stopped.
    #[arg(long)]
    resume: bool,
    /// Start from these weights (names and shapes are checked) instead of a fresh init.
    #[arg(long, value_name = "WEIGHTS")]
    init: Option<PathBuf>,
    /// With --init: initialise the parameters whose names match this glob (e.g. `fc.*`) fresh
    /// instead of loading them (repeatable), e.g. a classifier with another number of classes.
    #[arg(long = "init-skip", value_name = "PATTERN", requires = "init")]
    init_skip: Vec<String>,
    /// No progress bar; one line per epoch (for logs).
    #[arg(long)]
    quiet: bool,
    /// Also write TensorBoard event files under RUN_DIR/tb/ (as `train.tensorboard: true`).
    #[arg(long)]
    tensorboard: bool,
    /// Do not write RUN_DIR/report.html at the end.
    #[arg(long)]
    no_report: bool,
}

/// What the terminal shows of a run: an indicatif bar per epoch (stderr, only on a terminal
/// and without `--quiet`), one summary line per epoch and the notices, on stderr.
struct Terminal {
    quiet: bool,
    bar: Option<ProgressBar>,
    decode_bar: Option<ProgressBar>,
}

impl Terminal {
    fn new(quiet: bool) -> Self {
        Terminal {
            quiet,
            bar: None,
            decode_bar: None,
        }
    }

    fn draw_target(&self) -> ProgressDrawTarget {
        if self.quiet || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        }
    }
}

/// `n` bytes in B, KB, MB or GB (powers of 1000).
fn human_bytes(n: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// The first few paths of a list, and how many more.
fn some_paths<'a>(paths: impl ExactSizeIterator<Item = &'a std::path::Path>) -> String {
    let n = paths.len();
    let shown = wrnc_data::folder::SHOWN_FILES;
    let mut s: Vec<String> = paths.take(shown).map(wrnc_verify::printable_path).collect();
    if n > shown {
        s.push(format!("and {} more", n - shown));
    }
    s.join(", ")
}

impl TrainObserver for Terminal {
    fn epoch_started(&mut self, e: &EpochStart) {
        let bar = ProgressBar::with_draw_target(Some(e.steps as u64), self.draw_target());
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} [{bar:25.cyan/blue}] {pos}/{len} {msg} ETA {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(format!("epoch {}/{}", e.epoch, e.epochs));
        bar.set_position(e.done as u64);
        self.bar = Some(bar);
    }

    fn step_done(&mut self, p: &StepProgress) {
        if let Some(bar) = &self.bar {
            bar.set_position(p.step as u64);
            bar.set_message(format!(
                "loss {:.4} acc {:.2}% lr {:.5} {:.0} img/s",
                p.loss,
                p.accuracy * 100.0,
                p.lr,
                p.images_per_sec
            ));
        }
    }

    fn steps_finished(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn epoch_finished(&mut self, e: &EpochEnd) {
        let m = &e.metrics;
        eprintln!(
            "epoch {}/{}: lr {:.5}  train loss {:.4} acc {:.2}%  {} loss {:.4} acc {:.2}%{}{}  \
             {:.1}s  {:.0} img/s",
            m.epoch,
            e.epochs,
            m.lr,
            m.train_loss,
            m.train_acc * 100.0,
            e.split,
            m.val_loss,
            m.val_acc * 100.0,
            match (m.ema_val_loss, m.ema_val_acc) {
                (Some(l), Some(a)) => format!("  ema loss {l:.4} acc {:.2}%", a * 100.0),
                _ => String::new(),
            },
            if e.improved { " (best)" } else { "" },
            m.seconds,
            m.images_per_sec
        );
    }

    fn memory_estimate(&mut self, e: &wrnc_train::MemoryEstimate) {
        eprintln!("memory: {e}");
    }

    fn notice(&mut self, n: &Notice) {
        match n {
            Notice::Warning(w) => eprintln!("warning: {w}"),
            Notice::Info(i) => eprintln!("{i}"),
        }
    }

    fn decode_progress(&mut self, p: &DecodeProgress) {
        if self.decode_bar.is_none() {
            let bar = ProgressBar::with_draw_target(Some(p.total as u64), self.draw_target());
            if let Ok(style) = ProgressStyle::with_template(
                "decoding images [{bar:25.cyan/blue}] {pos}/{len} {per_sec} ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            self.decode_bar = Some(bar);
        }
        if let Some(bar) = &self.decode_bar {
            bar.set_position(p.done as u64);
            if p.done >= p.total {
                bar.finish_and_clear();
                self.decode_bar = None;
            }
        }
    }

    fn data_loaded(&mut self, r: &FolderReport) {
        let root = wrnc_verify::printable_path(&r.root);
        let [train, val, test] = r.counts;
        eprintln!(
            "data: {root}: {} classes; {train} train, {val} val, {test} test images",
            r.classes.len()
        );
        let c = &r.cache;
        let cache = wrnc_verify::printable_path(&c.path);
        if c.hit() {
            eprintln!(
                "data: read the decode cache {cache} ({}); no image decoded",
                human_bytes(c.bytes)
            );
        } else {
            eprintln!(
                "data: decoded {} images in {:.2} s ({:.0} images/s) into the decode cache \
                 {cache} ({})",
                c.decoded,
                c.decode_seconds,
                c.images_per_sec(),
                human_bytes(c.bytes)
            );
        }
        if let Some(e) = &c.write_error {
            eprintln!(
                "warning: the decode cache {cache} could not be written ({e}); the next run \
                 decodes the images again"
            );
        }
        if !r.ignored.is_empty() {
            eprintln!(
                "data: ignored {} entries (hidden, not PNG/JPEG, or outside a class folder): {}",
                r.ignored.len(),
                some_paths(r.ignored.iter().map(|p| p.as_path()))
            );
        }
        if !r.skipped.is_empty() {
            eprintln!(
                "warning: skipped {} images that cannot be decoded (data.bad_images: skip): {}",
                r.skipped.len(),
                some_paths(r.skipped.iter().map(|(p, _)| p.as_path()))
            );
            if let Some((p, m)) = r.skipped.first() {
                eprintln!("  first: {}: {m}", wrnc_verify::printable_path(p));
            }
        }
        for n in &r.notes {
            eprintln!("note: {n}");
        }
    }
}

/// The process's interrupt flag, with the Ctrl-C handler installed on first use: the first
/// Ctrl-C sets the flag (training then saves a resumable checkpoint after the current step),
/// a second one exits at once with status 130 (the last committed checkpoint stays valid).
/// `None` when a handler cannot be installed.
fn ctrl_c_flag() -> Option<Arc<AtomicBool>> {
    static FLAG: OnceLock<Option<Arc<AtomicBool>>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let set = Arc::clone(&flag);
        ctrlc::set_handler(move || {
            if set.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond interrupt: exiting now; the last checkpoint is kept");
                std::process::exit(130);
            }
            eprintln!(
                "\ninterrupt: finishing the current step and saving a resumable checkpoint \
                 (press Ctrl-C again to exit at once)"
            );
        })
        .ok()
        .map(|()| flag)
    })
    .clone()
}

/// The command that continues the run in `out`: its `spec.resolved.yaml` holds the spec with
/// every `--set` override, so no spec file or override needs repeating.
fn resume_hint(out: &std::path::Path) -> String {
    format!("wrnc train --resume --out {}", out.display())
}

/// The one line that reports a run stopped by Ctrl-C: where it stopped, what the saved
/// checkpoint holds, and the command that continues it.
fn interrupt_message(out: &Path, o: &TrainOutcome) -> String {
    let hint = resume_hint(out);
    if o.batches_done > 0 {
        format!(
            "interrupted during epoch {} of {}: saved a resumable checkpoint after {} of its \
             steps ({} complete, step {} of the run); continue with: {hint}",
            o.epochs_done + 1,
            o.epochs,
            o.batches_done,
            if o.epochs_done == 1 {
                "1 epoch".to_string()
            } else {
                format!("{} epochs", o.epochs_done)
            },
            o.global_step
        )
    } else {
        format!(
            "interrupted after epoch {} of {}: saved a resumable checkpoint at its end (step \
             {} of the run); continue with: {hint}",
            o.epochs_done, o.epochs, o.global_step
        )
    }
}

/// Why the ONNX file at `path` of a finished run must be written again: it is missing or
/// unreadable, or its training metadata (`want`, without the test accuracy, which only an
/// export measures) or its weights file differ from the run's. `None` when it is current.
fn export_out_of_date(path: &Path, want: &TrainingSummary, file: &str) -> Option<&'static str> {
    if !path.is_file() {
        return Some("is missing");
    }
    let info = wrnc_onnx::read_model_file(path, &wrnc_onnx::ReadLimits::default())
        .ok()
        .and_then(|m| ModelInfo::from_model(&m).ok());
    let Some(info) = info else {
        return Some("is not a readable ONNX file");
    };
    let got = info.training.map(|t| TrainingSummary {
        test_accuracy: None,
        ..t
    });
    let recorded = info.metadata.get(MetaKey::WeightsFile.as_str());
    let want = TrainingSummary {
        test_accuracy: None,
        ..want.clone()
    };
    if got.as_ref() != Some(&want) || recorded.map(String::as_str) != Some(file) {
        return Some("records another training state than the run's");
    }
    None
}

/// Runs the command.
pub fn run(a: Args) -> Result<ExitCode> {
    let spec_path = match (&a.spec, &a.out, a.resume) {
        (Some(p), _, _) => p.clone(),
        (None, Some(dir), true) => {
            let path = dir.join(rundir::SPEC_FILE);
            if !path.is_file() {
                return Err(UsageError(format!(
                    "{} is not a wrnc run directory ({} is missing), so there is nothing to \
                     resume; start a run with: wrnc train SPEC --out {}",
                    dir.display(),
                    rundir::SPEC_FILE,
                    dir.display()
                ))
                .into());
            }
            path
        }
        (None, _, _) => {
            return Err(UsageError(
                "wrnc train needs a spec file, or `--resume --out DIR` to continue the run in \
                 DIR with its own spec.resolved.yaml"
                    .into(),
            )
            .into())
        }
    };
    let spec_args = SpecArgs {
        spec: spec_path,
        set: a.set.clone(),
    };
    // A run directory given as SPEC: `--resume` continues that run; without it, its recipe
    // is trained anew, but only into an --out named (the default, runs/<name>, could be
    // another run of the same name, or this one).
    let run_dir = spec_args.run_dir().map(Path::to_path_buf);
    if let (Some(dir), None, false) = (&run_dir, &a.out, a.resume) {
        return Err(UsageError(format!(
            "{d} is a run directory: `wrnc train --resume {d}` continues it; to train its \
             recipe anew, name the new run directory: wrnc train {d} --out NEW_DIR",
            d = wrnc_verify::printable_path(dir)
        ))
        .into());
    }
    let spec = spec_args.load()?;
    let recipe = spec.recipe();
    let out = match (&a.out, &run_dir) {
        (Some(o), _) => o.clone(),
        (None, Some(dir)) => dir.clone(),
        (None, None) => PathBuf::from("runs").join(spec.name()),
    };
    let mut opts = TrainOptions::new(&out);
    opts.device = a.device.map(Into::into);
    opts.resume = a.resume;
    opts.init_weights = a.init.clone();
    opts.init_skip = a.init_skip.clone();
    opts.resolved_spec_yaml = spec.resolved_yaml();
    opts.spec_name = spec.name().to_string();
    opts.class_names = spec.resolved.model.labels.clone();
    opts.interrupt = ctrl_c_flag();
    if opts.interrupt.is_none() {
        eprintln!("warning: could not install the Ctrl-C handler");
    }
    let mut terminal = Terminal::new(a.quiet);
    let tb_on = a.tensorboard || recipe.train.tensorboard;
    let mut terminal = super::tensorboard::TensorBoard::new(&out, tb_on, &mut terminal);
    let mut outcome =
        wrnc_train::train_with(&spec.graph, &recipe, &opts, &mut terminal).map_err(|e| {
            let io = matches!(e, TrainError::Io { .. });
            let e = anyhow::Error::from(e);
            if !io {
                return e;
            }
            // A failed read or write (disk full, read-only directory, --out is a file): advice
            // to resume only when a checkpoint was committed (state.json is the commit point).
            if out.join(rundir::STATE_FILE).is_file() {
                e.context(format!(
                    "training stopped: a file of the run directory could not be read or \
                     written; {} keeps its last committed checkpoint. Fix the cause, then \
                     continue with: {}",
                    out.display(),
                    resume_hint(&out)
                ))
            } else {
                e.context(format!(
                    "training stopped: a file of the run directory {} could not be read or \
                     written, and no checkpoint was committed (nothing to resume). Fix the \
                     cause, then start the run again",
                    out.display()
                ))
            }
        })?;
    // With a validation split, export the weights that scored best on it; without one the
    // per-epoch evaluation ran on the test set, and choosing on it would leak: export last
    // (the EMA of the weights when `train.ema` is on and `export.weights` is not `raw`).
    let file = wrnc_train::export_weights_file(&recipe, outcome.eval_split);
    let onnx_path = outcome.run_dir.join(&recipe.export.file);
    match outcome.status {
        RunStatus::Interrupted => {
            eprintln!("{}", interrupt_message(&out, &outcome));
            return Ok(ExitCode::from(130));
        }
        RunStatus::AlreadyFinished => {
            let stale = if recipe.export.onnx {
                export_out_of_date(&onnx_path, &super::deploy::run_summary(&outcome), file)
            } else {
                None
            };
            let done = format!(
                "the run in {} already finished all {} epochs",
                out.display(),
                outcome.epochs_done
            );
            match stale {
                None => {
                    // The float file is current; a quantized copy the spec asks for may be
                    // missing (deleted, or the run stopped between the two writes).
                    let mut wrote = false;
                    if let Some(q) = recipe.export.quantize.filter(|_| recipe.export.onnx) {
                        let q_path = outcome.run_dir.join(q.file_name(&recipe.export.file));
                        if older_than(&q_path, &onnx_path) {
                            eprintln!(
                                "{done}; {} is missing or older than {}: writing it",
                                q_path.display(),
                                onnx_path.display()
                            );
                            export_quantized(&spec, &onnx_path, q)?;
                            wrote = true;
                        }
                    }
                    if a.no_report || outcome.run_dir.join(rundir::REPORT_FILE).exists() {
                        if !wrote {
                            eprintln!("{done}; nothing to do");
                        }
                    } else {
                        eprintln!("{done}; writing its missing report");
                        finish_report(&a, &outcome.run_dir, opts.device, None);
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                Some(why) => eprintln!("{done}; {} {why}: exporting it", onnx_path.display()),
            }
        }
        RunStatus::Finished => {}
    }
    if let Some((acc, epoch)) = outcome.best {
        eprintln!(
            "best {} accuracy {:.2}% at epoch {epoch}",
            outcome.eval_split,
            acc * 100.0
        );
    }
    // The exported weights' test evaluation, measured once for the ONNX metadata and the
    // report (the trainer's last epoch already measured it when those are its weights).
    let mut test_eval = outcome.final_test.take();
    if recipe.export.onnx {
        let weights = Weights::load(&outcome.run_dir.join(file))
            .with_context(|| format!("cannot read {file} for the ONNX export"))?;
        let mut meta = export_metadata(&spec, &weights)?;
        let mut summary = super::deploy::run_summary(&outcome);
        if outcome.eval_split == Split::Val {
            // Selection ran on the validation split: measure the exported weights once on the
            // test set, so the file states what the deployed model scores on unseen data.
            // A finished run resumed on a machine without the dataset still exports.
            let device = opts.device.unwrap_or(recipe.train.device);
            match wrnc_train::evaluate_detailed(&spec.graph, &weights, &recipe, Split::Test, device)
            {
                Ok(test) => {
                    let r = &test.evaluation.result;
                    eprintln!(
                        "test accuracy of the exported weights ({file}): {:.2}% on {} images",
                        r.accuracy * 100.0,
                        r.count
                    );
                    summary.test_accuracy = Some(r.accuracy);
                    test_eval = Some(test);
                }
                Err(e) => eprintln!(
                    "warning: the exported weights could not be evaluated on the test split \
                     ({e}); the ONNX file records no test accuracy"
                ),
            }
        }
        meta.training = Some(summary);
        meta.weights_file = Some(file.to_string());
        let opts = ExportOptions::from(&recipe.export);
        let path = onnx_path;
        wrnc_onnx::export(&spec.graph, &weights, &opts, &meta)
            .and_then(|m| wrnc_onnx::tta::apply(m, recipe.export.tta))
            .and_then(|m| wrnc_onnx::write_model(&path, &m))
            .with_context(|| {
                format!(
                    "the ONNX export failed; training finished and its checkpoints are kept. \
                 Export again with: {}",
                    resume_hint(&out)
                )
            })?;
        eprintln!("exported {} (from {file})", path.display());
        if let Some(q) = recipe.export.quantize {
            export_quantized(&spec, &path, q)?;
        }
    }
    finish_report(&a, &outcome.run_dir, opts.device, test_eval);
    Ok(ExitCode::SUCCESS)
}

/// Whether `file` is missing or was modified before `than` (a copy derived from `than` that
/// must be written again).
fn older_than(file: &Path, than: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(file), modified(than)) {
        (Some(f), Some(t)) => f < t,
        _ => true,
    }
}

/// Writes the quantized copy the spec asks for (`export.quantize`) next to the exported
/// float file `path`, calibrated as `export.calibrate` / `export.calibration` say.
fn export_quantized(spec: &wrnc_spec::Spec, path: &Path, q: wrnc_recipe::Quantize) -> Result<()> {
    let e = &spec.resolved.export;
    let calibration = super::quantize::Calibration {
        method: e.calibrate.unwrap_or_default(),
        images: e
            .calibration
            .unwrap_or(wrnc_recipe::DEFAULT_CALIBRATION_IMAGES),
        dir: None,
    };
    let model = wrnc_onnx::read_model_file(path, &wrnc_onnx::ReadLimits::default())?;
    let float_bytes = wrnc_onnx::to_bytes(&model).len();
    let converted = match q {
        wrnc_recipe::Quantize::Int8 => super::quantize::int8(
            spec,
            &model,
            &calibration,
            super::quantize::DEFAULT_EVAL_IMAGES,
        ),
    }
    .with_context(|| format!("the {q} export of {} failed", path.display()))?;
    for l in super::quantize::write_next_to(path, float_bytes, q.as_str(), &converted)? {
        eprintln!("{l}");
    }
    Ok(())
}

/// Writes the run's `report.html` (unless `--no-report`) and prints its path; a failure is a
/// warning: the run itself succeeded. `test_eval`: the exported weights' test evaluation when
/// the export already measured it.
fn finish_report(
    a: &Args,
    dir: &std::path::Path,
    device: Option<wrnc_recipe::DeviceKind>,
    test_eval: Option<wrnc_train::DetailedEvaluation>,
) {
    if a.no_report {
        return;
    }
    match super::report::write_for_run(dir, device, test_eval) {
        Ok(path) => eprintln!("report: {}", path.display()),
        Err(e) => eprintln!(
            "warning: the report could not be written ({e:#}); write it with: wrnc report {}",
            dir.display()
        ),
    }
}
