//! The `sketchpipe` binary: the command line of [`sketchpipe::cli`].

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(sketchpipe::cli::main(std::env::args_os()))
}
