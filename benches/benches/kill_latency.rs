//! `wg agents kill` against real processes: the time from starting the real `wg` binary to the
//! agent's process tree being gone (criterion's figure), and to `wg` returning (in the summary
//! line). Only the kill is timed (`iter_custom`); each run sets up a
//! fresh `.wg/` (`wg init`) and an agent started by the bench in its own process group, with the
//! registry entry upstream workgraph would have written (pid and start ticks).
//!
//! Goals: a cooperative agent gone <= 20 ms after the command starts (the agent with children
//! is held to the same); an agent ignoring SIGTERM gone <= grace + 20 ms with `--grace 100ms`.

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use serde_json::json;
use std::time::Duration;
use wg_benches::procs::{become_subreaper, Measured};
use wg_benches::{AgentProcess, Samples, TempWg};

struct Case {
    name: &'static str,
    command: &'static str,
    grace: Option<&'static str>,
    goal: Duration,
    /// Waits until the agent is in the state the case is about (exec'd, children up, trap set).
    ready: fn(&mut AgentProcess),
}

const CASES: [Case; 3] = [
    Case {
        name: "cooperative",
        command: "sleep 600",
        grace: None,
        goal: Duration::from_millis(20),
        // dash does not exec the last command: `sh` runs with one `sleep` child, as under the service.
        ready: |agent| agent.wait_children(1),
    },
    Case {
        name: "ten_children",
        command: "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 600 & done; wait",
        grace: None,
        goal: Duration::from_millis(20),
        ready: |agent| agent.wait_children(10),
    },
    Case {
        name: "ignores_sigterm_grace_100ms",
        command: "trap '' TERM; while :; do sleep 0.05; done",
        grace: Some("100ms"),
        goal: Duration::from_millis(120),
        ready: |agent| agent.wait_ignoring_term(),
    },
];

/// How long one kill took, both from spawning `wg agents kill`.
struct KillTimes {
    /// Until the agent and its children were gone (the figure the goal is about).
    gone: Duration,
    /// Until `wg` itself exited (it also commits the registry and graph after the kill).
    returned: Duration,
}

/// One kill; the bench watches the agent's tree and the `wg` child every 100 us.
fn one_kill(case: &Case) -> KillTimes {
    let workgraph = TempWg::init();
    let mut agent = AgentProcess::start(case.command);
    (case.ready)(&mut agent);
    let task = json!({"kind": "task", "id": "t1", "title": "t1", "status": "in-progress",
                      "assigned": "agent-1", "exec": case.command});
    workgraph.write_tasks(&[task]);
    workgraph.write_agents(&[agent.registry_entry("agent-1", "t1")]);
    let mut args = vec!["agents", "kill", "agent-1"];
    if let Some(grace) = case.grace {
        args.extend(["--grace", grace]);
    }
    let mut wg = Measured::spawn(&mut workgraph.command(&args));
    let (mut gone, mut finished) = (None, None);
    while gone.is_none() || finished.is_none() {
        if gone.is_none() && agent.tree_gone() {
            gone = Some(wg.started().elapsed());
        }
        if finished.is_none() {
            finished = wg.try_finish();
        }
        let waited = wg.started().elapsed();
        assert!(waited < Duration::from_secs(10), "agent {} or wg still there after {waited:?}", agent.pid);
        std::thread::sleep(Duration::from_micros(100));
    }
    let finished = finished.expect("loop ends when both are known");
    finished.assert_success("wg agents kill");
    assert!(finished.stdout.starts_with("killed agent-1"), "unexpected output: {}", finished.stdout);
    KillTimes { gone: gone.expect("loop ends when both are known"), returned: finished.elapsed }
}

fn kill_latency(c: &mut Criterion) {
    become_subreaper();
    let mut group = c.benchmark_group("kill_latency");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sampling_mode(SamplingMode::Flat);
    for case in &CASES {
        let (gone, returned) = (Samples::new(), Samples::new());
        group.bench_function(case.name, |bencher| {
            bencher.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| {
                        let times = one_kill(case);
                        gone.push(times.gone);
                        returned.push(times.returned);
                        times.gone
                    })
                    .sum()
            })
        });
        if gone.count() > 0 {
            eprintln!("{}", gone.summary(&format!("kill_latency/{} tree gone", case.name), Some(case.goal)));
            eprintln!("{}", returned.summary(&format!("kill_latency/{} wg returned", case.name), Some(case.goal)));
        }
    }
    group.finish();
}

criterion_group!(benches, kill_latency);
criterion_main!(benches);
