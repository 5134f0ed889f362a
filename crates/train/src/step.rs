//! One training step: forward pass, mean cross-entropy and backward pass, through the taped
//! reverse pass over the IR ([`crate::tape`]) on the fast CPU path, through Candle's autograd
//! otherwise.

use crate::error::Result;
use crate::model::{Mode, Model};
use crate::ops;
use crate::tape::{cross_entropy_grad_smoothed, Tape};
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

    /// Whether [`Model::loss_and_grads`] takes the taped path: fast kernels on, training mode
    /// and a tape backward for every node up to the logits ([`Tape::supports`]).
    pub(crate) fn tape_applies(&self, mode: Mode) -> bool {
        self.uses_fast_kernels()
            && matches!(mode, Mode::Train { .. })
            && Tape::supports(self.graph())
    }
}
