//! Shape inference and exact parameter counts.
//!
//! Every op keeps height and width, so a shape is a channel count per node
//! (`out_channels`). Parameter shapes come from `params_of`, the table the back ends also
//! use, so the counts here equal libtorch's to the parameter.

use super::{out_channels, params_of, Graph, NodeId, ParamSpec};

#[derive(Clone, Debug)]
pub struct Shapes {
    /// Output channels per node, by node index.
    pub channels: Vec<usize>,
    /// Learned tensors per node, by node index.
    pub params: Vec<Vec<ParamSpec>>,
}

impl Shapes {
    pub fn channels(&self, id: NodeId) -> usize {
        self.channels[id.index()]
    }
    pub fn params(&self, id: NodeId) -> &[ParamSpec] {
        &self.params[id.index()]
    }
    pub fn param_count(&self, id: NodeId) -> usize {
        self.params(id).iter().map(|p| p.numel()).sum()
    }
    pub fn total_params(&self) -> usize {
        self.params.iter().flatten().map(|p| p.numel()).sum()
    }
}

/// Infers every node's channel count and parameter shapes. Mismatches (e.g. a residual
/// add of different widths) are not errors here: `validate` reports them with spans.
pub fn infer(g: &Graph) -> Shapes {
    let mut channels = vec![0usize; g.len()];
    let mut params = vec![Vec::new(); g.len()];
    for id in g.nodes() {
        let ins: Vec<usize> = g.inputs(id).iter().map(|i| channels[i.index()]).collect();
        let node = g.node(id);
        channels[id.index()] = out_channels(&node.op, &ins, &g.image);
        params[id.index()] = params_of(&node.op, &ins, &g.image);
    }
    Shapes { channels, params }
}
