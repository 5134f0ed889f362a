//! `wrnc bench SPEC [--batch N] [--steps N] [--device ...] [--json]`: training, inference and
//! tract throughput of a spec's network on synthetic data, with GFLOP/s and peak memory.

use super::common::SpecArgs;
use super::deploy::DeviceArg;
use anyhow::{Context, Result};
use serde_json::json;
use std::process::ExitCode;
use std::time::Instant;
use wrnc_train::{BenchOptions, Throughput};

/// Arguments of `wrnc bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    spec: SpecArgs,
    /// Images per batch.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(2..=65536))]
    batch: u64,
    /// Timed steps per phase (after two warm-up steps).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100000))]
    steps: u64,
    /// Where Candle runs (default: the spec's `train.device`).
    #[arg(long, value_enum)]
    device: Option<DeviceArg>,
    /// Skip the tract inference phase.
    #[arg(long)]
    no_tract: bool,
    /// Also time tract on the int8 QDQ form of the export (calibrated on the synthetic batch).
    #[arg(long, value_name = "int8")]
    quantize: Option<wrnc_recipe::Quantize>,
    /// Also time tract on the float16 form of the export.
    #[arg(long)]
    fp16: bool,
    /// Print JSON: {"train": {"images_per_sec", "gflops", ...}, "eval": {...},
    /// "tract": {...}, "peak_rss_bytes", ...}.
    #[arg(long)]
    json: bool,
}

/// Times tract inference of the exported graph with the batch fixed before optimisation.
fn bench_tract(
    graph: &wrnc_ir::Graph,
    weights: &wrnc_ir::Weights,
    opts: &BenchOptions,
) -> Result<Throughput> {
    let meta = wrnc_onnx::ExportMetadata::default();
    let model = wrnc_onnx::export(graph, weights, &wrnc_onnx::ExportOptions::default(), &meta)
        .context("exporting the graph to ONNX")?;
    bench_tract_model(graph, &model, opts)
}

/// The float export of the bench's weights converted to `form` (`int8`: calibrated by
/// minmax on the synthetic batch; `fp16`).
fn converted(
    graph: &wrnc_ir::Graph,
    weights: &wrnc_ir::Weights,
    opts: &BenchOptions,
    form: &str,
) -> Result<wrnc_onnx::ModelProto> {
    let meta = wrnc_onnx::ExportMetadata::default();
    let model = wrnc_onnx::export(graph, weights, &wrnc_onnx::ExportOptions::default(), &meta)
        .context("exporting the graph to ONNX")?;
    if form == "fp16" {
        return Ok(wrnc_onnx::quantize::fp16::to_fp16(&model)?);
    }
    let (images, _) = wrnc_train::synthetic_batch(graph, opts.batch, opts.seed);
    let shape: [usize; 3] = graph
        .input_shape()
        .try_into()
        .context("the input is not [C, H, W]")?;
    let ranges = wrnc_verify::calibrate(
        &model,
        &images,
        shape,
        opts.batch,
        wrnc_recipe::CalibrationMethod::Minmax,
    )?;
    Ok(wrnc_onnx::quantize::qdq::rewrite(&model, &ranges)?.0)
}

/// Times tract on an already exported model.
fn bench_tract_model(
    graph: &wrnc_ir::Graph,
    model: &wrnc_onnx::ModelProto,
    opts: &BenchOptions,
) -> Result<Throughput> {
    let bytes = wrnc_onnx::to_bytes(model);
    let tract = wrnc_verify::TractModel::load(bytes.as_slice(), Some(opts.batch))
        .context("loading the export into tract")?;
    let (images, _) = wrnc_train::synthetic_batch(graph, opts.batch, opts.seed);
    let [c, h, w]: [usize; 3] = graph
        .input_shape()
        .try_into()
        .context("the input is not [C, H, W]")?;
    let shape = [opts.batch, c, h, w];
    let mut started = Instant::now();
    let mut cpu = wrnc_train::cpu_seconds();
    for step in 0..opts.warmup + opts.steps {
        if step == opts.warmup {
            started = Instant::now();
            cpu = wrnc_train::cpu_seconds();
        }
        tract.run(&images, shape)?;
    }
    let used = cpu.zip(wrnc_train::cpu_seconds()).map(|(a, b)| b - a);
    Ok(Throughput::new(
        opts.batch,
        opts.steps,
        started.elapsed().as_secs_f64(),
        graph.stats().forward_flops as f64,
    )
    .with_cpu_seconds(opts.steps, used))
}

fn line(name: &str, t: &Throughput) -> String {
    let cpu = t
        .cpu_seconds_per_step
        .map(|c| format!(" {:>9.1} CPU ms/step", c * 1e3))
        .unwrap_or_default();
    format!(
        "{name:<6} {:>10.1} images/s {:>8.1} GFLOP/s {:>9.1} ms/step{cpu}",
        t.images_per_sec,
        t.gflops,
        t.seconds_per_step * 1e3
    )
}

/// Runs the command.
pub fn run(a: Args) -> Result<ExitCode> {
    let spec = a.spec.load()?;
    let recipe = spec.recipe();
    let graph = &spec.graph;
    let kind = a.device.map(Into::into).unwrap_or(recipe.train.device);
    let device = wrnc_train::select_device(kind)?;
    let opts = BenchOptions {
        batch: a.batch as usize,
        steps: a.steps as usize,
        warmup: 2,
        seed: recipe.train.seed,
        train: recipe.train.clone(),
    };
    let weights = wrnc_train::init_weights(graph, opts.seed);
    let fast = wrnc_train::fast_kernels(&device);
    let train = wrnc_train::bench_train(graph, &weights, &device, &opts)?;
    let train_rss = wrnc_train::peak_rss_bytes();
    let eval = wrnc_train::bench_eval(graph, &weights, &device, &opts)?;
    let tract = if a.no_tract {
        None
    } else {
        Some(bench_tract(graph, &weights, &opts)?)
    };
    let mut forms = Vec::new();
    if a.quantize.is_some() {
        forms.push("int8");
    }
    if a.fp16 {
        forms.push("fp16");
    }
    let mut tract_forms = Vec::new();
    for form in forms {
        let m = converted(graph, &weights, &opts, form)?;
        tract_forms.push((form, bench_tract_model(graph, &m, &opts)?));
    }
    let device_name = wrnc_train::device_name(&device);
    if a.json {
        let v = json!({
            "model": graph.name,
            "device": device_name,
            "fast_kernels": fast,
            "precision": opts.train.precision,
            "tf32": opts.train.tf32,
            "deterministic": opts.train.deterministic,
            "batch": opts.batch,
            "steps": opts.steps,
            "threads": rayon_threads(),
            "forward_flops_per_image": graph.stats().forward_flops,
            "train": train,
            "eval": eval,
            "tract": tract,
            "tract_int8": tract_forms.iter().find(|f| f.0 == "int8").map(|f| &f.1),
            "tract_fp16": tract_forms.iter().find(|f| f.0 == "fp16").map(|f| &f.1),
            "train_peak_rss_bytes": train_rss,
            "peak_rss_bytes": wrnc_train::peak_rss_bytes(),
            "cudnn_plans": cudnn_plans(),
        });
        super::common::print_line(&serde_json::to_string_pretty(&v)?)?;
    } else {
        super::common::print_line(&format!(
            "{}: batch {}, {} timed steps, device {device_name}{}",
            graph.name,
            opts.batch,
            opts.steps,
            match (fast, opts.train.precision) {
                (true, wrnc_recipe::Precision::Bf16) => " (wrnc CPU kernels, bf16 products)",
                (true, _) => " (wrnc CPU kernels)",
                (false, wrnc_recipe::Precision::Bf16) => " (bf16 mixed precision)",
                (false, _) => "",
            }
        ))?;
        super::common::print_line(&line("train", &train))?;
        super::common::print_line(&line("eval", &eval))?;
        if let Some(t) = &tract {
            super::common::print_line(&line("tract", t))?;
        }
        for (form, t) in &tract_forms {
            super::common::print_line(&line(&format!("t-{form}"), t))?;
        }
        if let Some(b) = wrnc_train::peak_rss_bytes() {
            super::common::print_line(&format!(
                "peak memory {:.1} MiB",
                b as f64 / (1024.0 * 1024.0)
            ))?;
        }
        for plan in cudnn_plans() {
            super::common::print_line(&plan)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Worker threads of the CPU kernels.
fn rayon_threads() -> usize {
    wrnc_train::kernel_threads()
}

/// The cuDNN algorithm chosen for each convolution plan of this process (empty on the CPU).
fn cudnn_plans() -> Vec<String> {
    wrnc_train::conv_plan::plan_log()
        .iter()
        .map(ToString::to_string)
        .collect()
}
