//! Project automation. Run `cargo xtask help`.

mod bench_losses;
mod bench_peers;
mod ci;
mod conformance;
mod fuzz;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <command>

commands:
  bench-peers [--help]    time every loss against TF Similarity and PML side by side (not CI)
  ci                      run .ci/run: fmt, clippy (warnings denied), the tests, conformance
  conformance [FILE...]   run TF Similarity fixture files (default: the vendored ones);
                          ends with `conformance: N passed, M failed, K skipped`
  fuzz [--seconds N] [--target NAME]...  randomized fuzzing on stable (see `fuzz --help`)
  help                    this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((c, rest)) => (c.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match command {
        "bench-peers" => bench_peers::run(rest),
        "ci" => ci::run(rest),
        "conformance" => conformance::run(rest),
        "fuzz" => fuzz::run(rest),
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        other => Err(format!("unknown command {other:?}\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
