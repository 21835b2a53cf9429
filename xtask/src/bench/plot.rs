//! The PNG of `cargo xtask bench --plot`: each benchmark's instruction count over the recorded baselines.

use super::history::Record;
use anyhow::{Context, anyhow};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};
use std::path::Path;
use std::sync::OnceLock;

/// One recording: the records sharing a commit and date, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// Short commit (7 characters), with `+` when the tree was dirty.
    pub label: String,
    /// Date of the recording, `YYYY-MM-DD` (the axis shows `MM-DD`).
    pub day: String,
}

/// One benchmark's points `(recording index, instructions)`, named.
pub type Series = (String, Vec<(usize, u64)>);

/// The recordings in file order, and for each benchmark (in order of first appearance) its points
/// `(recording index, instructions)`.
pub fn series(records: &[Record]) -> (Vec<Recording>, Vec<Series>) {
    let mut keys: Vec<(&str, &str)> = Vec::new();
    let mut recordings = Vec::new();
    let mut benches: Vec<Series> = Vec::new();
    for r in records {
        let key = (r.commit.as_str(), r.date.as_str());
        let at = keys.iter().position(|k| *k == key).unwrap_or_else(|| {
            keys.push(key);
            let short: String = r.commit.chars().take(7).collect();
            let label = if r.dirty { format!("{short}+") } else { short };
            recordings.push(Recording { label, day: r.date.chars().take(10).collect() });
            keys.len() - 1
        });
        match benches.iter_mut().find(|(b, _)| *b == r.benchmark) {
            Some((_, points)) => points.push((at, r.instructions)),
            None => benches.push((r.benchmark.clone(), vec![(at, r.instructions)])),
        }
    }
    (recordings, benches)
}

/// Registers the embedded DejaVu font as plotters' sans-serif (plotters' `ab_glyph` backend has no system fonts).
fn register_fonts() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok =
        *REGISTERED.get_or_init(|| register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).is_ok());
    anyhow::ensure!(ok, "the embedded DejaVu font could not be parsed");
    Ok(())
}

/// Panel width and height in pixels.
const PANEL: (u32, u32) = (620, 330);
/// Panels per row.
const COLS: usize = 2;
/// At most this many labelled recordings on an x axis (plotters picks evenly spaced ones).
const MAX_X_LABELS: usize = 6;

/// Draws one panel per benchmark (instructions in millions against the recording) into a PNG at `path`.
pub fn render(path: &Path, records: &[Record]) -> anyhow::Result<()> {
    let (recordings, benches) = series(records);
    anyhow::ensure!(!benches.is_empty(), "no records to plot");
    register_fonts()?;
    let rows = benches.len().div_ceil(COLS);
    let title_height = 40;
    let size = (PANEL.0 * COLS as u32, PANEL.1 * rows as u32 + title_height);
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (title, body) = root.split_vertically(title_height);
    title
        .titled(
            "Instruction counts (callgrind Ir) of the gated benchmarks at each recorded baseline",
            ("sans-serif", 22),
        )
        .map_err(|e| anyhow!("{e}"))?;
    for (area, (name, points)) in body.split_evenly((rows, COLS)).iter().zip(&benches) {
        draw_panel(area, name, points, &recordings).with_context(|| format!("drawing the panel of {name}"))?;
    }
    root.present().map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(())
}

/// `[lo, hi]` in millions: the points with 10 % of their span above and below, and at least 2 % of the largest
/// value (the gate's limit), so a change too small to fail the gate does not look like a cliff.
fn y_range(points: &[(usize, u64)]) -> (f64, f64) {
    let ys = points.iter().map(|&(_, y)| y as f64 / 1e6);
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
    let pad = (0.1 * (hi - lo)).max(0.02 * hi).max(1e-6);
    ((lo - pad).max(0.0), hi + pad)
}

/// Decimals that tell apart y labels about a tenth of `span` apart.
fn label_decimals(span: f64) -> usize {
    (-(span / 10.0).log10()).ceil().clamp(0.0, 6.0) as usize
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    name: &str,
    points: &[(usize, u64)],
    recordings: &[Recording],
) -> anyhow::Result<()> {
    // `package/bench/group/function.id`: the package and the function.id say which benchmark it is.
    let parts: Vec<&str> = name.split('/').collect();
    let caption = match (parts.first(), parts.last()) {
        (Some(p), Some(f)) if parts.len() > 2 => format!("{p}: {f}"),
        _ => name.to_string(),
    };
    let (y0, y1) = y_range(points);
    let n = recordings.len() as i32;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(-1..n, y0..y1)
        .map_err(|e| anyhow!("{e}"))?;
    let label = |i: &i32| {
        let recording = usize::try_from(*i).ok().and_then(|i| recordings.get(i));
        recording.map(|r| format!("{} {}", r.label, &r.day[5.min(r.day.len())..])).unwrap_or_default()
    };
    let decimals = label_decimals(y1 - y0);
    chart
        .configure_mesh()
        .x_labels((n as usize + 2).min(MAX_X_LABELS))
        .x_label_formatter(&label)
        .y_desc("million instructions")
        .y_label_formatter(&|y| format!("{y:.decimals$}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    let xy: Vec<(i32, f64)> = points.iter().map(|&(x, y)| (x as i32, y as f64 / 1e6)).collect();
    let colour = RGBColor(30, 90, 200);
    chart.draw_series(LineSeries::new(xy.clone(), colour.stroke_width(2))).map_err(|e| anyhow!("{e}"))?;
    chart.draw_series(xy.iter().map(|&p| Circle::new(p, 4, colour.filled()))).map_err(|e| anyhow!("{e}"))?;
    if let Some(&(x, y)) = xy.last() {
        let text = format!("{} Ir", crate::util::thousands(points.last().map_or(0, |p| p.1)));
        let style = TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Right, VPos::Bottom));
        chart.draw_series(std::iter::once(Text::new(text, (x, y), style))).map_err(|e| anyhow!("{e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(commit: &str, date: &str, benchmark: &str, instructions: u64) -> Record {
        Record {
            commit: commit.into(),
            dirty: commit.starts_with('d'),
            date: date.into(),
            rustc: "rustc 1.95.0".into(),
            valgrind: "valgrind-3.19.0".into(),
            gungraun: "0.20.0".into(),
            benchmark: benchmark.into(),
            instructions,
            note: None,
        }
    }

    #[test]
    fn records_are_grouped_into_recordings_and_benchmark_series() {
        let records = [
            record("1111111aaaa", "2026-11-30T02:34:15Z", "a", 10),
            record("1111111aaaa", "2026-11-30T02:34:15Z", "b", 20),
            record("2222222bbbb", "2026-11-30T02:37:53Z", "b", 19),
            record("d333333cccc", "2026-12-01T23:00:00Z", "a", 11),
            record("d333333cccc", "2026-12-01T23:00:00Z", "c", 5),
        ];
        let (recordings, benches) = series(&records);
        let labels: Vec<&str> = recordings.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["1111111", "2222222", "d333333+"]);
        assert_eq!(recordings[2].day, "2026-12-01");
        assert_eq!(
            benches,
            vec![
                ("a".to_string(), vec![(0, 10), (2, 11)]),
                ("b".to_string(), vec![(0, 20), (1, 19)]),
                ("c".to_string(), vec![(2, 5)]),
            ]
        );
    }

    #[test]
    fn the_y_range_contains_every_point_with_room() {
        let (lo, hi) = y_range(&[(0, 2_000_000), (1, 3_000_000)]);
        assert!(lo < 2.0 && hi > 3.0 && lo >= 0.0, "{lo} {hi}");
        let (lo, hi) = y_range(&[(0, 1_000_000)]);
        assert!(lo < 1.0 && hi > 1.0, "a single point gets a range around it: {lo} {hi}");
        let (lo, hi) = y_range(&[(0, 100_000_000), (1, 100_000_100)]);
        assert!(lo <= 98.0 && hi >= 102.0, "the range spans at least the gate's ±2 %: {lo} {hi}");
    }

    #[test]
    fn labels_have_enough_decimals_to_differ() {
        assert_eq!(label_decimals(20.0), 0);
        assert_eq!(label_decimals(4.0), 1);
        assert_eq!(label_decimals(0.3), 2);
    }

    #[test]
    fn a_png_is_written() {
        let path = std::env::temp_dir().join(format!("xtask-bench-plot-{}.png", std::process::id()));
        let records = [
            record("1111111aaaa", "2026-11-30T02:34:15Z", "p/b/g/f.a", 1_000_000),
            record("2222222bbbb", "2026-12-01T02:34:15Z", "p/b/g/f.a", 1_100_000),
            record("2222222bbbb", "2026-12-01T02:34:15Z", "p/b/g/f.b", 7_000_000),
        ];
        render(&path, &records).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        std::fs::remove_file(&path).unwrap();
    }
}
