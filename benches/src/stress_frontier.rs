//! The frontier: detection time against false-failure rate, one point per system and stress
//! setting, as a Markdown table, JSON and an SVG plot (docs/results/frontier.* for real
//! processes, frontier-sim.* for the simulator).
//!
//! A detector is better when its point is lower (faster after a kill) and further left (fewer
//! live nodes declared failed). Each table carries the command that made it.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::stamp::Stamp;
use crate::stats::Stat;

/// One system under one setting.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// `serf-agent lan`, `serf lan`, ...
    pub system: String,
    /// The setting's name (`loss20`, `bursty`, ...).
    pub setting: String,
    /// False-failure episodes.
    pub false_failures: usize,
    /// Observed node-hours.
    pub node_hours: f64,
    /// Detection after SIGKILL, seconds (median, min–max), if measured.
    pub detection: Option<Stat>,
    /// Kills not detected by every observer within 60 s.
    pub missed: usize,
}

impl Point {
    /// Episodes per node-hour.
    pub fn rate(&self) -> f64 {
        if self.node_hours > 0.0 {
            self.false_failures as f64 / self.node_hours
        } else {
            0.0
        }
    }
}

/// The frontier of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Frontier {
    /// `real processes` or `simulator`.
    pub source: String,
    /// Command and machine.
    pub stamp: Stamp,
    /// Settings in order, with their description.
    pub settings: Vec<(String, String)>,
    /// Systems in order.
    pub systems: Vec<String>,
    /// Every point.
    pub points: Vec<Point>,
    /// What the figures mean, in a sentence or two.
    pub note: String,
}

impl Frontier {
    /// The point of `system` under `setting`.
    pub fn point(&self, system: &str, setting: &str) -> Option<&Point> {
        self.points.iter().find(|p| p.system == system && p.setting == setting)
    }

    /// The table: one row per setting, one column per system, each cell `rate (count) · median
    /// detection`.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Frontier ({}): detection time against false failures\n", self.source);
        s.push_str(&self.stamp.markdown());
        s.push('\n');
        let _ = writeln!(
            s,
            "Each cell: false failures per node-hour (episodes / node-hours observed) · detection after a kill, \
             median (min–max) s.\n"
        );
        let mut header = "| setting |".to_owned();
        let mut rule = "|---|".to_owned();
        for sys in &self.systems {
            let _ = write!(header, " {sys} |");
            rule.push_str("---|");
        }
        let _ = writeln!(s, "{header}\n{rule}");
        for (setting, _) in &self.settings {
            let mut row = format!("| {setting} |");
            for sys in &self.systems {
                let cell = self.point(sys, setting).map_or("-".to_owned(), |p| {
                    let det = p.detection.map_or("-".to_owned(), |d| d.show(2));
                    let missed = if p.missed > 0 { format!(", {} missed", p.missed) } else { String::new() };
                    format!("{:.1} ({}/{:.1}) · {det}{missed}", p.rate(), p.false_failures, p.node_hours)
                });
                let _ = write!(row, " {cell} |");
            }
            let _ = writeln!(s, "{row}");
        }
        s.push_str("\nSettings:\n\n");
        for (name, what) in &self.settings {
            let _ = writeln!(s, "- `{name}`: {what}");
        }
        let _ = writeln!(s, "\n{}", self.note);
        s
    }

    /// Write `<name>.md`, `.json` and `.svg` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(format!("{name}.md")), self.markdown())?;
        std::fs::write(dir.join(format!("{name}.json")), serde_json::to_string_pretty(self)?)?;
        crate::plots::frontier(self, &dir.join(format!("{name}.svg")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_setting_and_a_column_per_system() {
        let p = |system: &str, setting: &str, ff, det: f64| Point {
            system: system.into(),
            setting: setting.into(),
            false_failures: ff,
            node_hours: 2.0,
            detection: Stat::of([det, det + 1.0, det + 2.0]),
            missed: 0,
        };
        let f = Frontier {
            source: "simulator".into(),
            stamp: Stamp::new("cluster-bench stress --sim"),
            settings: vec![("none".into(), "no stress".into()), ("loss20".into(), "20 % loss".into())],
            systems: vec!["serf-agent lan".into(), "serf lan".into()],
            points: vec![
                p("serf-agent lan", "none", 0, 1.0),
                p("serf lan", "none", 0, 5.0),
                p("serf lan", "loss20", 3, 6.0),
            ],
            note: "A note.".into(),
        };
        let md = f.markdown();
        assert!(md.contains("| setting | serf-agent lan | serf lan |"), "{md}");
        assert!(md.contains("| none | 0.0 (0/2.0) · 2.00 (1.00–3.00) | 0.0 (0/2.0) · 6.00 (5.00–7.00) |"), "{md}");
        assert!(md.contains("| loss20 | - | 1.5 (3/2.0) · 7.00 (6.00–8.00) |"), "{md}");
        let dir = std::env::temp_dir().join(format!("frontier-test-{}", std::process::id()));
        f.write(&dir, "f").unwrap();
        let svg = std::fs::read_to_string(dir.join("f.svg")).unwrap();
        assert!(svg.contains("<svg") && svg.contains("loss20"), "{svg}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
