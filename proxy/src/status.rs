//! `/module_proxy_inner_mod/status.json`: what the status page draws, one entry per module. The shape is a
//! stable API (README, "Status page"): fields may be added, none renamed or removed.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::last_minute::{SecondSummary, Window, SECONDS};
use crate::metrics::NodeState;

/// The whole document.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Version of this shape; bumped only if a field ever changes meaning.
    pub version: u32,
    /// Unix time (seconds) of the document; `last_minute` ends just before it.
    pub time: u64,
    /// Seconds in each module's `per_second` list.
    pub window_seconds: usize,
    /// Every configured module, by name.
    pub modules: Vec<ModuleStatus>,
}

/// One module's card.
#[derive(Debug, Serialize)]
pub struct ModuleStatus {
    /// The module name (its URL segment).
    pub name: String,
    /// `html`, `http` or `socket`.
    pub role: &'static str,
    /// Its backend nodes, in config order (none for `html`).
    pub nodes: Vec<NodeStatus>,
    /// Totals over the window.
    pub last_minute: Totals,
    /// One point per second, oldest first.
    pub per_second: Vec<Point>,
}

/// One backend node.
#[derive(Debug, Serialize)]
pub struct NodeStatus {
    /// `host:port`.
    pub address: String,
    /// `up`, `masked` (skipped after a failure), or `draining` (finishing its requests, taking no new
    /// ones).
    pub state: NodeHealth,
    /// Unix time (ms) at which a masked node is tried again; `null` when not masked or not known.
    pub masked_until_ms: Option<u64>,
    /// Lanes (pipelined connections) open to it; `null` where the module does not pipeline.
    pub lanes: Option<usize>,
    /// Requests queued or written on its lanes whose replies have not come; `null` without lanes.
    pub lane_requests: Option<usize>,
    /// Requests in flight to it now.
    pub in_flight: usize,
    /// Connections open to it that the proxy keeps (idle pooled, or shared pipelined); `null` where
    /// not tracked.
    pub connections: Option<usize>,
}

/// A node's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeHealth {
    /// Takes traffic.
    Up,
    /// Skipped until `masked_until_ms`.
    Masked,
    /// Finishing what it has, taking nothing new.
    Draining,
}

/// Totals over the last minute.
#[derive(Debug, Serialize)]
pub struct Totals {
    /// Requests answered.
    pub requests: u64,
    /// Requests per second, averaged over the window.
    pub rps: f64,
    /// Share of answers with a 5xx status, 0 to 1 (0 with no requests).
    pub error_rate: f64,
    /// Median latency in milliseconds; `null` with no requests.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds; `null` with no requests.
    pub p99_ms: Option<f64>,
}

/// One second.
#[derive(Debug, Serialize)]
pub struct Point {
    /// Unix time (seconds) of the second.
    pub t: u64,
    /// Requests answered in it.
    pub requests: u32,
    /// Of those, 5xx.
    pub errors: u32,
    /// Median latency in milliseconds; `null` with no requests.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds; `null` with no requests.
    pub p99_ms: Option<f64>,
}

impl Status {
    /// The document for `modules` at `time`; the version is the current one.
    pub fn new(time: u64, mut modules: Vec<ModuleStatus>) -> Status {
        modules.sort_by(|a, b| a.name.cmp(&b.name));
        Status {
            version: 1,
            time,
            window_seconds: SECONDS,
            modules,
        }
    }
}

impl ModuleStatus {
    /// A module's card from its role, its nodes' states and its window.
    pub fn new(name: &str, role: &'static str, nodes: &[NodeState], window: &Window) -> ModuleStatus {
        ModuleStatus {
            name: name.to_owned(),
            role,
            nodes: nodes.iter().map(NodeStatus::from).collect(),
            last_minute: Totals {
                requests: window.requests,
                rps: window.requests as f64 / window.seconds.len().max(1) as f64,
                error_rate: if window.requests == 0 {
                    0.0
                } else {
                    window.errors as f64 / window.requests as f64
                },
                p50_ms: window.p50.map(millis),
                p99_ms: window.p99.map(millis),
            },
            per_second: window.seconds.iter().map(Point::from).collect(),
        }
    }
}

impl From<&NodeState> for NodeStatus {
    fn from(state: &NodeState) -> NodeStatus {
        NodeStatus {
            address: state.node.clone(),
            state: if state.up { NodeHealth::Up } else { NodeHealth::Masked },
            // The balancer's clock is its own: until when, in Unix time, is now plus what is left.
            masked_until_ms: state.masked_for.map(|left| unix_ms(SystemTime::now() + left)),
            lanes: state.lanes.map(|lanes| lanes.open),
            lane_requests: state.lanes.map(|lanes| lanes.requests),
            in_flight: state.in_flight,
            connections: state.pooled,
        }
    }
}

impl From<&SecondSummary> for Point {
    fn from(second: &SecondSummary) -> Point {
        Point {
            t: second.at,
            requests: second.requests,
            errors: second.errors,
            p50_ms: second.p50.map(millis),
            p99_ms: second.p99.map(millis),
        }
    }
}

/// Milliseconds, rounded to the microsecond so the JSON stays short.
fn millis(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

/// Milliseconds since the Unix epoch.
fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::last_minute::LastMinute;

    #[test]
    fn a_module_card_has_totals_points_and_nodes() {
        let window = LastMinute::default();
        window.record_at(99, Duration::from_millis(2), false);
        window.record_at(99, Duration::from_millis(2), true);
        let nodes = [NodeState {
            module: "s3".into(),
            node: "127.0.0.1:1".into(),
            up: false,
            masked_for: Some(std::time::Duration::from_secs(30)),
            pooled: Some(3),
            in_flight: 2,
            lanes: None,
        }];
        let card = ModuleStatus::new("s3", "socket", &nodes, &window.window_at(100));
        let json = serde_json::to_value(Status::new(100, vec![card])).unwrap();
        let module = &json["modules"][0];
        assert_eq!(json["version"], 1);
        assert_eq!(json["window_seconds"], 60);
        assert_eq!(module["role"], "socket");
        assert_eq!(module["last_minute"]["requests"], 2);
        assert_eq!(module["last_minute"]["error_rate"], 0.5);
        assert_eq!(module["per_second"].as_array().unwrap().len(), 60);
        assert_eq!(module["per_second"][59]["t"], 99);
        assert_eq!(module["per_second"][59]["requests"], 2);
        assert!(module["per_second"][0]["p50_ms"].is_null());
        assert_eq!(module["nodes"][0]["state"], "masked");
        assert_eq!(module["nodes"][0]["connections"], 3);
        assert!(module["nodes"][0]["lanes"].is_null());
        assert_eq!(module["nodes"][0]["in_flight"], 2);
    }
}
