//! target/bench/results.json, the suite's one list of figures (the
//! contract of `make bench`): each entry a figure of duet's beside its
//! peer's from the same run, and the ratio. Every benchmark merges its
//! own entries in by name, so the file holds the newest of each; an SVG
//! of the ratios is drawn beside it for docs/performance.md.

use std::path::PathBuf;

use serde_json::{Value, json};

pub struct Entry {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub peer: String,
    pub peer_value: f64,
    /// Higher is better for throughput and IOPS, lower for latency,
    /// bytes moved, CPU and memory: the plot shows each as "times better
    /// than the peer" either way.
    pub higher_is_better: bool,
}

impl Entry {
    fn ratio(&self) -> f64 {
        if self.peer_value == 0.0 {
            return 0.0;
        }
        self.value / self.peer_value
    }

    fn json(&self) -> Value {
        json!({
            "name": self.name,
            "value": round(self.value),
            "unit": self.unit,
            "peer": self.peer,
            "peer_value": round(self.peer_value),
            "ratio": round(self.ratio()),
            "higher_is_better": self.higher_is_better,
        })
    }
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn dir() -> PathBuf {
    crate::project_root().join("target/bench")
}

/// Replaces the entries of the same names in results.json (others stay)
/// and draws results.svg again.
pub fn merge(entries: &[Entry]) {
    let path = dir().join("results.json");
    let mut all: Vec<Value> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    for e in entries {
        all.retain(|v| v["name"] != e.name);
        all.push(e.json());
    }
    all.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    if std::fs::create_dir_all(dir()).is_err() {
        return;
    }
    let text = serde_json::to_string_pretty(&all).unwrap_or_default();
    let _ = std::fs::write(&path, text + "\n");
    let _ = std::fs::write(dir().join("results.svg"), svg(&all));
}

/// Draws results.svg again from results.json as it is (`duet-lab plot`).
pub fn redraw() -> std::io::Result<PathBuf> {
    merge(&[]);
    let svg = dir().join("results.svg");
    std::fs::metadata(&svg).map(|_| svg)
}

/// How many times better than its peer duet is on each entry (above 1:
/// better), as horizontal bars on a log scale around 1.
fn svg(all: &[Value]) -> String {
    const ROW: f64 = 26.0;
    const LEFT: f64 = 190.0;
    const WIDTH: f64 = 420.0;
    let height = 50.0 + ROW * all.len() as f64;
    let mid = LEFT + WIDTH / 2.0;
    // log2 of the advantage, clamped to ±3 (8 times) across half the width.
    let x = |adv: f64| mid + (adv.log2().clamp(-3.0, 3.0) / 3.0) * (WIDTH / 2.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"18\">duet against its peer (log scale, right of the line: duet better)</text>\n",
        w = LEFT + WIDTH + 300.0
    );
    for (i, v) in all.iter().enumerate() {
        let y = 34.0 + ROW * i as f64;
        let ratio = v["ratio"].as_f64().unwrap_or(0.0);
        let higher = v["higher_is_better"].as_bool().unwrap_or(true);
        let adv = match (ratio > 0.0, higher) {
            (false, _) => 1.0,
            (true, true) => ratio,
            (true, false) => 1.0 / ratio,
        };
        let (a, b) = (x(1.0), x(adv));
        let colour = if adv >= 1.0 { "#3a7" } else { "#c54" };
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n\
             <rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"16\" fill=\"{colour}\"/>\n\
             <text x=\"{}\" y=\"{}\">{:.2}x vs {}</text>\n",
            LEFT - 8.0,
            y + 12.0,
            v["name"].as_str().unwrap_or("?"),
            a.min(b),
            y,
            (b - a).abs().max(1.0),
            LEFT + WIDTH + 6.0,
            y + 12.0,
            adv,
            short(v["peer"].as_str().unwrap_or("?")),
        ));
    }
    s.push_str(&format!(
        "<line x1=\"{mid}\" y1=\"26\" x2=\"{mid}\" y2=\"{}\" stroke=\"black\"/>\n</svg>\n",
        height - 10.0
    ));
    s
}

fn short(peer: &str) -> String {
    peer.chars().take(40).collect()
}
