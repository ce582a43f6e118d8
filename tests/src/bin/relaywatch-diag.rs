//! `relaywatch-diag`: the test suite's diagnostic commands (store soak, the control API over a
//! store, sink send), built from the `diagnostics` feature of the `monitor` crate. It is never
//! part of the `relaywatch` binary or its package.
fn main() -> std::process::ExitCode {
    monitor::cli::diag::main()
}
