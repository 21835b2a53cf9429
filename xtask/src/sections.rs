//! RESULTS.md's `## ` sections: one replaced in place by a task that writes it, and the hand-written ones kept
//! when the file is regenerated.

use std::ops::Range;

/// The `## ` sections of a markdown text as (heading line, byte range of the whole section), in order; text before
/// the first `## ` heading is not a section.
fn section_spans(md: &str) -> Vec<(&str, Range<usize>)> {
    let mut starts: Vec<usize> = md.match_indices("\n## ").map(|(i, _)| i + 1).collect();
    if md.starts_with("## ") {
        starts.insert(0, 0);
    }
    starts
        .iter()
        .enumerate()
        .map(|(k, &start)| {
            let end = starts.get(k + 1).copied().unwrap_or(md.len());
            (md[start..end].lines().next().unwrap_or_default(), start..end)
        })
        .collect()
}

/// The `## ` sections as (heading line, whole section text).
fn sections(md: &str) -> Vec<(&str, &str)> {
    section_spans(md).into_iter().map(|(heading, span)| (heading, &md[span])).collect()
}

/// `md` with the section headed like `section` (its first line) replaced in place by `section`, or `section`
/// appended when `md` has none.
pub fn replace_or_append(md: &str, section: &str) -> String {
    let heading = section.lines().next().unwrap_or_default();
    let Some((_, span)) = section_spans(md).into_iter().find(|(h, _)| *h == heading) else {
        return format!("{}\n\n{}", md.trim_end(), section);
    };
    // A blank line between the section and the heading after it, as between any two sections.
    let gap = if span.end < md.len() { "\n\n" } else { "\n" };
    format!("{}{}{gap}{}", &md[..span.start], section.trim_end(), &md[span.end..])
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
    fn the_section_is_appended_once_then_replaced_in_place() {
        let base = "# R\n\n## A\n\na\n";
        let one = replace_or_append(base, "## fab-jax's log Z benchmark (issue 13)\n\nv1\n");
        assert!(one.starts_with(base.trim_end()) && one.contains("v1"));
        let two = replace_or_append(&one, "## fab-jax's log Z benchmark (issue 13)\n\nv2\n");
        assert!(two.contains("v2") && !two.contains("v1") && two.matches("fab-jax's log Z").count() == 1);
        let middle = format!("{two}\n## Z\n\nz\n");
        let three = replace_or_append(&middle, "## fab-jax's log Z benchmark (issue 13)\n\nv3\n");
        assert!(three.contains("v3") && three.contains("## Z\n\nz") && !three.contains("v2"), "{three}");
        assert!(three.contains("v3\n\n## Z"), "a blank line before the next heading: {three}");
        assert!(two.ends_with("v2\n"), "one newline at the end: {two:?}");
    }

    #[test]
    fn without_hand_written_sections_the_generated_text_stands() {
        let generated = "# Title\n\n## Table 1\n\nrows\n";
        assert_eq!(keep_hand_written("", generated), generated);
        assert_eq!(keep_hand_written(generated, generated), generated);
    }
}
