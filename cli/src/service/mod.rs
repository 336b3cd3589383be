//! `wg service run|start|stop|status`: the dispatcher and reaper around the core's `reap` and
//! `dispatch`.
//!
//! The dispatcher loop runs on the main thread: sweep (reap, then dispatch), then wait on the
//! [`Doorbell`] until a child exits, a command commits a change, a stop is asked for, or the poll
//! interval passes. Two watcher threads ring it: one reads a signalfd (SIGCHLD rings, SIGTERM and
//! SIGINT stop), one receives the datagrams every `wg` command sends to the wake socket after a
//! commit. A `wg retry` therefore gets its new agent at once, not at the next tick. Only the main
//! thread touches the store and the processes: the watchers only ring.

pub mod doorbell;

use crate::commands::{absolute, Ports};
use crate::config::load_settings;
use crate::output::{CliError, Output, EXIT_NOT_RUNNING};
use crate::system::clock::{epoch_ms_now, SystemClock};
use crate::system::processes::{read_start_ticks, SystemProcesses};
use crate::system::store::{read_small, write_atomically, FileStore, WgPaths};
use doorbell::{Doorbell, Wake};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use serde_json::json;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wg_core::block_on;
use wg_core::ops::{dispatch, reap};

/// What the pid file of a running service says.
#[derive(serde::Serialize, serde::Deserialize)]
struct ServiceRecord {
    pid: i32,
    start_ticks: u64,
    started_at: String,
}

pub fn run(dir: &Path) -> Result<Output, CliError> {
    let paths = WgPaths::new(dir);
    if !paths.graph().is_file() {
        return Err(CliError::new(format!(
            "{} is not a workgraph folder (run `wg init`, or pass --dir)",
            dir.display()
        )));
    }
    if let Some(record) = running_service(&paths) {
        return Err(CliError::new(format!("a service already runs for {} (pid {})", dir.display(), record.pid)));
    }
    let settings = load_settings(&paths.config()).map_err(|error| CliError::new(error.to_string()))?;
    return_large_blocks_to_the_system();
    put_own_folder_on_path();
    let signals = block_signals()?;
    let socket = bind_wake_socket(&paths)?;
    write_record(&paths)?;
    let ports = Ports {
        clock: SystemClock,
        processes: SystemProcesses::new(absolute(dir)),
        store: FileStore::new(paths.clone(), false).caching(),
        settings,
        actor: format!("wg service (pid {})", std::process::id()),
    };
    eprintln!("wg service: running for {} (pid {})", dir.display(), std::process::id());
    let result = serve(&ports, signals, socket);
    let _ = std::fs::remove_file(paths.wake_socket());
    let _ = std::fs::remove_file(paths.service_pid_file());
    result?;
    Ok(Output::new("wg service: stopped", json!({"ok": true, "stopped": true})))
}

/// The loop. Returns when SIGTERM or SIGINT arrives.
fn serve(ports: &Ports, signals: SignalFd, socket: UnixDatagram) -> Result<(), CliError> {
    let doorbell = Arc::new(Doorbell::new());
    watch_signals(signals, Arc::clone(&doorbell))?;
    watch_socket(socket, Arc::clone(&doorbell))?;
    let interval = Duration::from_millis(ports.settings.poll_interval_ms);
    loop {
        sweep(ports);
        if doorbell.wait(&(Instant::now() + interval)) == Wake::Stop {
            eprintln!("wg service: stopping (agents keep running; the next service adopts them)");
            return Ok(());
        }
    }
}

/// SIGCHLD rings (a child exited: reap it now); SIGTERM and SIGINT stop the loop.
fn watch_signals(signals: SignalFd, doorbell: Arc<Doorbell>) -> Result<(), CliError> {
    let watcher = move || loop {
        match signals.read_signal() {
            Ok(Some(info)) if info.ssi_signo == Signal::SIGCHLD as u32 => doorbell.ring(),
            Ok(Some(_)) => return doorbell.stop(),
            Ok(None) | Err(nix::errno::Errno::EINTR) => {}
            Err(errno) => {
                eprintln!("wg service: reading signals failed ({errno}); stopping");
                return doorbell.stop();
            }
        }
    };
    spawn_watcher("signals", watcher)
}

/// Every datagram on the wake socket is a command's commit: ring.
fn watch_socket(socket: UnixDatagram, doorbell: Arc<Doorbell>) -> Result<(), CliError> {
    let watcher = move || {
        let mut buffer = [0u8; 64];
        loop {
            match socket.recv(&mut buffer) {
                Ok(_) => doorbell.ring(),
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // Without wake-ups the loop still sweeps every poll interval.
                    eprintln!("wg service: wake socket failed ({error}); falling back to the poll interval");
                    return;
                }
            }
        }
    };
    spawn_watcher("wake-socket", watcher)
}

fn spawn_watcher(name: &str, watcher: impl FnOnce() + Send + 'static) -> Result<(), CliError> {
    std::thread::Builder::new()
        .name(format!("wg-service-{name}"))
        .spawn(watcher)
        .map(drop)
        .map_err(|e| CliError::new(format!("wg service: cannot start the {name} watcher: {e}")))
}

/// One reaper sweep and one dispatcher tick; failures are reported and the loop goes on, since a
/// bad line in the graph is for a person to fix while the service waits.
fn sweep(ports: &Ports) {
    let ctx = ports.ctx();
    match block_on(reap(ctx, &ports.settings)) {
        Ok(reaped) => {
            for event in reaped {
                let task_now = event.task_now.map(|status| format!(", task now {status}")).unwrap_or_default();
                eprintln!("wg service: reaped {} of {}: {}{task_now}", event.agent_id, event.task_id, event.cause);
            }
        }
        Err(error) => eprintln!("wg service: reaper: {error}"),
    }
    match block_on(dispatch(ctx, &ports.settings)) {
        Ok(dispatched) => {
            for event in dispatched {
                match event.result {
                    Ok(pid) => eprintln!("wg service: spawned {} (pid {pid}) for {}", event.agent_id, event.task_id),
                    Err(why) => {
                        eprintln!("wg service: could not spawn {} for {}: {why}", event.agent_id, event.task_id)
                    }
                }
            }
        }
        Err(error) => eprintln!("wg service: dispatcher: {error}"),
    }
    ports.processes.reap_children();
}

/// The service lives long and reads the graph again after each change. Left alone, glibc raises
/// its mmap threshold to the size of the last large block freed (up to 32 MiB), so the next graph
/// (tens of MB) comes from the heap, which is seldom given back: resident memory creeps above the
/// graph's size. A fixed 1 MiB threshold keeps every large buffer mapped on its own and unmapped
/// when dropped.
fn return_large_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Agents call `wg done` and friends: make sure they find this very binary.
fn put_own_folder_on_path() {
    let Some(folder) = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf)) else { return };
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut folders: Vec<_> = std::env::split_paths(&path).collect();
    if !folders.contains(&folder) {
        folders.insert(0, folder);
        // Set before any thread or child exists, so nothing reads the environment concurrently.
        std::env::set_var("PATH", std::env::join_paths(folders).unwrap_or(path));
    }
}

fn block_signals() -> Result<SignalFd, CliError> {
    let mut mask = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        mask.add(signal);
    }
    // Blocked before any thread starts, so every thread inherits the mask and only the signalfd
    // sees these signals. Agents get a clear mask at spawn (see system::processes).
    mask.thread_block().map_err(|e| CliError::new(format!("wg service: cannot block signals: {e}")))?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| CliError::new(format!("wg service: cannot create a signalfd: {e}")))
}

fn bind_wake_socket(paths: &WgPaths) -> Result<UnixDatagram, CliError> {
    let path = paths.wake_socket();
    let _ = std::fs::remove_file(&path); // stale from a crashed service; running_service() said none runs
    let socket =
        UnixDatagram::bind(&path).map_err(|e| CliError::new(format!("cannot bind {}: {e}", path.display())))?;
    Ok(socket)
}

fn write_record(paths: &WgPaths) -> Result<(), CliError> {
    let pid = std::process::id() as i32;
    let start_ticks = read_start_ticks(pid).unwrap_or(0);
    let record = ServiceRecord { pid, start_ticks, started_at: wg_core::time::format_rfc3339(epoch_ms_now()) };
    let text = serde_json::to_string_pretty(&record).expect("records serialize");
    remove_dead_writers_temporaries(paths);
    write_atomically(&paths.service_pid_file(), text.as_bytes())?;
    Ok(())
}

/// The record is written without the store's locks, so a temp file of it is stale only when the
/// process named in its suffix (`write_atomically` names them `.<file>.tmp.<pid>`) is gone: a
/// service killed while starting.
fn remove_dead_writers_temporaries(paths: &WgPaths) {
    let record = paths.service_pid_file();
    let Some(name) = record.file_name().and_then(|name| name.to_str()) else { return };
    let prefix = format!(".{name}.tmp.");
    let Ok(entries) = std::fs::read_dir(paths.service_dir()) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let writer = file.to_str().and_then(|file| file.strip_prefix(&prefix)).and_then(|pid| pid.parse::<i32>().ok());
        if writer.is_some_and(|pid| read_start_ticks(pid).is_none()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether a service runs for this folder (as `wg service status` decides).
pub fn is_running(dir: &Path) -> bool {
    running_service(&WgPaths::new(dir)).is_some()
}

/// The service recorded in the pid file, if that very process still runs.
fn running_service(paths: &WgPaths) -> Option<ServiceRecord> {
    let text = read_small(&paths.service_pid_file()).ok()?;
    let record: ServiceRecord = serde_json::from_str(&text).ok()?;
    (read_start_ticks(record.pid) == Some(record.start_ticks)).then_some(record)
}

pub fn start(dir: &Path) -> Result<Output, CliError> {
    let paths = WgPaths::new(dir);
    if let Some(record) = running_service(&paths) {
        return Ok(Output::new(
            format!("the service already runs (pid {})", record.pid),
            json!({"ok": true, "pid": record.pid, "started": false}),
        ));
    }
    let exe = std::env::current_exe().map_err(|e| CliError::new(format!("cannot find the wg binary: {e}")))?;
    std::fs::create_dir_all(paths.service_dir())
        .map_err(|e| CliError::new(format!("cannot create {}: {e}", paths.service_dir().display())))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(paths.service_log())
        .map_err(|e| CliError::new(format!("cannot open {}: {e}", paths.service_log().display())))?;
    let mut command = std::process::Command::new(exe);
    command.arg("--dir").arg(absolute(dir)).args(["service", "run"]);
    command
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(|e| CliError::new(e.to_string()))?)
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().map_err(|e| CliError::new(format!("cannot start the service: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(record) = running_service(&paths) {
            return Ok(Output::new(
                format!("service started (pid {}); log: {}", record.pid, paths.service_log().display()),
                json!({"ok": true, "pid": record.pid, "started": true}),
            ));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(CliError::new(format!(
                "the service exited at once ({status}); see {}",
                paths.service_log().display()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(CliError::new(format!("the service did not come up within 5 s; see {}", paths.service_log().display())))
}

pub fn stop(dir: &Path) -> Result<Output, CliError> {
    let paths = WgPaths::new(dir);
    let Some(record) = running_service(&paths) else {
        return Ok(Output::new("no service runs; nothing to stop", json!({"ok": true, "stopped": false})));
    };
    crate::system::processes::terminate_one(record.pid, record.start_ticks, Duration::from_secs(10))
        .map_err(|why| CliError::new(format!("could not stop the service (pid {}): {why}", record.pid)))?;
    Ok(Output::new(
        format!("service stopped (pid {}); its agents keep running", record.pid),
        json!({"ok": true, "stopped": true, "pid": record.pid}),
    ))
}

pub fn status(dir: &Path) -> Result<Output, CliError> {
    let paths = WgPaths::new(dir);
    match running_service(&paths) {
        Some(record) => Ok(Output::new(
            format!("the service runs (pid {}, since {})", record.pid, record.started_at),
            json!({"ok": true, "running": true, "pid": record.pid, "started_at": record.started_at}),
        )),
        None => Ok(Output::new(
            "the service is not running; start it with `wg service start`",
            json!({"ok": true, "running": false}),
        )
        .with_exit_code(EXIT_NOT_RUNNING)),
    }
}
