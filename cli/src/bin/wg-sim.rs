fn main() -> std::process::ExitCode {
    eprintln!("wg-sim: not yet: the simulator is being built (issue 4)");
    std::process::ExitCode::from(2)
}
