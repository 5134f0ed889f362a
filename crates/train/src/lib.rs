//! # wrnc-train: the Candle back end of wrnc
//!
//! Executes a [`wrnc_ir::Graph`] on Candle ([`Model`]), initialises it from the IR's rules
//! ([`init_weights`]), trains it with PyTorch-exact SGD and learning-rate schedules, and runs
//! the checkpointed, resumable training loop ([`train`]) that writes a run directory.

//!
//! ## The run directory
//!
//! | file | contents |
//! |---|---|
//! | `spec.resolved.yaml` | the resolved spec the run started with (`train.epochs` updated when `--resume` extends it) |
//! | `run.json` | dataset sizes, the split evaluated each epoch (`test` when `val_size` is 0), device |
//! | `metrics.csv` | `epoch,lr,train_loss,train_acc,val_loss,val_acc,seconds,images_per_sec`, epochs from 1 |
//! | `steps.csv` | `step,epoch,lr,loss` |
//! | `last.safetensors` | weights after the last committed step |
//! | `best.safetensors` | weights of the best epoch (metadata `epoch`, `val_accuracy`, `val_split`: see [`checkpoint`]) |
//! | `optimizer.safetensors` | momentum buffers; metadata `wrnc.state` holds the JSON state |
//! | `state.json` | the commit point (see [`rundir`]); `extended` lists changes of `train.epochs` |
//! | `run.lock` | PID of the process training into the directory |
//!
//! ## Layout
//!
//! | module | job |
//! |---|---|
//! | `model` | [`Model`]: parameters on a device and the forward executor over the IR |
//! | `backend` | [`Kernels`]: which implementation runs the layers, chosen once per model |
//! | `conv` | the convolution op ([`ConvParams`]): fast CPU kernels, cuDNN or Candle inside |
//! | `step` | one training step ([`Model::loss_and_grads`]): the tape or Candle's autograd |
//! | `tape` | the backward pass over the IR, owning what it records |
//! | `kernels` | the fast CPU kernels (convolution, Winograd, BN, SGD) |
//! | `cuda` | CUDA pieces: TF32, cuDNN convolutions (`cuda` / `cudnn` features) |
//! | `trainer`, `rundir`, `lock` | the checkpointed training loop and its run directory |
//! | `memory`, `memlimit` | the memory estimate of a run and the limits it is checked against |
//! | `observer` | [`TrainObserver`]: how a run reports progress (the library never prints) |
//! | `error` | [`TrainError`], whose [`TrainError::kind`] says whose fault a failure is |
//!
//! The items re-exported at the crate root are the supported interface; the binary uses
//! nothing else.
//! Runtime switches (`WRNC_REFERENCE_OPS`, `WRNC_WINOGRAD`, `WRNC_SIMD`) are read through
//! [`wrnc_ir::knobs`].

mod adamw;
mod backend;
mod bench;
pub mod checkpoint;
mod clip;
mod conv;
pub mod conv_op;
pub mod conv_plan;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod data;
mod device;
pub mod dropout_device;
mod ema;
mod error;
mod eval;
mod finetune;
mod freeze;
mod init;
mod kernels;
mod lock;
pub mod memlimit;
pub mod memory;
mod mixup;
mod model;
mod observer;
mod ops;
mod optim;
pub mod philox;
mod predictions;
pub mod rundir;
mod sam;
mod schedule;
mod step;
mod tape;
mod trainer;

pub use adamw::AdamWOptimizer;
pub use backend::Kernels;
pub use bench::{
    bench_eval, bench_train, cpu_seconds, fast_kernels, peak_rss_bytes, synthetic_batch,
    BenchOptions, Throughput,
};
pub use checkpoint::{input_normalizer, CheckpointMeta, InputNormalizer, NormalizerSource};
pub use clip::{clip_grad_norm, grad_norm};
pub use conv::{conv2d, ConvParams};
pub use data::Split;
pub use device::{cuda_built_in, device_name, select_device};
pub use ema::{ema_decay, EmaState};
pub use error::{ErrorKind, Result, TrainError};
pub use eval::{
    evaluate, evaluate_detailed, evaluate_detailed_tta, predict_logits, predict_probabilities,
    DetailedEvaluation, EvalResult, Evaluation, Tta,
};
pub use finetune::{load_init, InitLoad};
pub use freeze::{frozen_count, frozen_params, FrozenCount};
pub use init::init_weights;
pub use kernels::gemm_bf16::available as cpu_bf16_available;
pub use kernels::threads as kernel_threads;
pub use memory::MemoryEstimate;
pub use mixup::{dominant_labels, mixup_targets};
pub use model::{Mode, Model};
pub use observer::{EpochEnd, EpochStart, Notice, Silent, StepProgress, TrainObserver};
pub use ops::{cross_entropy, cross_entropy_smoothed, soft_cross_entropy};
pub use optim::{Optimizer, SgdOptimizer};
pub use predictions::{ClassMetrics, Prediction, Predictions};
pub use rundir::EpochMetrics;
pub use sam::{step_grads, step_grads_for, StepGrads};
pub use step::{Gradients, StepOutput, Targets};
pub use trainer::{
    compute_dtype, export_weights_file, selects_ema, train, train_with, RunStatus, TrainOptions,
    TrainOutcome,
};
pub use wrnc_data::{DecodeProgress, FolderReport};
