//! Scenario mistakes are found when the file is read, with `file:line:col` and what is wrong; a
//! step that never fires fails the run, unless a fault it names was injected.

use std::path::Path;
use wg_sim::executor::{self, RunOptions};
use wg_sim::scenario::{self, FaultKind};

const WORLD: &str = "[world]\n\n[[world.task]]\nid = \"build\"\nexec = \"hang\"\n";

/// The error for `WORLD` followed by `rest`, as `wg-sim` prints it.
fn error(rest: &str) -> String {
    let text = format!("{WORLD}{rest}");
    scenario::parse_str(Path::new("bad.toml"), &text).expect_err("the scenario is refused").to_string()
}

#[test]
fn an_unknown_task_in_after_is_named_where_it_is() {
    assert_eq!(
        error("\n[[world.task]]\nid = \"t2\"\nafter = [\"biuld\"]\n"),
        "bad.toml:9:10: unknown task \"biuld\" in task \"t2\"'s `after`: the scenario's tasks are build, t2"
    );
}

#[test]
fn an_expectation_on_an_unknown_task_is_refused() {
    assert_eq!(
        error("\n[expect]\nalways = [\"buidl.status = open\"]\n"),
        "bad.toml:8:11: expectation on \"buidl\", which is no task and no agent of this scenario: its tasks are \
         build; it declares no agent, and its dispatcher names the agents it starts agent-1 to agent-27 at most"
    );
}

#[test]
fn an_expectation_on_a_field_its_subject_lacks_is_refused() {
    assert_eq!(
        error("\n[expect]\nalways = [\"build.statsu = open\"]\n"),
        "bad.toml:8:11: tasks have no field \"statsu\" (status, retry_count, assigned, agent, failure_reason, log)"
    );
    assert_eq!(
        error("\n[expect]\nif_no_faults = [\"agent-1.retry_count = 1\"]\n"),
        "bad.toml:8:17: agents have no field \"retry_count\" (status, task)"
    );
}

#[test]
fn a_trigger_on_an_agent_that_can_never_exist_is_refused() {
    let message = error("\n[[step]]\non = \"spawn agent-99\"\nrun = \"wg retry build\"\n");
    assert_eq!(
        message,
        "bad.toml:8:6: no agent \"agent-99\" can exist in this scenario (`on`): it declares no agent, and its \
         dispatcher names the agents it starts agent-1 to agent-48 at most"
    );
    assert!(error("\n[[step]]\non = \"spawn worker\"\nrun = \"wg retry build\"\n").contains("no agent \"worker\""));
}

#[test]
fn run_lines_name_known_tasks_and_possible_agents() {
    assert_eq!(
        error("\n[[step]]\nat = \"1s\"\nrun = \"wg retry biuld\"\n"),
        "bad.toml:9:7: unknown task \"biuld\" in `run`: the scenario's tasks are build"
    );
    assert!(error("\n[[step]]\nat = \"1s\"\nrun = \"WG_AGENT_ID=bob wg done build\"\n")
        .starts_with("bad.toml:9:7: no agent \"bob\" can exist in this scenario (`run`'s WG_AGENT_ID)"));
    // A task a `wg add` step adds is known, under the id `wg add` gives it.
    let text = format!("{WORLD}\n[[step]]\nat = \"1s\"\nrun = \"wg add 'Nightly checks'\"\n\n[expect]\nalways = [\"nightly-checks.status = open\"]\n");
    assert!(scenario::parse_str(Path::new("ok.toml"), &text).is_ok());
}

#[test]
fn run_lines_are_read_by_wgs_own_grammar() {
    assert_eq!(
        error("\n[[step]]\nat = \"1s\"\nrun = \"wg done build --agent agent-1\"\n"),
        "bad.toml:9:7: `wg` rejects this line: unexpected argument '--agent' found (usage: wg done <TASK>)"
    );
    assert_eq!(
        error("\n[[step]]\nat = \"1s\"\nrun = \"wg quickstart\"\n"),
        "bad.toml:9:7: the simulator cannot model `wg quickstart`: a step runs one of: wg retry, wg agents kill, \
         wg done, wg fail, wg heartbeat, wg recover, wg add"
    );
    let text = format!("{WORLD}\n[[step]]\nat = \"1s\"\nrun = \"wg agents kill agent-1 --grace 200ms\"\n");
    assert!(scenario::parse_str(Path::new("ok.toml"), &text).is_ok(), "wg accepts it, so a scenario does");
}

#[test]
fn a_step_with_both_at_and_on_is_reported_at_the_step() {
    assert_eq!(
        error("\n[[step]]\nat = \"1s\"\non = \"spawn agent-1\"\nrun = \"wg retry build\"\n"),
        "bad.toml:7:1: each [[step]] needs exactly one of `at` or `on`"
    );
    assert_eq!(
        error("\n\n[[step]]\nat = \"1s\"\n"),
        "bad.toml:8:1: each [[step]] needs exactly one of `run` or `fault`"
    );
}

/// `build` hangs and nothing stops it: `exit agent-1` never happens. Clock jumps are injected on
/// some seeds, and the step says they excuse it.
const NEVER_FIRES: &str = "[world]\ngrace = \"1s\"\nkill_wait = \"1s\"\n\n[[world.task]]\nid = \"build\"\nstatus = \"in-progress\"\nagent = \"agent-1\"\nexec = \"hang\"\n\n\
[[step]]\non = \"exit agent-1\"\nrun = \"wg retry build\"\nunless = \"clock-jump\"\n\n\
[sim]\nfaults = [\"clock-jump\"]\nfault_rate = 0.05\nsafety = \"3s\"\n";

#[test]
fn a_step_that_never_fired_fails_the_run_unless_a_fault_it_names_was_injected() {
    let scenario = scenario::parse_str(Path::new("never_fires.toml"), NEVER_FIRES).unwrap();
    let (mut excused, mut failed) = (0, 0);
    for seed in 0..40 {
        let report = executor::run(&scenario, &RunOptions::for_scenario(&scenario, seed));
        let checker = report.failure.as_ref().map(|failure| failure.checker.as_str());
        if report.fault_kinds.contains(&FaultKind::ClockJump) {
            assert_eq!(checker, None, "seed {seed}: the clock jump excuses the step");
            excused += 1;
        } else {
            assert_eq!(checker, Some("step-never-fired"), "seed {seed}");
            let detail = &report.failure.unwrap().detail;
            assert_eq!(detail, "`wg retry build`: its event `exit agent-1` never happened");
            failed += 1;
        }
    }
    assert!(excused > 0 && failed > 0, "both kinds of run were seen: {excused} excused, {failed} failed");
}
