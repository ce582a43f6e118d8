//! `relaywatch`: which process on this host sent data to an AI relay or an overseas AI API.
//!
//! The binary is both the daemon (`relaywatch run`) and its CLI; `cli::main` parses the
//! arguments and hands off. Errors are printed as one line, never as a panic.
fn main() -> std::process::ExitCode {
    monitor::cli::main()
}
