//! The spawn gate. An agent starts held: its shell waits on a pipe until the dispatcher has
//! recorded its pid in the registry, and kills itself unrun if the dispatcher closes the pipe or
//! dies first. So a crash between spawning and recording never leaves an unrecorded agent at work.

use super::procfs::read_start_ticks;
use nix::sys::signal::SigSet;
use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use wg_core::ports::{SpawnError, SpawnRequest};

/// The agent's shell waits on fd 3 for the spawner's go before it runs the task's command
/// (`exec` keeps pid and start time). If the spawner closes the gate or dies first, `read` sees
/// end-of-file and the shell kills itself: a death by signal, which the reaper re-queues.
const AGENT_GATE: &str = r#"read -r _ <&3 || kill -KILL $$; exec 3<&-; exec sh -c "$WG_AGENT_COMMAND""#;

/// The fd the gate's read end gets in the agent.
const GATE_FD: i32 = 3;

/// Spawns `sh -c` behind its gate, in its own process group: the child's pid, its start
/// ticks, and the gate's write end (dropping it closes the gate: the agent ends unrun).
pub(super) fn spawn(wg_dir: &Path, request: &SpawnRequest) -> Result<(i32, Option<u64>, OwnedFd), SpawnError> {
    let log = open_log(wg_dir, &request.agent_id)?;
    let log_err = log.try_clone().map_err(|error| SpawnError::io("output.log", &error))?;
    // Both ends close on exec, so no other child inherits the write end and keeps a gate open.
    let (gate_read, gate_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|error| SpawnError::io("gate pipe", &error.into()))?;
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(AGENT_GATE)
        // Own group: a kill reaches the agent's whole group, and never ours.
        .process_group(0)
        .env("WG_AGENT_COMMAND", &request.command)
        .env("WG_TASK_ID", &request.task_id)
        .env("WG_AGENT_ID", &request.agent_id)
        .env("WG_DIR", wg_dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let gate_read_raw = gate_read.as_raw_fd();
    // The service blocks SIGTERM/SIGINT/SIGCHLD for its signalfd, and a blocked mask survives
    // fork and exec: without clearing it an agent could never be stopped by SIGTERM. The gate's
    // read end goes to fd 3 without close-on-exec.
    // SAFETY: runs in the forked child before exec; it only makes plain syscalls
    // (pthread_sigmask, dup2, fcntl), which are async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            SigSet::empty().thread_set_mask().map_err(std::io::Error::from)?;
            if gate_read_raw == GATE_FD {
                let flags = nix::fcntl::FdFlag::empty();
                nix::fcntl::fcntl(GATE_FD, nix::fcntl::FcntlArg::F_SETFD(flags)).map_err(std::io::Error::from)?;
            } else {
                nix::unistd::dup2(gate_read_raw, GATE_FD).map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|error| SpawnError::CouldNotStart {
        program: "`sh -c`".to_string(),
        agent_id: request.agent_id.clone(),
        kind: error.kind(),
        message: error.to_string(),
    })?;
    drop(gate_read);
    // `Child` does not wait on drop; we reap by pid with waitpid.
    let pid = i32::try_from(child.id()).map_err(|_| SpawnError::PidOutOfRange(child.id()))?;
    // Unreaped, the child keeps its pid (even as a zombie), so this reads the right process.
    Ok((pid, read_start_ticks(pid), gate_write))
}

/// `<wg_dir>/agents/<agent-id>/output.log`, appended to.
fn open_log(wg_dir: &Path, agent_id: &str) -> Result<File, SpawnError> {
    // The id becomes a directory name: it must not climb out of `agents/`.
    if agent_id.is_empty() || agent_id == "." || agent_id == ".." || agent_id.contains(['/', '\0']) {
        return Err(SpawnError::BadAgentId(agent_id.to_string()));
    }
    let dir = wg_dir.join("agents").join(agent_id);
    fs::create_dir_all(&dir).map_err(|error| SpawnError::io(dir.display().to_string(), &error))?;
    let path = dir.join("output.log");
    let file = OpenOptions::new().create(true).append(true).open(&path);
    file.map_err(|error| SpawnError::io(path.display().to_string(), &error))
}

/// Opens the gate (`go`: the agent runs its command) or closes it (the agent ends unrun).
pub(super) fn release(gate: OwnedFd, go: bool) {
    if go {
        // A failed write leaves the gate to close when `gate` drops here: the agent ends unrun,
        // and the reaper re-queues its task.
        let _ = rustix::io::write(&gate, b"go\n");
    }
}
