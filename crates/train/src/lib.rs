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
//! | `spec.resolved.yaml` | the resolved spec the run started with |
//! | `run.json` | dataset sizes, the split evaluated each epoch (`test` when `val_size` is 0), device |
//! | `metrics.csv` | `epoch,lr,train_loss,train_acc,val_loss,val_acc,seconds,images_per_sec`, epochs from 1 |
//! | `steps.csv` | `step,epoch,lr,loss` |
//! | `last.safetensors` | weights after the last committed step |
//! | `best.safetensors` | weights of the best epoch (metadata `epoch`, `val_accuracy`, `val_split`: see [`checkpoint`]) |
//! | `optimizer.safetensors` | momentum buffers; metadata `wrnc.state` holds the JSON state |
//! | `state.json` | the commit point (see [`rundir`]) |
//! | `run.lock` | PID of the process training into the directory |

pub mod bench;
pub mod checkpoint;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod init;
pub mod interrupt;
pub mod kernels;
pub mod lock;
pub mod model;
pub mod ops;
pub mod optim;
pub mod progress;
pub mod rundir;
pub mod schedule;
pub mod tape;
pub mod trainer;

pub use checkpoint::{input_normalizer, CheckpointMeta, InputNormalizer, NormalizerSource};
pub use data::Split;
pub use device::select_device;
pub use error::{Result, TrainError};
pub use eval::{evaluate, predict_logits, EvalResult, Evaluation};
pub use init::init_weights;
pub use model::{Mode, Model};
pub use rundir::EpochMetrics;
pub use trainer::{train, RunStatus, TrainOptions, TrainOutcome};
