//! One training step: forward pass, mean cross-entropy and backward pass, through the taped
//! reverse pass over the IR ([`crate::tape`]) on the fast CPU path, through Candle's autograd
//! otherwise.

use crate::error::Result;
use crate::model::{Mode, Model};
use crate::ops;
use crate::tape::{cross_entropy_grad_smoothed, soft_cross_entropy_grad, Tape};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, TensorId};
use std::collections::HashMap;

/// The parameter gradients of one step.
#[derive(Debug)]
pub enum Gradients {
    /// From Candle's autograd.
    Autograd(GradStore),
    /// From the taped reverse pass, by parameter tensor.
    Tape(HashMap<TensorId, Tensor>),
}

impl Gradients {
    /// The gradient of a parameter tensor (a trainable variable of the model), if it has one.
    pub fn get(&self, param: &Tensor) -> Option<Tensor> {
        match self {
            Gradients::Autograd(g) => g.get(param).cloned(),
            Gradients::Tape(g) => g.get(&param.id()).cloned(),
        }
    }

    /// Drops the gradient of a parameter tensor (a frozen one: it then gets no update, as a
    /// PyTorch parameter whose `grad` is `None`).
    pub fn remove(&mut self, param: &Tensor) {
        match self {
            Gradients::Autograd(g) => {
                g.remove(param);
            }
            Gradients::Tape(g) => {
                g.remove(&param.id());
            }
        }
    }
}

/// What the loss of a step compares the logits with.
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a> {
    /// One class per image: cross-entropy, with label smoothing `train.label_smoothing`.
    Labels(&'a [u32]),
    /// A distribution over the classes per image (`N x classes` values, row-major; mixup and
    /// CutMix): soft-target cross-entropy, the smoothing already in the targets.
    Soft(&'a [f32]),
}

/// What one training step computed.
#[derive(Debug)]
pub struct StepOutput {
    /// Mean cross-entropy of the batch.
    pub loss: f32,
    /// The logits (`[N, classes]`, in the model's dtype).
    pub logits: Tensor,
    /// Gradients of the loss with respect to every trainable parameter that influences it.
    pub grads: Gradients,
}

impl Model {
    /// Forward pass, mean cross-entropy against `labels` and backward pass of one batch `x`
    /// (training mode). Runs the taped reverse pass where it applies (fast CPU kernels, every
    /// op supported), Candle's autograd otherwise.
    pub fn loss_and_grads(&mut self, x: &Tensor, labels: &[u32], mode: Mode) -> Result<StepOutput> {
        self.loss_and_grads_smoothed(x, labels, mode, 0.0)
    }

    /// [`Model::loss_and_grads`] with label smoothing `eps` (PyTorch's
    /// `cross_entropy(label_smoothing=eps)`); the taped path covers it.
    pub fn loss_and_grads_smoothed(
        &mut self,
        x: &Tensor,
        labels: &[u32],
        mode: Mode,
        eps: f64,
    ) -> Result<StepOutput> {
        if self.tape_applies(mode) {
            let mut tape = Tape::new(mode);
            let target = self.graph().logits();
            let logits = self.forward(x, mode, target, Some(&mut tape))?;
            let (loss, dlogits) = cross_entropy_grad_smoothed(&logits, labels, eps)?;
            let grads = tape.backward(self, dlogits)?;
            return Ok(StepOutput {
                loss,
                logits,
                grads: Gradients::Tape(grads),
            });
        }
        let y = Tensor::from_slice(labels, labels.len(), self.device())?;
        let logits = self.logits(x, mode)?;
        let loss = ops::cross_entropy_smoothed(&logits, &y, eps)?;
        // The loss is read after the backward pass is queued: on a GPU, reading it first
        // would synchronise the device between the forward and the backward pass.
        let grads = loss.backward()?;
        let value: f32 = loss.to_dtype(DType::F32)?.to_scalar()?;
        Ok(StepOutput {
            loss: value,
            logits,
            grads: Gradients::Autograd(grads),
        })
    }

    /// [`Model::loss_and_grads`] against soft targets `targets` (`N x classes` values,
    /// row-major): timm's `SoftTargetCrossEntropy`, the mean over the batch of
    /// `-sum_j t_j log_softmax(x)_j`. The taped path covers it (gradient `(softmax - t) / N`).
    pub fn loss_and_grads_soft(
        &mut self,
        x: &Tensor,
        targets: &[f32],
        mode: Mode,
    ) -> Result<StepOutput> {
        if self.tape_applies(mode) {
            let mut tape = Tape::new(mode);
            let target = self.graph().logits();
            let logits = self.forward(x, mode, target, Some(&mut tape))?;
            let (loss, dlogits) = soft_cross_entropy_grad(&logits, targets)?;
            let grads = tape.backward(self, dlogits)?;
            return Ok(StepOutput {
                loss,
                logits,
                grads: Gradients::Tape(grads),
            });
        }
        let logits = self.logits(x, mode)?;
        let k = logits.dims2()?.1;
        let n = targets.len() / k.max(1);
        let t = Tensor::from_slice(targets, (n, k), self.device())?;
        let loss = ops::soft_cross_entropy(&logits, &t)?;
        let value: f32 = loss.to_dtype(DType::F32)?.to_scalar()?;
        let grads = loss.backward()?;
        Ok(StepOutput {
            loss: value,
            logits,
            grads: Gradients::Autograd(grads),
        })
    }

    /// The loss and gradients of `targets`: [`Model::loss_and_grads_smoothed`] for labels
    /// (with smoothing `eps`), [`Model::loss_and_grads_soft`] for soft targets.
    pub fn loss_and_grads_for(
        &mut self,
        x: &Tensor,
        targets: Targets<'_>,
        mode: Mode,
        eps: f64,
    ) -> Result<StepOutput> {
        match targets {
            Targets::Labels(labels) => self.loss_and_grads_smoothed(x, labels, mode, eps),
            Targets::Soft(t) => self.loss_and_grads_soft(x, t, mode),
        }
    }

    /// Whether [`Model::loss_and_grads`] takes the taped path: fast kernels on, training mode
    /// and a tape backward for every node up to the logits ([`Tape::supports`]).
    pub(crate) fn tape_applies(&self, mode: Mode) -> bool {
        self.uses_fast_kernels()
            && matches!(mode, Mode::Train { .. })
            && Tape::supports(self.graph())
    }
}
