//! `wrnc summary SPEC [--json]`: Keras-style table of layers and parameter counts.

use super::common::{thousands, write_output, SpecArgs};
use anyhow::Result;
use serde_json::json;
use std::fmt::Write;
use std::process::ExitCode;

/// Arguments of `wrnc summary`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    spec: SpecArgs,
    /// Print JSON: {"name", "params": {"total", "trainable", "non_trainable"}, "layers": [...]}
    /// (and "forward_flops_at_sizes" for the ImageNet form of `model.wrn`).
    #[arg(long)]
    json: bool,
}

/// Square image sizes the ImageNet form is commonly run at (training and evaluation crops).
const IMAGENET_SIZES: [usize; 6] = [128, 160, 192, 224, 256, 320];

/// The forward FLOPs per image of the spec's network at common input sizes: for the ImageNet
/// form of `model.wrn`, which runs at any size; none for the other networks, which run at
/// their dataset's size.
fn costs_at_common_sizes(spec: &wrnc_spec::Spec) -> Vec<([usize; 3], u64)> {
    if !spec.is_imagenet_wrn() {
        return Vec::new();
    }
    let c = spec.graph.input_shape()[0];
    IMAGENET_SIZES
        .iter()
        .filter_map(|&hw| {
            let input = [c, hw, hw];
            let g = spec.graph_for_input(input).ok()?;
            Some((input, g.stats().forward_flops))
        })
        .collect()
}

fn shape(s: &[usize]) -> String {
    let parts: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// A FLOP count with three decimals in GFLOP, or, for a count that would print as 0.000
/// GFLOP, in kFLOP (below 1,000: the count itself).
fn flops_unit(flops: u64) -> String {
    let giga = format!("{:.3}", flops as f64 / 1e9);
    if giga != "0.000" {
        format!("{giga} GFLOP")
    } else if flops >= 1_000 {
        format!("{:.3} kFLOP", flops as f64 / 1e3)
    } else {
        format!("{flops} FLOP")
    }
}

/// Runs the command.
pub fn run(a: Args) -> Result<ExitCode> {
    let spec = a.spec.load()?;
    let g = &spec.graph;
    let st = g.stats();
    let costs = costs_at_common_sizes(&spec);
    let text = if a.json {
        let layers: Vec<_> = st
            .layers
            .iter()
            .map(|l| {
                json!({"name": l.name, "op": l.op, "output_shape": l.output_shape,
                       "params": l.params, "flops": l.flops})
            })
            .collect();
        let mut v = json!({
            "name": g.name,
            "input_shape": g.input_shape(),
            "classes": g.classes(),
            "params": {"total": st.total, "trainable": st.trainable,
                       "non_trainable": st.non_trainable},
            "forward_flops": st.forward_flops,
            "layers": layers,
        });
        if !costs.is_empty() {
            v["forward_flops_at_sizes"] = costs
                .iter()
                .map(|(input, flops)| json!({"input_shape": input, "forward_flops": flops}))
                .collect();
        }
        serde_json::to_string_pretty(&v)? + "\n"
    } else {
        let name_w = st
            .layers
            .iter()
            .map(|l| l.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut s = String::new();
        writeln!(
            s,
            "Model: {}   input {}   classes {}",
            g.name,
            shape(g.input_shape()),
            g.classes()
        )?;
        let rule = "-".repeat(name_w + 54);
        writeln!(s, "{rule}")?;
        writeln!(
            s,
            "{:<name_w$}  {:<16}  {:<18}  {:>14}",
            "Layer", "Op", "Output shape", "Params"
        )?;
        writeln!(s, "{}", "=".repeat(name_w + 54))?;
        for l in &st.layers {
            writeln!(
                s,
                "{:<name_w$}  {:<16}  {:<18}  {:>14}",
                l.name,
                l.op,
                shape(&l.output_shape),
                thousands(l.params)
            )?;
        }
        writeln!(s, "{}", "=".repeat(name_w + 54))?;
        writeln!(s, "Total params:          {:>16}", thousands(st.total))?;
        writeln!(s, "Trainable params:      {:>16}", thousands(st.trainable))?;
        writeln!(
            s,
            "Non-trainable params:  {:>16}  (BatchNorm running statistics)",
            thousands(st.non_trainable)
        )?;
        writeln!(
            s,
            "Forward FLOPs/image:   {:>16}  ({})",
            thousands(st.forward_flops),
            flops_unit(st.forward_flops)
        )?;
        if !costs.is_empty() {
            writeln!(
                s,
                "Forward cost at common input sizes (the parameters do not change):"
            )?;
            for (input, flops) in &costs {
                writeln!(
                    s,
                    "  {:<15}  {:>16} FLOPs/image  ({:.3} GFLOP)",
                    shape(input),
                    thousands(*flops),
                    *flops as f64 / 1e9
                )?;
            }
        }
        s
    };
    write_output(None, &text)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::flops_unit;

    #[test]
    fn tiny_counts_do_not_print_as_zero() {
        assert_eq!(flops_unit(5_526_016), "0.006 GFLOP");
        assert_eq!(flops_unit(500_001), "0.001 GFLOP");
        assert_eq!(flops_unit(499_999), "499.999 kFLOP");
        assert_eq!(flops_unit(2_344), "2.344 kFLOP");
        assert_eq!(flops_unit(999), "999 FLOP");
        assert_eq!(flops_unit(10_486_772_736), "10.487 GFLOP");
    }
}
