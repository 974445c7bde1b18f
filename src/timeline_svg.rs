//! `binlogd timeline --svg FILE`: the timeline as a picture a person reads in five
//! seconds. One lane per epoch (each server the archive followed), its stretches of
//! history as bars on one time axis; failovers as dashed lines, gaps as red bands, the
//! backup the timeline starts from, and the recoverable range ending at the last
//! recoverable time. History past a gap is grey: a replay from the start cannot reach it.
//! Under the picture the same facts in words, with the GTIDs that do not fit on a bar.
//!
//! Plain SVG 1.1 with generic font families (DejaVu Sans on Debian), so `rsvg-convert`
//! and browsers draw it alike. Every figure on it is a field of the [`Timeline`] that
//! `--output json` prints.

use binlogd_storage::plan::format_micros;
use binlogd_storage::plan::timeline::{Event, Stretch, Timeline};
use std::fmt::Write;

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 190.0;
const RIGHT: f64 = 30.0;
const LANE: f64 = 62.0;
const NOTE_LINE: f64 = 18.0;

const BLUE: &str = "#2f6fce";
const GREY: &str = "#b4b4b4";
const RED: &str = "#d0312d";
const ORANGE: &str = "#c76b00";
const GREEN: &str = "#2e8b3e";
const PURPLE: &str = "#7a3fb5";

/// The picture of `found`, titled with the archive's `location`.
pub fn render(found: &Timeline, location: &str) -> String {
    let epochs = epochs_in_order(found);
    let span = TimeSpan::of(found);
    let notes = notes(found);
    let lanes_top = 96.0;
    let lanes_bottom = lanes_top + LANE * epochs.len().max(1) as f64;
    let band_top = lanes_bottom + 14.0;
    let notes_top = band_top + 58.0;
    let height = notes_top + NOTE_LINE * notes.len() as f64 + 16.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Verdana, sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    text(
        &mut svg,
        16.0,
        26.0,
        17,
        "#111",
        "bold",
        &format!("binlogd timeline: {location}"),
    );
    let headline = match found.last_recoverable_micros {
        Some(last) => format!(
            "Last recoverable time {} (GTIDs {})",
            format_micros(last),
            found.recoverable_to
        ),
        None => {
            "Nothing recoverable yet: the archive holds no transaction after the start".to_owned()
        }
    };
    text(&mut svg, 16.0, 48.0, 13, GREEN, "bold", &headline);
    text(
        &mut svg,
        16.0,
        66.0,
        12,
        "#444",
        "normal",
        &format!("From {}", start_words(found)),
    );

    let Some(span) = span else {
        return finish(svg, &notes, notes_top);
    };
    axis(&mut svg, &span, lanes_top, lanes_bottom);
    for (row, (epoch, server_id)) in epochs.iter().enumerate() {
        let y = lanes_top + LANE * row as f64;
        if row % 2 == 1 {
            let _ = writeln!(
                svg,
                r##"<rect x="{LEFT}" y="{y}" width="{}" height="{LANE}" fill="#f4f6f8"/>"##,
                span.plot_width()
            );
        }
        text(
            &mut svg,
            12.0,
            y + LANE / 2.0 + 4.0,
            12,
            "#111",
            "bold",
            epoch,
        );
        text(
            &mut svg,
            12.0,
            y + LANE / 2.0 + 19.0,
            11,
            "#555",
            "normal",
            &format!("server {server_id}"),
        );
    }
    let lane_of = |epoch: &str| {
        epochs.iter().position(|(e, _)| e == epoch).unwrap_or(0) as f64 * LANE + lanes_top
    };
    // History before the first gap is what a replay from the start can reach.
    let mut reachable = true;
    // Where each lane's last count label ends, so that the next goes under its bar
    // rather than over the last one.
    let mut label_ends: Vec<f64> = vec![0.0; epochs.len()];
    let mut previous_end: Option<u64> = None;
    for (index, event) in found.history.iter().enumerate() {
        match event {
            Event::Stretch(stretch) => {
                let row = epochs
                    .iter()
                    .position(|(e, _)| e == &stretch.epoch)
                    .unwrap_or(0);
                bar(
                    &mut svg,
                    &span,
                    stretch,
                    lane_of(&stretch.epoch),
                    reachable,
                    &mut label_ends[row],
                );
                previous_end = stretch.last_commit_micros.or(previous_end);
            }
            Event::Gap(_) => {
                reachable = false;
                let next_start = next_stretch(found, index).and_then(|s| s.first_commit_micros);
                let from = previous_end.or(next_start).unwrap_or(span.start);
                let to = next_start.unwrap_or(from).max(from);
                let (x0, x1) = (span.x(from), span.x(to).max(span.x(from) + 6.0));
                let _ = writeln!(
                    svg,
                    r#"<rect x="{x0:.1}" y="{lanes_top}" width="{:.1}" height="{:.1}" fill="{RED}" fill-opacity="0.25" stroke="{RED}"/>"#,
                    x1 - x0,
                    lanes_bottom - lanes_top
                );
                text(&mut svg, x0 + 3.0, lanes_top - 4.0, 11, RED, "bold", "GAP");
            }
            Event::ServerChange {
                to_server_id,
                first_commit_micros,
                ..
            } => {
                let at = first_commit_micros
                    .or_else(|| next_stretch(found, index).and_then(|s| s.first_commit_micros));
                if let Some(at) = at {
                    let x = span.x(at);
                    let _ = writeln!(
                        svg,
                        r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{lanes_bottom}" stroke="{ORANGE}" stroke-width="2" stroke-dasharray="6 4"/>"#,
                        lanes_top - 14.0
                    );
                    text(
                        &mut svg,
                        x + 4.0,
                        lanes_top - 16.0,
                        11,
                        ORANGE,
                        "bold",
                        &format!("failover to server {to_server_id}"),
                    );
                }
            }
        }
    }
    recoverable_band(&mut svg, found, &span, band_top, lanes_top);
    finish(svg, &notes, notes_top)
}

fn finish(mut svg: String, notes: &[(String, &'static str)], top: f64) -> String {
    for (line, (words, colour)) in notes.iter().enumerate() {
        text(
            &mut svg,
            16.0,
            top + NOTE_LINE * line as f64,
            12,
            colour,
            "normal",
            words,
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The green band under the lanes: from where the replay starts to the last recoverable
/// commit, with the backup marked at its left end when the timeline starts from one.
fn recoverable_band(svg: &mut String, found: &Timeline, span: &TimeSpan, top: f64, lanes_top: f64) {
    let first = found.history.iter().find_map(|event| match event {
        Event::Stretch(s) => s.first_commit_micros,
        _ => None,
    });
    let (Some(first), Some(last)) = (first, found.last_recoverable_micros) else {
        return;
    };
    let (x0, x1) = (span.x(first), span.x(last).max(span.x(first) + 4.0));
    let _ = writeln!(
        svg,
        r#"<rect x="{x0:.1}" y="{top}" width="{:.1}" height="18" rx="3" fill="{GREEN}" fill-opacity="0.85"/>"#,
        x1 - x0
    );
    text(svg, 12.0, top + 13.0, 12, GREEN, "bold", "recoverable");
    let _ = writeln!(
        svg,
        r#"<line x1="{x1:.1}" y1="{lanes_top}" x2="{x1:.1}" y2="{:.1}" stroke="{GREEN}" stroke-width="2"/>"#,
        top + 18.0
    );
    let label = format!("last recoverable {}", format_micros(last));
    let label_x = (x1 - 7.0 * label.len() as f64).max(LEFT);
    text(svg, label_x, top + 34.0, 12, GREEN, "bold", &label);
    if !found.start.is_empty() {
        let _ = writeln!(
            svg,
            r#"<path d="M {x0:.1} {:.1} l -6 -10 l 12 0 z" fill="{PURPLE}"/>"#,
            top - 1.0
        );
        text(svg, x0 + 8.0, top + 34.0, 12, PURPLE, "bold", "backup");
    }
}

fn bar(
    svg: &mut String,
    span: &TimeSpan,
    stretch: &Stretch,
    lane_top: f64,
    reachable: bool,
    label_end: &mut f64,
) {
    let (Some(first), Some(last)) = (stretch.first_commit_micros, stretch.last_commit_micros)
    else {
        return;
    };
    let (x0, x1) = (span.x(first), span.x(last).max(span.x(first) + 6.0));
    let colour = if reachable { BLUE } else { GREY };
    let _ = writeln!(
        svg,
        r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="16" rx="3" fill="{colour}"/>"#,
        lane_top + 24.0,
        x1 - x0
    );
    let label = format!("{} transactions", stretch.transactions);
    // About 6.5 px a character at 11 px.
    let width = 6.5 * label.len() as f64;
    let y = if x0 < *label_end + 6.0 {
        lane_top + 54.0
    } else {
        lane_top + 18.0
    };
    text(svg, x0, y, 11, "#222", "normal", &label);
    *label_end = label_end.max(x0 + width);
}

/// Five labelled ticks across the plot, and a thin line per tick through the lanes.
fn axis(svg: &mut String, span: &TimeSpan, top: f64, bottom: f64) {
    let ticks = 5;
    let same_day = span.end - span.start < 86_400_000_000;
    for tick in 0..ticks {
        let micros = span.start + (span.end - span.start) / (ticks - 1) * tick;
        let x = span.x(micros);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}" stroke="#dddddd"/>"##
        );
        let format = if same_day && tick > 0 {
            "%H:%M:%S"
        } else {
            "%Y-%m-%d %H:%M:%S"
        };
        let label = i64::try_from(micros)
            .ok()
            .and_then(|m| jiff::Timestamp::from_microsecond(m).ok())
            .map_or_else(|| micros.to_string(), |t| t.strftime(format).to_string());
        let anchor = if tick == 0 {
            "start"
        } else if tick == ticks - 1 {
            "end"
        } else {
            "middle"
        };
        let _ = writeln!(
            svg,
            r##"<text x="{x:.1}" y="{:.1}" font-size="10" fill="#666" text-anchor="{anchor}">{}</text>"##,
            bottom + 11.0,
            escape(&label)
        );
    }
}

/// The facts in words, each with its colour.
fn notes(found: &Timeline) -> Vec<(String, &'static str)> {
    let mut notes = vec![(
        format!(
            "Recoverable to GTIDs {} (last commit {})",
            found.recoverable_to,
            found
                .last_recoverable_micros
                .map_or("-".to_owned(), format_micros)
        ),
        GREEN,
    )];
    for event in &found.history {
        notes.push(match event {
            Event::Stretch(s) => (
                format!(
                    "{} (server {}): {}..{}, {} transactions, {} .. {}",
                    s.epoch,
                    s.source_server_id,
                    s.first_file,
                    s.last_file,
                    s.transactions,
                    s.first_commit_micros.map_or("-".to_owned(), format_micros),
                    s.last_commit_micros.map_or("-".to_owned(), format_micros)
                ),
                "#333",
            ),
            Event::Gap(gap) => (
                format!(
                    "GAP before {}/{}: missing {}",
                    gap.epoch, gap.file, gap.missing
                ),
                RED,
            ),
            Event::ServerChange {
                from_epoch,
                to_epoch,
                to_server_id,
                at,
                lost,
                ..
            } => {
                let mut words = format!(
                    "Failover {from_epoch} -> {to_epoch} (server {to_server_id}) at GTIDs {at}"
                );
                if !lost.is_empty() {
                    let _ = write!(words, "; lost in the failover: {lost}");
                }
                (words, if lost.is_empty() { ORANGE } else { RED })
            }
        });
    }
    notes
}

fn start_words(found: &Timeline) -> String {
    if found.start.is_empty() {
        "the archive's first transaction".to_owned()
    } else {
        format!("the backup at GTIDs {}", found.start)
    }
}

/// The epochs in the order history meets them, with their servers.
fn epochs_in_order(found: &Timeline) -> Vec<(String, u32)> {
    let mut epochs: Vec<(String, u32)> = Vec::new();
    for event in &found.history {
        if let Event::Stretch(s) = event
            && !epochs.iter().any(|(e, _)| e == &s.epoch)
        {
            epochs.push((s.epoch.clone(), s.source_server_id));
        }
    }
    epochs
}

fn next_stretch(found: &Timeline, after: usize) -> Option<&Stretch> {
    found.history[after + 1..]
        .iter()
        .find_map(|event| match event {
            Event::Stretch(s) => Some(s),
            _ => None,
        })
}

/// The time axis: the first to the last commit drawn, padded a little on each side.
struct TimeSpan {
    start: u64,
    end: u64,
}

impl TimeSpan {
    fn of(found: &Timeline) -> Option<TimeSpan> {
        let times = found.history.iter().flat_map(|event| match event {
            Event::Stretch(s) => vec![s.first_commit_micros, s.last_commit_micros],
            Event::ServerChange {
                first_commit_micros,
                ..
            } => vec![*first_commit_micros],
            Event::Gap(_) => Vec::new(),
        });
        let times: Vec<u64> = times.flatten().collect();
        let (first, last) = (*times.iter().min()?, *times.iter().max()?);
        // At least a second wide; 4% of room at each end so bars do not touch the edges.
        let width = (last - first).max(1_000_000);
        let pad = width / 25;
        Some(TimeSpan {
            start: first.saturating_sub(pad),
            end: first + width + pad,
        })
    }

    fn plot_width(&self) -> f64 {
        WIDTH - LEFT - RIGHT
    }

    fn x(&self, micros: u64) -> f64 {
        let share = micros.saturating_sub(self.start) as f64 / (self.end - self.start) as f64;
        LEFT + share.clamp(0.0, 1.0) * self.plot_width()
    }
}

fn text(svg: &mut String, x: f64, y: f64, size: u32, colour: &str, weight: &str, words: &str) {
    let _ = writeln!(
        svg,
        r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" fill="{colour}" font-weight="{weight}">{}</text>"#,
        escape(words)
    );
}

/// Text content for XML.
fn escape(words: &str) -> String {
    words
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use binlogd_storage::GtidState;
    use binlogd_storage::plan::timeline::Gap;

    fn stretch(epoch: &str, server: u32, first: u64, last: u64, transactions: u64) -> Event {
        Event::Stretch(Stretch {
            epoch: epoch.into(),
            source_server_id: server,
            first_file: "mariadb-bin.000001".into(),
            last_file: "mariadb-bin.000002".into(),
            from: GtidState::default(),
            to: GtidState::default(),
            first_commit_micros: Some(first),
            last_commit_micros: Some(last),
            transactions,
        })
    }

    #[test]
    fn history_past_a_gap_is_grey_and_the_words_say_what_is_missing() {
        let found = Timeline {
            start: GtidState::default(),
            history: vec![
                stretch("0001-server1", 1, 1_000_000_000, 2_000_000_000, 40),
                Event::Gap(Gap {
                    epoch: "0001-server1".into(),
                    file: "mariadb-bin.000004".into(),
                    reached: GtidState::default(),
                    needed: GtidState::default(),
                    missing: "0-1-41..60 <&>".into(),
                }),
                stretch("0001-server1", 1, 2_500_000_000, 3_000_000_000, 20),
            ],
            recoverable_to: GtidState::default(),
            last_recoverable_micros: Some(2_000_000_000),
        };
        let svg = render(&found, "s3://bucket/prod");
        assert!(svg.contains(&format!(r#"fill="{BLUE}""#)), "{svg}");
        assert!(svg.contains(&format!(r#"fill="{GREY}""#)), "{svg}");
        assert!(svg.contains("missing 0-1-41..60 &lt;&amp;&gt;"), "{svg}");
        assert!(svg.contains(">GAP<"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn an_empty_archive_is_a_picture_that_says_so() {
        let found = Timeline {
            start: GtidState::default(),
            history: Vec::new(),
            recoverable_to: GtidState::default(),
            last_recoverable_micros: None,
        };
        let svg = render(&found, "/var/lib/binlogd");
        assert!(svg.contains("Nothing recoverable yet"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
