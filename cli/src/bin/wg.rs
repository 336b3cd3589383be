use clap::Parser;
use std::process::ExitCode;
use wg_cli::app::{run, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(output) => output.print(json),
        Err(error) => error.report(json),
    }
}
