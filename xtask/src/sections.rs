//! RESULTS.md's hand-written sections survive its regeneration: `## ` sections the generator does not write are kept.

/// The `## ` sections of a markdown text as (heading line, whole section text), in order; text before the first
/// `## ` heading is not a section.
fn sections(md: &str) -> Vec<(&str, &str)> {
    let mut starts: Vec<usize> = md.match_indices("\n## ").map(|(i, _)| i + 1).collect();
    if md.starts_with("## ") {
        starts.insert(0, 0);
    }
    starts
        .iter()
        .enumerate()
        .map(|(k, &start)| {
            let end = starts.get(k + 1).copied().unwrap_or(md.len());
            let text = &md[start..end];
            (text.lines().next().unwrap_or_default(), text)
        })
        .collect()
}

/// `generated`, followed by every section of `previous` whose heading `generated` does not have (in their order
/// in `previous`): the notes written by hand under their own headings.
pub fn keep_hand_written(previous: &str, generated: &str) -> String {
    let produced: Vec<&str> = sections(generated).into_iter().map(|(h, _)| h).collect();
    let kept: Vec<&str> =
        sections(previous).into_iter().filter(|(h, _)| !produced.contains(h)).map(|(_, t)| t.trim_end()).collect();
    if kept.is_empty() {
        return generated.to_string();
    }
    format!("{}\n\n{}\n", generated.trim_end(), kept.join("\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_the_generator_does_not_write_are_kept_after_it() {
        let previous = "# Title\n\n## Table 1\n\nold rows\n\n## Notes by hand\n\nmeasured this\n\n## Table 2\n\nold\n\n## More notes\n\nand that\n";
        let generated = "# Title\n\n## Table 1\n\nnew rows\n\n## Table 2\n\nnew\n";
        let out = keep_hand_written(previous, generated);
        assert_eq!(
            out,
            "# Title\n\n## Table 1\n\nnew rows\n\n## Table 2\n\nnew\n\n## Notes by hand\n\nmeasured this\n\n## More notes\n\nand that\n"
        );
        // Regenerating again changes nothing.
        assert_eq!(keep_hand_written(&out, generated), out);
    }

    #[test]
    fn without_hand_written_sections_the_generated_text_stands() {
        let generated = "# Title\n\n## Table 1\n\nrows\n";
        assert_eq!(keep_hand_written("", generated), generated);
        assert_eq!(keep_hand_written(generated, generated), generated);
    }
}
