//! The `cairn` binary: the daemon and the command line that manages it.

fn main() -> std::process::ExitCode {
    cairn::cli::main()
}
