//! Reading a RON config file: parse and validation errors name the file, the line and the field.

use anyhow::{Context, anyhow};
use fab_train::config::{CheckedTrainConfig, TrainConfig};
use std::path::Path;

/// The default config (FAB on the 2021 mixture of Gaussians), embedded so `fab train` works from any directory.
pub const DEFAULT_CONFIG: &str = include_str!("../../../configs/mog_fab_2021.ron");
/// The name shown for the embedded default in messages.
pub const DEFAULT_CONFIG_NAME: &str = "configs/mog_fab_2021.ron (built in)";

/// Parses config text without checking its values; `name` is the file shown in errors.
pub fn parse_unchecked(text: &str, name: &str) -> anyhow::Result<TrainConfig> {
    TrainConfig::from_ron(text).map_err(|e| {
        let pos = e.span.start;
        match key_of_value_at(text, pos.line, pos.col) {
            Some(key) => anyhow!("{name}:{}:{}: field `{key}`: {}", pos.line, pos.col, e.code),
            None => anyhow!("{name}:{}:{}: {}", pos.line, pos.col, e.code),
        }
    })
}

/// Checks a parsed config once; an error names the file, the line of the field (found in `text`) and the field.
pub fn check(config: TrainConfig, text: &str, name: &str) -> anyhow::Result<CheckedTrainConfig> {
    config.check().map_err(|e| {
        let line = field_line(text, &e.field).map(|l| format!(":{l}")).unwrap_or_default();
        anyhow!("{name}{line}: field `{}`: {}", e.field, e.reason)
    })
}

/// Reads and parses a config file without checking its values; returns the config and the file's text.
pub fn load_unchecked(path: &Path) -> anyhow::Result<(TrainConfig, String)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    Ok((parse_unchecked(&text, &path.display().to_string())?, text))
}

/// The key whose value is at 1-based `line:col` (a type error points at the value): the identifier before the
/// nearest `:` looking back, unless a `,` or `(` comes first (then the position is a key or a list item).
fn key_of_value_at(text: &str, line: usize, col: usize) -> Option<String> {
    let line_start: usize = text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
    let rest = text.get(line_start..)?;
    let offset = rest.char_indices().nth(col.saturating_sub(1)).map_or(rest.len(), |(i, _)| i);
    let before = &text[..line_start + offset];
    let colon = before.rfind([':', ',', '(', '['])?;
    if !before[colon..].starts_with(':') {
        return None;
    }
    let key: String = before[..colon]
        .trim_end()
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (!key.is_empty()).then_some(key)
}

/// The 1-based line where the last component of a dotted field path first appears as `name:`, if any.
fn field_line(text: &str, field: &str) -> Option<usize> {
    let key = field.rsplit('.').next()?;
    let key = key.split('[').next()?;
    text.lines()
        .position(|l| {
            let code = l.split("//").next().unwrap_or("");
            code.match_indices(key).any(|(i, _)| {
                let before_ok = code[..i].chars().last().is_none_or(|c| !c.is_alphanumeric() && c != '_');
                let after = code[i + key.len()..].trim_start();
                before_ok && (after.starts_with(':') || after.starts_with('('))
            })
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses and checks config text once, as `fab train` does.
    fn parse(text: &str, name: &str) -> anyhow::Result<CheckedTrainConfig> {
        check(parse_unchecked(text, name)?, text, name)
    }

    /// Reads, parses and checks a config file once.
    fn load(path: &Path) -> anyhow::Result<CheckedTrainConfig> {
        let (config, text) = load_unchecked(path)?;
        check(config, &text, &path.display().to_string())
    }

    #[test]
    fn the_default_config_is_valid() {
        let c = parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME).unwrap();
        assert_eq!(c.config().name, "mog_fab_2021");
    }

    #[test]
    fn every_shipped_config_is_valid() {
        // configs/, and the old-format copies of them that `fab train` must keep reading.
        let root = env!("CARGO_MANIFEST_DIR");
        for (dir, at_least) in [("/../../configs", 9), ("/../fab-train/tests/data/legacy_configs", 6)] {
            let mut n = 0;
            for entry in std::fs::read_dir(format!("{root}{dir}")).unwrap() {
                let path = entry.unwrap().path();
                // own_density.ron trains a density supplied from code: it names no target to check against.
                if path.extension().is_some_and(|e| e == "ron") && !path.ends_with("own_density.ron") {
                    load(&path).unwrap_or_else(|e| panic!("{e:#}"));
                    n += 1;
                }
            }
            assert!(n >= at_least, "expected {at_least} configs in {dir}, found {n}");
        }
    }

    #[test]
    fn unknown_fields_wrong_types_and_bad_values_name_file_line_and_field() {
        let unknown = DEFAULT_CONFIG.replace("batch_size: 100", "batch_size: 100,\n    bach_size: 3");
        let e = parse(&unknown, "x.ron").unwrap_err().to_string();
        assert!(e.starts_with("x.ron:") && e.contains("bach_size"), "{e}");

        let wrong_type = DEFAULT_CONFIG.replace("batch_size: 100", "batch_size: \"many\"");
        let e = parse(&wrong_type, "x.ron").unwrap_err().to_string();
        let line = DEFAULT_CONFIG.lines().position(|l| l.contains("batch_size")).unwrap() + 1;
        assert!(e.starts_with(&format!("x.ron:{line}:")), "{e}");
        assert!(e.contains("field `batch_size`"), "a type error names the field: {e}");
        let nested = DEFAULT_CONFIG.replace("n_leapfrog: 5", "n_leapfrog: 5.5");
        let e = parse(&nested, "x.ron").unwrap_err().to_string();
        assert!(e.contains("field `n_leapfrog`"), "{e}");

        let out_of_range = DEFAULT_CONFIG.replace("lr: 5e-4", "lr: -1.0");
        let e = parse(&out_of_range, "x.ron").unwrap_err().to_string();
        let line = DEFAULT_CONFIG.lines().position(|l| l.contains("lr: 5e-4")).unwrap() + 1;
        assert_eq!(e, format!("x.ron:{line}: field `optimizer.lr`: must be a positive finite number, got -1"));

        let e = load(Path::new("/nonexistent/fab.ron")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/fab.ron"), "{e}");
    }
}
