//! The `orchestrix` binary: the command line with no types registered.

fn main() -> std::process::ExitCode {
    orchestrix_cli::Cli::new().run()
}
