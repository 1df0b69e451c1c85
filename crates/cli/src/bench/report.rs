//! The benchmark report: JSON, Markdown and the Figure 10 SVG.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use cryptflow_athos::CompileReport;
use cryptflow_net::{LinkShape, ShapeMode};
use cryptflow_zoo::NetworkInfo;
use serde::Serialize;

use super::paper::{self, PaperFigures};
use super::processes::PartyProcesses;
use super::runs::{Measured, OpTime};
use super::{BenchArgs, BenchBackend, Emulation};

#[derive(Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_bytes: Option<u64>,
    pub kernel: String,
    /// /proc/loadavg when the benchmark started and when the report was last written: other
    /// work on the machine slows the runs down.
    pub load_average_start: String,
    pub load_average_end: String,
    pub note: &'static str,
    /// The CPU's model name, the SIMD level the kernels ran at and the best one it has, and
    /// the features they look for (see `cryptflow_tensor::simd`; `CRYPTFLOW_SIMD` caps it).
    pub cpu_model: String,
    pub simd_level: &'static str,
    pub simd_level_detected: &'static str,
    pub cpu_features: Vec<&'static str>,
}

#[derive(Serialize)]
pub struct EmulationSettings {
    pub mode: &'static str,
    pub bandwidth_mbps: f64,
    pub latency_ms: f64,
}

#[derive(Serialize)]
pub struct Settings {
    pub command: String,
    pub networks: Vec<String>,
    pub backends: Vec<&'static str>,
    pub inferences: usize,
    pub seed: u64,
    pub scale: u32,
    pub input_size: Option<Vec<usize>>,
    pub width: Option<usize>,
    pub classes: Option<usize>,
    pub inputs: &'static str,
    pub network_emulation: Option<EmulationSettings>,
    /// `--party-processes`: every secure backend also ran once as three `cryptflow party`
    /// processes over TLS on 127.0.0.1.
    pub party_processes: bool,
    pub rayon_threads: Option<String>,
    /// `git describe --always --dirty` of the checkout, when available.
    pub git: Option<String>,
}

/// Per-inference figures of one layer.
#[derive(Serialize, Clone)]
pub struct LayerRow {
    pub layer: String,
    pub calls: Vec<String>,
    pub seconds: f64,
    pub bytes: u64,
    pub rounds: u64,
}

/// Layers grouped by the backend calls they make (e.g. `Conv+ScaleDown`), per inference.
#[derive(Serialize, Clone)]
pub struct CallGroup {
    pub calls: String,
    pub layers: usize,
    pub seconds: f64,
    pub bytes: u64,
    pub rounds: u64,
}

#[derive(Serialize)]
pub struct Agreement {
    /// Positions (rows, or voxels) whose predicted class equals the cleartext backend's.
    pub agree: usize,
    pub total: usize,
    pub max_abs_difference: f32,
}

#[derive(Serialize)]
pub struct RunReport {
    pub label: String,
    pub backend: &'static str,
    pub inferences: usize,
    /// Session set-up (secure: key agreement) and weight sharing, real time.
    pub setup_seconds: f64,
    /// Mean real (loopback) time per inference.
    pub seconds_per_inference: f64,
    pub min_seconds_per_inference: f64,
    pub per_inference_seconds: Vec<f64>,
    /// How the network was emulated in this run: `loopback` (none), `simulated` (emulated
    /// clocks: the real times above are loopback, the emulated ones below add the network),
    /// `delay` (real sleeping: the real times include the network).
    pub network: &'static str,
    pub emulated_setup_seconds: Option<f64>,
    pub emulated_seconds_per_inference: Option<f64>,
    pub emulated_per_inference_seconds: Option<Vec<f64>>,
    /// Bytes sent by all parties per inference, and by each party.
    pub bytes_per_inference: u64,
    pub bytes_per_inference_per_party: Vec<u64>,
    /// Bytes of the set-up (keys, weight sharing), all parties and each party.
    pub setup_bytes: u64,
    pub setup_bytes_per_party: Vec<u64>,
    /// Communication rounds per inference (largest over parties) and per party.
    pub rounds_per_inference: u64,
    pub rounds_per_inference_per_party: Vec<u64>,
    /// Largest bytes of live tensors each party held (the runner's count).
    pub peak_live_bytes: Vec<u64>,
    /// Peak resident memory of the process during this run (VmHWM; all parties together).
    pub peak_rss_bytes: Option<u64>,
    /// False when the peak could not be reset before the run: it then covers the process so far.
    pub peak_rss_is_per_run: bool,
    pub agreement_with_cleartext: Option<Agreement>,
    /// `--party-processes` (secure backends): the same program run once more as three
    /// `cryptflow party` processes over TLS on 127.0.0.1. Peak resident memory (VmHWM) of each
    /// party's process, in id order: model owner, client, helper.
    pub peak_rss_per_party_bytes: Option<Vec<u64>>,
    /// The slowest party process's time: session set-up, weight sharing and all inferences,
    /// from the moment its TLS links were up.
    pub party_processes_seconds: Option<f64>,
    /// The same per party (model owner, client, helper).
    pub party_processes_seconds_per_party: Option<Vec<f64>>,
    /// Bytes each party process sent (set-up and all inferences).
    pub party_processes_bytes_sent: Option<Vec<u64>>,
    /// The client process's outputs against this (in-process) run's: predictions that agree,
    /// and the largest difference (the bench fails beyond a small tolerance).
    pub party_processes_agreement: Option<Agreement>,
    /// Time per kind of instruction (model owner's view for secure runs), per inference.
    pub ops: Vec<OpTime>,
    pub call_groups: Vec<CallGroup>,
    pub layers: Vec<LayerRow>,
}

#[derive(Serialize)]
pub struct NetworkReport {
    pub name: &'static str,
    pub dataset: &'static str,
    pub description: &'static str,
    pub parameters: u64,
    pub input_shape: Vec<usize>,
    pub build_seconds: f64,
    /// ONNX import plus Athos compilation.
    pub compile_seconds: f64,
    pub llil_instructions: usize,
    pub backend_calls: BTreeMap<String, usize>,
    pub compiled_peak_live_bytes: u64,
    pub runs: Vec<RunReport>,
    pub paper: Option<PaperFigures>,
}

#[derive(Serialize)]
pub struct Ratio {
    pub network: String,
    /// SecureNN time / Porthos time (loopback).
    pub time_loopback: Option<f64>,
    /// SecureNN time / Porthos time on the emulated network.
    pub time_emulated: Option<f64>,
    /// SecureNN bytes / Porthos bytes.
    pub communication: Option<f64>,
    pub paper_time: Option<f64>,
    pub paper_communication: Option<f64>,
}

#[derive(Serialize)]
pub struct Report {
    pub generated_unix_seconds: u64,
    pub machine: Machine,
    pub settings: Settings,
    pub networks: Vec<NetworkReport>,
    pub porthos_vs_securenn: Vec<Ratio>,
    pub notes: Vec<String>,
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mhz = cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string());
    let flags = cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap_or_default();
    let mut cpu = cpu;
    if let Some(mhz) = mhz {
        cpu.push_str(&format!(" @ {mhz} MHz"));
    }
    for flag in ["avx2", "avx512f", "aes"] {
        if flags.split_whitespace().any(|f| f == flag) {
            cpu.push_str(&format!(" +{flag}"));
        }
    }
    let memory_bytes = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_string();
        Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
    });
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        memory_bytes,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default(),
        load_average_start: load_average(),
        load_average_end: String::new(),
        note: "all three parties run as threads of one process and share these cores",
        cpu_model: cryptflow_tensor::simd::cpu_model(),
        simd_level: cryptflow_tensor::simd::level().name(),
        simd_level_detected: cryptflow_tensor::simd::detected().name(),
        cpu_features: cryptflow_tensor::simd::cpu_features(),
    }
}

impl Report {
    pub fn new(args: &BenchArgs, backends: &[BenchBackend]) -> Report {
        let network_emulation = match args.emulation {
            Emulation::Off => None,
            Emulation::Simulated | Emulation::Delay => Some(EmulationSettings {
                mode: if args.emulation == Emulation::Delay { "delay" } else { "simulated" },
                bandwidth_mbps: args.bandwidth,
                latency_ms: args.latency,
            }),
        };
        Report {
            generated_unix_seconds: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            machine: machine(),
            settings: Settings {
                command: std::env::args().collect::<Vec<_>>().join(" "),
                networks: args.networks.clone(),
                backends: backends.iter().map(|b| b.name()).collect(),
                inferences: args.inferences,
                seed: args.zoo.seed,
                scale: args.scale,
                input_size: args.zoo.input_size.clone(),
                width: args.zoo.width,
                classes: args.zoo.classes,
                inputs: "standard normal, seeded (cryptflow_zoo::random_input)",
                network_emulation,
                party_processes: args.party_processes,
                rayon_threads: std::env::var("RAYON_NUM_THREADS").ok(),
                git: std::process::Command::new("git")
                    .args(["describe", "--always", "--dirty"])
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()),
            },
            networks: Vec::new(),
            porthos_vs_securenn: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Computes the ratios and notes once every network ran.
    pub fn finish(&mut self) {
        self.porthos_vs_securenn.clear();
        for net in &self.networks {
            let find = |backend: &str, network: &str| net.runs.iter().find(|r| r.backend == backend && r.network == network);
            let either = |backend: &str| {
                net.runs.iter().find(|r| r.backend == backend && r.network != "delay")
            };
            let (Some(p), Some(s)) = (either("porthos"), either("securenn")) else { continue };
            let emulated = |r: &RunReport| {
                r.emulated_seconds_per_inference.or_else(|| Some(r.seconds_per_inference).filter(|_| r.network == "delay"))
            };
            let delayed = |backend: &str| find(backend, "delay").and_then(emulated);
            let time_emulated = match (emulated(p).or(delayed("porthos")), emulated(s).or(delayed("securenn"))) {
                (Some(a), Some(b)) if a > 0.0 => Some(b / a),
                _ => None,
            };
            let paper = net.paper;
            self.porthos_vs_securenn.push(Ratio {
                network: net.name.to_string(),
                time_loopback: (p.seconds_per_inference > 0.0).then(|| s.seconds_per_inference / p.seconds_per_inference),
                time_emulated,
                communication: (p.bytes_per_inference > 0).then(|| s.bytes_per_inference as f64 / p.bytes_per_inference as f64),
                paper_time: paper.and_then(|f| Some(f.securenn_seconds? / f.porthos_seconds?)),
                paper_communication: paper.and_then(|f| Some(f.securenn_gb? / f.porthos_gb?)),
            });
        }
        self.notes = vec![
            "Times are wall-clock seconds per inference, the mean over the inferences of one session; set-up (key agreement, weight sharing) is reported apart.".into(),
            "Communication is the bytes sent by all three parties (8 per ring element, as the paper counts), per inference.".into(),
            "'emulated' figures add the network of the settings to the loopback run: each party's clock runs with real time while it computes, and waits for every message until it would have arrived over a link of that bandwidth and latency (messages on one link queue behind each other).".into(),
            "Peak RSS is that of the whole process: with the three parties in one process it is the sum of their memory, plus the compiled model and the weights in float and fixed point. `--party-processes` measures each party's own process.".into(),
            "The paper's MNIST figures (Table V) were measured on a 1.5 GBps LAN, its ImageNet figures (Tables IV, VIII) on 377 MBps with one 4-core 3.7 GHz machine per party; here all parties share this machine's cores.".into(),
            "Weights are seeded random (cryptflow-zoo), not trained: times and communication do not depend on the values; agreement with cleartext checks the secure computation.".into(),
        ];
    }

    pub fn write(&mut self, dir: &Path) -> Result<()> {
        self.machine.load_average_end = load_average();
        let json = dir.join("report.json");
        std::fs::write(&json, serde_json::to_vec_pretty(self)?).with_context(|| format!("cannot write {}", json.display()))?;
        let md = dir.join("report.md");
        std::fs::write(&md, self.markdown()).with_context(|| format!("cannot write {}", md.display()))?;
        if let Some(svg) = self.figure10() {
            let path = dir.join("figure10.svg");
            std::fs::write(&path, svg).with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let s = &self.settings;
        let _ = writeln!(md, "# cryptflow benchmark report\n");
        let _ = writeln!(
            md,
            "- **Machine**: {} (SIMD level {}, best {}), {} cores, {} RAM, Linux {}; {}. Load average {} at the start, {} at the end.",
            m.cpu,
            m.simd_level,
            m.simd_level_detected,
            m.cores,
            m.memory_bytes.map(gb).unwrap_or_else(|| "?".into()),
            m.kernel,
            m.note,
            m.load_average_start,
            m.load_average_end
        );
        let network = match &s.network_emulation {
            None => "loopback only (no emulation)".to_string(),
            Some(e) => format!(
                "loopback, and emulated links of {} MBps with {} ms latency ({})",
                e.bandwidth_mbps,
                e.latency_ms,
                if e.mode == "delay" { "receivers sleep until arrival; secure backends run twice" } else { "emulated clocks, same run" }
            ),
        };
        let _ = writeln!(
            md,
            "- **Settings**: {} inference(s) per run, inputs {}, weight seed {}, scale {}; network: {}{}.",
            s.inferences,
            s.inputs,
            s.seed,
            s.scale,
            network,
            s.rayon_threads.as_ref().map(|t| format!("; RAYON_NUM_THREADS={t}")).unwrap_or_default()
        );
        let _ = writeln!(
            md,
            "- **Command**: `{}`{}\n",
            s.command,
            s.git.as_ref().map(|g| format!(" (checkout {g})")).unwrap_or_default()
        );

        let _ = writeln!(md, "## Results (per inference)\n");
        let _ = writeln!(
            md,
            "| network | params | compile | backend | time, loopback | time, emulated LAN | paper time | communication | per party | paper comm. | rounds | peak live / party | peak RSS | agrees with cleartext |"
        );
        let _ = writeln!(md, "|---|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---|---:|---|");
        for net in &self.networks {
            for (k, r) in net.runs.iter().enumerate() {
                let first = k == 0;
                let paper = net.paper.as_ref();
                let (paper_time, paper_comm) = match r.backend {
                    "porthos" => (paper.and_then(|p| p.porthos_seconds), paper.and_then(|p| p.porthos_gb)),
                    "securenn" => (paper.and_then(|p| p.securenn_seconds), paper.and_then(|p| p.securenn_gb)),
                    _ => (None, None),
                };
                let loopback = if r.network == "delay" { "—".to_string() } else { mean_min(r.seconds_per_inference, r.min_seconds_per_inference, r.inferences) };
                let emulated = match (r.network, r.emulated_seconds_per_inference) {
                    ("delay", _) => format!("{} (delayed)", mean_min(r.seconds_per_inference, r.min_seconds_per_inference, r.inferences)),
                    (_, Some(e)) => {
                        let min = r.emulated_per_inference_seconds.as_deref().unwrap_or(&[]).iter().copied().fold(f64::INFINITY, f64::min);
                        mean_min(e, min, r.inferences)
                    }
                    _ => "—".into(),
                };
                let secure = matches!(r.backend, "porthos" | "securenn" | "compact");
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    if first { net.name.to_string() } else { String::new() },
                    if first { millions(net.parameters) } else { String::new() },
                    if first {
                        format!(
                            "{}{}",
                            secs(net.compile_seconds),
                            net.paper.and_then(|p| p.compile_seconds).map(|c| format!(" (paper {})", secs(c))).unwrap_or_default()
                        )
                    } else {
                        String::new()
                    },
                    r.label,
                    loopback,
                    emulated,
                    paper_time.map(secs).unwrap_or_else(|| "—".into()),
                    if secure { human(r.bytes_per_inference) } else { "—".into() },
                    if secure { r.bytes_per_inference_per_party.iter().map(|b| human(*b)).collect::<Vec<_>>().join(" / ") } else { "—".into() },
                    paper_comm.map(|g| format!("{g} GB")).unwrap_or_else(|| "—".into()),
                    if secure { r.rounds_per_inference.to_string() } else { "—".into() },
                    r.peak_live_bytes.iter().map(|b| human(*b)).collect::<Vec<_>>().join(" / "),
                    r.peak_rss_bytes.map(human).unwrap_or_else(|| "?".into()),
                    r.agreement_with_cleartext
                        .as_ref()
                        .map(|a| format!("{}/{} (max diff {:.4})", a.agree, a.total, a.max_abs_difference))
                        .unwrap_or_else(|| "—".into()),
                );
            }
        }
        let mut sources: Vec<(String, Vec<&str>)> = Vec::new();
        for n in &self.networks {
            if let Some(p) = n.paper {
                let key = format!("{} ({})", p.source, p.setting);
                match sources.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, names)) => names.push(n.name),
                    None => sources.push((key, vec![n.name])),
                }
            }
        }
        let sources: Vec<String> = sources.iter().map(|(k, names)| format!("{}: {k}", names.join(", "))).collect();
        let _ = writeln!(
            md,
            "\nTimes: mean (min) over the inferences. Per party: model owner / client / helper. Paper figures: {}.\n",
            if sources.is_empty() { "none for these networks".to_string() } else { sources.join("; ") }
        );

        let separate: Vec<(&str, &RunReport)> =
            self.networks.iter().flat_map(|n| n.runs.iter().map(move |r| (n.name, r))).filter(|(_, r)| r.party_processes_seconds.is_some()).collect();
        if !separate.is_empty() {
            let _ = writeln!(md, "## Memory per party (`--party-processes`)\n");
            let _ = writeln!(
                md,
                "Each secure run above ran once more as three `cryptflow party` processes linked by TLS on 127.0.0.1 (no network emulation): peak RSS (VmHWM) of each process, model owner / client / helper. Time: the slowest party, session set-up, weight sharing and all inferences.\n"
            );
            let _ = writeln!(md, "| network | backend | peak RSS per party (separate processes over TLS) | time | agrees with the in-process run |");
            let _ = writeln!(md, "|---|---|---:|---:|---|");
            for (name, r) in separate {
                let _ = writeln!(
                    md,
                    "| {name} | {} | {} | {} for {} inference(s) | {} |",
                    r.label,
                    r.peak_rss_per_party_bytes.as_deref().map(megabytes).unwrap_or_else(|| "?".into()),
                    r.party_processes_seconds.map(secs).unwrap_or_default(),
                    r.inferences,
                    r.party_processes_agreement
                        .as_ref()
                        .map(|a| format!("{}/{} (max diff {:.4})", a.agree, a.total, a.max_abs_difference))
                        .unwrap_or_else(|| "—".into()),
                );
            }
            let _ = writeln!(md);
        }

        if !self.porthos_vs_securenn.is_empty() {
            let _ = writeln!(md, "## Porthos vs SecureNN (SecureNN / Porthos; paper Tables V, VIII)\n");
            let _ = writeln!(md, "| network | time, loopback | time, emulated LAN | paper time | communication | paper comm. |");
            let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
            let x = |v: Option<f64>| v.map(|v| format!("{v:.2}x")).unwrap_or_else(|| "—".into());
            for r in &self.porthos_vs_securenn {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} |",
                    r.network,
                    x(r.time_loopback),
                    x(r.time_emulated),
                    x(r.paper_time),
                    x(r.communication),
                    x(r.paper_communication)
                );
            }
            let _ = writeln!(md);
        }

        let _ = writeln!(md, "## Where the time goes\n");
        for net in &self.networks {
            for r in &net.runs {
                if r.backend == "float" || r.ops.is_empty() {
                    continue;
                }
                let total: f64 = r.ops.iter().map(|o| o.seconds).sum();
                let _ = writeln!(md, "**{} / {}** ({} per inference{})\n", net.name, r.label, secs(total), if r.backend == "cleartext" { "" } else { ", model owner's view" });
                let ops: Vec<String> = r
                    .ops
                    .iter()
                    .take(8)
                    .map(|o| format!("{} {} ({:.0}%, {}x)", o.op, secs(o.seconds), 100.0 * o.seconds / total.max(1e-12), o.count))
                    .collect();
                let _ = writeln!(md, "- by instruction: {}", ops.join(", "));
                if r.backend != "cleartext" {
                    let groups: Vec<String> = r
                        .call_groups
                        .iter()
                        .take(6)
                        .map(|g| format!("{} {} / {} in {} layers", g.calls, secs(g.seconds), human(g.bytes), g.layers))
                        .collect();
                    let _ = writeln!(md, "- by layer kind (time / bytes): {}", groups.join(", "));
                }
                let mut top = r.layers.clone();
                top.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
                let rows: Vec<String> = top
                    .iter()
                    .take(5)
                    .map(|l| format!("{} [{}] {}{}", l.layer, l.calls.join("+"), secs(l.seconds), if l.bytes > 0 { format!(" / {}", human(l.bytes)) } else { String::new() }))
                    .collect();
                let _ = writeln!(md, "- slowest layers: {}\n", rows.join(", "));
            }
        }
        if self.figure10().is_some() {
            let _ = writeln!(md, "## Figure 10: ResNet-n, time and communication against depth\n\n![Figure 10](figure10.svg)\n");
        }
        let _ = writeln!(md, "## Notes\n");
        for n in &self.notes {
            let _ = writeln!(md, "- {n}");
        }
        md
    }

    /// The paper's Figure 10 (time and communication of ResNet-n against n) for the secure
    /// runs of ResNets, with the paper's ResNet-50 point (Table IV; the figure's other values
    /// are not given in the text).
    fn figure10(&self) -> Option<String> {
        struct Series {
            label: String,
            color: &'static str,
            time: Vec<(f64, f64)>,
            gb: Vec<(f64, f64)>,
        }
        let colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];
        let mut series: Vec<Series> = Vec::new();
        for net in &self.networks {
            let Some(depth) = cryptflow_zoo::resnet_depth(net.name) else { continue };
            for r in net.runs.iter().filter(|r| matches!(r.backend, "porthos" | "securenn" | "compact")) {
                let mut points = vec![];
                if r.network != "delay" {
                    points.push((format!("{} loopback", r.backend), r.seconds_per_inference));
                }
                if let Some(e) = r.emulated_seconds_per_inference {
                    points.push((format!("{} emulated LAN", r.backend), e));
                }
                if r.network == "delay" {
                    points.push((format!("{} emulated LAN", r.backend), r.seconds_per_inference));
                }
                for (label, t) in points {
                    let at = match series.iter().position(|s| s.label == label) {
                        Some(k) => k,
                        None => {
                            let color = colors[series.len() % colors.len()];
                            series.push(Series { label, color, time: vec![], gb: vec![] });
                            series.len() - 1
                        }
                    };
                    series[at].time.push((depth as f64, t));
                    series[at].gb.push((depth as f64, r.bytes_per_inference as f64 / 1e9));
                }
            }
        }
        if series.is_empty() {
            return None;
        }
        let paper = (50.0, 25.87, 6.87);
        let (max_t, step_t) = nice_axis(series.iter().flat_map(|s| s.time.iter().map(|p| p.1)).fold(paper.1, f64::max));
        let (max_g, step_g) = nice_axis(series.iter().flat_map(|s| s.gb.iter().map(|p| p.1)).fold(paper.2, f64::max));
        let (w, h, margin) = (440.0, 300.0, 55.0);
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="11">"#,
            2.0 * w + 20.0,
            h + 90.0
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let size = match &self.settings.input_size {
            Some(v) if v.iter().any(|&d| d != 224) => format!(", input {v:?} (the paper's point is at 224x224)"),
            _ => String::new(),
        };
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="18" text-anchor="middle" font-size="14">ResNet-n secure inference: time and communication against depth (cf. CrypTFlow Fig. 10){size}</text>"#,
            w + 10.0
        );
        for (panel, (title, max, step, pick)) in [
            ("seconds per inference", max_t, step_t, 0usize),
            ("communication per inference (GB)", max_g, step_g, 1usize),
        ]
        .into_iter()
        .enumerate()
        {
            let ox = panel as f64 * (w + 20.0);
            let (x0, x1, y0, y1) = (ox + margin, ox + w - 10.0, h, 40.0);
            let px = |d: f64| x0 + (d - 0.0) / 210.0 * (x1 - x0);
            let py = |v: f64| y0 - v / max * (y0 - y1);
            let _ = writeln!(svg, r#"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="black"/>"#);
            let _ = writeln!(svg, r#"<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="black"/>"#);
            for d in [18.0, 34.0, 50.0, 101.0, 152.0, 200.0] {
                let x = px(d);
                let _ = writeln!(svg, r#"<line x1="{x}" y1="{y0}" x2="{x}" y2="{}" stroke="black"/>"#, y0 + 4.0);
                let _ = writeln!(svg, r#"<text x="{x}" y="{}" text-anchor="middle">{d}</text>"#, y0 + 16.0);
            }
            for k in 0..=((max / step).round() as usize) {
                let v = step * k as f64;
                let y = py(v);
                let _ = writeln!(svg, r##"<line x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" stroke="#ddd"/>"##);
                let _ = writeln!(svg, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, x0 - 4.0, y + 4.0, short(v));
            }
            let _ = writeln!(svg, r#"<text x="{}" y="{}" text-anchor="middle">ResNet depth n</text>"#, (x0 + x1) / 2.0, y0 + 32.0);
            let _ = writeln!(svg, r#"<text x="{}" y="{}" text-anchor="middle">{title}</text>"#, (x0 + x1) / 2.0, y1 - 8.0);
            for s in &series {
                let mut pts = if pick == 0 { s.time.clone() } else { s.gb.clone() };
                if pick == 1 && s.label.contains("emulated") {
                    continue; // communication does not depend on the network
                }
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                let path: Vec<String> = pts.iter().map(|(d, v)| format!("{:.1},{:.1}", px(*d), py(*v))).collect();
                let _ = writeln!(svg, r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#, path.join(" "), s.color);
                for (d, v) in &pts {
                    let _ = writeln!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#, px(*d), py(*v), s.color);
                }
            }
            let pv = if pick == 0 { paper.1 } else { paper.2 };
            let (x, y) = (px(paper.0), py(pv));
            let _ = writeln!(
                svg,
                r#"<path d="M{} {} L{} {} M{} {} L{} {}" stroke="black" stroke-width="2"/>"#,
                x - 5.0,
                y - 5.0,
                x + 5.0,
                y + 5.0,
                x - 5.0,
                y + 5.0,
                x + 5.0,
                y - 5.0
            );
        }
        let mut lx = margin;
        let ly = h + 60.0;
        for s in &series {
            let _ = writeln!(svg, r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{}"/>"#, ly - 10.0, s.color);
            let _ = writeln!(svg, r#"<text x="{}" y="{ly}">ours: {}</text>"#, lx + 16.0, s.label);
            lx += 40.0 + 7.0 * s.label.len() as f64;
        }
        let _ = writeln!(
            svg,
            r#"<text x="{lx}" y="{ly}">✕ paper, ResNet-50 Porthos (Table IV: 25.9 s, 6.9 GB)</text>"#
        );
        let _ = writeln!(svg, "</svg>");
        Some(svg)
    }
}

impl NetworkReport {
    pub fn new(
        info: &'static NetworkInfo,
        parameters: u64,
        input_shape: Vec<usize>,
        build_seconds: f64,
        compile_seconds: f64,
        compiled: &CompileReport,
    ) -> NetworkReport {
        NetworkReport {
            name: info.name,
            dataset: info.dataset,
            description: info.description,
            parameters,
            input_shape,
            build_seconds,
            compile_seconds,
            llil_instructions: compiled.llil_instructions,
            backend_calls: compiled.backend_calls.clone(),
            compiled_peak_live_bytes: compiled.peak_live_bytes_with_liveness,
            runs: Vec::new(),
            paper: paper::figures(info.name),
        }
    }
}

impl RunReport {
    pub fn new(
        label: &str,
        backend: BenchBackend,
        link: Option<LinkShape>,
        m: &Measured,
        peak_rss: Option<u64>,
        rss_reset: bool,
        agreement: Option<(usize, usize, f32)>,
    ) -> RunReport {
        let n = m.inference_seconds.len().max(1) as u64;
        let network = match link {
            None => "loopback",
            Some(s) if s.mode == ShapeMode::Delay => "delay",
            Some(_) => "simulated",
        };
        let bytes_pp: Vec<u64> = m.inference_traffic.iter().map(|t| t.bytes_sent / n).collect();
        let rounds_pp: Vec<u64> = m.inference_traffic.iter().map(|t| t.rounds / n).collect();
        let layers: Vec<LayerRow> = m
            .layers
            .iter()
            .map(|l| LayerRow {
                layer: l.layer.clone(),
                calls: l.calls.clone(),
                seconds: l.seconds / n as f64,
                bytes: l.bytes_sent / n,
                rounds: l.rounds / n,
            })
            .collect();
        let mut groups: BTreeMap<String, CallGroup> = BTreeMap::new();
        for l in &layers {
            let mut calls = l.calls.clone();
            calls.sort();
            calls.dedup();
            let key = if calls.is_empty() { "(local)".to_string() } else { calls.join("+") };
            let g = groups.entry(key.clone()).or_insert(CallGroup { calls: key, layers: 0, seconds: 0.0, bytes: 0, rounds: 0 });
            g.layers += 1;
            g.seconds += l.seconds;
            g.bytes += l.bytes;
            g.rounds += l.rounds;
        }
        let mut call_groups: Vec<CallGroup> = groups.into_values().collect();
        call_groups.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        RunReport {
            label: label.to_string(),
            backend: backend.name(),
            inferences: m.inference_seconds.len(),
            setup_seconds: m.setup_seconds,
            seconds_per_inference: mean(&m.inference_seconds),
            min_seconds_per_inference: m.inference_seconds.iter().copied().fold(f64::INFINITY, f64::min),
            per_inference_seconds: m.inference_seconds.clone(),
            network,
            emulated_setup_seconds: m.emulated_setup_seconds,
            emulated_seconds_per_inference: m.emulated_inference_seconds.as_deref().map(mean),
            emulated_per_inference_seconds: m.emulated_inference_seconds.clone(),
            bytes_per_inference: bytes_pp.iter().sum(),
            bytes_per_inference_per_party: bytes_pp,
            setup_bytes: m.setup_traffic.iter().map(|t| t.bytes_sent).sum(),
            setup_bytes_per_party: m.setup_traffic.iter().map(|t| t.bytes_sent).collect(),
            rounds_per_inference: rounds_pp.iter().copied().max().unwrap_or(0),
            rounds_per_inference_per_party: rounds_pp,
            peak_live_bytes: m.peak_live_bytes.clone(),
            peak_rss_bytes: peak_rss,
            peak_rss_is_per_run: rss_reset,
            agreement_with_cleartext: agreement.map(|(agree, total, max_abs_difference)| Agreement { agree, total, max_abs_difference }),
            peak_rss_per_party_bytes: None,
            party_processes_seconds: None,
            party_processes_seconds_per_party: None,
            party_processes_bytes_sent: None,
            party_processes_agreement: None,
            ops: m.ops.clone(),
            call_groups,
            layers,
        }
    }

    /// Records what the separate party processes measured.
    pub fn set_party_processes(&mut self, p: &PartyProcesses) {
        self.peak_rss_per_party_bytes = p.peak_rss_bytes.clone();
        self.party_processes_seconds = Some(p.seconds.iter().copied().fold(0.0, f64::max));
        self.party_processes_seconds_per_party = Some(p.seconds.clone());
        self.party_processes_bytes_sent = Some(p.bytes_sent.clone());
        self.party_processes_agreement =
            Some(Agreement { agree: p.agree, total: p.total, max_abs_difference: p.max_abs_difference });
    }

    /// One line on the separate party processes' run, if there was one.
    pub fn party_processes_line(&self) -> Option<String> {
        let seconds = self.party_processes_seconds?;
        let rss = self.peak_rss_per_party_bytes.as_deref().map(megabytes).unwrap_or_else(|| "?".into());
        let mut line = format!(
            "{}: peak RSS per party (separate processes over TLS) {rss}; {} for set-up and {} inference(s)",
            self.label,
            secs(seconds),
            self.inferences
        );
        if let Some(a) = &self.party_processes_agreement {
            line.push_str(&format!(", agrees with the in-process run on {}/{} (max diff {:.4})", a.agree, a.total, a.max_abs_difference));
        }
        Some(line)
    }

    pub fn summary_line(&self) -> String {
        let mut line = format!("{}: {} per inference", self.label, secs(self.seconds_per_inference));
        if let Some(e) = self.emulated_seconds_per_inference {
            line.push_str(&format!(" ({} on the emulated LAN)", secs(e)));
        }
        if self.bytes_per_inference > 0 {
            line.push_str(&format!(", {} and {} rounds per inference", human(self.bytes_per_inference), self.rounds_per_inference));
        }
        if let Some(rss) = self.peak_rss_bytes {
            line.push_str(&format!(", peak RSS {}", human(rss)));
        }
        if let Some(a) = &self.agreement_with_cleartext {
            line.push_str(&format!(", agrees with cleartext on {}/{}", a.agree, a.total));
        }
        line
    }
}

/// An axis maximum and tick step of 1, 2, 2.5 or 5 times a power of ten (4 to 8 ticks).
fn nice_axis(max: f64) -> (f64, f64) {
    let raw = (max.max(1e-9)) / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * magnitude).find(|&s| s >= raw).unwrap_or(10.0 * magnitude);
    ((max / step).ceil().max(1.0) * step, step)
}

fn mean_min(mean: f64, min: f64, n: usize) -> String {
    if n > 1 && min.is_finite() {
        format!("{} ({})", secs(mean), secs(min))
    } else {
        secs(mean)
    }
}

fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.2} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

fn human(bytes: u64) -> String {
    cryptflow::compile::human_bytes(bytes)
}

/// Several byte counts in one unit, e.g. `306 / 280 / 289 MB`.
fn megabytes(bytes: &[u64]) -> String {
    let largest = bytes.iter().copied().max().unwrap_or(0) as f64 / 1e6;
    let values: Vec<String> = bytes
        .iter()
        .map(|&b| if largest >= 100.0 { format!("{:.0}", b as f64 / 1e6) } else { format!("{:.1}", b as f64 / 1e6) })
        .collect();
    format!("{} MB", values.join(" / "))
}

fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

fn millions(n: u64) -> String {
    if n >= 1_000_000 {
        format!("{:.1} M", n as f64 / 1e6)
    } else {
        n.to_string()
    }
}

fn short(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
