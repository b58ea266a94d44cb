//! SVG plots of a [`CompareReport`] (plotters, SVG backend: no system fonts or libraries needed):
//!
//! - `<name>-detection.svg`: detection time (all nodes) against cluster size, after SIGKILL and
//!   SIGSTOP, medians with min–max bars, one colour per system;
//! - `<name>-resources.svg`: RSS and CPU per agent against cluster size;
//! - `<name>-availability.svg`: how many nodes answered as primary, every 50 ms, through the
//!   failover at the smallest size (the round with the median outage), one panel per system;
//! - [`frontier`]: detection time against false failures, one panel per stress setting.
//!
//! Every plot carries the command and date of the run in its caption.

use std::path::Path;

use plotters::prelude::*;

use crate::compare::{CompareReport, Round};
use crate::stats::Stat;

const COLORS: [RGBColor; 3] = [RGBColor(0x1f, 0x77, 0xb4), RGBColor(0xd6, 0x27, 0x28), RGBColor(0x2c, 0xa0, 0x2c)];

type Values = fn(&Round) -> Vec<f64>;

/// Write the three plots next to the report.
pub fn write_all(report: &CompareReport, dir: &Path) -> anyhow::Result<()> {
    let name = &report.options.name;
    detection(report, &dir.join(format!("{name}-detection.svg")))?;
    resources(report, &dir.join(format!("{name}-resources.svg")))?;
    availability(report, &dir.join(format!("{name}-availability.svg")))?;
    Ok(())
}

fn caption(report: &CompareReport) -> String {
    format!("{} · {} · {}", report.stamp.command, report.stamp.date, report.stamp.commit)
}

fn series(report: &CompareReport, system: &str, values: Values) -> Vec<(f64, Stat)> {
    report
        .options
        .sizes
        .iter()
        .filter_map(|&n| {
            let s = Stat::of(report.rounds.iter().filter(|r| r.system == system && r.nodes == n).flat_map(values))?;
            Some((n as f64, s))
        })
        .collect()
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plot: {e}")
}

/// One chart of medians with min–max bars against cluster size, one series per (system, kind).
fn size_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    report: &CompareReport,
    title: &str,
    y_label: &str,
    kinds: &[(&str, Values)],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let mut all = Vec::new();
    for (si, sys) in report.systems.iter().enumerate() {
        for (ki, (kind, f)) in kinds.iter().enumerate() {
            all.push((si, ki, format!("{} {kind}", sys.name), series(report, &sys.name, *f)));
        }
    }
    let max_n = report.options.sizes.iter().copied().max().unwrap_or(50) as f64;
    let max_y = all.iter().flat_map(|(_, _, _, s)| s.iter().map(|(_, st)| st.max)).fold(0.0f64, f64::max).max(1e-3);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_n * 1.1, 0.0..max_y * 1.15)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("nodes")
        .y_desc(y_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(err)?;
    for (si, ki, label, s) in &all {
        if s.is_empty() {
            continue;
        }
        let color = COLORS[*si % COLORS.len()];
        let style = if *ki == 0 { color.stroke_width(2) } else { color.mix(0.6).stroke_width(1) };
        chart
            .draw_series(LineSeries::new(s.iter().map(|(x, st)| (*x, st.median)), style))
            .map_err(err)?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(
                s.iter().map(|(x, st)| ErrorBar::new_vertical(*x, st.min, st.median, st.max, color.stroke_width(1), 8)),
            )
            .map_err(err)?;
        if *ki == 0 {
            chart.draw_series(s.iter().map(|(x, st)| Circle::new((*x, st.median), 4, color.filled()))).map_err(err)?;
        } else {
            chart
                .draw_series(s.iter().map(|(x, st)| TriangleMarker::new((*x, st.median), 5, color.filled())))
                .map_err(err)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

fn detection(report: &CompareReport, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (main, foot) = root.split_vertically(530);
    size_chart(
        &main,
        report,
        "Failure detection, every node knows (median, min–max)",
        "seconds",
        &[
            ("SIGKILL", |r: &Round| r.kill_all_s.into_iter().collect()),
            ("SIGSTOP", |r: &Round| r.stop_all_s.into_iter().collect()),
        ],
    )?;
    foot.draw_text(&caption(report), &("sans-serif", 11).into_text_style(&foot), (10, 8)).map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn resources(report: &CompareReport, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (main, foot) = root.split_vertically(470);
    let panels = main.split_evenly((1, 2));
    size_chart(&panels[0], report, "RSS per agent", "MiB", &[("RSS", |r: &Round| r.rss_mib.clone())])?;
    size_chart(
        &panels[1],
        report,
        "CPU per agent",
        "CPU seconds per minute",
        &[("CPU", |r: &Round| r.cpu_s_per_min.clone())],
    )?;
    foot.draw_text(&caption(report), &("sans-serif", 11).into_text_style(&foot), (10, 8)).map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn availability(report: &CompareReport, path: &Path) -> anyhow::Result<()> {
    let n = report.options.sizes.iter().copied().min().unwrap_or(5);
    // Per system, the round whose outage is the median one (the lower middle for an even count).
    let panels: Vec<&Round> = report
        .systems
        .iter()
        .filter_map(|s| {
            let mut rounds: Vec<&Round> = report
                .rounds
                .iter()
                .filter(|r| r.system == s.name && r.nodes == n && !r.availability.is_empty())
                .collect();
            rounds
                .sort_by(|a, b| a.failover_gap_s.unwrap_or(f64::MAX).total_cmp(&b.failover_gap_s.unwrap_or(f64::MAX)));
            rounds.get(rounds.len().saturating_sub(1) / 2).copied()
        })
        .collect();
    let height = 60 + 240 * panels.len().max(1) as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (main, foot) = root.split_vertically(height - 30);
    let max_t = panels.iter().flat_map(|r| r.availability.last().map(|s| s.at)).fold(1.0f64, f64::max);
    let areas = main.split_evenly((panels.len().max(1), 1));
    for (k, (r, area)) in panels.iter().zip(&areas).enumerate() {
        let color = COLORS[k % COLORS.len()];
        let title = format!(
            "{}, {n} nodes, round {} (median outage): nodes answering as primary, polled every 50 ms; SIGKILL at 0; unreachable {}",
            r.system,
            r.round,
            r.failover_gap_s.map_or("-".to_owned(), |g| format!("{g:.2} s"))
        );
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 14))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(-0.5..max_t, -0.1..2.5)
            .map_err(err)?;
        chart.configure_mesh().x_desc("seconds since SIGKILL").y_desc("primaries").y_labels(3).draw().map_err(err)?;
        let mut points = Vec::new();
        for w in r.availability.windows(2) {
            let y = w[0].primaries.len() as f64;
            points.push((w[0].at, y));
            points.push((w[1].at, y));
        }
        chart.draw_series(LineSeries::new(points, color.stroke_width(2))).map_err(err)?;
        if let Some(d) = r.failover_detect_all_s {
            chart
                .draw_series(LineSeries::new(vec![(d, -0.1), (d, 2.5)], BLACK.mix(0.5).stroke_width(1)))
                .map_err(err)?
                .label("all nodes list it failed")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5)));
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }
    }
    foot.draw_text(&caption(report), &("sans-serif", 11).into_text_style(&foot), (10, 8)).map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Colours of the frontier's systems, in the frontier's order.
const SYSTEM_COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// The frontier plot: one panel per setting; in each, one point per system at (false failures
/// per node-hour, median detection after a kill) with a min–max bar. Lower left is better.
pub fn frontier(f: &crate::stress_frontier::Frontier, path: &Path) -> anyhow::Result<()> {
    let cols = 3usize;
    let rows = f.settings.len().div_ceil(cols).max(1);
    let (w, panel_h) = (1200u32, 300u32);
    let height = 70 + panel_h * rows as u32 + 30;
    let root = SVGBackend::new(path, (w, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (head, rest) = root.split_vertically(70);
    let (main, foot) = rest.split_vertically(panel_h * rows as u32);
    head.draw_text(
        &format!(
            "Frontier ({}): detection after a kill (median, min–max) against false failures per node-hour; lower left is better",
            f.source
        ),
        &("sans-serif", 16).into_text_style(&head),
        (10, 8),
    )
    .map_err(err)?;
    // The legend: one coloured dot and name per system.
    let mut x = 10;
    for (k, sys) in f.systems.iter().enumerate() {
        let color = SYSTEM_COLORS[k % SYSTEM_COLORS.len()];
        head.draw(&Circle::new((x + 5, 45), 5, color.filled())).map_err(err)?;
        head.draw_text(sys, &("sans-serif", 13).into_text_style(&head), (x + 14, 38)).map_err(err)?;
        x += 16 + 8 * sys.len() as i32 + 24;
    }
    let areas = main.split_evenly((rows, cols));
    for ((setting, _), area) in f.settings.iter().zip(&areas) {
        let points: Vec<(usize, &crate::stress_frontier::Point)> =
            f.systems.iter().enumerate().filter_map(|(k, sys)| f.point(sys, setting).map(|p| (k, p))).collect();
        let max_x = points.iter().map(|(_, p)| p.rate()).fold(0.0f64, f64::max).max(1.0) * 1.2;
        let max_y =
            points.iter().filter_map(|(_, p)| p.detection.map(|d| d.max)).fold(0.0f64, f64::max).max(1.0) * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(setting, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(45)
            .build_cartesian_2d(-max_x * 0.04..max_x, 0.0..max_y)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("false failures / node-hour")
            .y_desc("detection, s")
            .x_labels(5)
            .y_labels(5)
            .draw()
            .map_err(err)?;
        for (k, p) in points {
            let Some(d) = p.detection else { continue };
            let color = SYSTEM_COLORS[k % SYSTEM_COLORS.len()];
            let x = p.rate();
            chart
                .draw_series(std::iter::once(ErrorBar::new_vertical(
                    x,
                    d.min,
                    d.median,
                    d.max,
                    color.stroke_width(1),
                    6,
                )))
                .map_err(err)?;
            chart.draw_series(std::iter::once(Circle::new((x, d.median), 5, color.filled()))).map_err(err)?;
        }
    }
    let caption = format!("{} · {} · {}", f.stamp.command, f.stamp.date, f.stamp.commit);
    foot.draw_text(&caption, &("sans-serif", 11).into_text_style(&foot), (10, 8)).map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
