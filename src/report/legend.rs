//! The legend, drawn beside the plot rather than on it, so it never hides a line.

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::plot::{Drawn, FONT};

/// What a legend entry shows beside its name.
pub enum Mark {
    Line(RGBColor),
    Dashed(RGBColor),
    Bar(RGBColor),
}

pub fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    legend: &[(String, Mark)],
) -> Drawn {
    let font = (FONT, 15).into_font().color(&BLACK);
    for (row, (label, mark)) in legend.iter().enumerate() {
        // Rows start level with the top of the plot, below the caption.
        let y = 80 + row as i32 * 26;
        let sample = [(4, y), (40, y)];
        let drawn = match mark {
            Mark::Line(color) => area.draw(&PathElement::new(sample, color.stroke_width(3))),
            Mark::Dashed(color) => {
                area.draw(&DashedPathElement::new(sample, 8, 5, color.stroke_width(2)))
            }
            Mark::Bar(color) => {
                area.draw(&Rectangle::new([(12, y - 8), (32, y + 8)], color.filled()))
            }
        };
        drawn.map_err(|e| e.to_string())?;
        let text = Text::new(
            label.clone(),
            (48, y),
            font.pos(Pos::new(HPos::Left, VPos::Center)),
        );
        area.draw(&text).map_err(|e| e.to_string())?;
    }
    Ok(())
}
