//! Save and load flows as safetensors: one tensor per layer parameter (torch names and layouts), buffers included,
//! the architecture as JSON in the header metadata; written atomically (temp file + rename).

use crate::error::FlowError;
use crate::flow::Flow;
use crate::layers::Layer;
use crate::spec::{BaseSpec, FlowSpec};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Header metadata key holding the architecture as JSON.
pub const META_SPEC: &str = "fab_flow.spec";
/// Header metadata key recording whether the ActNorm data-dependent initialisation has happened.
pub const META_ACTNORM: &str = "fab_flow.actnorm_initialized";
/// Header metadata key with the file-format version.
pub const META_FORMAT: &str = "fab_flow.format";
const FORMAT_VERSION: &str = "1";

/// One named tensor of the file: where it lives (parameter vector or a layer buffer) and its shape.
struct Entry {
    name: String,
    shape: Vec<usize>,
    source: Source,
}

enum Source {
    Params(usize),
    LuPerm(usize),
    LuSign(usize),
}

fn entries(flow: &Flow) -> Vec<Entry> {
    let dim = flow.dim();
    let mut out = Vec::new();
    for (i, layer) in flow.layers().iter().enumerate() {
        let start = flow.layer_param_range(i).start;
        for (name, shape, off) in layer.param_tensors(dim) {
            out.push(Entry { name: format!("layers.{i}.{name}"), shape, source: Source::Params(start + off) });
        }
        if let Layer::Lu(_) = layer {
            out.push(Entry { name: format!("layers.{i}.P"), shape: vec![dim, dim], source: Source::LuPerm(i) });
            out.push(Entry { name: format!("layers.{i}.sign_S"), shape: vec![dim], source: Source::LuSign(i) });
        }
    }
    if flow.spec().base == BaseSpec::DiagGaussian {
        let start = flow.base_range().start;
        out.push(Entry { name: "base.loc".into(), shape: vec![dim], source: Source::Params(start) });
        out.push(Entry { name: "base.log_scale".into(), shape: vec![dim], source: Source::Params(start + dim) });
    }
    out
}

fn entry_values(flow: &Flow, e: &Entry) -> Vec<f64> {
    let len: usize = e.shape.iter().product();
    match e.source {
        Source::Params(off) => flow.params()[off..off + len].to_vec(),
        Source::LuPerm(i) | Source::LuSign(i) => match &flow.layers()[i] {
            Layer::Lu(lu) => {
                if matches!(e.source, Source::LuPerm(_)) {
                    lu.perm.clone()
                } else {
                    lu.sign.clone()
                }
            }
            _ => unreachable!("LU buffers belong to LU layers"),
        },
    }
}

/// The same safetensors file with its JSON header's keys (tensor names and the metadata) in sorted order.
///
/// `safetensors::serialize` takes the metadata as a `HashMap`, whose iteration order changes from one map to the
/// next, so the same flow would give different bytes in different processes. Rewriting the header with ordered maps
/// (`BTreeMap`) makes the file a function of the flow alone. Offsets are relative to the data section, which is
/// unchanged; the header is padded with spaces to a multiple of 8 bytes, as safetensors does.
fn with_sorted_header(bytes: &[u8]) -> Result<Vec<u8>, FlowError> {
    let bad = |e: String| FlowError::Format(format!("re-ordering the safetensors header: {e}"));
    let len_bytes: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(|| bad("no header".into()))?;
    let n = usize::try_from(u64::from_le_bytes(len_bytes)).map_err(|e| bad(e.to_string()))?;
    let header = bytes.get(8..8 + n).ok_or_else(|| bad("short header".into()))?;
    let mut entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| bad(e.to_string()))?;
    if let Some(meta) = entries.remove("__metadata__") {
        let meta: BTreeMap<String, String> = serde_json::from_value(meta).map_err(|e| bad(e.to_string()))?;
        entries.insert("__metadata__".into(), serde_json::to_value(meta).map_err(|e| bad(e.to_string()))?);
    }
    // Write the map entry by entry so the order is the BTreeMap's whatever serde_json's own map type is.
    let mut json = b"{".to_vec();
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        json.extend(serde_json::to_vec(k).map_err(|e| bad(e.to_string()))?);
        json.push(b':');
        let v = match (k.as_str(), v) {
            ("__metadata__", serde_json::Value::Object(m)) => {
                let m: BTreeMap<&String, &serde_json::Value> = m.iter().collect();
                serde_json::to_vec(&m)
            }
            _ => serde_json::to_vec(v),
        };
        json.extend(v.map_err(|e| bad(e.to_string()))?);
    }
    json.push(b'}');
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + json.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

fn io_err(path: &Path, source: std::io::Error) -> FlowError {
    FlowError::Io { path: path.display().to_string(), source }
}

impl Flow {
    /// Serialises the flow to safetensors bytes (f64 little-endian tensors, architecture in the metadata).
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>, FlowError> {
        let list = entries(self);
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = list
            .iter()
            .map(|e| {
                (e.name.clone(), e.shape.clone(), entry_values(self, e).iter().flat_map(|v| v.to_le_bytes()).collect())
            })
            .collect();
        let views: Vec<(String, TensorView<'_>)> = bytes
            .iter()
            .map(|(name, shape, data)| {
                let view =
                    TensorView::new(Dtype::F64, shape.clone(), data).map_err(|e| FlowError::Format(e.to_string()))?;
                Ok((name.clone(), view))
            })
            .collect::<Result<_, FlowError>>()?;
        let spec_json = serde_json::to_string(self.spec()).map_err(|e| FlowError::Format(e.to_string()))?;
        let meta = HashMap::from([
            (META_SPEC.to_string(), spec_json),
            (META_ACTNORM.to_string(), self.actnorm_initialized().to_string()),
            (META_FORMAT.to_string(), FORMAT_VERSION.to_string()),
        ]);
        let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| FlowError::Format(e.to_string()))?;
        with_sorted_header(&bytes)
    }

    /// Writes the flow to `path` atomically (a temporary file in the same directory, then a rename).
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<(), FlowError> {
        let path = path.as_ref();
        let bytes = self.to_safetensors_bytes()?;
        let mut tmp_name = path.file_name().map(|f| f.to_os_string()).unwrap_or_default();
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        std::fs::write(&tmp, &bytes).map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_err(path, e)
        })
    }

    /// Builds a flow from safetensors bytes: the architecture comes from the metadata, every tensor must be present
    /// with the exact shape and dtype, and no unknown tensor may appear.
    pub fn from_safetensors_bytes(bytes: &[u8]) -> Result<Flow, FlowError> {
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| FlowError::Format(e.to_string()))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let spec_json =
            meta.get(META_SPEC).ok_or_else(|| FlowError::Format(format!("no `{META_SPEC}` in the header metadata")))?;
        let spec: FlowSpec =
            serde_json::from_str(spec_json).map_err(|e| FlowError::Format(format!("unreadable architecture: {e}")))?;
        let mut flow = Flow::new(&spec, 0)?;
        flow.fill_from_bytes(bytes, &meta)?;
        Ok(flow)
    }

    /// Loads a flow saved by [`Flow::save_safetensors`].
    pub fn load_safetensors(path: impl AsRef<Path>) -> Result<Flow, FlowError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
        Self::from_safetensors_bytes(&bytes)
    }

    /// Overwrites this flow's weights and buffers from a file, which must describe exactly this architecture (its
    /// [`crate::Math`] may differ: this flow keeps its own).
    pub fn load_weights_safetensors(&mut self, path: impl AsRef<Path>) -> Result<(), FlowError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| FlowError::Format(e.to_string()))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        if let Some(json) = meta.get(META_SPEC) {
            let spec: FlowSpec =
                serde_json::from_str(json).map_err(|e| FlowError::Format(format!("unreadable architecture: {e}")))?;
            // The numerics choice is not part of the architecture: weights load across it.
            if spec.clone().with_math(self.spec().math) != *self.spec() {
                return Err(FlowError::ArchitectureMismatch(format!(
                    "file: dim {} with {} layers and {} parameters; flow: dim {} with {} layers and {} parameters",
                    spec.dim,
                    spec.layers.len(),
                    spec.n_params(),
                    self.dim(),
                    self.spec().layers.len(),
                    self.n_params()
                )));
            }
        }
        self.fill_from_bytes(&bytes, &meta)
    }

    fn fill_from_bytes(&mut self, bytes: &[u8], meta: &HashMap<String, String>) -> Result<(), FlowError> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| FlowError::Format(e.to_string()))?;
        let list = entries(self);
        let known: std::collections::HashSet<&str> = list.iter().map(|e| e.name.as_str()).collect();
        if let Some(extra) = st.names().into_iter().find(|n| !known.contains(n)) {
            return Err(FlowError::ArchitectureMismatch(format!("unexpected tensor `{extra}`")));
        }
        let mut staged = Vec::with_capacity(list.len());
        for e in &list {
            let view = st.tensor(&e.name).map_err(|_| FlowError::MissingTensor(e.name.clone()))?;
            if view.dtype() != Dtype::F64 || view.shape() != e.shape.as_slice() {
                return Err(FlowError::TensorMismatch {
                    name: e.name.clone(),
                    expected: format!("F64 {:?}", e.shape),
                    found: format!("{:?} {:?}", view.dtype(), view.shape()),
                });
            }
            let values: Vec<f64> =
                view.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8-byte chunk"))).collect();
            staged.push(values);
        }
        // Only mutate once every tensor has been validated.
        for (e, values) in list.iter().zip(staged) {
            match e.source {
                Source::Params(off) => self.params_mut()[off..off + values.len()].copy_from_slice(&values),
                Source::LuPerm(i) | Source::LuSign(i) => {
                    if let Layer::Lu(lu) = &mut self.layers_mut()[i] {
                        if matches!(e.source, Source::LuPerm(_)) {
                            lu.perm = values;
                        } else {
                            lu.sign = values;
                        }
                    }
                }
            }
        }
        let init = meta.get(META_ACTNORM).map(|v| v == "true").unwrap_or(true);
        self.set_actnorm_initialized(init);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `HashMap` gets its own random hash keys, so before the header was re-ordered the three metadata
    /// entries came out in a different order from map to map (and process to process).
    #[test]
    fn the_same_flow_always_serialises_to_the_same_bytes() {
        let flow = Flow::new(&FlowSpec::mog_2021(), 7).unwrap();
        let first = flow.to_safetensors_bytes().unwrap();
        for _ in 0..32 {
            assert!(flow.to_safetensors_bytes().unwrap() == first, "two serialisations of one flow differ");
        }
        let back = Flow::from_safetensors_bytes(&first).unwrap();
        assert_eq!(back.params(), flow.params());
        assert_eq!(back.to_safetensors_bytes().unwrap(), first);
    }
}
