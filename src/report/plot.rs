//! What every chart is drawn with, for a run's charts and a comparison's alike: the picture's
//! size and font, the PNG and SVG backends, the axes and grid, lines, breaking points, the
//! saturation line and notes.

use std::ops::Range;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::legend::Mark;
use super::series::Line;

/// Readable on a laptop screen, and as wide as the HTML report's column.
pub const SIZE: (u32, u32) = (1000, 600);
/// Where the legend starts: the plot takes the left of the picture.
pub(super) const PLOT_WIDTH: u32 = 780;
/// Embedded rather than looked up, so text is measured (and the SVG laid out) the same on
/// every machine, with or without fonts installed. DejaVu is free (assets/fonts/LICENSE-DejaVu).
const FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// The family name the font is registered under; SVG viewers use their own sans-serif.
pub const FONT: &str = "sans-serif";
const X_DESC: &str = "requests in the step";

const SATURATION: RGBColor = RGBColor(214, 39, 40);
pub(super) const BLUE: RGBColor = RGBColor(31, 119, 180);
pub(super) const ORANGE: RGBColor = RGBColor(255, 127, 14);
pub(super) const GREEN: RGBColor = RGBColor(44, 160, 44);
pub(super) const PURPLE: RGBColor = RGBColor(148, 103, 189);

pub type Drawn = Result<(), String>;
pub(super) type Chart<'a, DB, Y> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>;

/// Something drawn on a chart-sized area, once per backend.
pub trait Picture {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Drawn;
}

/// The picture as an SVG document.
pub fn svg(picture: &impl Picture) -> Result<String, String> {
    register_font();
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        picture.draw(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(text)
}

/// The picture as a PNG file's bytes.
pub fn png(picture: &impl Picture) -> Result<Vec<u8>, String> {
    register_font();
    let mut pixels = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        picture.draw(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    encode_png(&pixels)
}

fn encode_png(rgb: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, SIZE.0, SIZE.1);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        // The default deflate would be a fifth of a short run's CPU (perf): charts of flat
        // colours compress about as well with the PNG-tuned fast one, and a stress tester's own
        // cost should go to the load, not to its pictures.
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
        writer.write_image_data(rgb).map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn register_font() {
    static REGISTERED: Once = Once::new();
    // The embedded font is known good (a unit test registers it); were it not, drawing text
    // would fail with plotters' "font unavailable", which the caller reports.
    REGISTERED.call_once(|| {
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES);
    });
}

pub(super) fn builder<'a, 'b, DB: DrawingBackend>(
    plot: &'a DrawingArea<DB, Shift>,
    title: &'b str,
) -> ChartBuilder<'a, 'b, DB> {
    let mut builder = ChartBuilder::on(plot);
    builder
        .caption(title, (FONT, 22))
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(76);
    builder
}

/// Axes, grid and labels. `counts` keeps the y labels to whole numbers (requests).
pub(super) fn mesh<DB, Y>(chart: &mut Chart<'_, DB, Y>, y_desc: &str, counts: bool) -> Drawn
where
    DB: DrawingBackend,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(X_DESC)
        .y_desc(y_desc)
        .x_labels(12)
        .y_labels(10)
        .x_label_formatter(&|x| axis_number(*x))
        .y_label_formatter(&|y| match counts && y.fract() != 0.0 {
            true => String::new(),
            false => axis_number(*y),
        })
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .light_line_style(RGBColor(247, 247, 247))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(|e| e.to_string())
}

/// The CPU share from which a side counts as saturated, across the plot.
pub(super) fn saturation_line<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB, RangedCoordf64>,
    x: Range<f64>,
    saturated: f64,
    legend: &mut Vec<(String, Mark)>,
) -> Drawn {
    chart
        .draw_series(DashedLineSeries::new(
            vec![(x.start, saturated), (x.end, saturated)],
            10,
            6,
            SATURATION.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?;
    legend.push((
        format!("{}% saturation", axis_number(saturated)),
        Mark::Dashed(SATURATION),
    ));
    Ok(())
}

pub(super) fn draw_line<DB, Y>(
    chart: &mut Chart<'_, DB, Y>,
    line: &Line,
    mark: Mark,
    legend: &mut Vec<(String, Mark)>,
) -> Drawn
where
    DB: DrawingBackend,
    Y: Ranged<ValueType = f64>,
{
    let points = line.points.clone();
    let result = match mark {
        Mark::Dashed(color) => chart
            .draw_series(DashedLineSeries::new(points, 8, 5, color.stroke_width(2)))
            .map(drop),
        Mark::Line(color) | Mark::Bar(color) => chart
            .draw_series(LineSeries::new(points, color.stroke_width(3)))
            .map(drop),
    };
    result.map_err(|e| e.to_string())?;
    let (Mark::Line(color) | Mark::Dashed(color) | Mark::Bar(color)) = mark;
    chart
        .draw_series(
            line.points
                .iter()
                .map(|p| Circle::new(*p, 4, color.filled())),
        )
        .map_err(|e| e.to_string())?;
    legend.push((line.name.clone(), mark));
    Ok(())
}

/// A step where a run broke: a dashed vertical line across the whole plot.
pub(super) struct Break {
    pub requests: u32,
    pub color: RGBColor,
    pub label: String,
}

pub(super) fn draw_breaks<DB, Y>(
    chart: &mut Chart<'_, DB, Y>,
    breaks: &[Break],
    y: &Range<f64>,
    legend: &mut Vec<(String, Mark)>,
) -> Drawn
where
    DB: DrawingBackend,
    Y: Ranged<ValueType = f64>,
{
    for at in breaks {
        let x = f64::from(at.requests);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x, y.start), (x, y.end)],
                10,
                6,
                at.color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
        legend.push((at.label.clone(), Mark::Dashed(at.color)));
    }
    Ok(())
}

/// Each line solid in its colour, in the order given (the legend's order).
pub(super) fn draw_lines<DB, Y>(
    chart: &mut Chart<'_, DB, Y>,
    lines: &[Line],
    colors: impl IntoIterator<Item = RGBColor>,
    legend: &mut Vec<(String, Mark)>,
) -> Drawn
where
    DB: DrawingBackend,
    Y: Ranged<ValueType = f64>,
{
    for (line, color) in lines.iter().zip(colors) {
        draw_line(chart, line, Mark::Line(color), legend)?;
    }
    Ok(())
}

/// A short grey note in the middle of the plot, where there is nothing to draw.
pub(super) fn note<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB, RangedCoordf64>,
    text: &str,
    x: Range<f64>,
    y: Range<f64>,
) -> Drawn {
    let middle = ((x.start + x.end) / 2.0, (y.start + y.end) / 2.0);
    let style = (FONT, 20)
        .into_font()
        .color(&RGBColor(90, 90, 90))
        .pos(Pos::new(HPos::Center, VPos::Center));
    chart
        .draw_series(std::iter::once(Text::new(text.to_owned(), middle, style)))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// A tick label: whole numbers bare, small ones with the digits they need.
pub fn axis_number(value: f64) -> String {
    let text = if value.abs() >= 10.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_drop_useless_zeros() {
        assert_eq!(axis_number(0.0), "0");
        assert_eq!(axis_number(0.25), "0.25");
        assert_eq!(axis_number(2.0), "2");
        assert_eq!(axis_number(2.5), "2.5");
        assert_eq!(axis_number(150.0), "150");
    }

    #[test]
    fn embedded_font_registers() {
        assert!(
            plotters::style::register_font("pgstress-test", FontStyle::Normal, FONT_BYTES).is_ok()
        );
    }
}
