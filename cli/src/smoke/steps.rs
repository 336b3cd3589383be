//! The `[[step]]`s of a scenario, fired at their time or after their event: commands as real
//! `wg` processes, faults done for real where a real system can have them, else skipped aloud.

use super::procs::{self, OurChild};
use super::setup_error::SetupError;
use super::world::RealWorld;
use rustix::process::Signal;
use std::process::{Command as Process, Stdio};
use std::time::Duration;
use wg_core::ports::State;
use wg_sim::scenario::{command_line, Action, CommandLine, Scenario, ScriptedFault, Step, Trigger};

/// The simulator restarts a crashed service after one second; so do we.
const SERVICE_RESTART_DELAY: Duration = Duration::from_secs(1);

/// A `wg` command a step started.
pub struct RunningStep {
    pub text: String,
    pub proc: OurChild,
    pub stderr: std::path::PathBuf,
}

/// A stopped heartbeat loop to continue later (pid, start ticks, when).
struct Stall {
    pid: i32,
    start_ticks: u64,
    until: Duration,
}

pub struct StepRunner {
    /// Steps not fired yet, with the moment their event was first seen (`On` triggers).
    pending: Vec<(Step, Option<Duration>)>,
    pub commands: Vec<RunningStep>,
    stalls: Vec<Stall>,
    service_restart_at: Option<Duration>,
    /// What happened, for the report (`crashed the service`, ...).
    pub notes: Vec<String>,
    pub skipped: Vec<String>,
    /// Scripted faults this run skipped or could not time as the simulator does: the
    /// scenario's expectations describe their outcome, so they cannot be judged here.
    pub inexact: Vec<String>,
}

impl StepRunner {
    pub fn new(scenario: &Scenario) -> StepRunner {
        let pending = scenario.steps.iter().map(|step| (step.clone(), None)).collect();
        StepRunner {
            pending,
            commands: Vec::new(),
            stalls: Vec::new(),
            service_restart_at: None,
            notes: Vec::new(),
            skipped: Vec::new(),
            inexact: Vec::new(),
        }
    }

    /// Every step fired, every command it started has exited, the service is back.
    pub fn finished(&mut self) -> bool {
        let running = self.commands.iter_mut().any(|step| step.proc.poll());
        self.pending.is_empty() && !running && self.service_restart_at.is_none()
    }

    /// Steps whose event never came; reported when the run ends.
    pub fn unfired(&self) -> Vec<String> {
        self.pending.iter().map(|(step, _)| step.text.clone()).collect()
    }

    /// Fires what is due at `now` (time since the run started). Steps due together are started
    /// back to back, before any of them is waited for: "at the same moment" as a real system has it.
    pub fn fire_due(&mut self, now: Duration, state: &State, world: &mut RealWorld) {
        for (step, seen) in &mut self.pending {
            if let Trigger::On { event, .. } = &step.trigger {
                if seen.is_none() && event_happened(event, state) {
                    *seen = Some(now);
                }
            }
        }
        let (due, pending): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.pending).into_iter().partition(|(step, seen)| is_due(step, *seen, now));
        self.pending = pending;
        for (step, _) in due {
            self.fire(&step, now, world);
        }
        self.continue_stalls(now);
        if self.service_restart_at.is_some_and(|at| now >= at) {
            self.service_restart_at = None;
            match world.start_service() {
                Ok(()) => self.notes.push(format!("restarted the service at {:.2}s", now.as_secs_f64())),
                Err(why) => self.notes.push(format!("could not restart the service: {why}")),
            }
        }
    }

    fn fire(&mut self, step: &Step, now: Duration, world: &mut RealWorld) {
        match &step.action {
            Action::Run(command) => match start_command(world, command, self.commands.len()) {
                Ok((proc, stderr)) => self.commands.push(RunningStep { text: step.text.clone(), proc, stderr }),
                Err(why) => self.notes.push(format!("could not start `{}`: {why}", step.text)),
            },
            Action::Fault(fault) => {
                let skipped_before = self.skipped.len();
                self.fault(fault, &step.text, now, world);
                let on_spawn = matches!(&step.trigger, Trigger::On { event, .. } if event.starts_with("spawn "));
                if self.skipped.len() > skipped_before {
                    self.inexact.push(step.text.clone());
                } else if on_spawn && matches!(fault, ScriptedFault::CrashService) {
                    // The simulator crashes between the spawn and the pid's record; from outside we
                    // see the spawn only once the pid is recorded, so our crash lands after that.
                    self.notes.push(format!(
                        "{}: landed after agent's pid was recorded, not between spawn and record",
                        step.text
                    ));
                    self.inexact.push(step.text.clone());
                }
            }
        }
    }

    fn fault(&mut self, fault: &ScriptedFault, text: &str, now: Duration, world: &mut RealWorld) {
        match fault {
            ScriptedFault::CrashService => match &mut world.service {
                Some(service) => {
                    let pid = service.pid;
                    service.end(false);
                    world.service = None;
                    self.notes.push(format!("{text}: SIGKILL to the service (pid {pid}) at {:.2}s", now.as_secs_f64()));
                    self.service_restart_at = Some(now + SERVICE_RESTART_DELAY);
                }
                None => self.skipped.push(format!("{text} (no service runs)")),
            },
            ScriptedFault::ClockJump { .. } => self.skipped.push(format!("{text} (simulator only: a virtual clock)")),
            ScriptedFault::ReusePid { .. } => self
                .skipped
                .push(format!("{text} (simulator only: the kernel picks pids; see `process = \"pid-reused\"`)")),
            ScriptedFault::StallHeartbeat { agent, for_ms } => self.stall(agent, *for_ms, text, now, world),
        }
    }

    /// Stops the agent's heartbeat loop (the `sh` subshell the behaviour puts in the
    /// background) with SIGSTOP: the agent stays alive but silent, and SIGCONT comes later.
    fn stall(&mut self, agent: &str, for_ms: u64, text: &str, now: Duration, world: &RealWorld) {
        let Some(entry) = read_agent(world, agent).filter(procs::is_live) else {
            self.skipped.push(format!("{text} (agent {agent} is not running)"));
            return;
        };
        let loops = procs::children_named(entry.pid as i32, "sh");
        if loops.is_empty() {
            self.skipped.push(format!("{text} (agent {agent} has no heartbeat loop to stop)"));
            return;
        }
        for (pid, start_ticks) in loops {
            if procs::signal_verified(pid, start_ticks, Signal::Stop) {
                self.stalls.push(Stall { pid, start_ticks, until: now + Duration::from_millis(for_ms) });
            }
        }
        self.notes.push(format!("{text}: SIGSTOP to its heartbeat loop at {:.2}s", now.as_secs_f64()));
    }

    fn continue_stalls(&mut self, now: Duration) {
        self.stalls.retain(|stall| {
            let due = now >= stall.until;
            if due {
                procs::signal_verified(stall.pid, stall.start_ticks, Signal::Cont);
            }
            !due
        });
    }

    /// Ends step commands still running (by pid: they are our children).
    pub fn end_all(&mut self) {
        self.commands.iter_mut().for_each(|step| step.proc.end(true));
    }
}

fn is_due(step: &Step, seen: Option<Duration>, now: Duration) -> bool {
    match &step.trigger {
        Trigger::At { at_ms } => now >= Duration::from_millis(*at_ms),
        Trigger::On { delay_ms, .. } => seen.is_some_and(|at| now >= at + Duration::from_millis(*delay_ms)),
    }
}

fn read_agent(world: &RealWorld, agent: &str) -> Option<wg_core::model::Agent> {
    let bytes = std::fs::read(world.paths.registry()).ok()?;
    wg_core::registry::Registry::parse(&bytes).ok()?.agent(agent).cloned()
}

/// `spawn A`: A has a pid. `exit A`: A's process is gone. `signal A`: a stop of A began (a
/// retry or kill records its stop request before it signals), or A is already gone.
fn event_happened(event: &str, state: &State) -> bool {
    let Some((kind, agent)) = event.split_once(' ') else { return false };
    let Some(entry) = state.registry.agent(agent) else { return false };
    match kind {
        "spawn" => entry.pid > 0,
        "exit" => entry.pid > 0 && !procs::is_live(entry),
        "signal" => entry.stop_requested.is_some() || (entry.pid > 0 && !procs::is_live(entry)),
        _ => false,
    }
}

/// Starts one `wg` process with the words of the step's line (checked by `wg`'s own grammar when
/// the scenario was read), and its `WG_AGENT_ID=A` if it has one, as an agent has it.
fn start_command(
    world: &RealWorld,
    line: &CommandLine,
    index: usize,
) -> Result<(OurChild, std::path::PathBuf), SetupError> {
    let create = |path: std::path::PathBuf| {
        std::fs::File::create(&path).map_err(|source| SetupError::file("create", &path, source))
    };
    let stderr_path = world.root.join(format!("step-{index}.err"));
    let stderr = create(stderr_path.clone())?;
    let stdout = create(world.root.join(format!("step-{index}.out")))?;
    let mut process = Process::new(&world.wg);
    process.arg("--dir").arg(&world.paths.dir).args(&line.args).env_remove("WG_AGENT_ID").env_remove("WG_DIR");
    if let Some(agent) = &line.agent {
        process.env(command_line::AGENT_VARIABLE, agent);
    }
    process.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
    // Its own group: a `wg` that signalled "its own group" by mistake could not reach us.
    Ok((OurChild::start(&mut process, true)?, stderr_path))
}
