//! The `pixc` binary: parses the command line and hands over to `pixc::cli`.

fn main() {
    // Output piped into a reader that stops early (`pixc check x | head`) ends pixc quietly,
    // as it does other Unix tools, instead of a panic on the broken pipe.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(pixc::cli::run());
}
