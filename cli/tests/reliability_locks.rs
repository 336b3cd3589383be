//! Lock hygiene (issue 7, suite 5): a held lock makes a command fail within its bound, naming
//! the holder; a lock whose holder was SIGKILLed never blocks anyone afterwards.
//!
//! The holder is the `flock` command in its own process group (`flock -o`: only `flock` itself
//! holds the lock, its `sleep` does not), so the test can end exactly the processes it started.
//! `WG_RELIABILITY_RUNS=200` repeats the stale-lock test 200 times (default 10).

mod common;

use common::*;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `flock -o <file> sleep 30` in its own process group; SIGKILLed (whole group) on drop.
struct Holder {
    child: Child,
}

impl Holder {
    fn take(lock_file: &Path) -> Holder {
        let child = Command::new("flock")
            .arg("-o")
            .arg(lock_file)
            .args(["sleep", "30"])
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .expect("the flock command");
        let holder = Holder { child };
        let pid = holder.pid();
        wait_until("flock holds the lock", Duration::from_secs(5), || lock_holders(lock_file).contains(&pid));
        holder
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGKILL to `flock` alone, as a crash would; its `sleep` lives on (without the lock).
    fn crash(&mut self) {
        kill(Pid::from_raw(self.pid()), Signal::SIGKILL).unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // The group is ours: its leader is our child (not yet reaped, or reaped by `crash`, in
        // which case the group lives on in its `sleep` until this very signal).
        let _ = killpg(Pid::from_raw(self.pid()), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The pids /proc/locks names for `path`'s inode.
fn lock_holders(path: &Path) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(inode) = std::fs::metadata(path).map(|meta| meta.ino()) else { return Vec::new() };
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    locks
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let lock_inode: u64 = fields.get(5)?.rsplit(':').next()?.parse().ok()?;
            (lock_inode == inode).then(|| fields.get(4)?.parse().ok()).flatten()
        })
        .collect()
}

fn wg_with_timeout(wg: &Workgraph, timeout_ms: u64, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let output = Command::new(wg_binary())
        .arg("--dir")
        .arg(&wg.dir)
        .args(args)
        .env("WG_LOCK_TIMEOUT_MS", timeout_ms.to_string())
        .env_remove("WG_AGENT_ID")
        .output()
        .unwrap();
    (output, started.elapsed())
}

fn runs(default: usize) -> usize {
    std::env::var("WG_RELIABILITY_RUNS").ok().and_then(|text| text.parse().ok()).unwrap_or(default)
}

#[test]
fn a_command_that_cannot_lock_fails_within_its_bound_naming_the_holder_and_writes_nothing() {
    let mut wg = Workgraph::fresh();
    wg.wg_json(&["add", "Work", "--id", "t1"]);
    wg.start_agent("agent-1", "t2", "sleep 60");
    let files = [wg.graph_path(), wg.registry_path()];
    let before: Vec<Vec<u8>> = files.iter().map(|path| std::fs::read(path).unwrap()).collect();
    for lock_file in [wg.dir.join("graph.lock"), wg.dir.join("service/.registry.lock")] {
        let holder = Holder::take(&lock_file);
        let commands: [&[&str]; 6] = [
            &["add", "Blocked"],
            &["done", "t1"],
            &["fail", "t1", "--reason", "r"],
            &["retry", "t2"],
            &["heartbeat", "agent-1"],
            &["agents", "kill", "agent-1"],
        ];
        for args in commands {
            let (output, took) = wg_with_timeout(&wg, 300, args);
            let stderr = String::from_utf8_lossy(&output.stderr);
            eprintln!("{} held, wg {args:?}: exit {:?} after {took:?}", lock_file.display(), output.status.code());
            assert_eq!(output.status.code(), Some(1), "{args:?}: {}", describe(&output));
            assert!(took >= Duration::from_millis(300), "{args:?} waited its bound first ({took:?})");
            assert!(took < Duration::from_secs(3), "{args:?} did not hang ({took:?})");
            assert!(stderr.contains("still locked"), "{args:?}: {stderr}");
            assert!(stderr.contains(&format!("held by pid {}", holder.pid())), "{args:?} names the holder: {stderr}");
            assert!(stderr.contains("wait for that command to finish, or stop it"), "{args:?} says what to do");
        }
        let after: Vec<Vec<u8>> = files.iter().map(|path| std::fs::read(path).unwrap()).collect();
        assert!(before == after, "nothing was written while {} was held", lock_file.display());
    }
    // Reads need no lock.
    let (output, _) = wg_with_timeout(&wg, 300, &["list"]);
    assert!(output.status.success(), "{}", describe(&output));
}

#[test]
fn the_lock_timeout_message_states_a_sub_second_bound_as_it_was_given() {
    let wg = Workgraph::fresh();
    let _holder = Holder::take(&wg.dir.join("graph.lock"));
    let (output, _) = wg_with_timeout(&wg, 300, &["add", "Blocked"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("after 0 s"), "{stderr}");
    assert!(stderr.contains("300 ms") || stderr.contains("0.3 s"), "{stderr}");
}

#[test]
fn a_lock_whose_holder_was_sigkilled_never_blocks_afterwards() {
    let wg = Workgraph::fresh();
    let runs = runs(10);
    let mut slowest = Duration::ZERO;
    for run in 0..runs {
        let lock_file = if run % 2 == 0 { wg.dir.join("graph.lock") } else { wg.dir.join("service/.registry.lock") };
        let mut holder = Holder::take(&lock_file);
        holder.crash();
        // The lock file itself stays behind, as after any crash; it must not matter.
        assert!(lock_file.exists());
        let id = format!("after-crash-{run}");
        let (output, took) = wg_with_timeout(&wg, 2_000, &["--json", "add", "After a crash", "--id", &id]);
        assert!(output.status.success(), "run {run}: {}", describe(&output));
        assert!(took < Duration::from_secs(1), "run {run}: the stale lock did not block ({took:?})");
        slowest = slowest.max(took);
    }
    let listed = wg.wg_json(&["list"]);
    assert_eq!(listed["tasks"].as_array().unwrap().len(), runs);
    eprintln!("stale locks: {runs} holders SIGKILLed, 0 blocked the next command; slowest `wg add` {slowest:?}");
}

#[test]
fn a_lock_held_only_briefly_is_waited_for_not_failed() {
    let wg = Workgraph::fresh();
    let mut holder = Holder::take(&wg.dir.join("graph.lock"));
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        holder.crash();
        holder
    });
    let (output, took) = wg_with_timeout(&wg, 5_000, &["--json", "add", "Patient", "--id", "p"]);
    drop(releaser.join().unwrap());
    assert!(output.status.success(), "{}", describe(&output));
    assert!(took >= Duration::from_millis(150) && took < Duration::from_secs(3), "{took:?}");
}
