//! The real processes port against real processes: every test ends what it started, by pid.

use super::pidfd::now_ms;
use super::tree::with_descendants;
use super::*;
use nix::sys::wait::waitpid;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::process::{kill_process, Signal as RawSignal};
use std::collections::BTreeSet;
use std::fs;
use std::process::Command;
use std::time::Duration;
use std::time::Instant;
use wg_core::block_on;

fn request(agent_id: &str, command: &str) -> SpawnRequest {
    SpawnRequest { task_id: "task-1".into(), agent_id: agent_id.into(), command: command.into() }
}

/// Spawns and opens the gate at once, as the dispatcher does after recording the pid.
fn spawn_released(processes: &SystemProcesses, request: &SpawnRequest) -> Result<Spawned, SpawnError> {
    let spawned = block_on(processes.spawn(request))?;
    block_on(processes.release(&spawned, true));
    Ok(spawned)
}

#[test]
fn a_closed_gate_ends_the_agent_before_it_runs_anything() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let command = format!("touch {}", marker.display());
    for close in ["by release", "by the spawner going away"] {
        let processes = SystemProcesses::new(dir.path().to_path_buf());
        let spawned = block_on(processes.spawn(&request("agent-1", &command))).expect("spawns");
        let process = ProcessRef { pid: spawned.pid, start_ticks: spawned.start_ticks, started_at_ms: None };
        if close == "by release" {
            block_on(processes.release(&spawned, false));
        } else {
            drop(processes.gates.borrow_mut().remove(&(spawned.pid as i32)));
        }
        let deadline_ms = now_ms() + 5_000;
        assert_eq!(block_on(processes.wait_exit(&process, deadline_ms)), ExitWait::Exited, "gate closed {close}");
        assert_eq!(block_on(processes.liveness(&process)), Liveness::Gone(ExitKind::Died), "{close}");
        assert!(!marker.exists(), "the command never ran (gate closed {close})");
    }
}

fn process_ref(spawned: Spawned) -> ProcessRef {
    ProcessRef { pid: spawned.pid, start_ticks: spawned.start_ticks, started_at_ms: None }
}

fn in_ms(duration_ms: i64) -> EpochMs {
    now_ms() + duration_ms
}

/// Gone, a zombie, or the pid holds another process now.
fn is_gone(member: Member) -> bool {
    read_stat(member.pid).is_none_or(|stat| stat.has_ended() || stat.start_ticks != member.start_ticks)
}

/// Test set-up only: waits (by looking every 10 ms) until `ready`, at most `limit_ms`.
fn wait_for(limit_ms: u64, ready: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(limit_ms) {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    ready()
}

/// The running tree below `leader`: its group and descendants, zombies left out.
fn live_tree(leader: i32) -> BTreeMap<i32, u64> {
    let table: Vec<ProcStat> = scan_processes().into_iter().filter(|stat| !stat.has_ended()).collect();
    let mut roots: BTreeSet<i32> = table.iter().filter(|stat| stat.pgid == leader).map(|stat| stat.pid).collect();
    roots.insert(leader);
    with_descendants(roots, &table)
}

/// Kills (SIGKILL, by verified pid) whatever a test started and did not stop, and reaps the
/// children among them, so no test leaves anything behind even when it fails.
struct Cleanup {
    children: Vec<Member>,
    others: Vec<Member>,
}

impl Cleanup {
    fn new() -> Cleanup {
        Cleanup { children: Vec::new(), others: Vec::new() }
    }

    fn child(&mut self, spawned: Spawned) -> Member {
        let pid = i32::try_from(spawned.pid).expect("pid fits i32");
        let member = Member { pid, start_ticks: spawned.start_ticks.expect("start ticks read at spawn") };
        self.children.push(member);
        member
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Repeated: a parent may have forked after our scan and before its SIGKILL.
        for _ in 0..50 {
            let mut doomed: Vec<Member> = self.others.iter().copied().filter(|m| !is_gone(*m)).collect();
            for child in &self.children {
                let tree = live_tree(child.pid).into_iter();
                doomed.extend(tree.map(|(pid, start_ticks)| Member { pid, start_ticks }));
            }
            if doomed.is_empty() {
                break;
            }
            for member in doomed {
                let verified = read_start_ticks(member.pid) == Some(member.start_ticks);
                if let (true, Ok(pid)) = (verified, guard_pid(i64::from(member.pid))) {
                    let _ = kill_process(Pid::from_raw(pid).expect("guarded pid > 1"), RawSignal::Kill);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for child in &self.children {
            // Blocks only for a child we just killed; ECHILD if SystemProcesses reaped it.
            let _ = waitpid(nix::unistd::Pid::from_raw(child.pid), None);
        }
    }
}

#[test]
fn parse_stat_reads_fields_after_the_last_parenthesis() {
    let line = "4242 (we(ird) )name) S 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1 2 3";
    let stat = parse_stat(line).expect("parses");
    assert_eq!(stat, ProcStat { pid: 4242, state: 'S', ppid: 17, pgid: 4242, start_ticks: 98765 });
    assert_eq!(parse_stat("12 (short) S 1 2"), None);
    assert_eq!(parse_stat("garbage"), None);
}

#[test]
fn read_start_ticks_of_this_process_is_stable() {
    let own = rustix::process::getpid().as_raw_nonzero().get();
    let first = read_start_ticks(own).expect("own stat readable");
    assert_eq!(read_start_ticks(own), Some(first));
    assert_eq!(read_stat(own).map(|stat| stat.pid), Some(own));
}

#[test]
fn guard_pid_refuses_our_own_pid_and_group() {
    let own_pid = rustix::process::getpid().as_raw_nonzero().get();
    let own_pgid = rustix::process::getpgrp().as_raw_nonzero().get();
    assert!(guard_pid(i64::from(own_pid)).is_err());
    assert!(guard_pid(i64::from(own_pgid)).is_err());
    assert!(guard_pid(0).is_err() && guard_pid(1).is_err() && guard_pid(-1).is_err());
    assert!(guard_pid(i64::MAX).is_err());
    // Refused pids are reported, never looked at, by liveness (which sends nothing).
    let processes = SystemProcesses::new(PathBuf::from("/nonexistent/.wg"));
    let own = ProcessRef { pid: i64::from(own_pid), start_ticks: None, started_at_ms: None };
    assert!(matches!(block_on(processes.liveness(&own)), Liveness::Refused(_)));
}

#[test]
fn start_epoch_ms_adds_ticks_to_boot_time() {
    assert_eq!(start_epoch_ms(250, 1_700_000_000, 100), 1_700_000_002_500);
    assert_eq!(start_epoch_ms(0, 10, 0), 10_000);
}

#[test]
fn identity_without_ticks_rejects_a_process_started_after_the_entry() {
    let own = rustix::process::getpid().as_raw_nonzero().get();
    let ticks = read_start_ticks(own).expect("own stat readable");
    let entry =
        |started_at_ms| ProcessRef { pid: i64::from(own), start_ticks: None, started_at_ms: Some(started_at_ms) };
    assert!(check_identity(&entry(now_ms()), ticks).is_ok());
    assert!(check_identity(&entry(now_ms() - 3_600_000), ticks).is_err());
    let exact = ProcessRef { pid: i64::from(own), start_ticks: Some(ticks), started_at_ms: None };
    assert!(check_identity(&exact, ticks).is_ok());
    assert!(check_identity(&exact, ticks + 1).is_err());
}

#[test]
fn spawn_exports_env_and_appends_output_to_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let processes = SystemProcesses::new(dir.path().join(".wg"));
    let mut cleanup = Cleanup::new();
    let command = r#"echo "$WG_TASK_ID $WG_AGENT_ID $WG_DIR"; echo oops >&2; read line || echo "stdin closed""#;
    let spawned = spawn_released(&processes, &request("agent-7", command)).expect("spawns");
    cleanup.child(spawned);
    assert_eq!(block_on(processes.wait_exit(&process_ref(spawned), in_ms(5_000))), ExitWait::Exited);
    let log = fs::read_to_string(dir.path().join(".wg/agents/agent-7/output.log")).expect("log written");
    let wg_dir = dir.path().join(".wg");
    assert_eq!(log, format!("task-1 agent-7 {}\noops\nstdin closed\n", wg_dir.display()));
    let escape = spawn_released(&processes, &request("../escape", "true"));
    assert_eq!(escape, Err(SpawnError::BadAgentId("../escape".into())));
}

#[test]
fn spawn_unblocks_the_signals_the_service_blocks() {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal as NixSignal};
    let dir = tempfile::tempdir().expect("tempdir");
    let processes = SystemProcesses::new(dir.path().join(".wg"));
    let mut cleanup = Cleanup::new();
    // The service blocks SIGTERM for its signalfd; a mask is inherited across exec.
    let mut blocked = SigSet::empty();
    blocked.add(NixSignal::SIGTERM);
    let mut previous = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&blocked), Some(&mut previous)).expect("blocks");
    let spawned = spawn_released(&processes, &request("agent-1", "exec sleep 30"));
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None).expect("restores");
    let spawned = spawned.expect("spawns");
    let leader = cleanup.child(spawned);
    // Look at `sleep`, not at sh, which blocks everything for a moment around its own forks.
    let comm = || fs::read_to_string(format!("/proc/{}/comm", leader.pid)).unwrap_or_default();
    assert!(wait_for(5_000, || comm() == "sleep\n"), "comm: {:?}", comm());
    let status = fs::read_to_string(format!("/proc/{}/status", leader.pid)).expect("status readable");
    let sig_blk = status.lines().find_map(|line| line.strip_prefix("SigBlk:")).expect("SigBlk line");
    let mask = u64::from_str_radix(sig_blk.trim(), 16).expect("hex mask");
    assert_eq!(mask & (1 << (libc_sigterm() - 1)), 0, "SIGTERM blocked in the agent: {mask:x}");
    let process = process_ref(spawned);
    assert_eq!(block_on(processes.signal(&process, Signal::Term)), SignalOutcome::Delivered);
    assert_eq!(block_on(processes.wait_exit(&process, in_ms(2_000))), ExitWait::Exited);
}

fn libc_sigterm() -> u32 {
    RawSignal::Term as u32
}

#[test]
fn spawned_agent_is_alive_then_gone_with_its_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let processes = SystemProcesses::new(dir.path().join(".wg"));
    let mut cleanup = Cleanup::new();
    let spawned = spawn_released(&processes, &request("agent-1", "sleep 0.3; exit 3")).expect("spawns");
    let leader = cleanup.child(spawned);
    assert_eq!(read_stat(leader.pid).map(|stat| stat.pgid), Some(leader.pid), "own process group");
    let process = process_ref(spawned);
    assert_eq!(block_on(processes.liveness(&process)), Liveness::Alive);
    assert_eq!(block_on(processes.wait_exit(&process, in_ms(5_000))), ExitWait::Exited);
    assert_eq!(block_on(processes.liveness(&process)), Liveness::Gone(ExitKind::Code(3)));
    assert_eq!(read_stat(leader.pid), None, "reaped, not left a zombie");
}

#[test]
fn term_stops_a_cooperative_agent_quickly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let processes = SystemProcesses::new(dir.path().join(".wg"));
    let mut cleanup = Cleanup::new();
    let spawned = spawn_released(&processes, &request("agent-1", "sleep 30")).expect("spawns");
    cleanup.child(spawned);
    let process = process_ref(spawned);
    let start = Instant::now();
    assert_eq!(block_on(processes.signal(&process, Signal::Term)), SignalOutcome::Delivered);
    assert_eq!(block_on(processes.wait_exit(&process, in_ms(10_000))), ExitWait::Exited);
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
    assert!(matches!(block_on(processes.liveness(&process)), Liveness::Gone(_)));
    assert!(processes.tree_snapshot(cleanup.children[0].pid).into_iter().all(is_gone));
}

#[test]
fn an_agent_ignoring_term_times_out_then_dies_of_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let processes = SystemProcesses::new(dir.path().join(".wg"));
    let mut cleanup = Cleanup::new();
    let spawned = spawn_released(&processes, &request("agent-1", "trap '' TERM; sleep 30")).expect("spawns");
    let leader = cleanup.child(spawned);
    // The sleep exists only after the trap was set.
    assert!(wait_for(5_000, || live_tree(leader.pid).len() == 2));
    let process = process_ref(spawned);
    assert_eq!(block_on(processes.signal(&process, Signal::Term)), SignalOutcome::Delivered);
    let start = Instant::now();
    assert_eq!(block_on(processes.wait_exit(&process, in_ms(200))), ExitWait::TimedOut);
    assert!(start.elapsed() >= Duration::from_millis(150), "waited only {:?}", start.elapsed());
    assert_eq!(block_on(processes.liveness(&process)), Liveness::Alive);
    assert_eq!(block_on(processes.signal(&process, Signal::Kill)), SignalOutcome::Delivered);
    assert_eq!(block_on(processes.wait_exit(&process, in_ms(5_000))), ExitWait::Exited);
    let snapshot = processes.tree_snapshot(leader.pid);
    assert_eq!(snapshot.len(), 2, "sh and sleep: {snapshot:?}");
    assert!(snapshot.into_iter().all(is_gone));
    assert_eq!(block_on(processes.liveness(&process)), Liveness::Gone(ExitKind::Died));
}

#[test]
fn signal_reaches_group_grandchildren_and_setsid_descendants() {
    let dir = tempfile::tempdir().expect("tempdir");
    let processes = SystemProcesses::new(dir.path().join(".wg"));
    let mut cleanup = Cleanup::new();
    let command = "sleep 30 & (sleep 30 &); setsid sleep 30 & sh -c 'sleep 30' & wait";
    let spawned = spawn_released(&processes, &request("agent-1", command)).expect("spawns");
    let leader = cleanup.child(spawned);
    // sh, three sleeps, the inner sh and its sleep (the subshell that forked one has exited).
    assert!(wait_for(5_000, || live_tree(leader.pid).len() == 6), "tree: {:?}", live_tree(leader.pid));
    let before = live_tree(leader.pid);
    cleanup.others.extend(before.iter().map(|(&pid, &start_ticks)| Member { pid, start_ticks }));
    let pgid_of = |pid: &i32| read_stat(*pid).map(|stat| stat.pgid);
    assert!(before.keys().any(|pid| pgid_of(pid) != Some(leader.pid)), "one left the group via setsid");
    assert!(before.keys().any(|pid| read_stat(*pid).is_some_and(|stat| stat.ppid != leader.pid)));
    let process = process_ref(spawned);
    assert_eq!(block_on(processes.signal(&process, Signal::Term)), SignalOutcome::Delivered);
    assert_eq!(block_on(processes.wait_exit(&process, in_ms(10_000))), ExitWait::Exited);
    let snapshot: BTreeSet<Member> = processes.tree_snapshot(leader.pid).into_iter().collect();
    let expected: BTreeSet<Member> = before.iter().map(|(&pid, &start_ticks)| Member { pid, start_ticks }).collect();
    assert_eq!(snapshot, expected);
    assert!(snapshot.into_iter().all(is_gone));
}

#[test]
fn wrong_start_ticks_are_not_ours_and_nothing_is_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let processes = SystemProcesses::new(dir.path().join(".wg"));
    let mut cleanup = Cleanup::new();
    let spawned = spawn_released(&processes, &request("agent-1", "sleep 30")).expect("spawns");
    let leader = cleanup.child(spawned);
    let stranger = ProcessRef { start_ticks: Some(leader.start_ticks + 1), ..process_ref(spawned) };
    assert!(matches!(block_on(processes.signal(&stranger, Signal::Kill)), SignalOutcome::NotOurs(_)));
    assert_eq!(block_on(processes.liveness(&stranger)), Liveness::Replaced);
    std::thread::sleep(Duration::from_millis(100));
    assert!(!is_gone(leader), "the process must still run");
    assert_eq!(block_on(processes.liveness(&process_ref(spawned))), Liveness::Alive);
    // Cleanup kills it directly.
}

#[test]
fn a_zombie_counts_as_gone() {
    let processes = SystemProcesses::new(PathBuf::from("/nonexistent/.wg"));
    // Started by the test itself, so SystemProcesses is not its parent and cannot reap it.
    let mut child = Command::new("true").spawn().expect("spawns");
    let pid = i32::try_from(child.id()).expect("pid fits");
    assert!(wait_for(5_000, || read_stat(pid).is_some_and(|stat| stat.has_ended())));
    let process = ProcessRef { pid: i64::from(pid), start_ticks: read_start_ticks(pid), started_at_ms: None };
    assert_eq!(block_on(processes.liveness(&process)), Liveness::Gone(ExitKind::Died));
    assert_eq!(block_on(processes.signal(&process, Signal::Term)), SignalOutcome::Gone);
    assert_eq!(block_on(processes.wait_exit(&process, in_ms(1_000))), ExitWait::Exited);
    assert!(child.wait().expect("reaped").success());
}

#[test]
fn our_own_zombie_child_is_gone_with_its_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let processes = SystemProcesses::new(dir.path().join(".wg"));
    let mut cleanup = Cleanup::new();
    let spawned = spawn_released(&processes, &request("agent-1", "exit 4")).expect("spawns");
    let leader = cleanup.child(spawned);
    assert!(wait_for(5_000, || read_stat(leader.pid).is_some_and(|stat| stat.has_ended())));
    assert_eq!(block_on(processes.signal(&process_ref(spawned), Signal::Term)), SignalOutcome::Gone);
    assert_eq!(block_on(processes.liveness(&process_ref(spawned))), Liveness::Gone(ExitKind::Code(4)));
    assert_eq!(read_stat(leader.pid), None, "liveness reaped it");
}

#[test]
fn signalling_a_pid_that_does_not_exist_is_gone() {
    let processes = SystemProcesses::new(PathBuf::from("/nonexistent/.wg"));
    // Above PID_MAX_LIMIT (2^22): no process can have it.
    let missing = ProcessRef { pid: 4_194_305, start_ticks: Some(1), started_at_ms: None };
    assert_eq!(block_on(processes.signal(&missing, Signal::Kill)), SignalOutcome::Gone);
    assert_eq!(block_on(processes.liveness(&missing)), Liveness::Gone(ExitKind::Died));
    assert_eq!(block_on(processes.wait_exit(&missing, in_ms(1_000))), ExitWait::Exited);
}

#[test]
fn reap_children_reports_exits_and_child_pidfds_wake_the_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    let processes = SystemProcesses::new(dir.path().join(".wg"));
    let mut cleanup = Cleanup::new();
    let spawned = spawn_released(&processes, &request("agent-1", "sleep 0.2; exit 5")).expect("spawns");
    let leader = cleanup.child(spawned);
    assert_eq!(processes.reap_children(), Vec::new());
    let pidfds = processes.child_pidfds();
    assert_eq!(pidfds.iter().map(|(pid, _)| *pid).collect::<Vec<_>>(), vec![leader.pid]);
    let mut poll_fds = [PollFd::new(&pidfds[0].1, PollFlags::IN)];
    assert_eq!(poll(&mut poll_fds, 5_000).expect("polls"), 1, "the exit wakes the poll");
    assert_eq!(processes.reap_children(), vec![(leader.pid, ExitKind::Code(5))]);
    assert!(processes.child_pidfds().is_empty());
    assert_eq!(block_on(processes.liveness(&process_ref(spawned))), Liveness::Gone(ExitKind::Code(5)));
}

#[test]
fn terminate_one_stops_a_single_verified_process() {
    let mut child = Command::new("sleep").arg("30").spawn().expect("spawns");
    let pid = i32::try_from(child.id()).expect("pid fits");
    let mut cleanup = Cleanup::new();
    cleanup.children.push(Member { pid, start_ticks: read_start_ticks(pid).expect("readable") });
    let ticks = cleanup.children[0].start_ticks;
    assert!(terminate_one(pid, ticks + 1, Duration::from_secs(1)).is_err(), "a stranger is refused");
    assert!(!is_gone(cleanup.children[0]));
    assert_eq!(terminate_one(pid, ticks, Duration::from_secs(5)), Ok(()));
    assert!(!child.wait().expect("reaped").success());
}
