//! Metrics in the Prometheus text exposition format (version 0.0.4), rendered on each scrape of
//! `/metrics` from the counters the layers keep: nothing is sampled in the background.

use std::collections::HashSet;
use std::fmt::{Display, Write as _};

/// Content type of the Prometheus text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricKind {
    Counter,
    Gauge,
}

/// Builds one exposition: each family's `# HELP` and `# TYPE` once, then its samples.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    text: String,
    declared: HashSet<String>,
}

impl Exposition {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Declare a family (once; later calls are ignored).
    pub(crate) fn family(&mut self, name: &str, kind: MetricKind, help: &str) -> &mut Self {
        if self.declared.insert(name.to_owned()) {
            let kind = match kind {
                MetricKind::Counter => "counter",
                MetricKind::Gauge => "gauge",
            };
            let _ = writeln!(self.text, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
            let _ = writeln!(self.text, "# TYPE {name} {kind}");
        }
        self
    }

    /// One sample of a declared family.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) -> &mut Self {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (index, (key, value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
        self
    }

    /// A family with a single unlabelled sample.
    pub(crate) fn single(&mut self, name: &str, kind: MetricKind, help: &str, value: impl Display) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    pub(crate) fn finish(self) -> String {
        self.text
    }
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_once_and_escapes_labels() {
        let mut out = Exposition::new();
        out.family("serf_members", MetricKind::Gauge, "Members by state.")
            .sample("serf_members", &[("state", "alive")], 5)
            .family("serf_members", MetricKind::Gauge, "again")
            .sample("serf_members", &[("state", "we\"ird\n")], 0)
            .single("serf_up", MetricKind::Gauge, "Up.", 1);
        assert_eq!(
            out.finish(),
            "# HELP serf_members Members by state.\n# TYPE serf_members gauge\nserf_members{state=\"alive\"} 5\n\
             serf_members{state=\"we\\\"ird\\n\"} 0\n# HELP serf_up Up.\n# TYPE serf_up gauge\nserf_up 1\n"
        );
    }
}
