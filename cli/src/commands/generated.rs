//! Shell completions and the manual page, generated from the clap definition, so they never
//! drift from what the binary parses: `wg completions bash|zsh|fish`, `wg man`, and
//! `wg-sim completions bash|zsh|fish`.

use crate::output::Output;
use clap::CommandFactory;
use clap_complete::Shell;
use serde_json::json;
use wg_args::ShellName;

/// The completion script of the program `P` (its name is the command's name) for `shell`.
pub fn completion_script<P: CommandFactory>(shell: ShellName) -> String {
    let mut command = P::command();
    let name = command.get_name().to_string();
    let shell = match shell {
        ShellName::Bash => Shell::Bash,
        ShellName::Zsh => Shell::Zsh,
        ShellName::Fish => Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    String::from_utf8(script).expect("clap_complete writes UTF-8")
}

/// The manual page of the program `P`, in roff.
pub fn man_page<P: CommandFactory>() -> String {
    let mut page = Vec::new();
    clap_mangen::Man::new(P::command()).render(&mut page).expect("writing to memory does not fail");
    String::from_utf8(page).expect("clap_mangen writes UTF-8")
}

pub fn completions_output<P: CommandFactory>(shell: ShellName) -> Output {
    let script = completion_script::<P>(shell);
    Output::new(script.clone(), json!({"ok": true, "script": script}))
}

pub fn man_output<P: CommandFactory>() -> Output {
    let page = man_page::<P>();
    Output::new(page.clone(), json!({"ok": true, "man": page}))
}
