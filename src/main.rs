//! Thin entry point: parse the command line, run the verb, map errors to exit codes.
fn main() -> std::process::ExitCode {
    hardroot::cli::main()
}
