//! `cryptflow bench --party-processes`: a secure run repeated as three `cryptflow party`
//! processes over TLS on 127.0.0.1, so that each party's peak memory is measured apart (with
//! the parties as threads of the bench, only the whole process's peak is known).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use cryptflow_athos::Compiled;
use cryptflow_ir::artifact::{strip_weights, write_artifact, PublicProgram};
use cryptflow_tensor::{FloatTensor, Tensor};

use super::predictions;
use crate::npy;
use crate::secure::ROLE_NAMES;

/// The largest difference allowed between an output of the in-process run and the same output
/// computed by the party processes. Both are secure runs whose local truncations are off by up
/// to one unit (2^-12 at the default scale) each, with different randomness; on the zoo's
/// networks they stay within 0.01 of the cleartext executor.
pub const TOLERANCE: f32 = 0.05;

/// After one party fails, how long the others get to report their own view before they are
/// killed.
const GRACE: Duration = Duration::from_secs(3);

/// Lines of each party's standard error quoted when the run fails.
const STDERR_TAIL_LINES: usize = 15;

/// What the three party processes measured.
#[derive(Clone, Debug)]
pub struct PartyProcesses {
    /// Peak resident memory (VmHWM) of each party's process, in id order (model owner,
    /// client, helper); None where a party could not read it (no /proc).
    pub peak_rss_bytes: Option<Vec<u64>>,
    /// Each party's `seconds` (session set-up, weight sharing and all inferences, counted
    /// from the moment the TLS links are up).
    pub seconds: Vec<f64>,
    /// Each party's bytes sent (set-up and inferences).
    pub bytes_sent: Vec<u64>,
    /// Positions whose predicted class equals the in-process run's, of how many.
    pub agree: usize,
    pub total: usize,
    /// Largest difference from the in-process run's outputs.
    pub max_abs_difference: f32,
}

/// A scratch directory holding one network's compiled artifact, keys and inputs; removed when
/// dropped.
pub struct Workspace {
    dir: PathBuf,
    inferences: usize,
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("warning: cannot remove {}: {e}", self.dir.display());
            }
        }
    }
}

impl Workspace {
    /// Writes, under `parent`, the artifact `cryptflow compile` would write for `compiled`,
    /// key pairs and certificates for three parties (as `cryptflow keygen`) and the inputs as
    /// one float32 .npy (a stack `[N, ...]` when there are several).
    pub fn new(parent: &Path, network: &str, compiled: &Compiled, inputs: &[FloatTensor]) -> Result<Workspace> {
        let dir = parent.join(format!(".party-processes-{}-{network}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // From here on, dropping the workspace removes the directory (also on errors below).
        let workspace = Workspace { dir, inferences: inputs.len() };
        let (architecture, float_weights) = strip_weights(&compiled.hlil);
        let report = serde_json::to_value(&compiled.report)?;
        let public = PublicProgram::new(format!("{network} (cryptflow zoo)"), compiled.program.clone(), architecture, report);
        write_artifact(&workspace.program_dir(), &public, &compiled.weights, &float_weights)
            .with_context(|| format!("writing the compiled {network} to {}", workspace.program_dir().display()))?;
        drop(float_weights);
        let keys = workspace.keys_dir();
        std::fs::create_dir_all(&keys).with_context(|| format!("cannot create {}", keys.display()))?;
        cryptflow_net::keygen(&keys, ROLE_NAMES.len()).with_context(|| format!("making keys in {}", keys.display()))?;
        let x = match inputs {
            [] => bail!("no inputs"),
            [one] => one.clone(),
            many => {
                let mut shape = vec![many.len()];
                shape.extend_from_slice(many[0].shape());
                Tensor::new(shape, many.iter().flat_map(|x| x.data().iter().copied()).collect())?
            }
        };
        npy::write_f32(&workspace.input_path(), &x)?;
        Ok(workspace)
    }

    fn program_dir(&self) -> PathBuf {
        self.dir.join("program")
    }

    fn keys_dir(&self) -> PathBuf {
        self.dir.join("keys")
    }

    fn input_path(&self) -> PathBuf {
        self.dir.join("x.npy")
    }

    /// Runs the program as three `cryptflow party` processes of this executable (`protocol`:
    /// porthos or securenn) and checks the client's outputs against `reference`, the
    /// in-process run's. Parties still running after `timeout` are killed.
    pub fn run(&self, protocol: &str, reference: &[FloatTensor], timeout: Duration) -> Result<PartyProcesses> {
        let exe = std::env::current_exe().context("cannot find the cryptflow executable to start the parties")?;
        let run_dir = self.dir.join(protocol);
        std::fs::create_dir_all(&run_dir).with_context(|| format!("cannot create {}", run_dir.display()))?;
        let ports = free_ports(ROLE_NAMES.len())?;
        let peers: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let peers = peers.join(",");
        let output = run_dir.join("y.npy");
        let metrics: Vec<PathBuf> = (0..ROLE_NAMES.len()).map(|id| run_dir.join(format!("metrics{id}.json"))).collect();
        let logs: Vec<PathBuf> = (0..ROLE_NAMES.len()).map(|id| run_dir.join(format!("party{id}.log"))).collect();

        let mut parties = Parties(Vec::new());
        for id in 0..ROLE_NAMES.len() {
            let log = File::create(&logs[id]).with_context(|| format!("cannot create {}", logs[id].display()))?;
            let mut command = Command::new(&exe);
            command
                .arg("party")
                // The in-process bench runs the paper's local truncation: the same here.
                .args(["--backend", "porthos", "--protocol", protocol, "--truncation", "local", "--id", &id.to_string(), "--peers", &peers])
                .arg(self.program_dir())
                .arg("--keys")
                .arg(self.keys_dir())
                .arg("--metrics")
                .arg(&metrics[id])
                // Hangs are caught by `timeout`; a party busy computing may leave its peers
                // silent for longer than the default.
                .args(["--connect-timeout", "120", "--peer-timeout", "300"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            if id == cryptflow_porthos::CLIENT {
                command.arg("--input").arg(self.input_path()).arg("-o").arg(&output);
            }
            let child = command.spawn().with_context(|| format!("cannot start party {id} ({}): {}", ROLE_NAMES[id], exe.display()))?;
            parties.0.push((child, None));
        }
        let finished = parties.wait(timeout);
        let failures: Vec<String> = parties
            .0
            .iter()
            .enumerate()
            .filter_map(|(id, (_, status))| match status {
                Some(Ended::Exited(s)) if s.success() => None,
                other => {
                    let how = match other {
                        Some(Ended::Exited(s)) => format!("exited with {s}"),
                        Some(Ended::Killed) if !finished => format!("still running after {} s, killed", timeout.as_secs()),
                        Some(Ended::Killed) => "killed after another party failed".to_string(),
                        None => "not waited for".to_string(),
                    };
                    Some(format!("party {id} ({}): {how}; its standard error ends with:\n{}", ROLE_NAMES[id], tail(&logs[id])))
                }
            })
            .collect();
        if !failures.is_empty() {
            bail!("the {protocol} run as three `cryptflow party` processes over TLS failed:\n{}", failures.join("\n"));
        }

        let mut peak_rss = Vec::new();
        let mut seconds = Vec::new();
        let mut bytes_sent = Vec::new();
        for (id, path) in metrics.iter().enumerate() {
            let text = std::fs::read(path).with_context(|| format!("party {id} ({}) wrote no metrics {}", ROLE_NAMES[id], path.display()))?;
            let m: serde_json::Value =
                serde_json::from_slice(&text).with_context(|| format!("party {id}'s metrics {}", path.display()))?;
            peak_rss.push(m["peak_rss_bytes"].as_array().and_then(|a| a.first()).and_then(|v| v.as_u64()));
            seconds.push(m["seconds"].as_f64().ok_or_else(|| anyhow!("party {id}'s metrics {} lack `seconds`", path.display()))?);
            bytes_sent.push(m["bytes_sent"].as_array().and_then(|a| a.first()).and_then(|v| v.as_u64()).unwrap_or(0));
        }
        let peak_rss_bytes: Option<Vec<u64>> = peak_rss.into_iter().collect();
        if peak_rss_bytes.is_none() {
            eprintln!("   warning: a party process could not read its peak RSS (no /proc/self/status?)");
        }

        let y = npy::read_f32(&output).with_context(|| format!("the client's output {}", output.display()))?;
        let out_shape = reference.first().map(|r| r.shape().to_vec()).ok_or_else(|| anyhow!("no in-process outputs to compare with"))?;
        let outputs = if self.inferences == 1 {
            if y.shape() != out_shape.as_slice() {
                bail!("the client's output has shape {:?}; the in-process run's has {:?}", y.shape(), out_shape);
            }
            vec![y]
        } else {
            npy::split_batch(&y, &out_shape, "the client's output")?.0
        };
        let (agree, total, max_abs_difference) = compare(reference, &outputs)?;
        Ok(PartyProcesses { peak_rss_bytes, seconds, bytes_sent, agree, total, max_abs_difference })
    }
}

/// Checks the party processes' outputs against the in-process run's: the same prediction at
/// every position (but where the in-process run's top two classes are within rounding noise of
/// each other, 2 x [`TOLERANCE`]) and every value within [`TOLERANCE`]. Returns (agree, total,
/// max abs difference).
fn compare(reference: &[FloatTensor], outputs: &[FloatTensor]) -> Result<(usize, usize, f32)> {
    if reference.len() != outputs.len() {
        bail!("the client wrote {} output(s); the in-process run made {}", outputs.len(), reference.len());
    }
    let (mut agree, mut total, mut worst) = (0, 0, 0f32);
    for (k, (r, y)) in reference.iter().zip(outputs).enumerate() {
        if r.shape() != y.shape() {
            bail!("inference {k}: the client's output has shape {:?}; the in-process run's has {:?}", y.shape(), r.shape());
        }
        let (pr, py) = (predictions(r), predictions(y));
        let shape = r.shape();
        let (classes, inner) = if shape.len() < 2 { (r.data().len(), 1) } else { (shape[1], shape[2..].iter().product()) };
        for (position, (&a, &b)) in pr.iter().zip(&py).enumerate() {
            total += 1;
            if a == b {
                agree += 1;
                continue;
            }
            let (o, p) = (position / inner, position % inner);
            let at = |c: usize| r.data()[(o * classes + c) * inner + p];
            if at(a) - at(b) > 2.0 * TOLERANCE {
                bail!(
                    "the party processes predict class {b} where the in-process run predicts {a} \
                     (inference {k}, position {position}; in-process values {} vs {})",
                    at(a),
                    at(b)
                );
            }
        }
        worst = r.data().iter().zip(y.data()).map(|(a, b)| (a - b).abs()).fold(worst, f32::max);
        if r.data().iter().chain(y.data()).any(|v| !v.is_finite()) {
            bail!("inference {k}: non-finite outputs");
        }
    }
    if worst > TOLERANCE {
        bail!("the party processes' outputs differ from the in-process run's by up to {worst} (more than {TOLERANCE})");
    }
    Ok((agree, total, worst))
}

enum Ended {
    Exited(ExitStatus),
    Killed,
}

/// The party processes; any still running when this is dropped (an early error) are killed.
struct Parties(Vec<(Child, Option<Ended>)>);

impl Parties {
    /// Waits until every party has exited, killing the rest [`GRACE`] after one fails and all
    /// of them at `timeout`. Returns false when the timeout struck.
    fn wait(&mut self, timeout: Duration) -> bool {
        let started = Instant::now();
        let mut failed_at: Option<Instant> = None;
        loop {
            for (child, status) in &mut self.0 {
                if status.is_none() {
                    match child.try_wait() {
                        Ok(Some(s)) => {
                            if !s.success() && failed_at.is_none() {
                                failed_at = Some(Instant::now());
                            }
                            *status = Some(Ended::Exited(s));
                        }
                        Ok(None) => {}
                        Err(_) => {
                            kill(child);
                            *status = Some(Ended::Killed);
                            failed_at.get_or_insert_with(Instant::now);
                        }
                    }
                }
            }
            if self.0.iter().all(|(_, s)| s.is_some()) {
                return true;
            }
            let timed_out = started.elapsed() > timeout;
            if timed_out || failed_at.is_some_and(|t| t.elapsed() > GRACE) {
                for (child, status) in &mut self.0 {
                    if status.is_none() {
                        kill(child);
                        *status = Some(Ended::Killed);
                    }
                }
                return !timed_out;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Parties {
    fn drop(&mut self) {
        for (child, status) in &mut self.0 {
            if status.is_none() {
                kill(child);
            }
        }
    }
}

/// Ports free on the loopback interface (bound all at once, so they differ, then released).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot bind a port on 127.0.0.1")?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// The last lines of a party's log.
fn tail(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(STDERR_TAIL_LINES);
            if lines.is_empty() {
                "    (nothing)".into()
            } else {
                lines[from..].iter().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
            }
        }
        Err(e) => format!("    (cannot read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(shape: &[usize], data: &[f32]) -> FloatTensor {
        Tensor::new(shape.to_vec(), data.to_vec()).unwrap()
    }

    #[test]
    fn compare_accepts_rounding_noise_and_rejects_a_different_prediction() {
        let r = [tensor(&[1, 3], &[0.1, 2.0, 1.0])];
        assert_eq!(compare(&r, &[tensor(&[1, 3], &[0.1, 2.001, 1.0])]).unwrap().0, 1);
        // A near tie may go either way.
        let tie = [tensor(&[1, 3], &[0.1, 1.0, 1.0005])];
        let (agree, total, _) = compare(&tie, &[tensor(&[1, 3], &[0.1, 1.0004, 1.0001])]).unwrap();
        assert_eq!((agree, total), (0, 1));
        let err = compare(&r, &[tensor(&[1, 3], &[0.1, 2.0, 2.5])]).unwrap_err().to_string();
        assert!(err.contains("predict class 2"), "{err}");
        let err = compare(&r, &[tensor(&[1, 3], &[0.3, 2.0, 1.0])]).unwrap_err().to_string();
        assert!(err.contains("differ"), "{err}");
        assert!(compare(&r, &[]).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_failed_party_ends_the_others_and_a_hang_times_out() {
        let spawn = |script: &str| Command::new("sh").args(["-c", script]).spawn().unwrap();
        let mut parties = Parties(vec![(spawn("exit 3"), None), (spawn("sleep 60"), None), (spawn("exit 0"), None)]);
        let started = Instant::now();
        assert!(parties.wait(Duration::from_secs(50)));
        assert!(started.elapsed() < GRACE + Duration::from_secs(5));
        assert!(matches!(parties.0[0].1, Some(Ended::Exited(s)) if s.code() == Some(3)));
        assert!(matches!(parties.0[1].1, Some(Ended::Killed)));
        assert!(matches!(parties.0[2].1, Some(Ended::Exited(s)) if s.success()));

        let mut parties = Parties(vec![(spawn("sleep 60"), None)]);
        assert!(!parties.wait(Duration::from_millis(200)));
        assert!(matches!(parties.0[0].1, Some(Ended::Killed)));
    }
}
