//! How much memory a training run needs, estimated from the graph IR and the recipe before
//! the model is built: parameters with their gradients and momentum buffers, the activations a
//! training step keeps for its backward pass, the dataset and its batches, and a fixed
//! overhead of the process. [`crate::train`] compares the estimate with the memory limit that
//! applies ([`crate::memlimit`]) and refuses a run that cannot fit.

use wrnc_ir::{Graph, Op};
use wrnc_recipe::{OptimizerKind, Recipe};

/// Bytes of one f32 value.
const F32: u64 = 4;

/// Resident memory of the process that does not depend on the run or its threads: the
/// mapped binary and the runtime. Measured on the quickstart run (1 epoch) with 1 to 16
/// compute threads; see docs/reliability.md.
pub const RUNTIME_BASE_BYTES: u64 = 56 << 20;
/// Resident memory per compute thread (its stack, its allocator heap, the kernels'
/// per-thread scratch and the tensor library's worker beside it), on top of
/// [`RUNTIME_BASE_BYTES`]: measured 15.2 MiB.
pub const RUNTIME_PER_THREAD_BYTES: u64 = 16 << 20;

/// Values of the largest activation size an evaluation pass holds per image at its peak:
/// measured 12.4 (WRN-16-4, CIFAR, eval batches of 64 and 256), rounded up.
pub const EVAL_VALUES_PER_IMAGE: u64 = 13;
/// The allocator keeps freed memory for reuse (wrnc turns its purging off for speed), and
/// blocks of one size are not always reused for another: over a run the resident peak of
/// the transient buffers was measured at up to 1.28 times their live size. The transient
/// part of the estimate is multiplied by this fraction (13/10).
pub const ALLOCATOR_SLACK: (u64, u64) = (13, 10);

/// Where a training step keeps its activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepPath {
    /// The fast CPU kernels and the taped backward pass ([`crate::tape`]): the inputs of
    /// the layers with parameters and the outputs of standalone ReLUs; a ReLU fused into
    /// the batch norm before it has no separate output, nor one whose readers are all
    /// convolutions (they apply it as they read).
    Tape,
    /// [`StepPath::Tape`] with bfloat16 products (`train.precision: bf16`): the convolutions
    /// do not apply a batch norm as they read, so its ReLU's output is kept for them.
    TapeBf16,
    /// Candle's autograd on the host: every intermediate tensor of every op, batch norm's
    /// internals included.
    Autograd,
    /// On an accelerator: activations live in device memory, not in the host's.
    Device,
}

/// The images a run holds in memory (one byte per channel value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataSize {
    /// Images of all splits together (training, validation and test).
    pub images: u64,
    /// Values per image (`C x H x W`).
    pub values_per_image: u64,
    /// Images of the largest split an evaluation pass runs over (validation or test): an
    /// evaluation batch holds no more.
    pub eval_images: u64,
}

/// The estimated peak memory of a training run, in bytes, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Parameters and buffers, the gradients of the trainable parameters and their momentum
    /// buffers (f32 each).
    pub parameters: u64,
    /// The largest transient of the run: a training step's saved activations and backward
    /// working set at `train.batch_size`, an evaluation pass at `train.eval_batch_size`, or
    /// the host copies a checkpoint serialises, whichever is largest, times
    /// [`ALLOCATOR_SLACK`].
    pub activations: u64,
    /// The dataset's images and the batches being prepared (prefetched) and uploaded.
    pub data: u64,
    /// The process itself (binary, threads, allocator), independent of the run.
    pub runtime: u64,
}

impl MemoryEstimate {
    /// The whole estimate.
    pub fn total(&self) -> u64 {
        self.parameters + self.activations + self.data + self.runtime
    }
}

impl std::fmt::Display for MemoryEstimate {
    /// `about 1.2 GiB (weights+gradients+optimizer 300 MiB, activations 800 MiB, ...)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "about {} (weights+gradients+optimizer {}, activations {}, data {}, runtime {})",
            human_bytes(self.total()),
            human_bytes(self.parameters),
            human_bytes(self.activations),
            human_bytes(self.data),
            human_bytes(self.runtime)
        )
    }
}

/// `n` bytes as `512 KiB`, `12.3 MiB` or `1.20 GiB`.
pub fn human_bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let x = n as f64;
    if x < KIB * KIB {
        format!("{:.0} KiB", (x / KIB).ceil())
    } else if x < KIB * KIB * KIB {
        format!("{:.1} MiB", x / (KIB * KIB))
    } else {
        format!("{:.2} GiB", x / (KIB * KIB * KIB))
    }
}

/// Parameter counts of `graph`: (trainable, buffers).
fn param_counts(graph: &Graph) -> (u64, u64) {
    graph.params.iter().fold((0, 0), |(t, b), p| {
        let n = p.numel() as u64;
        if p.trainable {
            (t + n, b)
        } else {
            (t, b + n)
        }
    })
}

/// Values per image of value `v`.
fn numel(graph: &Graph, v: wrnc_ir::ValueId) -> u64 {
    graph.shape(v).iter().product::<usize>() as u64
}

/// Whether node `i` is a batch norm whose only reader is the ReLU right after it, which the
/// fast kernels fuse into it (its own output is never materialised).
fn fused_bn(graph: &Graph, last_uses: &[Option<usize>], i: usize) -> bool {
    let node = &graph.nodes[i];
    let Some(next) = graph.nodes.get(i + 1) else {
        return false;
    };
    matches!(node.op, Op::BatchNorm { .. })
        && next.op == Op::Relu
        && next.inputs == [node.output]
        && last_uses[node.output.0] == Some(i + 1)
        && graph.shape(node.output).len() == 3
}

/// Whether node `i` is a ReLU fused into the batch norm before it whose only reader is the
/// dropout right after it, which the fast kernels fuse as well (the ReLU's output is never
/// materialised; the dropout's is).
fn fused_relu(graph: &Graph, last_uses: &[Option<usize>], i: usize) -> bool {
    let (Some(prev), Some(next)) = (i.checked_sub(1), graph.nodes.get(i + 1)) else {
        return false;
    };
    let relu = &graph.nodes[i];
    fused_bn(graph, last_uses, prev)
        && matches!(next.op, Op::Dropout { .. })
        && next.inputs == [relu.output]
        && last_uses[relu.output.0] == Some(i + 1)
}

/// Whether node `i` is a ReLU fused into the batch norm before it whose readers are all
/// convolutions of it alone, which apply the two as they read their input: nothing is
/// materialised for them, the convolutions keep the batch norm's input, which is kept anyway.
fn read_through_relu(graph: &Graph, last_uses: &[Option<usize>], i: usize) -> bool {
    let Some(prev) = i.checked_sub(1) else {
        return false;
    };
    fused_bn(graph, last_uses, prev)
        && graph.nodes[i].op == Op::Relu
        && crate::model::read_only_by_convolutions(graph, graph.nodes[i].output, i)
}

/// Per image, in values: (kept for the backward pass, largest single value). The input is
/// kept (the first layer reads it in its backward pass).
fn activation_values(graph: &Graph, path: StepPath) -> (u64, u64) {
    let last_uses = graph.last_uses();
    let mut kept = numel(graph, graph.input());
    let mut largest = kept;
    for (i, node) in graph.nodes.iter().enumerate() {
        let n = numel(graph, node.output);
        largest = largest.max(n);
        kept += match path {
            StepPath::Device => 0,
            StepPath::Tape | StepPath::TapeBf16 if fused_bn(graph, &last_uses, i) => 0,
            StepPath::Tape | StepPath::TapeBf16 if fused_relu(graph, &last_uses, i) => 0,
            StepPath::Tape if read_through_relu(graph, &last_uses, i) => 0,
            StepPath::Tape | StepPath::TapeBf16 => n,
            // Candle's batch norm keeps the centred input, its square, the normalised value
            // and the scaled one besides its output; dropout keeps its mask.
            StepPath::Autograd => match node.op {
                Op::BatchNorm { .. } => 5 * n,
                Op::Dropout { .. } => 2 * n,
                // the window gathers and their comparison masks, per output value
                Op::MaxPool { kernel, .. } => 2 * (kernel * kernel) as u64 * n,
                Op::Conv { .. }
                | Op::Relu
                | Op::Add
                | Op::AvgPool { .. }
                | Op::GlobalAvgPool
                | Op::Flatten
                | Op::Linear { .. }
                | Op::Softmax => n,
            },
        };
    }
    (kept, largest)
}

/// Estimates the peak memory of training `graph` with `recipe` on the host: `path` says
/// where the activations live, `data` what the dataset holds and `threads` how many compute
/// threads run. The activation part grows linearly with `train.batch_size`.
pub fn estimate(
    graph: &Graph,
    recipe: &Recipe,
    path: StepPath,
    data: DataSize,
    threads: usize,
) -> MemoryEstimate {
    let (trainable, buffers) = param_counts(graph);
    let t = &recipe.train;
    // The optimiser's state per updated parameter (`train.freeze` leaves some out): SGD's
    // momentum buffer (none without momentum), AdamW's two moments; SAM keeps a copy of the
    // weights it perturbs.
    let frozen = crate::freeze::frozen_count(graph, &t.freeze).map_or(0, |c| c.params as u64);
    let updated = trainable.saturating_sub(frozen);
    let momentum = match t.optimizer.kind {
        OptimizerKind::Adamw => 2 * updated,
        OptimizerKind::Sgd | OptimizerKind::Sam if t.optimizer.momentum > 0.0 => updated,
        OptimizerKind::Sgd | OptimizerKind::Sam => 0,
    };
    let sam_copy = match t.optimizer.kind {
        OptimizerKind::Sam => updated + buffers,
        OptimizerKind::Sgd | OptimizerKind::Adamw => 0,
    };
    // EMA: an average of every parameter and buffer.
    let ema = if t.ema.is_some() {
        trainable + buffers
    } else {
        0
    };
    // weights and buffers, one gradient per trainable parameter, the optimiser's state
    let parameters = F32 * (trainable + buffers + trainable + momentum + sam_copy + ema);

    let batch = recipe.train.batch_size as u64;
    let eval_batch = (recipe.train.eval_batch_size as u64).min(data.eval_images.max(1));
    let (kept, largest) = activation_values(graph, path);
    let on_host = path != StepPath::Device;
    // The backward pass holds a few gradients of values at once (the current one, the
    // residual branch's and the one being computed); the forward pass a layer's input, its
    // output and a temporary (the dropout mask, the BN statistics pass).
    let step = if on_host {
        F32 * batch * (kept + 3 * largest)
    } else {
        0
    };
    // Inference drops every value after its last use, but its peak was measured at 12.4
    // values of the largest size per image (see EVAL_VALUES_PER_IMAGE).
    let eval = if on_host {
        F32 * eval_batch * EVAL_VALUES_PER_IMAGE * largest
    } else {
        0
    };
    // A checkpoint copies `last`, `best` and the momentum buffers to the host and serialises
    // one file at a time (the step's gradients are gone by then).
    let checkpoint = F32 * (3 * (trainable + buffers) + momentum + ema);
    let activations = step.max(eval).max(checkpoint) * ALLOCATOR_SLACK.0 / ALLOCATOR_SLACK.1;

    let per_image = data.values_per_image;
    let prefetch = recipe.data.prefetch.max(1) as u64;
    // u8 images of every split; the batches in the prefetch queue, the one being trained and
    // its upload, as f32 (the augmentation works on one batch at a time)
    let batches = F32 * per_image * (batch * (prefetch + 2)).max(eval_batch * 2);
    let data = data.images * per_image + batches;

    MemoryEstimate {
        parameters,
        activations,
        data,
        runtime: RUNTIME_BASE_BYTES + RUNTIME_PER_THREAD_BYTES * threads as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wrnc_testkit::graphs;

    fn recipe(batch: usize) -> Recipe {
        let mut r = Recipe::default();
        r.train.batch_size = batch;
        r.train.eval_batch_size = 1;
        r
    }

    const DATA: DataSize = DataSize {
        images: 1000,
        values_per_image: 3 * 32 * 32,
        eval_images: 100,
    };

    #[test]
    fn parameters_are_weights_gradients_and_momentum() {
        let g = graphs::wrn([3, 32, 32], 10, 1, 10, 0.0);
        let (trainable, buffers) = param_counts(&g);
        assert!(trainable > 0 && buffers > 0);
        let mut r = recipe(8);
        let e = estimate(&g, &r, StepPath::Tape, DATA, 2);
        // 4 bytes x (1 weight + 1 gradient + 1 momentum buffer) per trainable parameter, plus
        // the BN running statistics once
        assert_eq!(e.parameters, 4 * (3 * trainable + buffers));
        r.train.optimizer.momentum = 0.0;
        let e = estimate(&g, &r, StepPath::Tape, DATA, 2);
        assert_eq!(e.parameters, 4 * (2 * trainable + buffers));
    }

    #[test]
    fn adamw_sam_and_ema_add_their_state() {
        let g = graphs::wrn([3, 32, 32], 10, 1, 10, 0.0);
        let (trainable, buffers) = param_counts(&g);
        let sgd = estimate(&g, &recipe(8), StepPath::Tape, DATA, 2).parameters;
        let with = |f: &dyn Fn(&mut Recipe)| {
            let mut r = recipe(8);
            f(&mut r);
            estimate(&g, &r, StepPath::Tape, DATA, 2).parameters
        };
        // AdamW: two moments instead of one momentum buffer
        let adamw = with(&|r| r.train.optimizer.kind = OptimizerKind::Adamw);
        assert_eq!(adamw - sgd, 4 * trainable);
        // SAM: a copy of the weights and buffers it perturbs
        let sam = with(&|r| r.train.optimizer.kind = OptimizerKind::Sam);
        assert_eq!(sam - sgd, 4 * (trainable + buffers));
        // EMA: an average of every parameter and buffer
        let ema = with(&|r| {
            r.train.ema = Some(wrnc_recipe::Ema {
                decay: 0.999,
                warmup: false,
            })
        });
        assert_eq!(ema - sgd, 4 * (trainable + buffers));
        // Frozen tensors have no optimiser state: AdamW saves two moments of each.
        let frozen = |r: &mut Recipe| r.train.freeze = vec!["group0.*".into()];
        let n = crate::freeze::frozen_count(&g, &["group0.*".into()])
            .unwrap()
            .params as u64;
        assert!(n > 0);
        assert_eq!(sgd - with(&frozen), 4 * n);
        let adamw_frozen = with(&|r| {
            frozen(r);
            r.train.optimizer.kind = OptimizerKind::Adamw;
        });
        assert_eq!(adamw - adamw_frozen, 4 * 2 * n);
    }

    #[test]
    fn activations_grow_linearly_with_the_batch_size() {
        let g = graphs::wrn([3, 32, 32], 10, 1, 10, 0.0);
        let at = |b: usize| estimate(&g, &recipe(b), StepPath::Tape, DATA, 2).activations;
        let (a64, a128, a256) = (at(64), at(128), at(256));
        assert!(a64 > 0);
        // (the allocator slack is an integer fraction: at most one byte of rounding)
        assert!(a128.abs_diff(2 * a64) <= 2, "{a64} {a128}");
        assert!(a256.abs_diff(4 * a64) <= 4, "{a64} {a256}");
        // the taped path keeps less than Candle's autograd, and a device keeps none on the host
        let auto = estimate(&g, &recipe(64), StepPath::Autograd, DATA, 2).activations;
        assert!(auto > a64, "{auto} vs {a64}");
        let dev = estimate(&g, &recipe(64), StepPath::Device, DATA, 2);
        assert!(dev.activations < a64 && dev.activations > 0);
    }

    #[test]
    fn the_tape_keeps_one_value_per_layer_output_except_fused_batch_norms() {
        // stem conv, then per block bn-relu (fused), conv, bn-relu (fused), conv, add...: the
        // kept values per image are the input plus every output but the fused BNs' and the
        // ReLUs their convolutions apply as they read them.
        let g = graphs::wrn([3, 32, 32], 10, 1, 10, 0.0);
        let (kept, largest) = activation_values(&g, StepPath::Tape);
        let last_uses = g.last_uses();
        let mut want = numel(&g, g.input());
        let (mut fused, mut read_through) = (0, Vec::new());
        for (i, n) in g.nodes.iter().enumerate() {
            if fused_bn(&g, &last_uses, i) {
                fused += 1;
            } else if read_through_relu(&g, &last_uses, i) {
                read_through.push(g.nodes[i - 1].name.as_str());
            } else {
                want += numel(&g, n.output);
            }
        }
        assert!(fused > 0);
        // WRN-10-1: every block's BNs (read by convolutions only: the 3x3 ones, stride 1 or
        // 2, and the shortcut convolutions), not the last one (read by the pooling)
        assert_eq!(
            read_through,
            [
                "group0.block0.bn0",
                "group0.block0.bn1",
                "group1.block0.bn0",
                "group1.block0.bn1",
                "group2.block0.bn0",
                "group2.block0.bn1"
            ]
        );
        assert_eq!(kept, want);
        assert_eq!(
            largest,
            g.values
                .iter()
                .map(|v| v.shape.iter().product::<usize>() as u64)
                .max()
                .unwrap()
        );
    }

    #[test]
    fn with_bf16_products_the_batch_norms_read_by_convolutions_are_kept() {
        // bf16 products: the convolutions do not apply the batch norm as they read, so each
        // read-through ReLU's output is kept, and nothing else changes
        let g = graphs::wrn([3, 32, 32], 10, 1, 10, 0.0);
        let last_uses = g.last_uses();
        let extra: u64 = (0..g.nodes.len())
            .filter(|&i| read_through_relu(&g, &last_uses, i))
            .map(|i| numel(&g, g.nodes[i].output))
            .sum();
        assert!(extra > 0);
        let (f32_kept, f32_largest) = activation_values(&g, StepPath::Tape);
        let (bf16_kept, bf16_largest) = activation_values(&g, StepPath::TapeBf16);
        assert_eq!(bf16_kept, f32_kept + extra);
        assert_eq!(bf16_largest, f32_largest);
        let at = |path| estimate(&g, &recipe(64), path, DATA, 2).activations;
        assert!(at(StepPath::TapeBf16) > at(StepPath::Tape));
    }

    #[test]
    fn a_fused_dropout_keeps_its_output_but_not_the_relus() {
        // with dropout each block's second BN-ReLU-dropout keeps one value, not two; without,
        // that BN-ReLU keeps none (its convolution applies it as it reads)
        let plain = graphs::wrn([3, 32, 32], 10, 1, 10, 0.0);
        let dropped = graphs::wrn([3, 32, 32], 10, 1, 10, 0.3);
        let last_uses = dropped.last_uses();
        let fused: Vec<usize> = (0..dropped.nodes.len())
            .filter(|&i| fused_relu(&dropped, &last_uses, i))
            .collect();
        assert_eq!(fused.len(), 3, "one per block of WRN-10");
        let dropout_outputs: u64 = fused
            .iter()
            .map(|&i| numel(&dropped, dropped.nodes[i + 1].output))
            .sum();
        let (kept_dropped, largest) = activation_values(&dropped, StepPath::Tape);
        let (kept_plain, largest_plain) = activation_values(&plain, StepPath::Tape);
        assert_eq!(kept_dropped, kept_plain + dropout_outputs);
        assert_eq!(largest, largest_plain);
    }

    #[test]
    fn an_evaluation_batch_holds_at_most_the_evaluated_split() {
        let g = graphs::wrn([3, 32, 32], 10, 1, 10, 0.0);
        let mut r = recipe(1);
        let eval = |r: &Recipe, eval_images| {
            let d = DataSize {
                eval_images,
                ..DATA
            };
            estimate(&g, r, StepPath::Tape, d, 2).activations
        };
        r.train.eval_batch_size = 256;
        let (at64, at256) = (eval(&r, 64), eval(&r, 256));
        assert!(at256 > 3 * at64, "{at64} {at256}");
        assert_eq!(eval(&r, 1000), at256);
        r.train.eval_batch_size = 64;
        assert_eq!(eval(&r, 1000), at64);
    }

    #[test]
    fn data_counts_every_image_byte_and_the_batches() {
        let g = graphs::wrn([3, 32, 32], 10, 1, 10, 0.0);
        let small = estimate(&g, &recipe(8), StepPath::Tape, DATA, 2).data;
        let more = DataSize {
            images: 2000,
            ..DATA
        };
        let big = estimate(&g, &recipe(8), StepPath::Tape, more, 2).data;
        assert_eq!(big - small, 1000 * 3 * 32 * 32);
    }

    #[test]
    fn the_line_names_every_part() {
        let g = graphs::wrn([3, 32, 32], 10, 1, 10, 0.0);
        let e = estimate(&g, &recipe(8), StepPath::Tape, DATA, 2);
        let s = e.to_string();
        for part in [
            "about",
            "weights+gradients+optimizer",
            "activations",
            "data",
            "runtime",
        ] {
            assert!(s.contains(part), "{s}");
        }
        assert_eq!(human_bytes(3 << 30), "3.00 GiB");
        assert_eq!(human_bytes(1536 << 10), "1.5 MiB");
        assert_eq!(human_bytes(1000), "1 KiB");
    }
}
