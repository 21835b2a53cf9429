//! Atomic, checksummed checkpoint files: a JSON header with the small state and named raw `f64` arrays.
//!
//! Layout: magic `FABCKPT1` | header length (u64 LE) | header JSON | arrays as little-endian f64, in header order |
//! byte blobs, in header order | CRC-32 of everything before it (u32 LE). Files are written to a temporary sibling, synced, then renamed over the
//! target, so a run killed mid-write leaves the previous checkpoint intact.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"FABCKPT1";

/// What can go wrong reading or writing a checkpoint; every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Not a fab checkpoint (wrong magic bytes).
    #[error("{path}: not a fab checkpoint (bad magic bytes)")]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// The stored checksum does not match the content: the file is corrupt or truncated.
    #[error("{path}: checksum mismatch (stored {stored:08x}, computed {computed:08x}): the file is corrupt")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Checksum in the file.
        stored: u32,
        /// Checksum of the content read.
        computed: u32,
    },
    /// The file ends before its header says it should.
    #[error("{path}: truncated: {what}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What was missing.
        what: String,
    },
    /// The header is not valid, or its state does not match what the caller expects.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Header {
    meta: serde_json::Value,
    arrays: Vec<(String, usize)>,
    blobs: Vec<(String, usize)>,
}

/// The content of a checkpoint: JSON metadata plus named arrays.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CheckpointData {
    /// Small state (iteration, optimiser scalars, configs) as JSON.
    pub meta: serde_json::Value,
    /// Large state (parameters, moments, buffer) by name.
    pub arrays: BTreeMap<String, Vec<f64>>,
    /// Opaque byte blobs by name (e.g. the flow as safetensors).
    pub blobs: BTreeMap<String, Vec<u8>>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_path_buf(), source }
}

/// Serialises `data` to bytes in the checkpoint layout.
pub fn encode(data: &CheckpointData) -> Vec<u8> {
    let header = Header {
        meta: sorted_keys(&data.meta),
        arrays: data.arrays.iter().map(|(k, v)| (k.clone(), v.len())).collect(),
        blobs: data.blobs.iter().map(|(k, v)| (k.clone(), v.len())).collect(),
    };
    let header = serde_json::to_vec(&header).expect("a JSON value always serialises");
    let n_floats: usize = data.arrays.values().map(Vec::len).sum();
    let mut bytes = Vec::with_capacity(8 + 8 + header.len() + 8 * n_floats + 4);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header);
    for v in data.arrays.values() {
        for x in v {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    for b in data.blobs.values() {
        bytes.extend_from_slice(b);
    }
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// `value` with every object's keys in sorted order, whatever map serde_json was built with: the same content
/// always encodes to the same bytes.
fn sorted_keys(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<&String, serde_json::Value> = map.iter().map(|(k, v)| (k, sorted_keys(v))).collect();
            serde_json::Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(items.iter().map(sorted_keys).collect()),
        other => other.clone(),
    }
}

/// Parses checkpoint bytes; `path` is only used in error messages.
pub fn decode(bytes: &[u8], path: &Path) -> Result<CheckpointData, CheckpointError> {
    let truncated = |what: &str| CheckpointError::Truncated { path: path.to_path_buf(), what: what.to_string() };
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(CheckpointError::BadMagic { path: path.to_path_buf() });
    }
    if bytes.len() < 8 + 8 + 4 {
        return Err(truncated("no header"));
    }
    let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(crc_bytes.try_into().expect("4 bytes"));
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(CheckpointError::Checksum { path: path.to_path_buf(), stored, computed });
    }
    let header_len = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes")) as usize;
    let header_end = 16usize.checked_add(header_len).filter(|&e| e <= body.len()).ok_or_else(|| truncated("header"))?;
    let header: Header = serde_json::from_slice(&body[16..header_end])
        .map_err(|e| CheckpointError::Invalid { path: path.to_path_buf(), reason: format!("bad header: {e}") })?;
    let mut arrays = BTreeMap::new();
    let mut at = header_end;
    for (name, len) in header.arrays {
        let end = len.checked_mul(8).and_then(|n| at.checked_add(n)).filter(|&e| e <= body.len());
        let end = end.ok_or_else(|| truncated(&format!("array {name}")))?;
        let v = body[at..end].chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        arrays.insert(name, v);
        at = end;
    }
    let mut blobs = BTreeMap::new();
    for (name, len) in header.blobs {
        let end = at.checked_add(len).filter(|&e| e <= body.len()).ok_or_else(|| truncated(&format!("blob {name}")))?;
        blobs.insert(name, body[at..end].to_vec());
        at = end;
    }
    if at != body.len() {
        return Err(CheckpointError::Invalid {
            path: path.to_path_buf(),
            reason: "trailing bytes after the arrays".into(),
        });
    }
    Ok(CheckpointData { meta: header.meta, arrays, blobs })
}

/// Writes `bytes` to `path` atomically: temporary sibling, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Unique per process: two processes writing beside each other never share (or rename away) a temporary file.
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let written = fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    // A failed write (a full disk) leaves the previous checkpoint in place and no partial temporary file.
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp)(e));
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(())
}

/// Encodes and atomically writes a checkpoint.
pub fn save(path: &Path, data: &CheckpointData) -> Result<(), CheckpointError> {
    write_atomic(path, &encode(data))
}

/// Reads and verifies a checkpoint.
pub fn load(path: &Path) -> Result<CheckpointData, CheckpointError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    decode(&bytes, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CheckpointData {
        let mut arrays = BTreeMap::new();
        arrays.insert("params".to_string(), vec![1.5, -0.0, f64::MIN_POSITIVE, 1e300, f64::NEG_INFINITY]);
        arrays.insert("empty".to_string(), vec![]);
        let mut blobs = BTreeMap::new();
        blobs.insert("flow".to_string(), vec![0u8, 255, 7]);
        CheckpointData { meta: serde_json::json!({"iteration": 7, "name": "x"}), arrays, blobs }
    }

    #[test]
    fn round_trip_is_bit_exact() {
        let dir = std::env::temp_dir().join(format!("fab-ckpt-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.ckpt");
        save(&path, &sample()).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back.meta, sample().meta);
        assert_eq!(back.blobs, sample().blobs);
        for (k, v) in &sample().arrays {
            let b = &back.arrays[k];
            assert_eq!(
                v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_same_content_encodes_to_the_same_bytes() {
        let a = sample();
        let mut b = sample();
        b.meta = serde_json::json!({"name": "x", "iteration": 7});
        assert!(encode(&a) == encode(&b));
    }

    #[test]
    fn corruption_and_truncation_are_refused() {
        let bytes = encode(&sample());
        let p = Path::new("mem.ckpt");
        let mut flipped = bytes.clone();
        flipped[30] ^= 1;
        assert!(matches!(decode(&flipped, p), Err(CheckpointError::Checksum { .. })));
        assert!(matches!(decode(&bytes[..bytes.len() - 9], p), Err(CheckpointError::Checksum { .. })));
        assert!(matches!(decode(b"NOTACKPT....", p), Err(CheckpointError::BadMagic { .. })));
        let msg = decode(&flipped, Path::new("runs/x/ckpt")).unwrap_err().to_string();
        assert!(msg.starts_with("runs/x/ckpt: checksum mismatch"), "{msg}");
    }
}
