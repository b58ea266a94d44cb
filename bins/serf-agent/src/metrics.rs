//! Metrics in the Prometheus text exposition format (version 0.0.4), rendered on each scrape of
//! `/metrics` from the counters the layers keep: nothing is sampled in the background.

use std::collections::{BTreeMap, HashSet};
use std::fmt::{Display, Write as _};
use std::sync::atomic::Ordering;

use gossip_core::SerfStats;
use leader_failover::Role;

use crate::agent::AgentContext;
use crate::handlers::KillReason;

/// Content type of the Prometheus text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricKind {
    Counter,
    Gauge,
    /// Only `_sum` and `_count` samples.
    Summary,
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
                MetricKind::Summary => "summary",
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

/// Every metric of the agent, from the serf layer's stats and the agent's own counters.
pub(crate) fn render(context: &AgentContext, stats: &SerfStats) -> String {
    use MetricKind::{Counter, Gauge, Summary};
    let mut out = Exposition::new();
    out.single("serf_up", Gauge, "1 while the agent runs.", 1);
    out.single(
        "serf_agent_uptime_seconds",
        Gauge,
        "Seconds since the agent started.",
        context.started.elapsed().as_secs(),
    );

    out.family("serf_members", Gauge, "Members known, by state (tombstones included until reaped).");
    for (state, count) in
        [("alive", stats.alive), ("suspect", stats.suspect), ("failed", stats.failed), ("left", stats.left)]
    {
        out.sample("serf_members", &[("state", state)], count);
    }
    out.family("serf_lamport_time", Gauge, "Lamport clocks: member, event and query time.");
    for (clock, time) in [("member", stats.member_time), ("event", stats.event_time), ("query", stats.query_time)] {
        out.sample("serf_lamport_time", &[("clock", clock)], time);
    }
    let handlers = context.handlers.stats();
    out.family("serf_queue_depth", Gauge, "Items waiting, by queue.");
    for (queue, depth) in [
        ("member_events", stats.member_event_queue as i64),
        ("user_events", stats.user_event_queue as i64),
        ("pending_queries", stats.pending_queries as i64),
        ("snapshot", stats.snapshot_queue as i64),
        ("handlers", handlers.queued()),
    ] {
        out.sample("serf_queue_depth", &[("queue", queue)], depth);
    }
    out.single("serf_encrypted", Gauge, "1 when gossip is encrypted.", u8::from(stats.encrypted));
    out.single("serf_coordinate_resets_total", Counter, "Vivaldi coordinate resets.", stats.coordinate_resets);

    let c = &stats.counters;
    for (name, help, value) in [
        ("serf_user_events_total", "User events delivered.", c.user_events),
        ("serf_user_event_duplicates_total", "User events dropped as duplicates.", c.user_event_duplicates),
        ("serf_prunes_total", "Prune intents of other nodes (force-leave -prune) applied.", c.prunes),
        ("serf_user_events_refused_total", "User events refused as too old.", c.user_events_refused),
        ("serf_queries_total", "Queries delivered or answered by the layer.", c.queries),
        ("serf_query_duplicates_total", "Queries dropped as duplicates.", c.query_duplicates),
        ("serf_queries_refused_total", "Queries refused as too old.", c.queries_refused),
        ("serf_queries_filtered_total", "Queries this node's filters excluded.", c.queries_filtered),
        ("serf_query_acks_sent_total", "Query acks sent.", c.query_acks_sent),
        ("serf_query_acks_received_total", "Acks received for this node's queries.", c.query_acks_received),
        (
            "serf_query_responses_received_total",
            "Responses received for this node's queries.",
            c.query_responses_received,
        ),
        ("serf_query_reply_duplicates_total", "Query replies dropped as duplicates.", c.query_reply_duplicates),
        ("serf_query_replies_unmatched_total", "Query replies for no pending query.", c.query_replies_unmatched),
        ("serf_query_replies_dropped_total", "Query replies dropped for a slow reader.", c.query_replies_dropped),
        ("serf_relays_forwarded_total", "Query replies relayed for others.", c.relays_forwarded),
        ("serf_member_recoveries_total", "Suspected members that refuted.", c.recoveries),
        ("serf_coordinate_updates_total", "Vivaldi updates applied.", c.coordinate_updates),
        ("serf_coordinate_rejections_total", "Coordinates refused.", c.coordinate_rejections),
        ("serf_foreign_payloads_total", "User payloads not of the serf layer.", c.foreign_payloads),
        ("serf_reconnect_attempts_total", "Reconnection attempts to failed members.", c.reconnect_attempts),
    ] {
        out.single(name, Counter, help, value);
    }

    let swim = &stats.node.swim;
    out.family("serf_packets_sent_total", Counter, "Datagrams sent.").sample(
        "serf_packets_sent_total",
        &[],
        swim.packets_sent,
    );
    out.single("serf_packets_received_total", Counter, "Datagrams received.", swim.packets_received);
    out.family("serf_bytes_sent_total", Counter, "Bytes sent, by transport.")
        .sample("serf_bytes_sent_total", &[("transport", "udp")], swim.bytes_sent)
        .sample("serf_bytes_sent_total", &[("transport", "tcp")], swim.stream_bytes_sent);
    out.family("serf_bytes_received_total", Counter, "Bytes of datagrams received.").sample(
        "serf_bytes_received_total",
        &[("transport", "udp")],
        swim.bytes_received,
    );
    out.single("serf_streams_sent_total", Counter, "Stream (TCP) requests started.", swim.streams_sent);
    labelled(
        &mut out,
        "serf_messages_sent_total",
        "Messages sent, by type (piggybacked ones included).",
        "type",
        &swim.messages_sent,
    );
    labelled(&mut out, "serf_messages_received_total", "Messages received, by type.", "type", &swim.messages_received);
    let mut dropped: BTreeMap<&str, u64> = swim.dropped.clone();
    *dropped.entry("serf_payload").or_default() += c.decode_errors;
    labelled(&mut out, "serf_decode_errors_total", "Packets and messages dropped, by reason.", "reason", &dropped);
    out.single("serf_probes_total", Counter, "Probes started.", swim.probes);
    out.single("serf_probes_failed_total", Counter, "Probes that ended without an ack.", swim.probes_failed);
    out.single("serf_suspicions_total", Counter, "Suspicions this node started.", swim.suspicions);
    out.single("serf_suspicions_seen_total", Counter, "Members seen suspected (any accuser).", c.suspicions);
    out.single("serf_refutations_total", Counter, "Times this node refuted news about itself.", swim.refutations);
    out.single("serf_declared_dead_total", Counter, "Members this node declared dead.", swim.declared_dead);

    let driver = &stats.node.driver;
    out.single("serf_udp_send_errors_total", Counter, "Datagrams the OS refused to send.", driver.udp_send_errors);
    out.single("serf_udp_receive_errors_total", Counter, "Failed UDP receives.", driver.udp_recv_errors);
    out.single("serf_stream_requests_total", Counter, "Outgoing TCP requests.", driver.stream_requests);
    out.single(
        "serf_stream_request_failures_total",
        Counter,
        "Outgoing TCP requests that failed.",
        driver.stream_request_failures,
    );
    out.single("serf_inbound_streams_total", Counter, "TCP connections accepted.", driver.inbound_streams);
    out.single(
        "serf_inbound_stream_failures_total",
        Counter,
        "Accepted TCP connections that failed.",
        driver.inbound_stream_failures,
    );
    labelled(
        &mut out,
        "serf_refused_streams_total",
        "Inbound gossip streams refused on their header (wrong cluster label, version, encryption or key; too large).",
        "reason",
        &driver.refused_streams,
    );
    out.single(
        "serf_refusal_warnings_total",
        Counter,
        "Warnings logged about refused gossip datagrams and streams (rate-limited per peer and reason).",
        driver.refusal_warnings,
    );
    out.single(
        "serf_unauthenticated_bytes",
        Gauge,
        "Bytes of inbound gossip stream frames buffered and not yet authenticated.",
        driver.unauthenticated_bytes,
    );
    out.single(
        "serf_unauthenticated_bytes_peak",
        Gauge,
        "The highest serf_unauthenticated_bytes since start.",
        driver.unauthenticated_bytes_peak,
    );

    let runs = handlers.runs();
    out.family(
        "serf_handler_runs_total",
        Counter,
        "Event handler runs, by event and result (ok, failed, error, timeout).",
    );
    for ((kind, outcome), totals) in &runs {
        out.sample("serf_handler_runs_total", &[("event", kind.as_str()), ("result", outcome.as_str())], totals.count);
    }
    let mut durations: BTreeMap<&str, (u64, f64)> = BTreeMap::new();
    for ((kind, _), totals) in &runs {
        let entry = durations.entry(kind.as_str()).or_default();
        entry.0 += totals.count;
        entry.1 += totals.seconds;
    }
    out.family("serf_handler_duration_seconds", Summary, "Time event handlers ran, by event.");
    for (kind, (count, seconds)) in &durations {
        out.sample("serf_handler_duration_seconds_sum", &[("event", kind)], seconds);
        out.sample("serf_handler_duration_seconds_count", &[("event", kind)], count);
    }
    out.single("serf_handler_running", Gauge, "Event handlers running now.", handlers.running());
    out.single(
        "serf_handler_dropped_total",
        Counter,
        "Handler runs dropped because the queue was full.",
        handlers.dropped(),
    );
    out.family(
        "serf_handler_timeouts_total",
        Counter,
        "Event handler runs stopped at their timeout (-handler-timeout) or at the query's deadline, by event.",
    );
    for (kind, count) in handlers.timeouts() {
        out.sample("serf_handler_timeouts_total", &[("event", kind.as_str())], count);
    }
    out.family(
        "serf_handler_kills_total",
        Counter,
        "Event handler process groups killed (SIGTERM, then SIGKILL), by reason: timeout, leftover (processes \
         left running when the handler's shell exited), shutdown (the agent stopped).",
    );
    for reason in KillReason::ALL {
        out.sample("serf_handler_kills_total", &[("reason", reason.as_str())], handlers.kills(reason));
    }

    out.family("serf_rpc_requests_total", Counter, "RPC requests answered, by status code.");
    for (code, count) in context.rpc_stats.by_status() {
        out.sample("serf_rpc_requests_total", &[("code", &code.to_string())], count);
    }
    let connections = context.rpc_stats.connections.snapshot();
    out.single("serf_rpc_connections_open", Gauge, "RPC connections open now, idle ones included.", connections.open);
    out.single("serf_rpc_connections_total", Counter, "RPC connections accepted.", connections.accepted);
    out.family("serf_rpc_connections_closed_total", Counter, "RPC connections closed by the server, by reason.")
        .sample("serf_rpc_connections_closed_total", &[("reason", "evicted")], connections.evicted)
        .sample("serf_rpc_connections_closed_total", &[("reason", "idle_timeout")], connections.idle_timeouts)
        .sample("serf_rpc_connections_closed_total", &[("reason", "write_stall")], connections.write_stalls);
    out.single(
        "serf_rpc_accept_errors_total",
        Counter,
        "Failed accepts on the RPC listener.",
        connections.accept_errors,
    );

    let view = context.primary.borrow().clone();
    out.single(
        "serf_primary_is_primary",
        Gauge,
        "1 while this node holds the primary role.",
        u8::from(view.local_role == Role::Primary),
    );
    out.single("serf_primary_known", Gauge, "1 while this node knows a primary.", u8::from(view.primary.is_some()));
    out.single(
        "serf_primary_eligible_members",
        Gauge,
        "Live members eligible for the primary role.",
        view.eligible.len(),
    );
    let election = &context.election_stats;
    out.single(
        "serf_primary_role_changes_total",
        Counter,
        "Changes of this node's role.",
        election.role_changes.load(Ordering::Relaxed),
    );
    out.single(
        "serf_primary_hook_runs_total",
        Counter,
        "Acquire and release hooks started.",
        election.hook_runs.load(Ordering::Relaxed),
    );
    out.single(
        "serf_primary_hook_failures_total",
        Counter,
        "Hooks that failed.",
        election.hook_failures.load(Ordering::Relaxed),
    );
    out.finish()
}

fn labelled(out: &mut Exposition, name: &str, help: &str, label: &str, values: &BTreeMap<&str, u64>) {
    out.family(name, MetricKind::Counter, help);
    for (key, value) in values {
        out.sample(name, &[(label, key)], value);
    }
}

/// The `serf` section of `GET /v1/info`.
pub(crate) fn stats_section(stats: &SerfStats) -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("members", stats.members.into()),
        ("alive", stats.alive.into()),
        ("suspect", stats.suspect.into()),
        ("failed", stats.failed.into()),
        ("left", stats.left.into()),
        ("member_time", stats.member_time.into()),
        ("event_time", stats.event_time.into()),
        ("query_time", stats.query_time.into()),
        ("member_event_queue", stats.member_event_queue.into()),
        ("user_event_queue", stats.user_event_queue.into()),
        ("pending_queries", stats.pending_queries.into()),
        ("encrypted", stats.encrypted.into()),
        ("probes", stats.node.swim.probes.into()),
        ("suspicions", stats.node.swim.suspicions.into()),
        ("refutations", stats.node.swim.refutations.into()),
    ]
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
