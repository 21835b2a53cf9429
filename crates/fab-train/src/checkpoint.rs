//! Atomic, checksummed checkpoint files: a JSON header with the small state and named raw `f64` arrays.
//!
//! Layout: magic `FABCKPT1` | header length (u64 LE) | header JSON | arrays as little-endian f64, in header order |
//! byte blobs, in header order | CRC-32 of everything before it (u32 LE). Files are written to a temporary sibling, synced, then renamed over the
//! target, so a run killed mid-write leaves the previous checkpoint intact.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"FABCKPT1";

/// What can go wrong reading or writing a checkpoint; every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The file system refused. The I/O error is part of the message, not a `source()`, so that a reporter that
    /// prints the error chain (anyhow's `{:#}`) does not print it twice.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
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
///
/// The arrays may borrow from the state they describe ([`crate::Run::to_checkpoint`] borrows the replay buffer and
/// the optimiser moments, so writing a checkpoint needs no copy of them: the buffer of a large run is tens of MB);
/// content read from a file owns its arrays (`CheckpointData<'static>`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CheckpointData<'a> {
    /// Small state (iteration, optimiser scalars, configs) as JSON.
    pub meta: serde_json::Value,
    /// Large state (parameters, moments, buffer) by name.
    pub arrays: BTreeMap<String, Cow<'a, [f64]>>,
    /// Opaque byte blobs by name (e.g. the flow as safetensors).
    pub blobs: BTreeMap<String, Vec<u8>>,
}

impl CheckpointData<'_> {
    /// The same content owning its arrays (a copy of those that were borrowed), e.g. to keep a snapshot while the
    /// state it borrowed from changes.
    pub fn into_owned(self) -> CheckpointData<'static> {
        let arrays = self.arrays.into_iter().map(|(k, v)| (k, Cow::Owned(v.into_owned()))).collect();
        CheckpointData { meta: self.meta, arrays, blobs: self.blobs }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |error| CheckpointError::Io { path: path.to_path_buf(), error }
}

/// Bytes converted per block when arrays are written or read: the file is never held in memory whole.
const BLOCK_FLOATS: usize = 8192;

/// Serialises `data` to bytes in the checkpoint layout (what [`save`] streams to its file).
pub fn encode(data: &CheckpointData<'_>) -> Vec<u8> {
    let n_floats: usize = data.arrays.values().map(|v| v.len()).sum();
    let n_blob_bytes: usize = data.blobs.values().map(Vec::len).sum();
    let mut bytes = Vec::with_capacity(8 + 8 + 1024 + 8 * n_floats + n_blob_bytes + 4);
    write_to(data, &mut bytes).expect("writing to a Vec cannot fail");
    bytes
}

/// Writes `data` in the checkpoint layout to `out`, converting the arrays block by block and computing the CRC on
/// the way: the bytes of [`encode`], without a copy of the content in memory.
pub fn write_to(data: &CheckpointData<'_>, out: &mut dyn Write) -> std::io::Result<()> {
    let header = Header {
        meta: sorted_keys(&data.meta),
        arrays: data.arrays.iter().map(|(k, v)| (k.clone(), v.len())).collect(),
        blobs: data.blobs.iter().map(|(k, v)| (k.clone(), v.len())).collect(),
    };
    let header = serde_json::to_vec(&header).expect("a JSON value always serialises");
    let mut out = Crc32Writer { inner: out, hasher: crc32fast::Hasher::new() };
    out.write_all(MAGIC)?;
    out.write_all(&(header.len() as u64).to_le_bytes())?;
    out.write_all(&header)?;
    let mut block = Vec::with_capacity(8 * BLOCK_FLOATS);
    for v in data.arrays.values() {
        for chunk in v.chunks(BLOCK_FLOATS) {
            block.clear();
            chunk.iter().for_each(|x| block.extend_from_slice(&x.to_le_bytes()));
            out.write_all(&block)?;
        }
    }
    for b in data.blobs.values() {
        out.write_all(b)?;
    }
    let crc = out.hasher.finalize();
    out.inner.write_all(&crc.to_le_bytes())
}

/// A writer that passes bytes through and hashes them.
struct Crc32Writer<'a> {
    inner: &'a mut dyn Write,
    hasher: crc32fast::Hasher,
}

impl Write for Crc32Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
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
pub fn decode(bytes: &[u8], path: &Path) -> Result<CheckpointData<'static>, CheckpointError> {
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(CheckpointError::BadMagic { path: path.to_path_buf() });
    }
    if bytes.len() < 8 + 8 + 4 {
        return Err(truncated(path, "no header"));
    }
    let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(crc_bytes.try_into().expect("4 bytes"));
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(CheckpointError::Checksum { path: path.to_path_buf(), stored, computed });
    }
    parse_body(&mut &body[8..], body.len() as u64 - 8, path)
}

fn truncated(path: &Path, what: &str) -> CheckpointError {
    CheckpointError::Truncated { path: path.to_path_buf(), what: what.to_string() }
}

/// Parses the checksummed body after the magic bytes, `len` bytes long, from `body`. Every length in the header is
/// checked against what is left before anything is allocated for it.
fn parse_body(body: &mut dyn Read, len: u64, path: &Path) -> Result<CheckpointData<'static>, CheckpointError> {
    let io = |e| io_err(path)(e);
    let mut left = len;
    let mut take = |n: u64, what: &dyn Fn() -> String| -> Result<(), CheckpointError> {
        left = left.checked_sub(n).ok_or_else(|| truncated(path, &what()))?;
        Ok(())
    };
    let mut word = [0u8; 8];
    take(8, &|| "header".into())?;
    body.read_exact(&mut word).map_err(io)?;
    let header_len = u64::from_le_bytes(word);
    take(header_len, &|| "header".into())?;
    let mut header = vec![0u8; header_len as usize];
    body.read_exact(&mut header).map_err(io)?;
    let header: Header = serde_json::from_slice(&header)
        .map_err(|e| CheckpointError::Invalid { path: path.to_path_buf(), reason: format!("bad header: {e}") })?;
    let mut arrays = BTreeMap::new();
    let mut block = vec![0u8; 8 * BLOCK_FLOATS];
    for (name, n) in header.arrays {
        let n_bytes = (n as u64).saturating_mul(8);
        take(n_bytes, &|| format!("array {name}"))?;
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            let bytes = &mut block[..8 * BLOCK_FLOATS.min(n - v.len())];
            body.read_exact(bytes).map_err(io)?;
            v.extend(bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))));
        }
        arrays.insert(name, Cow::Owned(v));
    }
    let mut blobs = BTreeMap::new();
    for (name, n) in header.blobs {
        take(n as u64, &|| format!("blob {name}"))?;
        let mut b = vec![0u8; n];
        body.read_exact(&mut b).map_err(io)?;
        blobs.insert(name, b);
    }
    if left != 0 {
        return Err(CheckpointError::Invalid {
            path: path.to_path_buf(),
            reason: "trailing bytes after the arrays".into(),
        });
    }
    Ok(CheckpointData { meta: header.meta, arrays, blobs })
}

/// Writes `bytes` to `path` atomically: temporary sibling, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    write_atomic_with(path, &mut |f| f.write_all(bytes))
}

/// Writes the file `path` atomically with `write` (given a buffered writer): temporary sibling, fsync, rename.
fn write_atomic_with(
    path: &Path,
    write: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), CheckpointError> {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Unique per process: two processes writing beside each other never share (or rename away) a temporary file.
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let written = fs::File::create(&tmp).and_then(|f| {
        let mut out = BufWriter::new(f);
        write(&mut out)?;
        out.into_inner().map_err(std::io::IntoInnerError::into_error)?.sync_all()
    });
    // A failed write (a full disk) leaves the previous checkpoint in place and no partial temporary file.
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp)(e));
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    Ok(())
}

/// Atomically writes a checkpoint, streaming it to the file ([`write_to`]).
pub fn save(path: &Path, data: &CheckpointData<'_>) -> Result<(), CheckpointError> {
    write_atomic_with(path, &mut |out| write_to(data, out))
}

/// Reads and verifies a checkpoint: one pass checks the CRC, a second parses, neither holding the file in memory.
pub fn load(path: &Path) -> Result<CheckpointData<'static>, CheckpointError> {
    let mut file = fs::File::open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    let mut magic = [0u8; 8];
    if len < 8 || file.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Err(CheckpointError::BadMagic { path: path.to_path_buf() });
    }
    if len < 8 + 8 + 4 {
        return Err(truncated(path, "no header"));
    }
    let body_len = len - 4;
    let (stored, computed) = checksums(&mut file, body_len).map_err(io_err(path))?;
    if stored != computed {
        return Err(CheckpointError::Checksum { path: path.to_path_buf(), stored, computed });
    }
    file.seek(SeekFrom::Start(8)).map_err(io_err(path))?;
    parse_body(&mut BufReader::new(file.take(body_len - 8)), body_len - 8, path)
}

/// The CRC stored after the first `body_len` bytes of `file`, and the one computed over them (read in blocks).
fn checksums(file: &mut fs::File, body_len: u64) -> std::io::Result<(u32, u32)> {
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut block = vec![0u8; 1 << 16];
    let mut left = body_len;
    while left > 0 {
        let n = block.len().min(left as usize);
        file.read_exact(&mut block[..n])?;
        hasher.update(&block[..n]);
        left -= n as u64;
    }
    let mut crc = [0u8; 4];
    file.read_exact(&mut crc)?;
    Ok((u32::from_le_bytes(crc), hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CheckpointData<'static> {
        let mut arrays = BTreeMap::new();
        arrays.insert("params".to_string(), vec![1.5, -0.0, f64::MIN_POSITIVE, 1e300, f64::NEG_INFINITY].into());
        arrays.insert("empty".to_string(), vec![].into());
        let mut blobs = BTreeMap::new();
        blobs.insert("flow".to_string(), vec![0u8, 255, 7]);
        CheckpointData { meta: serde_json::json!({"iteration": 7, "name": "x"}), arrays, blobs }
    }

    /// A missing file is reported once, with its path: the I/O error is in the message and not repeated as a source.
    #[test]
    fn an_io_error_names_the_file_and_prints_its_cause_once() {
        let path = Path::new("/nonexistent-dir/run/checkpoint.fab");
        let e = load(path).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("/nonexistent-dir/run/checkpoint.fab: "), "{text}");
        assert!(text.contains("No such file"), "{text}");
        assert!(std::error::Error::source(&e).is_none(), "the cause would be printed twice by a chain reporter");
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

    /// Content whose arrays span several conversion blocks, with a partial last block.
    fn large() -> CheckpointData<'static> {
        let mut data = sample();
        let big: Vec<f64> = (0..2 * BLOCK_FLOATS + 5).map(|i| (i as f64).sin() * 1e3).collect();
        data.arrays.insert("big".to_string(), big.into());
        data
    }

    #[test]
    fn the_streamed_file_holds_the_bytes_of_encode_and_loads_back() {
        let dir = std::env::temp_dir().join(format!("fab-ckpt-stream-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.ckpt");
        save(&path, &large()).unwrap();
        assert!(fs::read(&path).unwrap() == encode(&large()));
        let back = load(&path).unwrap();
        assert_eq!(back, large());
        assert_eq!(decode(&encode(&large()), &path).unwrap(), large());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn loading_refuses_corrupt_and_truncated_files_as_decoding_does() {
        let dir = std::env::temp_dir().join(format!("fab-ckpt-refuse-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.ckpt");
        let bytes = encode(&large());
        let mut flipped = bytes.clone();
        flipped[30] ^= 1;
        let cases: [(&[u8], &str); 4] = [
            (&flipped, "checksum mismatch"),
            (&bytes[..bytes.len() - 9], "checksum mismatch"),
            (&bytes[..12], "truncated: no header"),
            (b"NOTACKPT....", "not a fab checkpoint"),
        ];
        for (content, expected) in cases {
            fs::write(&path, content).unwrap();
            let from_file = load(&path).unwrap_err().to_string();
            assert!(from_file.contains(expected), "{from_file}");
            assert_eq!(from_file, decode(content, &path).unwrap_err().to_string());
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_header_promising_more_than_the_file_holds_is_truncation_not_an_allocation() {
        // A consistent CRC over a header that claims a 2⁶⁰-float array.
        let header = br#"{"meta":null,"arrays":[["x",1152921504606846976]],"blobs":[]}"#;
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(header);
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let msg = decode(&bytes, Path::new("f")).unwrap_err().to_string();
        assert_eq!(msg, "f: truncated: array x");
    }
}
