//! `percore-loadtest report DIR`: turns a scenario's raw runs into `report.md` (a table per
//! workload, the percore : peer ratios) and `report.svg` (throughput and p99 per workload per
//! server).
//!
//! A scenario writes, per run, the driver's JSON (percore-loadtest's or memtier_benchmark's
//! `--json-out-file`) and a sidecar `NAME.meta` of `key=value` lines: `json` (file name),
//! `server`, `workload`, `driver`, `round`, `seconds`, `server_cpu_s`, `seq` (the run's place
//! in the scenario), and for memtier `client_cpu_s`. `machine.txt`, when present, heads the report.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use serde_json::Value;

/// One measured run, whichever driver made it.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub server: String,
    pub workload: String,
    pub driver: String,
    pub round: u32,
    pub seq: u64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub server_cpu_per_m: Option<f64>,
    pub client_cpu_per_m: Option<f64>,
    pub errors: u64,
}

fn parse_meta(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// Reads one run from its meta and the driver's JSON.
pub fn parse_run(meta: &str, driver_json: &str) -> Result<Run, String> {
    let m = parse_meta(meta);
    let get = |k: &str| {
        m.get(k)
            .cloned()
            .ok_or_else(|| format!("meta has no '{k}'"))
    };
    let num = |k: &str| m.get(k).and_then(|v| v.parse::<f64>().ok());
    let j: Value = serde_json::from_str(driver_json).map_err(|e| format!("bad JSON: {e}"))?;
    let (ops, p50, p99, p999, client_cpu, errors);
    if j["tool"] == "percore-loadtest" {
        let lat = &j["commands"]["total"]["latency_ms"];
        ops = f(&j["ops_per_sec"]).ok_or("no ops_per_sec")?;
        p50 = f(&lat["p50"]).ok_or("no p50")?;
        p99 = f(&lat["p99"]).ok_or("no p99")?;
        p999 = f(&lat["p99_9"]).ok_or("no p99_9")?;
        client_cpu = f(&j["client_cpu_s"]);
        let count = |v: &Value| v.as_u64().unwrap_or(0);
        errors = count(&j["connection_errors"]) + count(&j["commands"]["total"]["errors"]);
    } else {
        let t = &j["ALL STATS"]["Totals"];
        let lat = &t["Percentile Latencies"];
        ops = f(&t["Ops/sec"]).ok_or("memtier JSON has no Totals Ops/sec")?;
        p50 = f(&lat["p50.00"]).unwrap_or(f64::NAN);
        p99 = f(&lat["p99.00"]).unwrap_or(f64::NAN);
        p999 = f(&lat["p99.90"]).unwrap_or(f64::NAN);
        client_cpu = num("client_cpu_s");
        errors = t["Connection Errors"].as_u64().unwrap_or(0);
    }
    let seconds = num("seconds").ok_or("meta has no 'seconds'")?;
    let millions = ops * seconds / 1e6;
    let per_m = |cpu: Option<f64>| cpu.filter(|_| millions > 0.0).map(|c| c / millions);
    Ok(Run {
        server: get("server")?,
        workload: get("workload")?,
        driver: get("driver")?,
        round: num("round").unwrap_or(1.0) as u32,
        seq: num("seq").unwrap_or(0.0) as u64,
        ops_per_sec: ops,
        p50_ms: p50,
        p99_ms: p99,
        p999_ms: p999,
        server_cpu_per_m: per_m(num("server_cpu_s")),
        client_cpu_per_m: per_m(client_cpu),
        errors,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median over rounds of one (workload, server, driver).
#[derive(Clone, Debug)]
pub struct Row {
    pub workload: String,
    pub server: String,
    pub driver: String,
    pub rounds: Vec<f64>,
    pub ops: f64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub server_cpu: f64,
    pub client_cpu: f64,
    pub errors: u64,
}

/// Groups runs in the order workloads and servers first appear.
pub fn rows(runs: &[Run]) -> Vec<Row> {
    let mut order: Vec<(String, String, String)> = Vec::new();
    for r in runs {
        let k = (r.workload.clone(), r.server.clone(), r.driver.clone());
        if !order.contains(&k) {
            order.push(k);
        }
    }
    order
        .into_iter()
        .map(|(w, s, d)| {
            let mine: Vec<&Run> = runs
                .iter()
                .filter(|r| r.workload == w && r.server == s && r.driver == d)
                .collect();
            let med = |f: &dyn Fn(&Run) -> f64| median(mine.iter().map(|r| f(r)).collect());
            Row {
                rounds: mine.iter().map(|r| r.ops_per_sec).collect(),
                ops: med(&|r| r.ops_per_sec),
                p50: med(&|r| r.p50_ms),
                p99: med(&|r| r.p99_ms),
                p999: med(&|r| r.p999_ms),
                server_cpu: med(&|r| r.server_cpu_per_m.unwrap_or(f64::NAN)),
                client_cpu: med(&|r| r.client_cpu_per_m.unwrap_or(f64::NAN)),
                errors: mine.iter().map(|r| r.errors).sum(),
                workload: w,
                server: s,
                driver: d,
            }
        })
        .collect()
}

fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fixed(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "–".into()
    }
}

pub fn markdown(rows: &[Row], machine: &str) -> String {
    let mut out = String::from("# percore side-by-side benchmark\n\n");
    if !machine.trim().is_empty() {
        let _ = writeln!(out, "```\n{}\n```\n", machine.trim());
    }
    out.push_str(
        "Medians over rounds; servers alternated round by round. CPU columns are seconds of CPU \
         per million operations (server from /proc, client from getrusage).\n\n",
    );
    out.push_str("| workload | server | driver | ops/s | rounds | p50 ms | p99 ms | p99.9 ms | server CPU s/1M | client CPU s/1M | errors |\n");
    out.push_str("|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let rounds: Vec<String> = r.rounds.iter().map(|&v| thousands(v)).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.workload,
            r.server,
            r.driver,
            thousands(r.ops),
            rounds.join(" / "),
            fixed(r.p50, 3),
            fixed(r.p99, 3),
            fixed(r.p999, 3),
            fixed(r.server_cpu, 2),
            fixed(r.client_cpu, 2),
            r.errors
        );
    }
    // Ratios of every other server to percore, per workload and driver.
    let mut ratios = String::new();
    for r in rows.iter().filter(|r| r.server == "percore") {
        for peer in rows
            .iter()
            .filter(|p| p.server != "percore" && p.workload == r.workload && p.driver == r.driver)
        {
            let _ = writeln!(
                ratios,
                "| {} | {} | {} | {}× | {}× | {}× |",
                r.workload,
                peer.server,
                r.driver,
                fixed(r.ops / peer.ops, 2),
                fixed(r.p99 / peer.p99, 2),
                fixed(r.server_cpu / peer.server_cpu, 2)
            );
        }
    }
    if !ratios.is_empty() {
        out.push_str("\n## percore relative to each peer\n\n");
        out.push_str("| workload | peer | driver | ops/s | p99 | server CPU per op |\n|---|---|---|---:|---:|---:|\n");
        out.push_str(&ratios);
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const COLORS: [&str; 6] = [
    "#2b6cb0", "#c53030", "#2f855a", "#b7791f", "#6b46c1", "#4a5568",
];

/// Two grouped bar panels (ops/s, p99 ms) for the rows of one driver.
pub fn svg(rows: &[Row], driver: &str) -> String {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.driver == driver).collect();
    let mut workloads: Vec<&str> = Vec::new();
    let mut servers: Vec<&str> = Vec::new();
    for r in &rows {
        if !workloads.contains(&r.workload.as_str()) {
            workloads.push(&r.workload);
        }
        if !servers.contains(&r.server.as_str()) {
            servers.push(&r.server);
        }
    }
    let (w, panel_h, top, left) = (960.0, 260.0, 60.0, 80.0);
    let h = top + 2.0 * (panel_h + 70.0);
    let group_w = (w - left - 20.0) / workloads.len().max(1) as f64;
    let bar_w = (group_w * 0.8) / servers.len().max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{left}" y="20" font-size="14">percore side by side (driver: {})</text>"#,
        esc(driver)
    );
    for (si, s) in servers.iter().enumerate() {
        let x = left + si as f64 * 140.0;
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="32" width="12" height="12" fill="{}"/><text x="{}" y="42">{}</text>"#,
            COLORS[si % COLORS.len()],
            x + 16.0,
            esc(s)
        );
    }
    type Metric = fn(&Row) -> f64;
    let panels: [(&str, Metric); 2] = [
        ("throughput, ops/s", |r| r.ops),
        ("p99 latency, ms", |r| r.p99),
    ];
    for (pi, (title, metric)) in panels.iter().enumerate() {
        let y0 = top + pi as f64 * (panel_h + 70.0) + 20.0;
        let max = rows
            .iter()
            .map(|r| metric(r))
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max)
            .max(1e-9);
        let _ = writeln!(
            out,
            r#"<text x="{left}" y="{}" font-size="12">{title}</text>"#,
            y0 - 4.0
        );
        let base = y0 + panel_h;
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{base}" x2="{}" y2="{base}" stroke="#333"/>"##,
            w - 20.0
        );
        for (wi, wl) in workloads.iter().enumerate() {
            let gx = left + wi as f64 * group_w + group_w * 0.1;
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
                gx + group_w * 0.4,
                base + 16.0,
                esc(wl)
            );
            for (si, s) in servers.iter().enumerate() {
                let Some(r) = rows.iter().find(|r| r.workload == *wl && r.server == *s) else {
                    continue;
                };
                let v = metric(r);
                if !v.is_finite() {
                    continue;
                }
                let bh = v / max * (panel_h - 20.0);
                let x = gx + si as f64 * bar_w;
                let label = if pi == 0 { thousands(v) } else { fixed(v, 3) };
                let _ = writeln!(
                    out,
                    r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9">{label}</text>"#,
                    base - bh,
                    bar_w * 0.9,
                    COLORS[si % COLORS.len()],
                    x + bar_w * 0.45,
                    base - bh - 3.0
                );
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

/// `report DIR`: reads DIR/raw/*.meta, writes DIR/report.md and DIR/report.svg (plus one
/// SVG per extra driver), and prints the Markdown.
pub fn main(args: &[String]) -> Result<(), String> {
    let [dir] = args else {
        return Err("usage: percore-loadtest report DIR".into());
    };
    let dir = Path::new(dir);
    let raw = dir.join("raw");
    let mut metas: Vec<_> = std::fs::read_dir(&raw)
        .map_err(|e| format!("cannot read {}: {e}", raw.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "meta"))
        .collect();
    metas.sort();
    let mut runs = Vec::new();
    for m in &metas {
        let meta = std::fs::read_to_string(m).map_err(|e| format!("{}: {e}", m.display()))?;
        let json_name = parse_meta(&meta)
            .get("json")
            .cloned()
            .ok_or_else(|| format!("{}: no json= line", m.display()))?;
        let json = std::fs::read_to_string(raw.join(&json_name))
            .map_err(|e| format!("{json_name}: {e}"))?;
        runs.push(parse_run(&meta, &json).map_err(|e| format!("{}: {e}", m.display()))?);
    }
    if runs.is_empty() {
        return Err(format!("no runs in {}", raw.display()));
    }
    // Workloads and servers appear in the order the scenario ran them.
    runs.sort_by_key(|r| r.seq);
    let machine = std::fs::read_to_string(dir.join("machine.txt")).unwrap_or_default();
    let rows = rows(&runs);
    let md = markdown(&rows, &machine);
    std::fs::write(dir.join("report.md"), &md).map_err(|e| e.to_string())?;
    let mut drivers: Vec<&str> = rows.iter().map(|r| r.driver.as_str()).collect();
    drivers.sort();
    drivers.dedup();
    for d in drivers {
        let name = if d == "percore-loadtest" {
            "report.svg".to_string()
        } else {
            format!("report-{d}.svg")
        };
        std::fs::write(dir.join(name), svg(&rows, d)).map_err(|e| e.to_string())?;
    }
    print!("{md}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOADTEST: &str = r#"{"tool":"percore-loadtest","ops_per_sec":100000.0,"connection_errors":0,
        "client_cpu_s":1.0,"commands":{"total":{"errors":0,"latency_ms":{"p50":0.2,"p99":0.5,"p99_9":0.9}}}}"#;
    const MEMTIER: &str = r#"{"ALL STATS":{"Totals":{"Ops/sec":50000.0,"Connection Errors":0,
        "Percentile Latencies":{"p50.00":0.4,"p99.00":1.0,"p99.90":2.0}}}}"#;

    #[test]
    fn both_drivers_parse_and_ratios_are_reported() {
        let meta = |server: &str, driver: &str, round: u32| {
            format!("json=x\nserver={server}\nworkload=p1\ndriver={driver}\nround={round}\nseconds=10\nserver_cpu_s=5\nclient_cpu_s=2\n")
        };
        let a = parse_run(&meta("percore", "percore-loadtest", 1), LOADTEST).unwrap();
        assert_eq!(a.ops_per_sec, 100000.0);
        // 1M operations in 10 s: 5 s of server CPU per million.
        assert_eq!(a.server_cpu_per_m, Some(5.0));
        assert_eq!(a.client_cpu_per_m, Some(1.0));
        let b = parse_run(&meta("redis", "memtier", 1), MEMTIER).unwrap();
        assert_eq!((b.p99_ms, b.client_cpu_per_m), (1.0, Some(4.0)));
        let mut c = parse_run(&meta("redis", "percore-loadtest", 1), LOADTEST).unwrap();
        c.ops_per_sec = 200000.0;
        let mut d = c.clone();
        d.round = 2;
        d.ops_per_sec = 100000.0;
        let rows = rows(&[a, b, c, d]);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2].ops, 150000.0, "median of two rounds");
        let md = markdown(&rows, "test machine");
        assert!(
            md.contains("| p1 | redis | percore-loadtest | 0.67× |"),
            "{md}"
        );
        let svg = svg(&rows, "percore-loadtest");
        assert!(svg.starts_with("<svg") && svg.contains("100,000"));
    }

    #[test]
    fn incomplete_meta_is_an_error() {
        assert!(parse_run("server=x\n", LOADTEST)
            .unwrap_err()
            .contains("seconds"));
        assert!(parse_run("seconds=1\n", "not json")
            .unwrap_err()
            .contains("bad JSON"));
    }
}
