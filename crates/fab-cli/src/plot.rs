//! PNG figures with plotters and an embedded DejaVu font (no system font packages): density bands with samples.

use anyhow::{Context, anyhow};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use std::path::Path;
use std::sync::Once;

/// One panel of a figure: a 2-D window, an optional log density drawn as filled contour bands, and point sets.
pub struct Panel<'a> {
    /// Title above the panel.
    pub title: String,
    /// `(x_min, x_max)`.
    pub x_range: (f64, f64),
    /// `(y_min, y_max)`.
    pub y_range: (f64, f64),
    /// Log density (unnormalised is fine) of the background, evaluated on a grid.
    pub log_density: Option<&'a (dyn Fn(f64, f64) -> f64 + Sync)>,
    /// Point sets `(label, points)`, drawn in order with distinct colours.
    pub points: Vec<(String, Vec<(f64, f64)>)>,
}

/// Grid resolution of the contour bands, per axis.
const GRID: usize = 160;
/// Number of contour bands and their width in nats below the maximum.
const N_BANDS: usize = 12;
const BAND_WIDTH: f64 = 1.5;

fn register_fonts() -> anyhow::Result<()> {
    static ONCE: Once = Once::new();
    let mut res = Ok(());
    ONCE.call_once(|| {
        res = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| anyhow!("the embedded DejaVu font could not be parsed"));
    });
    res
}

const POINT_COLOURS: [RGBColor; 4] =
    [RGBColor(220, 20, 60), RGBColor(255, 140, 0), RGBColor(30, 30, 30), RGBColor(0, 150, 255)];

/// Renders `panels` on a `rows × cols` grid into a PNG at `path`.
pub fn render_grid(path: &Path, rows: usize, cols: usize, panels: &[Panel<'_>]) -> anyhow::Result<()> {
    register_fonts()?;
    let (w, h) = (420 * cols as u32, 400 * rows as u32);
    let root = BitMapBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    for (area, panel) in root.split_evenly((rows, cols)).iter().zip(panels) {
        draw_panel(area, panel).with_context(|| format!("drawing panel {:?}", panel.title))?;
    }
    root.present().map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(())
}

fn draw_panel(area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>, panel: &Panel<'_>) -> anyhow::Result<()> {
    let (x0, x1) = panel.x_range;
    let (y0, y1) = panel.y_range;
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(36)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| anyhow!("{e}"))?;
    chart.configure_mesh().disable_mesh().draw().map_err(|e| anyhow!("{e}"))?;
    if let Some(f) = panel.log_density {
        let (dx, dy) = ((x1 - x0) / GRID as f64, (y1 - y0) / GRID as f64);
        let grid: Vec<(f64, f64, f64)> = (0..GRID * GRID)
            .map(|k| {
                let (x, y) = (x0 + (k % GRID) as f64 * dx, y0 + (k / GRID) as f64 * dy);
                (x, y, f(x + dx / 2.0, y + dy / 2.0))
            })
            .collect();
        let max = grid.iter().map(|g| g.2).filter(|v| v.is_finite()).fold(f64::NEG_INFINITY, f64::max);
        let cells = grid.into_iter().filter_map(|(x, y, lp)| {
            let band = ((max - lp) / BAND_WIDTH).floor();
            if !(band >= 0.0 && band < N_BANDS as f64) {
                return None;
            }
            let shade = 1.0 - band / N_BANDS as f64;
            let colour = ViridisRGB::get_color(shade * 0.85 + 0.1).mix(0.35 + 0.4 * shade);
            Some(Rectangle::new([(x, y), (x + dx, y + dy)], colour.filled()))
        });
        chart.draw_series(cells).map_err(|e| anyhow!("{e}"))?;
    }
    for (k, (label, pts)) in panel.points.iter().enumerate() {
        let colour = POINT_COLOURS[k % POINT_COLOURS.len()];
        let inside = pts.iter().filter(|(x, y)| x0 <= *x && *x <= x1 && y0 <= *y && *y <= y1);
        chart
            .draw_series(inside.map(|&(x, y)| Circle::new((x, y), 2, colour.mix(0.6).filled())))
            .map_err(|e| anyhow!("{e}"))?
            .label(label.as_str())
            .legend(move |(x, y)| Circle::new((x, y), 4, colour.filled()));
    }
    if !panel.points.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_two_panel_figure_renders_to_png() {
        let dir = std::env::temp_dir().join(format!("fab-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fig.png");
        let gauss = |x: f64, y: f64| -0.5 * (x * x + y * y);
        let panel = |title: &str, pts: Vec<(f64, f64)>| Panel {
            title: title.to_string(),
            x_range: (-3.0, 3.0),
            y_range: (-3.0, 3.0),
            log_density: Some(&gauss),
            points: vec![("samples".to_string(), pts)],
        };
        render_grid(&path, 1, 2, &[panel("a", vec![(0.0, 0.0), (1.0, 1.0)]), panel("b", vec![(-1.0, 0.5)])]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        // A blank 840×400 PNG compresses to a few hundred bytes; bands, text and points make it far larger.
        assert!(bytes.len() > 10_000, "suspiciously small PNG: {} bytes", bytes.len());
        if std::env::var_os("FAB_KEEP_PLOT").is_none() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
