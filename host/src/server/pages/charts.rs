//! The charts of an app's page: calls, errors and p50/p99 latency per
//! minute, one line per function and version, drawn as inline SVG on the
//! server (no script, nothing fetched from elsewhere).

use super::layout::{clock, millis};
use crate::platform::{BUCKET_MS, Buckets};
use maud::{Markup, html};
use std::collections::BTreeMap;

/// The windows a chart can show, in hours; the first is the default's
/// neighbour, [`DEFAULT_HOURS`] is picked when none is asked for.
pub(super) const HOURS: [u64; 5] = [1, 3, 6, 12, 24];

/// The window shown unless another is picked: long enough to see the
/// last deploys, short enough that a minute is still a few pixels wide.
pub(super) const DEFAULT_HOURS: u64 = 3;

/// Most executions read for one chart: the bound on the query's work
/// (about 50 bytes each in memory). Past it the oldest minutes of the
/// window are left out, and the page says so.
pub(super) const MAX_ROWS: usize = 200_000;

/// Most lines (function and version) drawn in one chart, the busiest
/// first: more would be unreadable; the rest are named as hidden.
const MAX_LINES: usize = 8;

/// Longest window (in minutes) whose points are drawn as dots; past it
/// only the lines (thousands of dots would weigh down the page).
const MAX_DOTS_MINUTES: usize = 6 * 60;

/// Line colours, one per line (function and version).
const COLORS: [&str; MAX_LINES] = [
    "#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#dc2626",
];

// The drawing's size in SVG units (it scales to the width it is given).
const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 170.0;
const LEFT: f64 = 50.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;

/// The minutes a chart covers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Window {
    /// Start of the first minute, Unix ms.
    pub(super) from: u64,
    /// End (exclusive), Unix ms.
    pub(super) to: u64,
    /// Minutes shown.
    pub(super) minutes: usize,
}

impl Window {
    /// The last `hours`, ending with the minute of `now`.
    pub(super) fn last(hours: u64, now: u64) -> Window {
        let minutes = (hours * 60) as usize;
        let this_minute = now - now % BUCKET_MS;
        let from = (this_minute + BUCKET_MS).saturating_sub(minutes as u64 * BUCKET_MS);
        Window {
            from,
            to: now + 1,
            minutes,
        }
    }

    fn index(&self, start: u64) -> Option<usize> {
        let i = (start.checked_sub(self.from)? / BUCKET_MS) as usize;
        (i < self.minutes).then_some(i)
    }
}

/// One function of one version over the window.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Line {
    /// The function.
    pub(super) function: String,
    /// The version.
    pub(super) version: u64,
    /// Calls per minute.
    pub(super) calls: Vec<f64>,
    /// Failed calls per minute.
    pub(super) errors: Vec<f64>,
    /// Median duration per minute with calls.
    pub(super) p50: Vec<Option<f64>>,
    /// 99th percentile per minute with calls.
    pub(super) p99: Vec<Option<f64>>,
}

impl Line {
    fn total(&self) -> f64 {
        self.calls.iter().sum()
    }

    fn label(&self) -> String {
        format!("{} · v{}", self.function, self.version)
    }
}

/// The lines of `buckets` over `window`, only of `function` and
/// `version` when given, the busiest first; and how many more there were
/// than [`MAX_LINES`].
pub(super) fn lines(
    buckets: &Buckets,
    window: &Window,
    function: Option<&str>,
    version: Option<u64>,
) -> (Vec<Line>, usize) {
    let mut by_key: BTreeMap<(&str, u64), Line> = BTreeMap::new();
    for b in &buckets.buckets {
        if function.is_some_and(|f| f != b.function) || version.is_some_and(|v| v != b.version) {
            continue;
        }
        let Some(i) = window.index(b.start) else {
            continue;
        };
        let line = by_key
            .entry((b.function.as_str(), b.version))
            .or_insert_with(|| Line {
                function: b.function.clone(),
                version: b.version,
                calls: vec![0.0; window.minutes],
                errors: vec![0.0; window.minutes],
                p50: vec![None; window.minutes],
                p99: vec![None; window.minutes],
            });
        line.calls[i] = b.calls as f64;
        line.errors[i] = b.errors as f64;
        line.p50[i] = Some(b.p50_ms);
        line.p99[i] = Some(b.p99_ms);
    }
    let mut lines: Vec<Line> = by_key.into_values().collect();
    lines.sort_by(|a, b| b.total().total_cmp(&a.total()));
    let hidden = lines.len().saturating_sub(MAX_LINES);
    lines.truncate(MAX_LINES);
    (lines, hidden)
}

/// One drawn series: a colour, dashed or not, a value per minute.
struct Series<'a> {
    color: &'a str,
    label: String,
    dashed: bool,
    values: Vec<Option<f64>>,
}

/// The smallest of 1, 2, 5 × 10ⁿ at or above `max` (at least 1).
fn nice_ceiling(max: f64) -> f64 {
    if max.is_nan() || max <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * magnitude)
}

fn count(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// One chart as SVG.
fn chart(
    id: &str,
    title: &str,
    window: &Window,
    series: &[Series<'_>],
    unit: fn(f64) -> String,
) -> Markup {
    let max = nice_ceiling(
        series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .fold(0.0, |a: f64, b| a.max(*b)),
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let step = plot_w / (window.minutes.max(2) - 1) as f64;
    let x = |i: usize| LEFT + i as f64 * step;
    let y = |v: f64| TOP + (1.0 - v / max) * plot_h;
    let dots = window.minutes <= MAX_DOTS_MINUTES;
    let at = |i: usize| window.from + i as u64 * BUCKET_MS;
    html! {
        figure id=(id) {
            figcaption { (title) }
            svg viewBox={"0 0 " (WIDTH) " " (HEIGHT)} role="img" aria-label=(title) xmlns="http://www.w3.org/2000/svg" {
                @for frac in [0.0, 0.5, 1.0] {
                    line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y(max * frac)) y2=(y(max * frac)) stroke="#eceef2" {}
                    text x=(LEFT - 4.0) y=(y(max * frac) + 3.0) text-anchor="end" { (unit(max * frac)) }
                }
                @for (i, anchor) in [(0, "start"), (window.minutes / 2, "middle"), (window.minutes - 1, "end")] {
                    text x=(x(i)) y=(HEIGHT - 6.0) text-anchor=(anchor) { (clock(at(i))) }
                }
                @for s in series {
                    @for run in runs(&s.values) {
                        @if run.len() > 1 {
                            polyline.series fill="none" stroke=(s.color) stroke-width="1.5"
                                stroke-dasharray=[s.dashed.then_some("4 3")]
                                points=(run.iter().map(|(i, v)| format!("{:.1},{:.1}", x(*i), y(*v))).collect::<Vec<_>>().join(" ")) {}
                        }
                    }
                    @if dots {
                        @for (i, v) in s.values.iter().enumerate().filter_map(|(i, v)| Some((i, (*v)?))).filter(|(_, v)| *v > 0.0) {
                            circle.point cx=(format!("{:.1}", x(i))) cy=(format!("{:.1}", y(v))) r="2.2" fill=(s.color) {
                                title { (s.label) " · " (clock(at(i))) " UTC · " (unit(v)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The runs of consecutive minutes that have a value.
fn runs(values: &[Option<f64>]) -> Vec<Vec<(usize, f64)>> {
    let mut runs = Vec::new();
    let mut run = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => run.push((i, *v)),
            None if !run.is_empty() => runs.push(std::mem::take(&mut run)),
            None => {}
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

/// The three charts of `lines` with their legend.
pub(super) fn charts(window: &Window, lines: &[Line]) -> Markup {
    let color = |i: usize| COLORS[i % COLORS.len()];
    let of = |pick: fn(&Line) -> Vec<Option<f64>>, dashed: bool| -> Vec<Series<'static>> {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| Series {
                color: color(i),
                label: l.label(),
                dashed,
                values: pick(l),
            })
            .collect()
    };
    let calls = of(|l| l.calls.iter().map(|c| Some(*c)).collect(), false);
    let errors = of(|l| l.errors.iter().map(|c| Some(*c)).collect(), false);
    let mut latency = of(|l| l.p50.clone(), false);
    latency.extend(of(|l| l.p99.clone(), true));
    html! {
        div.charts {
            (chart("chart-calls", "Calls per minute", window, &calls, count))
            (chart("chart-errors", "Errors per minute", window, &errors, count))
            (chart("chart-latency", "Latency per minute: p50 (solid), p99 (dashed)", window, &latency, millis))
        }
        ul.legend {
            @for (i, l) in lines.iter().enumerate() {
                li { span.swatch style={"background:" (color(i))} {} (l.label()) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Bucket;

    fn bucket(start: u64, function: &str, version: u64, calls: u64) -> Bucket {
        Bucket {
            start,
            version,
            function: function.into(),
            calls,
            errors: calls / 2,
            p50_ms: 1.0,
            p99_ms: 9.0,
        }
    }

    #[test]
    fn a_window_ends_with_the_current_minute() {
        let now = 10 * BUCKET_MS + 1_234;
        let w = Window::last(1, 100 * BUCKET_MS + 5);
        assert_eq!((w.minutes, w.from), (60, 41 * BUCKET_MS));
        assert_eq!(w.index(100 * BUCKET_MS + 59_999), Some(59));
        assert_eq!(w.index(41 * BUCKET_MS), Some(0));
        assert_eq!(w.index(40 * BUCKET_MS), None);
        assert_eq!(w.index(101 * BUCKET_MS), None);
        // Early in the epoch the window starts at 0 rather than wrapping.
        assert_eq!(Window::last(3, now).from, 0);
    }

    #[test]
    fn lines_are_per_function_and_version_busiest_first_and_filtered() {
        let w = Window::last(1, 100 * BUCKET_MS);
        let buckets = Buckets {
            buckets: vec![
                bucket(90 * BUCKET_MS, "a", 1, 2),
                bucket(91 * BUCKET_MS, "a", 1, 2),
                bucket(91 * BUCKET_MS, "b", 1, 7),
                bucket(92 * BUCKET_MS, "a", 2, 1),
                bucket(10 * BUCKET_MS, "a", 2, 99),
            ],
            complete_from: 0,
        };
        let (all, hidden) = lines(&buckets, &w, None, None);
        let keys: Vec<(String, u64, f64)> = all
            .iter()
            .map(|l| (l.function.clone(), l.version, l.total()))
            .collect();
        assert_eq!(
            keys,
            [
                ("b".into(), 1, 7.0),
                ("a".into(), 1, 4.0),
                ("a".into(), 2, 1.0)
            ]
        );
        assert_eq!(hidden, 0);
        let a1 = &all[1];
        assert_eq!(a1.calls[90 - 41], 2.0);
        assert_eq!(a1.errors[90 - 41], 1.0);
        assert_eq!((a1.p50[91 - 41], a1.p99[92 - 41]), (Some(1.0), None));
        let (only_a, _) = lines(&buckets, &w, Some("a"), None);
        assert_eq!(only_a.len(), 2);
        let (only_v2, _) = lines(&buckets, &w, None, Some(2));
        assert_eq!(only_v2.len(), 1);
    }

    #[test]
    fn too_many_lines_are_cut_and_counted() {
        let w = Window::last(1, 100 * BUCKET_MS);
        let buckets = Buckets {
            buckets: (0..11)
                .map(|v| bucket(99 * BUCKET_MS, "f", v, v + 1))
                .collect(),
            complete_from: 0,
        };
        let (shown, hidden) = lines(&buckets, &w, None, None);
        assert_eq!((shown.len(), hidden), (MAX_LINES, 3));
        assert_eq!(shown[0].version, 10);
    }

    #[test]
    fn scales_round_up_to_one_two_or_five() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(10.0), 10.0);
        assert_eq!(nice_ceiling(11.0), 20.0);
        assert_eq!(nice_ceiling(0.3), 1.0);
        assert_eq!(nice_ceiling(5001.0), 10_000.0);
    }

    #[test]
    fn charts_draw_a_dot_per_busy_minute_and_lines_between() {
        let w = Window::last(1, 100 * BUCKET_MS);
        let buckets = Buckets {
            buckets: vec![
                bucket(98 * BUCKET_MS, "sq", 1, 3),
                bucket(99 * BUCKET_MS, "sq", 1, 4),
            ],
            complete_from: 0,
        };
        let (lines, _) = lines(&buckets, &w, None, None);
        let svg = charts(&w, &lines).into_string();
        // Calls: 2 dots; errors: 2 dots; latency: p50 and p99 dots at 2
        // minutes each.
        assert_eq!(svg.matches("<circle").count(), 2 + 2 + 4, "{svg}");
        assert!(svg.contains("sq · v1"), "{svg}");
        assert!(svg.contains("stroke-dasharray=\"4 3\""), "{svg}");
        assert_eq!(
            runs(&[None, Some(1.0), Some(2.0), None, Some(3.0)]).len(),
            2
        );
    }
}
