//! The demo's figure: the training loss curve and 2-D projections of the test embeddings
//! before and after training, as one SVG file.

use std::path::Path;

use plotters::prelude::*;

/// Matplotlib's `tab10` colours, one per digit.
const CLASS_COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One scatter panel: a title and row-major `(x, y)` points with their class.
pub(crate) struct Projection<'a> {
    /// The panel's title.
    pub(crate) title: String,
    /// Interleaved x, y coordinates, one pair per example.
    pub(crate) points: &'a [f32],
    /// The class of each point.
    pub(crate) labels: &'a [u32],
}

/// Writes the figure to `path`: `losses` (one per step) with a running mean on top, the
/// projections side by side below.
///
/// # Errors
/// A message naming the file when it cannot be drawn or written.
pub(crate) fn write_svg(
    path: &Path,
    losses: &[f32],
    running: &[f32],
    panels: &[Projection<'_>],
) -> Result<(), String> {
    let fail =
        |e: &dyn std::fmt::Display| format!("cannot write the figure {}: {e}", path.display());
    let root = SVGBackend::new(path, (1200, 960)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let (top, bottom) = root.split_vertically(400);

    let y_max = losses
        .iter()
        .chain(running)
        .fold(0.0f32, |m, v| m.max(*v))
        .max(1e-3)
        * 1.05;
    let mut chart = ChartBuilder::on(&top)
        .caption("TripletLoss during training", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f32..losses.len().max(1) as f32, 0f32..y_max)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .draw()
        .map_err(|e| fail(&e))?;
    let raw = BLUE.mix(0.25);
    chart
        .draw_series(LineSeries::new(
            losses.iter().enumerate().map(|(i, v)| (i as f32, *v)),
            raw,
        ))
        .map_err(|e| fail(&e))?
        .label("batch loss")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], raw));
    chart
        .draw_series(LineSeries::new(
            running.iter().enumerate().map(|(i, v)| (i as f32, *v)),
            RED.stroke_width(2),
        ))
        .map_err(|e| fail(&e))?
        .label("running mean")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .draw()
        .map_err(|e| fail(&e))?;

    let areas = bottom.split_evenly((1, panels.len().max(1)));
    for (area, panel) in areas.iter().zip(panels) {
        let (xs, ys): (Vec<f32>, Vec<f32>) =
            panel.points.chunks_exact(2).map(|p| (p[0], p[1])).unzip();
        let range = |v: &[f32]| {
            let (lo, hi) = v
                .iter()
                .fold((f32::MAX, f32::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
            let pad = ((hi - lo) * 0.05).max(1e-3);
            (lo - pad)..(hi + pad)
        };
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(range(&xs), range(&ys))
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc("PC 1")
            .y_desc("PC 2")
            .draw()
            .map_err(|e| fail(&e))?;
        for (class, colour) in CLASS_COLOURS.iter().enumerate() {
            let colour = *colour;
            let members = (0..panel.labels.len())
                .filter(|&i| panel.labels[i] as usize == class)
                .map(|i| Circle::new((xs[i], ys[i]), 3, colour.mix(0.8).filled()));
            chart
                .draw_series(members)
                .map_err(|e| fail(&e))?
                .label(class.to_string())
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .draw()
            .map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}
