//! Parameters: named tensors with an init rule and optimiser flags.

use serde::Serialize;

/// Index of a parameter in [`crate::Graph::params`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ParamId(pub usize);

impl ParamId {
    /// Stands for a parameter that does not exist yet: the ids of an [`crate::Op`] made by its
    /// constructors ([`crate::Op::conv`], ...) until [`crate::GraphBuilder::layer`] creates
    /// the parameters and sets their ids. It indexes no parameter of any graph.
    pub const UNSET: ParamId = ParamId(usize::MAX);
}

/// How a parameter is initialised (the official WRN code's rules).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Init {
    /// Normal(0, sqrt(2 / fan_in)) — PyTorch `kaiming_normal_` with its defaults.
    HeNormal {
        /// Fan-in: `in_channels * k * k` for a conv, `in_features` for a linear layer.
        fan_in: usize,
    },
    /// Uniform on [0, 1) — the official code's BN gamma (`torch.rand`).
    Uniform01,
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
}

/// What a parameter is for; lets passes and back ends treat BN buffers specially.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamRole {
    /// Conv or linear weight.
    Weight,
    /// Conv or linear bias.
    Bias,
    /// BatchNorm scale.
    BnWeight,
    /// BatchNorm shift.
    BnBias,
    /// BatchNorm running mean (buffer).
    RunningMean,
    /// BatchNorm running variance (buffer).
    RunningVar,
}

impl ParamRole {
    /// The suffix naming a parameter of this role after its layer: `<layer>.<suffix>`.
    pub fn suffix(self) -> &'static str {
        match self {
            ParamRole::Weight | ParamRole::BnWeight => "weight",
            ParamRole::Bias | ParamRole::BnBias => "bias",
            ParamRole::RunningMean => "running_mean",
            ParamRole::RunningVar => "running_var",
        }
    }

    /// The initialisation rule of a parameter of this role and `shape`: He-normal over the
    /// fan-in (every dimension but the first) for conv and linear weights, uniform [0, 1) for
    /// BN scales, ones for running variances, zeros otherwise.
    pub fn init(self, shape: &[usize]) -> Init {
        match self {
            ParamRole::Weight => Init::HeNormal {
                fan_in: shape.iter().skip(1).product(),
            },
            ParamRole::BnWeight => Init::Uniform01,
            ParamRole::RunningVar => Init::Ones,
            ParamRole::Bias | ParamRole::BnBias | ParamRole::RunningMean => Init::Zeros,
        }
    }

    /// Whether the optimiser updates a parameter of this role (false for BN running statistics).
    pub fn trainable(self) -> bool {
        !matches!(self, ParamRole::RunningMean | ParamRole::RunningVar)
    }

    /// Whether weight decay applies under `weight_decay_on: weights` (conv and linear weights).
    pub fn decays(self) -> bool {
        matches!(self, ParamRole::Weight)
    }
}

/// A named tensor of the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Param {
    /// Stable name, e.g. `group0.block0.conv0.weight`; the key in every weights file.
    pub name: String,
    /// Shape, e.g. `[out, in, k, k]`.
    pub shape: Vec<usize>,
    /// Initialisation rule.
    pub init: Init,
    /// Whether the optimiser updates it (false for BN running statistics).
    pub trainable: bool,
    /// Whether weight decay applies to it under `weight_decay_on: weights`
    /// (true for conv/linear weights only). Under `all`, every trainable param decays.
    pub decay: bool,
    /// What the tensor is.
    pub role: ParamRole,
}

impl Param {
    /// The parameter of `role` and `shape` owned by layer `layer`: named `<layer>.<suffix>`,
    /// with the role's init rule and flags.
    pub fn new(layer: &str, role: ParamRole, shape: Vec<usize>) -> Self {
        Param {
            name: format!("{layer}.{}", role.suffix()),
            init: role.init(&shape),
            shape,
            trainable: role.trainable(),
            decay: role.decays(),
            role,
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}
