//! `cryptflow`: compile TensorFlow/ONNX models into fixed-point programs and run them, in the
//! clear or securely.

mod aramis;
mod bench;
mod calibrate;
mod compile;
mod demo;
mod generate;
mod inputs;
mod model;
mod npy;
mod party;
mod run;
mod secure;
mod twopc;
mod zoo;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "cryptflow", version, about = "Secure inference for ONNX and TensorFlow models at the push of a button")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Emit {
    Hlil,
    Llil,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendName {
    /// The float reference executor (HLIL in f32; needs the model owner's weights).
    Float,
    /// The cleartext fixed-point reference executor (needs the model owner's weights).
    Cleartext,
    /// Porthos: semi-honest 3-party secure inference (all parties in this process).
    Porthos,
    /// Two-party secure inference: model owner and client alone, no helper (OT-based).
    #[value(name = "2pc")]
    TwoPc,
    /// Aramis: Porthos made secure against malicious parties (attested code, every message
    /// signed and checked; software attestor, see the README).
    Aramis,
}

/// How secure backends truncate (`ScaleDown`, division by public integers). Every party of a
/// session must choose the same. Faithful is the default: measured on LeNet and ResNet-18 it
/// costs 1-3% more bytes and 4-21 more rounds under Porthos, while local truncation fails with
/// probability |x|/2^64 per element (ResNet-18: about 2^-15 per inference at scale 12) and
/// lets a party predict the rounding bit (README, "Truncation").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum TruncationName {
    /// Local truncation (SecureML, the paper's): free, but off by about 2^64/d with probability
    /// |x|/2^64 per element, and a party can predict the rounding bit from its own share.
    Local,
    /// Faithful truncation (the default): exact for |x| < 2^62 whatever the shares (Porthos:
    /// helper-dealt masks, one round per call; 2PC: one comparison per element).
    #[default]
    Faithful,
}

impl TruncationName {
    /// The backends' mode.
    pub fn mode(self) -> cryptflow_backend::Truncation {
        match self {
            TruncationName::Local => cryptflow_backend::Truncation::Local,
            TruncationName::Faithful => cryptflow_backend::Truncation::Faithful,
        }
    }
}

/// The protocol of the porthos and aramis backends. Every party of a session must choose the
/// same. Compact is the default: its comparisons cost 216 bytes and 2 rounds per element
/// where the paper's cost 496 and 5, with the same security and exact on all of Z_2^64.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ProtocolName {
    /// Porthos as in the paper (Table III's communication).
    Porthos,
    /// SecureNN: the same protocols without Porthos' optimisations (paper Table VIII).
    Securenn,
    /// Porthos with compact comparisons (the default): DReLU from one PrivateCompare on a
    /// masked opening instead of ShareConvert and ComputeMSB.
    #[default]
    Compact,
}

impl ProtocolName {
    /// The Porthos protocol variant.
    pub fn variant(self) -> cryptflow_porthos::ProtocolVariant {
        use cryptflow_porthos::ProtocolVariant;
        match self {
            ProtocolName::Porthos => ProtocolVariant::Porthos,
            ProtocolName::Securenn => ProtocolVariant::SecureNN,
            ProtocolName::Compact => ProtocolVariant::Compact,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Compile a model into a fixed-point program (Athos).
    Compile(compile::CompileArgs),
    /// Run a compiled program on inputs.
    Run(run::RunArgs),
    /// Compile a shipped LeNet and run it securely on shipped digits, next to plaintext.
    Demo(demo::DemoArgs),
    /// Run one party of a distributed secure inference (TLS between all parties).
    Party(party::PartyArgs),
    /// Make a party's key pair and certificate (--id), or every party's in one folder (tests).
    Keygen(party::KeygenArgs),
    /// Write a benchmark network of the paper (seeded random weights) as an ONNX model.
    Zoo(zoo::ZooArgs),
    /// Build, compile and run benchmark networks; write a report beside the paper's figures.
    Bench(bench::BenchArgs),
}

/// glibc gives every thread that allocates its own arena (up to 8 per core), and memory freed
/// in one arena is not reused by the others: with the protocol's rayon workers and the network
/// reader and writer threads, a ResNet-50 party kept about 230 MB more resident than it used.
/// Two arenas keep the peak close to what is live at no measurable cost in time.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Rust ignores SIGPIPE, so that printing to a closed pipe (`cryptflow zoo --list | head -1`)
/// panics. Restores the default on every Unix (glibc, musl, macOS, the BSDs): the process ends
/// quietly on the signal, as command-line tools do. Sockets are unaffected: the standard
/// library sends with MSG_NOSIGNAL on Linux and the BSDs and sets SO_NOSIGPIPE on every socket
/// on Apple platforms, and no child process is fed through a pipe. Windows has no SIGPIPE (a
/// closed pipe is an error there, which [`main`] reports).
fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    default_sigpipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Compile(args) => compile::compile(args),
        Command::Run(args) => run::run(args),
        Command::Demo(args) => demo::demo(args),
        Command::Party(args) => party::party(args),
        Command::Keygen(args) => party::keygen(args),
        Command::Zoo(args) => zoo::zoo(args),
        Command::Bench(args) => bench::bench(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses `--input-shape` values.
fn input_shape(text: &str) -> Result<(String, Vec<usize>), String> {
    model::parse_input_shape(text).map_err(|e| e.to_string())
}
