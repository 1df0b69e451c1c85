//! `cryptflow`: compile TensorFlow/ONNX models into fixed-point programs and run them, in the
//! clear or securely.

mod bench;
mod demo;
mod zoo;

use cryptflow::{compile, party, run};
pub(crate) use cryptflow::{npy, secure, ProtocolName, TruncationName};

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cryptflow", version, about = "Secure inference for ONNX and TensorFlow models at the push of a button")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
        Command::Party(args) => party::party(args).map(drop),
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
