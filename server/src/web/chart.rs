//! The score-history chart: 24 months of points as a step line over the
//! grade bands, with the instants the code changed marked. Only geometry
//! is computed here; the page template draws it as SVG (text in fonts that
//! have CJK glyphs).

use scoring::{Code, Grade, Model, Timestamp};

use super::labels;

pub const WIDTH: i64 = 640;
pub const HEIGHT: i64 = 240;
const LEFT: i64 = 44;
const RIGHT: i64 = 12;
const TOP: i64 = 10;
const BOTTOM: i64 = 28;

/// One point of the history: from `at` on, these points and this code.
#[derive(Clone, Debug)]
pub struct Step {
    pub at: Timestamp,
    pub points: i32,
    pub code: Code,
}

#[derive(Clone, Debug)]
pub struct Band {
    pub y: i64,
    pub height: i64,
    /// CSS-free colour (a presentation attribute: the CSP allows no inline style).
    pub fill: &'static str,
    pub label: String,
}

#[derive(Clone, Debug)]
pub struct Segment {
    pub x1: i64,
    pub y1: i64,
    pub x2: i64,
    pub y2: i64,
}

#[derive(Clone, Debug)]
pub struct Marker {
    pub x: i64,
    pub y: i64,
    pub label: String,
    /// Where the label goes: right of the line, or left of it near the
    /// right edge (where the band labels are).
    pub label_x: i64,
    pub anchor: &'static str,
}

#[derive(Clone, Debug)]
pub struct Tick {
    pub x: i64,
    pub label: String,
    /// `start`, `middle` or `end`: the outer labels stay inside the chart.
    pub anchor: &'static str,
}

/// Everything the template draws.
#[derive(Clone, Debug)]
pub struct Chart {
    pub width: i64,
    pub height: i64,
    pub left: i64,
    pub right: i64,
    pub top: i64,
    pub bottom: i64,
    pub bands: Vec<Band>,
    pub segments: Vec<Segment>,
    pub markers: Vec<Marker>,
    pub ticks: Vec<Tick>,
}

/// The lowest points of each grade under `model` (e.g. 90, 80, 60), found by
/// asking the model itself, so the bands follow its thresholds.
pub fn thresholds(model: &Model) -> Vec<(Grade, i32)> {
    let mut out: Vec<(Grade, i32)> = Vec::new();
    for p in 0..=scoring::BASE_POINTS {
        let g = model.grade(p, false);
        if out.last().is_none_or(|(last, _)| *last != g) {
            out.push((g, p));
        }
    }
    out
}

fn fill(grade: Grade) -> &'static str {
    match grade {
        Grade::Integrity => "#d7f0dd",
        Grade::Good => "#e6f4ea",
        Grade::Warning => "#fdf3d0",
        Grade::Poor => "#fbe0dc",
    }
}

/// The chart of `steps` (ascending; the first is the state at `from`)
/// between `from` and `to`.
pub fn chart(model: &Model, steps: &[Step], from: Timestamp, to: Timestamp) -> Chart {
    let span = (to.unix_nanos() - from.unix_nanos()).max(1) as i128;
    let plot_w = i128::from(WIDTH - LEFT - RIGHT);
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |t: Timestamp| -> i64 {
        let dt = i128::from(t.unix_nanos().clamp(from.unix_nanos(), to.unix_nanos()) - from.unix_nanos());
        LEFT + (dt * plot_w / span) as i64
    };
    let y = |points: i32| -> i64 { TOP + plot_h - i64::from(points.clamp(0, 100)) * plot_h / 100 };

    let bounds = thresholds(model);
    let mut bands = Vec::new();
    for (i, (grade, low)) in bounds.iter().enumerate() {
        let high = bounds.get(i + 1).map_or(100, |(_, next)| *next);
        let (zh, en) = labels::grade(*grade);
        bands.push(Band {
            y: y(high),
            height: y(*low) - y(high),
            fill: fill(*grade),
            label: format!("{zh} {en} ≥{low}"),
        });
    }

    let mut segments = Vec::new();
    let mut markers = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let x1 = x(step.at);
        let end = steps.get(i + 1).map_or(to, |next| next.at);
        let x2 = x(end);
        segments.push(Segment { x1, y1: y(step.points), x2, y2: y(step.points) });
        if let Some(next) = steps.get(i + 1) {
            segments.push(Segment { x1: x2, y1: y(step.points), x2, y2: y(next.points) });
            if next.code != step.code {
                let (zh, _) = labels::code(next.code);
                let near_edge = x2 > WIDTH * 2 / 3;
                markers.push(Marker {
                    x: x2,
                    y: y(next.points),
                    label: zh.to_owned(),
                    label_x: if near_edge { x2 - 4 } else { x2 + 4 },
                    anchor: if near_edge { "end" } else { "start" },
                });
            }
        }
    }

    let ticks = (0..=4)
        .map(|k| {
            let t = Timestamp::from_unix_nanos(from.unix_nanos() + ((span * k / 4) as i64));
            let label: String = t.to_string().chars().take(7).collect();
            let anchor = match k {
                0 => "start",
                4 => "end",
                _ => "middle",
            };
            Tick { x: x(t), label, anchor }
        })
        .collect();
    Chart {
        width: WIDTH,
        height: HEIGHT,
        left: LEFT,
        right: WIDTH - RIGHT,
        top: TOP,
        bottom: HEIGHT - BOTTOM,
        bands,
        segments,
        markers,
        ticks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bands_follow_the_models_thresholds() {
        let t = thresholds(&Model::builtin());
        let lows: Vec<i32> = t.iter().map(|(_, p)| *p).collect();
        assert_eq!(lows, vec![0, 60, 80, 90]);
    }

    #[test]
    fn a_change_of_code_is_marked() {
        let from = Timestamp::from_unix_nanos(0);
        let to = from.plus_days(730);
        let steps = [
            Step { at: from, points: 100, code: Code::Green },
            Step { at: from.plus_days(365), points: 50, code: Code::Red },
        ];
        let c = chart(&Model::builtin(), &steps, from, to);
        assert_eq!(c.markers.len(), 1);
        assert_eq!(c.markers[0].label, "红码");
        assert_eq!(c.segments.len(), 3);
        assert!(c.segments.iter().all(|s| s.x1 >= LEFT && s.x2 <= WIDTH - RIGHT));
    }
}
