//! Command-line interface: argument parsing, dispatch, and error rendering at the edge.
//!
//! Exit codes: 0 success, 1 runtime failure (I/O, data, training), 2 invalid spec or usage.

mod spec_cmds;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  pixc check specs/diag_bilstm_7_mnist.yaml        shapes, parameters, causality proof
  pixc graph specs/pixelcnn_7_mnist.yaml --dot | dot -Tpng > g.png
  pixc fmt specs/row_lstm_7_mnist.yaml --to dsl    print the spec in the pixc DSL
";

#[derive(Parser)]
#[command(name = "pixc", version, about = "Compile, check, train and ship PixelRNN-family image models", after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Parse and validate a spec; print layers, shapes, parameters and the receptive field
    #[command(after_help = "Example:\n  pixc check specs/diag_bilstm_7_mnist.yaml --json | jq .parameters")]
    Check {
        spec: PathBuf,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
        /// Print the IR dump instead of the table
        #[arg(long)]
        ir: bool,
    },
    /// Print the IR graph (Graphviz DOT)
    #[command(after_help = "Example:\n  pixc graph specs/pixelcnn_7_mnist.yaml --dot | dot -Tsvg > model.svg")]
    Graph {
        spec: PathBuf,
        /// Graphviz DOT output (the only format for now)
        #[arg(long, default_value_t = true)]
        dot: bool,
    },
    /// Convert a spec between YAML and the pixc DSL, or check it is canonical
    #[command(after_help = "Examples:\n  pixc fmt specs/diag_bilstm_7_mnist.yaml --to dsl > m.pixc\n  pixc fmt m.pixc --check")]
    Fmt {
        spec: PathBuf,
        /// Output syntax (default: the input's own, i.e. canonicalise)
        #[arg(long, value_parser = ["yaml", "dsl"])]
        to: Option<String>,
        /// Exit 1 if the file is not in canonical form (prints nothing else)
        #[arg(long)]
        check: bool,
        /// Rewrite the file in place (atomically)
        #[arg(long, short = 'w', conflicts_with = "check")]
        write: bool,
    },
}

/// Runs the CLI and returns the process exit code.
pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let r = match cli.cmd {
        Cmd::Check { spec, json, ir } => spec_cmds::check(&spec, json, ir),
        Cmd::Graph { spec, .. } => spec_cmds::graph(&spec),
        Cmd::Fmt {
            spec,
            to,
            check,
            write,
        } => spec_cmds::fmt(&spec, to.as_deref(), check, write),
    };
    match r {
        Ok(code) => code,
        Err(e) => report(e),
    }
}

/// Prints an error and returns its exit code: 2 for spec errors, 1 otherwise.
fn report(e: anyhow::Error) -> i32 {
    if let Some(se) = e.downcast_ref::<crate::SpecError>() {
        eprint!("{}", se.rendered);
        return 2;
    }
    eprintln!("error: {e:#}");
    1
}

/// Writes `bytes` to `path` atomically: a temp file in the same folder, then rename, so a
/// crash or Ctrl-C never leaves a half-written output.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::util::write_atomic(path, bytes)
}
