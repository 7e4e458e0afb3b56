//! The writer curve (scenario 20) in `docs/benchmarks.md`: an SVG chart
//! drawn with `plotters` (its SVG backend only) and a table of every
//! contestant's rate, p50 and p99 at each writer count.

use std::fmt::Write as _;

use plotters::prelude::*;

use crate::curve::{Latency, ID, WRITERS};
use crate::report::{figure, Row};

/// The chart's file name, beside the Markdown page.
pub(crate) const SVG_NAME: &str = "benchmarks-writers.svg";

/// The curve's points: writer count and every contestant's figures, in
/// writer order.
fn points(rows: &[Row]) -> Vec<(u64, &[Latency])> {
    rows.iter()
        .filter_map(|row| writers(&row.id).map(|w| (w, row.latencies.as_slice())))
        .filter(|(_, latencies)| !latencies.is_empty())
        .collect()
}

/// The writer count of a curve row's id (`20a`: the first of
/// [`WRITERS`]).
fn writers(id: &str) -> Option<u64> {
    let mut letters = id.strip_prefix(ID)?.bytes();
    let (Some(letter), None) = (letters.next(), letters.next()) else { return None };
    WRITERS.get(usize::from(letter.checked_sub(b'a')?)).copied()
}

/// The Markdown section of the curve, or nothing when the run has no
/// curve. `svg` is the chart's path relative to the page, if drawn.
pub(crate) fn section(rows: &[Row], svg: Option<&str>) -> String {
    let points = points(rows);
    let Some((_, first)) = points.first() else { return String::new() };
    let mut out = String::new();
    out.push_str("\n## The writer curve (scenario 20)\n\n");
    out.push_str(
        "One command per new aggregate at 1 to 256 concurrent writers, every command timed. Throughput is the \
         median of the rounds; p50 and p99 are over every timed command of the rounds, in milliseconds.\n\n",
    );
    if let Some(svg) = svg {
        let _ = writeln!(out, "![Throughput and p99 latency by number of writers]({svg})\n");
    }
    out.push_str("| writers |");
    for latency in *first {
        let _ = write!(out, " {} |", latency.name);
    }
    out.push_str("\n|---:|");
    for _ in *first {
        out.push_str("---:|");
    }
    out.push('\n');
    for (writers, latencies) in &points {
        let _ = write!(out, "| {writers} |");
        for l in *latencies {
            let _ = write!(out, " {}/s, p50 {}, p99 {} |", figure(l.per_second), millis(l.p50_us), millis(l.p99_us));
        }
        out.push('\n');
    }
    out.push_str(
        "\n**Honest baselines** (ADR 53). A raw baseline is the best hand-written code for the same job, on its own \
         best table. The curve runs the raw per-row `INSERT` twice: into Orchestrix's table (its migration's \
         generated stream key and tags, a GIN tags index, the unique event-id index) and into a lean table of its \
         own (a generated position as primary key, the stream's versions unique), and the faster of the run is the \
         baseline of every ratio above. Why cqrs-es measured about 1.0 × raw in this suite and about 0.5 × in a \
         harness that ran each system in its own block on its own schema: the suite's raw baseline paid \
         Orchestrix's indexes (without the WAL flush, its `INSERT` took 2.4 × the lean table's); with \
         `synchronous_commit = on` the flush, milliseconds on a shared machine, hides cqrs-es's three extra round \
         trips, which dominate where commits are cheap; and runs in blocks see different disks (the flush latency \
         drifts within seconds), which the rotating short turns here avoid. The measurements are in the \
         [performance notes](performance-notes.md).\n",
    );
    out
}

#[allow(clippy::cast_precision_loss)] // microseconds far below 2^52
fn millis(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1000.0)
}

const COLORS: [RGBColor; 5] =
    [RGBColor(200, 30, 30), RGBColor(40, 40, 40), RGBColor(30, 90, 200), RGBColor(230, 140, 0), RGBColor(30, 150, 60)];

/// The chart: throughput (left) and p99 latency (right, log scale) by
/// writer count (log scale), one line per contestant. `None` when the
/// run has no curve.
pub(crate) fn svg(rows: &[Row]) -> Result<Option<String>, String> {
    let points = points(rows);
    let Some((_, first)) = points.first() else { return Ok(None) };
    let names: Vec<String> = first.iter().map(|l| l.name.clone()).collect();
    #[allow(clippy::cast_precision_loss)]
    let x = |writers: u64| (writers as f64).log(4.0);
    let max_rate = points.iter().flat_map(|(_, ls)| ls.iter().map(|l| l.per_second)).fold(1.0, f64::max);
    #[allow(clippy::cast_precision_loss)]
    let max_p99 = points.iter().flat_map(|(_, ls)| ls.iter().map(|l| l.p99_us as f64 / 1000.0)).fold(1.0, f64::max);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1000, 430)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (left, right) = root.split_horizontally(500);
        let mut rate = ChartBuilder::on(&left)
            .caption("Commands per second", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.1f64..4.1f64, 0f64..max_rate * 1.1)
            .map_err(|e| e.to_string())?;
        rate.configure_mesh()
            .x_labels(5)
            .x_label_formatter(&|v| format!("{:.0}", 4f64.powf(v.round())))
            .x_desc("concurrent writers")
            .y_label_formatter(&|v| figure(*v))
            .draw()
            .map_err(|e| e.to_string())?;
        let mut p99 = ChartBuilder::on(&right)
            .caption("p99 latency per command (ms, log scale)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.1f64..4.1f64, (0.1f64..max_p99 * 1.5).log_scale())
            .map_err(|e| e.to_string())?;
        p99.configure_mesh()
            .x_labels(5)
            .x_label_formatter(&|v| format!("{:.0}", 4f64.powf(v.round())))
            .x_desc("concurrent writers")
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, name) in names.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let rates: Vec<(f64, f64)> =
                points.iter().filter_map(|(w, ls)| ls.get(i).map(|l| (x(*w), l.per_second))).collect();
            #[allow(clippy::cast_precision_loss)]
            let p99s: Vec<(f64, f64)> = points
                .iter()
                .filter_map(|(w, ls)| ls.get(i).map(|l| (x(*w), (l.p99_us as f64 / 1000.0).max(0.1))))
                .collect();
            rate.draw_series(LineSeries::new(rates.iter().copied(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            rate.draw_series(rates.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(|e| e.to_string())?;
            p99.draw_series(LineSeries::new(p99s.iter().copied(), color.stroke_width(2))).map_err(|e| e.to_string())?;
            p99.draw_series(p99s.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(|e| e.to_string())?;
        }
        rate.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(Some(out))
}
