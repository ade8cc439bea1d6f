//! The `pixc` binary: parses the command line and hands over to `pixc::cli`.

fn main() {
    std::process::exit(pixc::cli::run());
}
