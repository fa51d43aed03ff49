//! `chat-bench chart`: SVG charts of a comparison (what `compare.sh`
//! writes), drawn with plotters' SVG backend: deliveries per second and
//! server CPU per delivery by workload, the paced run's latency, and memory
//! per idle connection; one bar per server, on a log scale (the servers are
//! orders of magnitude apart).
//!
//! No font is loaded: plotters estimates text sizes itself and the SVG
//! names a generic font family, which the viewer's browser draws.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use plotters::prelude::*;

use crate::summary::Summary;

/// Chart size in pixels.
const SIZE: (u32, u32) = (900, 460);

/// Colours of the servers, in column order (ours first).
const COLOURS: [RGBColor; 6] = [
    RGBColor(0xd9, 0x5f, 0x02),
    RGBColor(0x1b, 0x9e, 0x77),
    RGBColor(0x75, 0x70, 0xb3),
    RGBColor(0xe7, 0x29, 0x8a),
    RGBColor(0x66, 0xa6, 0x1e),
    RGBColor(0x66, 0x66, 0x66),
];

/// One chart: bar groups along x, one bar per server in each.
struct Bars<'a> {
    file: &'a str,
    title: &'a str,
    y_label: &'a str,
    /// Group labels.
    groups: Vec<String>,
    /// Per server: its name and a value per group.
    series: Vec<(String, Vec<Option<f64>>)>,
}

/// Writes the charts of `dir`'s reports into `out`; returns their paths.
///
/// # Errors
///
/// The reports cannot be read, or a chart cannot be written.
pub fn charts(dir: &Path, servers: &[String], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let summary = Summary::read(dir, servers)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let fanouts: Vec<&str> = summary
        .workloads()
        .into_iter()
        .filter(|w| {
            summary
                .columns
                .iter()
                .any(|s| summary.median(w, "deliveries/s", s).is_some())
        })
        .collect();
    let per_workload = |figure: &str| -> Vec<(String, Vec<Option<f64>>)> {
        summary
            .columns
            .iter()
            .map(|s| {
                let values = fanouts
                    .iter()
                    .map(|w| summary.median(w, figure, s))
                    .collect();
                (s.clone(), values)
            })
            .collect()
    };
    let paced = "paced-100x10";
    let latency_figures = ["latency p50 (ms)", "latency p99 (ms)", "latency max (ms)"];
    let charts = [
        Bars {
            file: "deliveries.svg",
            title: "Deliveries per second (higher is better)",
            y_label: "deliveries/s",
            groups: fanouts.iter().map(ToString::to_string).collect(),
            series: per_workload("deliveries/s"),
        },
        Bars {
            file: "cpu.svg",
            title: "Server CPU per delivery (lower is better)",
            y_label: "µs of CPU per delivery",
            groups: fanouts.iter().map(ToString::to_string).collect(),
            series: per_workload("server CPU µs/delivery"),
        },
        Bars {
            file: "latency.svg",
            title: "Latency at 10,000 msg/s into 100 rooms × 10 (lower is better)",
            y_label: "ms",
            groups: vec!["p50".into(), "p99".into(), "max".into()],
            series: summary
                .columns
                .iter()
                .map(|s| {
                    let values = latency_figures
                        .iter()
                        .map(|f| summary.median(paced, f, s))
                        .collect();
                    (s.clone(), values)
                })
                .collect(),
        },
        Bars {
            file: "memory.svg",
            title: "Server memory per idle connection (lower is better)",
            y_label: "KiB of RSS per connection",
            groups: vec!["idle connections".into()],
            series: summary
                .columns
                .iter()
                .map(|s| {
                    (
                        s.clone(),
                        vec![summary.median("conns", "server RSS KiB/conn", s)],
                    )
                })
                .collect(),
        },
    ];
    let mut written = Vec::new();
    for chart in &charts {
        if chart
            .series
            .iter()
            .all(|(_, v)| v.iter().all(Option::is_none))
        {
            continue;
        }
        let path = out.join(chart.file);
        draw(&path, chart).with_context(|| format!("drawing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Draws one bar chart, log scale, each bar labelled with its value.
fn draw(path: &Path, chart: &Bars<'_>) -> anyhow::Result<()> {
    let values = chart
        .series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().copied());
    let (lo, hi) = values
        .filter(|v| *v > 0.0)
        .fold((f64::MAX, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // A decade of headroom above the tallest bar, so that its label stays
    // clear of the legend in the upper right corner.
    let (lo, hi) = (lo.min(hi) / 3.0, hi * 10.0);
    let groups = chart.groups.len();
    let servers = chart.series.len().max(1);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    #[allow(clippy::cast_precision_loss)]
    let x_end = groups as f64;
    let mut ctx = ChartBuilder::on(&root)
        .caption(chart.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_end, (lo..hi).log_scale())?;
    ctx.configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_labels(groups * 2 + 1)
        .x_label_formatter(&|x| {
            // Group names at the groups' centres, nothing elsewhere.
            let centre = x - x.floor();
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let index = x.floor() as usize;
            if (centre - 0.5).abs() < 0.01 {
                chart.groups.get(index).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(chart.y_label)
        .y_label_formatter(&|y| short(*y))
        .draw()?;
    #[allow(clippy::cast_precision_loss)]
    let width = 0.8 / servers as f64;
    for (j, (server, values)) in chart.series.iter().enumerate() {
        let colour = COLOURS[j % COLOURS.len()];
        #[allow(clippy::cast_precision_loss)]
        let bars = values.iter().enumerate().filter_map(|(i, v)| {
            let v = (*v).filter(|v| *v > 0.0)?;
            let x0 = i as f64 + 0.1 + width * j as f64;
            Some((x0, v))
        });
        let bars: Vec<(f64, f64)> = bars.collect();
        ctx.draw_series(
            bars.iter()
                .map(|&(x0, v)| Rectangle::new([(x0, lo), (x0 + width * 0.9, v)], colour.filled())),
        )?
        .label(server.as_str())
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
        ctx.draw_series(
            bars.iter().map(|&(x0, v)| {
                Text::new(short(v), (x0, v * 1.15), ("sans-serif", 11).into_font())
            }),
        )?;
    }
    ctx.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}

/// A value in a few characters: 6.2M, 114k, 8.8, 0.16.
fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values() {
        assert_eq!(short(6_238_148.0), "6.2M");
        assert_eq!(short(113_884.0), "114k");
        assert_eq!(short(8.77), "8.8");
        assert_eq!(short(0.163), "0.16");
    }
}
