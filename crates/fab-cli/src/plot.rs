//! PNG figures with plotters and an embedded DejaVu font (no system font packages): a density raster with samples.

use anyhow::{Context, anyhow};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use std::path::Path;
use std::sync::Once;

/// One panel of a figure: a 2-D window, an optional log density drawn as a fine raster with a colour scale, and
/// point sets (points outside the window are counted in the title, never allowed to stretch it).
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

/// Raster resolution of the density, per axis (cells of 1–2 pixels at the default panel size).
const GRID: usize = 300;
/// Width in pixels of the colour scale beside each panel.
const SCALE_WIDTH: u32 = 64;

/// Colour of relative density `t = p̃ / max p̃ ∈ [0, 1]`: white at 0 through the viridis map to dark violet at 1,
/// continuous, so a reader sees where the mass is instead of bands cut at a threshold.
pub fn density_colour(t: f64) -> RGBColor {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let RGBColor(r, g, b) = ViridisRGB::get_color(1.0 - 0.9 * t);
    let a = t.sqrt();
    let mix = |c: u8| (255.0 * (1.0 - a) + f64::from(c) * a).round() as u8;
    RGBColor(mix(r), mix(g), mix(b))
}

/// Points of `pts` outside the window `x_range × y_range` (non-finite points included).
pub fn count_outside(pts: &[(f64, f64)], x_range: (f64, f64), y_range: (f64, f64)) -> usize {
    pts.iter().filter(|(x, y)| !(x_range.0 <= *x && *x <= x_range.1 && y_range.0 <= *y && *y <= y_range.1)).count()
}

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
    let root = BitMapBackend::new(path, grid_size(rows, cols)).into_drawing_area();
    draw_grid(&root, rows, cols, panels)?;
    root.present().map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(())
}

/// Renders `panels` into an RGB buffer (for tests): `width × height × 3` bytes.
#[cfg(test)]
pub fn render_grid_rgb(rows: usize, cols: usize, panels: &[Panel<'_>]) -> anyhow::Result<Vec<u8>> {
    register_fonts()?;
    let (w, h) = grid_size(rows, cols);
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        draw_grid(&root, rows, cols, panels)?;
        root.present().map_err(|e| anyhow!("{e}"))?;
    }
    Ok(buf)
}

fn grid_size(rows: usize, cols: usize) -> (u32, u32) {
    ((420 + SCALE_WIDTH) * cols as u32, 400 * rows as u32)
}

type Area<'b> = DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>;

fn draw_grid(root: &Area<'_>, rows: usize, cols: usize, panels: &[Panel<'_>]) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    for (area, panel) in root.split_evenly((rows, cols)).iter().zip(panels) {
        draw_panel(area, panel).with_context(|| format!("drawing panel {:?}", panel.title))?;
    }
    Ok(())
}

/// The density on the raster's cell centres, divided by its maximum there (`None` without a density).
fn relative_density(panel: &Panel<'_>) -> Option<Vec<(f64, f64, f64)>> {
    let f = panel.log_density?;
    let ((x0, x1), (y0, y1)) = (panel.x_range, panel.y_range);
    let (dx, dy) = ((x1 - x0) / GRID as f64, (y1 - y0) / GRID as f64);
    let cells: Vec<(f64, f64, f64)> = (0..GRID * GRID)
        .map(|k| {
            let (x, y) = (x0 + (k % GRID) as f64 * dx, y0 + (k / GRID) as f64 * dy);
            (x, y, f(x + dx / 2.0, y + dy / 2.0))
        })
        .collect();
    let max = cells.iter().map(|c| c.2).filter(|v| v.is_finite()).fold(f64::NEG_INFINITY, f64::max);
    Some(cells.into_iter().map(|(x, y, lp)| (x, y, if max.is_finite() { (lp - max).exp() } else { 0.0 })).collect())
}

fn draw_panel(area: &Area<'_>, panel: &Panel<'_>) -> anyhow::Result<()> {
    let (x0, x1) = panel.x_range;
    let (y0, y1) = panel.y_range;
    let (w, _) = area.dim_in_pixel();
    let (plot_area, scale_area) = area.split_horizontally(w.saturating_sub(SCALE_WIDTH));
    let n_points: usize = panel.points.iter().map(|(_, p)| p.len()).sum();
    let outside: usize = panel.points.iter().map(|(_, p)| count_outside(p, panel.x_range, panel.y_range)).sum();
    let title =
        if outside > 0 { format!("{} ({outside} of {n_points} outside)", panel.title) } else { panel.title.clone() };
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(&title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(36)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| anyhow!("{e}"))?;
    chart.configure_mesh().disable_mesh().draw().map_err(|e| anyhow!("{e}"))?;
    if let Some(cells) = relative_density(panel) {
        let (dx, dy) = ((x1 - x0) / GRID as f64, (y1 - y0) / GRID as f64);
        let cells = cells
            .into_iter()
            .filter(|c| c.2 > 0.0)
            .map(|(x, y, t)| Rectangle::new([(x, y), (x + dx, y + dy)], density_colour(t).filled()));
        chart.draw_series(cells).map_err(|e| anyhow!("{e}"))?;
        draw_colour_scale(&scale_area)?;
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

/// The colour scale: relative density `p̃ / max p̃` on the window, 0 to 1.
fn draw_colour_scale(area: &Area<'_>) -> anyhow::Result<()> {
    // The ticks go right of the bar (on its left they ran under it), and the name is drawn at the top of the area,
    // clear of the "1.0" tick (as a chart caption it sat on it).
    area.draw(&Text::new("p / max p", (4, 6), ("sans-serif", 11).into_font())).map_err(|e| anyhow!("{e}"))?;
    let mut bar = ChartBuilder::on(area)
        .margin_top(30)
        .margin_bottom(36)
        .margin_left(6)
        .right_y_label_area_size(30)
        .build_cartesian_2d(0.0..1.0, 0.0..1.0)
        .map_err(|e| anyhow!("{e}"))?;
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(5)
        .label_style(("sans-serif", 11))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    const STEPS: usize = 100;
    let steps = (0..STEPS).map(|i| {
        let (t0, t1) = (i as f64 / STEPS as f64, (i + 1) as f64 / STEPS as f64);
        Rectangle::new([(0.0, t0), (1.0, t1)], density_colour(0.5 * (t0 + t1)).filled())
    });
    bar.draw_series(steps).map_err(|e| anyhow!("{e}"))?;
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
        // A blank PNG compresses to a few hundred bytes; bands, text and points make it far larger.
        assert!(bytes.len() > 10_000, "suspiciously small PNG: {} bytes", bytes.len());
        if std::env::var_os("FAB_KEEP_PLOT").is_none() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    /// Issue 15 item 14: the density is a continuous raster (the old bands gave a dozen colours, cut off at 18
    /// nats), with a colour scale; points outside the window are counted.
    #[test]
    fn the_density_is_a_continuous_raster_with_a_scale_and_outliers_are_counted() {
        let gauss = |x: f64, y: f64| -0.5 * (x * x + y * y);
        let panel = Panel {
            title: "g".into(),
            x_range: (-3.0, 3.0),
            y_range: (-3.0, 3.0),
            log_density: Some(&gauss),
            points: vec![],
        };
        let rgb = render_grid_rgb(1, 1, &[panel]).unwrap();
        let colours: std::collections::BTreeSet<&[u8]> = rgb.chunks_exact(3).collect();
        assert!(colours.len() > 150, "only {} distinct colours: not a continuous scale", colours.len());
        assert_eq!(density_colour(0.0), RGBColor(255, 255, 255));
        assert!(density_colour(1.0).0 < 100, "the mode is not dark");
        let pts = [(0.0, 0.0), (5.0, 0.0), (0.0, -9.0), (f64::NAN, 0.0)];
        assert_eq!(count_outside(&pts, (-3.0, 3.0), (-3.0, 3.0)), 3);
    }
}
