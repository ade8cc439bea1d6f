//! Model weights independent of any back end: seeded initialisation and safetensors I/O.
//!
//! Names, shapes and initialisation come from `ir::params_of` (`n{node}.{param}`). The libtorch back end
//! copies these into its variables and back; the ONNX exporter writes them as initializers.
//! Initialising here (not in libtorch) makes a seed give the same weights on every device.

use crate::ir::validate::Model;
use crate::ir::{Init, NodeId, ParamSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Named f32 tensors, sorted by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Weights {
    pub tensors: BTreeMap<String, Tensor>,
}

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a valid safetensors file ({reason}); the file may be truncated or corrupt"
    )]
    Corrupt { path: String, reason: String },
    #[error("{path} does not match the spec: {reason}")]
    Mismatch { path: String, reason: String },
    #[error("{path} is corrupt: {reason}. The file changed after pixc wrote it (disk, copy or edit); restore it from a copy")]
    Checksum { path: String, reason: String },
}

/// The safetensors name of a node's parameter.
pub fn param_key(node: usize, param: &str) -> String {
    format!("n{node}.{param}")
}

impl Weights {
    /// Seeded initialisation, as each parameter's descriptor says (`ParamSpec::init`):
    /// PyTorch's defaults for convolutions (uniform in ±1/sqrt(fan_in)), zero initial LSTM
    /// states, forget-gate biases +1. Tensors are drawn in node and `params_of` order from
    /// one stream, so a seed gives the same weights on every machine.
    pub fn init(model: &Model, seed: u64) -> Weights {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut tensors = BTreeMap::new();
        for id in model.graph().nodes() {
            for p in model.shapes().params(id) {
                let n = p.numel();
                let mut uniform = |fan_in: usize| -> Vec<f32> {
                    let b = 1.0 / (fan_in.max(1) as f32).sqrt();
                    (0..n).map(|_| rng.random_range(-b..b)).collect()
                };
                let data = match p.init {
                    Init::Zeros => vec![0.0; n],
                    Init::Uniform { fan_in } => uniform(fan_in),
                    Init::ForgetBias { fan_in, hidden } => {
                        let mut v = uniform(fan_in);
                        for (k, x) in v.iter_mut().enumerate() {
                            if (k / hidden) % 4 == 1 {
                                *x += 1.0;
                            }
                        }
                        v
                    }
                };
                tensors.insert(
                    param_key(id.index(), &p.name),
                    Tensor {
                        shape: p.shape.clone(),
                        data,
                    },
                );
            }
        }
        Weights { tensors }
    }

    /// The values of node `id`'s parameter `p` as the model uses them: multiplied by its
    /// mask when the descriptor has one. The weights must have passed `check_against`.
    pub fn effective(&self, model: &Model, id: NodeId, p: &ParamSpec) -> Vec<f32> {
        let t = &self.tensors[&param_key(id.index(), &p.name)];
        match p.mask_values(model.graph().image.groups()) {
            Some(m) => t.data.iter().zip(&m).map(|(w, m)| w * m).collect(),
            None => t.data.clone(),
        }
    }

    pub fn numel(&self) -> usize {
        self.tensors.values().map(|t| t.data.len()).sum()
    }

    /// Checks names and shapes against the model; returns a reason on mismatch.
    pub fn check_against(&self, model: &Model) -> Result<(), String> {
        let want = Weights::expected(model);
        for (k, shape) in &want {
            match self.tensors.get(k) {
                None => return Err(format!("tensor `{k}` is missing")),
                Some(t) if &t.shape != shape => {
                    return Err(format!(
                        "tensor `{k}` has shape {:?}, the spec needs {:?}",
                        t.shape, shape
                    ))
                }
                _ => {}
            }
        }
        if let Some(extra) = self.tensors.keys().find(|k| !want.contains_key(*k)) {
            return Err(format!("tensor `{extra}` is not in the spec"));
        }
        Ok(())
    }

    fn expected(model: &Model) -> BTreeMap<String, Vec<usize>> {
        let mut m = BTreeMap::new();
        for id in model.graph().nodes() {
            for p in model.shapes().params(id) {
                m.insert(param_key(id.index(), &p.name), p.shape.clone());
            }
        }
        m
    }

    /// Serialises to safetensors bytes with optional string metadata, sealed with the
    /// file's SHA-256 (`integrity::KEY` in the metadata; see `crate::integrity`).
    pub fn to_safetensors(&self, metadata: Option<HashMap<String, String>>) -> Vec<u8> {
        let mut metadata = metadata.unwrap_or_default();
        metadata.insert(
            crate::integrity::KEY.to_string(),
            crate::integrity::PLACEHOLDER.to_string(),
        );
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = self
            .tensors
            .iter()
            .map(|(k, t)| {
                (
                    k.clone(),
                    t.data.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    t.shape.clone(),
                )
            })
            .collect();
        let views: Vec<(String, TensorView<'_>)> = bytes
            .iter()
            .map(|(k, b, s)| {
                (
                    k.clone(),
                    TensorView::new(Dtype::F32, s.clone(), b).expect("sizes agree"),
                )
            })
            .collect();
        let mut out = safetensors::tensor::serialize(views, Some(metadata))
            .expect("f32 tensors always serialise");
        crate::integrity::seal(&mut out).expect("the placeholder was just written");
        out
    }

    /// Parses safetensors bytes (f32 tensors only) after checking their checksum; returns
    /// the weights and metadata. The metadata holds `integrity::KEY` exactly when the
    /// checksum was there and matched (see `has_checksum`).
    pub fn from_safetensors(
        bytes: &[u8],
        path: &str,
    ) -> Result<(Weights, HashMap<String, String>), WeightsError> {
        let corrupt = |reason: String| WeightsError::Corrupt {
            path: path.to_string(),
            reason,
        };
        let sealed = crate::integrity::check(bytes).map_err(|reason| WeightsError::Checksum {
            path: path.to_string(),
            reason,
        })?;
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(e.to_string()))?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        if sealed == crate::integrity::Check::Absent && metadata.contains_key(crate::integrity::KEY)
        {
            // Present in the metadata but not where pixc writes it (the header was rewritten
            // by another tool): it was not checked, so it must not pass as verified.
            return Err(corrupt(format!(
                "its checksum `{}` is not where pixc writes it",
                crate::integrity::KEY
            )));
        }
        let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(e.to_string()))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(corrupt(format!(
                    "tensor `{name}` is {:?}, expected F32",
                    view.dtype()
                )));
            }
            let data: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if data.iter().any(|x| !x.is_finite()) {
                return Err(corrupt(format!(
                    "tensor `{name}` holds NaN or infinite values"
                )));
            }
            tensors.insert(
                name,
                Tensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        Ok((Weights { tensors }, metadata))
    }

    /// Whether metadata from `from_safetensors` / `load` came with a verified checksum.
    pub fn has_checksum(metadata: &HashMap<String, String>) -> bool {
        metadata.contains_key(crate::integrity::KEY)
    }

    pub fn load(path: &Path) -> Result<(Weights, HashMap<String, String>), WeightsError> {
        let p = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| WeightsError::Io {
            path: p.clone(),
            source: e,
        })?;
        Weights::from_safetensors(&bytes, &p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip_and_corruption() {
        let mut w = Weights::default();
        w.tensors.insert(
            "n1.weight".into(),
            Tensor {
                shape: vec![2, 3],
                data: vec![1., 2., 3., 4., 5., 6.],
            },
        );
        let bytes = w.to_safetensors(None);
        let (back, _) = Weights::from_safetensors(&bytes, "x").unwrap();
        assert_eq!(back, w);
        assert!(Weights::from_safetensors(&bytes[..bytes.len() - 3], "x").is_err());
        assert!(Weights::from_safetensors(b"garbage", "x").is_err());
    }
}
