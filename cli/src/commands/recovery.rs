//! `wg retry` and `wg recover`.

use super::waiting::Announcing;
use super::Ports;
use crate::output::{CliError, Output};
use serde_json::json;
use std::path::Path;
use wg_args::StopArgs;
use wg_core::block_on;
use wg_core::ops::{recover as recover_op, retry as retry_op, RetryOutcome, StopResult};

pub fn retry(dir: &Path, task_id: &str, reason: &str, stop: &StopArgs) -> Result<Output, CliError> {
    let ports = Ports::for_command(dir, "retry")?;
    let options = stop.options(ports.settings.grace_ms);
    let processes = Announcing::on_terminal(&ports.processes, &ports.store);
    let ctx = ports.ctx_with(&processes);
    let outcome = block_on(retry_op(ctx, &ports.settings, task_id, reason, &options))?;
    let (human, kind, count) = match &outcome {
        RetryOutcome::Requeued { from, retry_count } => {
            (format!("{task_id} was {from}; re-queued (attempt {retry_count})"), "requeued", Some(*retry_count))
        }
        RetryOutcome::Restarted { agent_id, pid, stop, retry_count, .. } => {
            let stopped = match stop {
                StopResult::Stopped { escalated: false } if options.force => {
                    format!("stopped {agent_id} (pid {pid}, SIGKILL at once: --force)")
                }
                StopResult::Stopped { escalated: false } => format!("stopped {agent_id} (pid {pid}, SIGTERM)"),
                StopResult::Stopped { escalated: true } => {
                    format!("stopped {agent_id} (pid {pid}, SIGKILL after the grace period)")
                }
                StopResult::AlreadyGone => format!("{agent_id} (pid {pid}) had already exited"),
                StopResult::NotOurs(why) => format!("{agent_id}'s pid {pid} is not its process ({why}); not signalled"),
            };
            // What the user asked for happened: the agent is stopped and the task open. Whether
            // this command or the service (which sees its child exit at once) made the re-queue
            // is bookkeeping: it is in `--json` (`requeued_by_this_retry`) and in `wg show`'s log.
            (format!("{stopped}; {task_id} re-queued (attempt {retry_count})"), "restarted", Some(*retry_count))
        }
        RetryOutcome::AlreadyOpen => (format!("{task_id} is already open; nothing to retry"), "already-open", None),
        RetryOutcome::BackoffLifted { until_ms } => (
            format!(
                "{task_id} was held back by a crash-loop backoff until {}; lifted, the service starts it at its next poll",
                wg_core::time::format_rfc3339(*until_ms)
            ),
            "backoff-lifted",
            None,
        ),
        RetryOutcome::InFlight { agent_id, by } => {
            (format!("{by} is already stopping {agent_id} for {task_id}; nothing more to do"), "in-flight", None)
        }
        RetryOutcome::FinishedMeanwhile { agent_id } => {
            (format!("{agent_id} finished {task_id} while being stopped; it stays done"), "finished-meanwhile", None)
        }
    };
    let open_now = matches!(
        outcome,
        RetryOutcome::Requeued { .. }
            | RetryOutcome::Restarted { .. }
            | RetryOutcome::AlreadyOpen
            | RetryOutcome::BackoffLifted { .. }
    );
    let service_running = crate::service::is_running(dir);
    let human = if open_now && !service_running { format!("{human}\n{NO_SERVICE}") } else { human };
    // Whether this command's own transaction made the re-queue (false: the reaper, or another
    // retry, got there first and counted it; this one only logged its reason).
    let requeued_by_this_retry = match &outcome {
        RetryOutcome::Restarted { by_reaper, .. } => Some(!by_reaper),
        RetryOutcome::Requeued { .. } => Some(true),
        _ => None,
    };
    let body = json!({"ok": true, "task": task_id, "outcome": kind, "retry_count": count,
        "requeued_by_this_retry": requeued_by_this_retry, "service_running": service_running});
    Ok(Output::new(human, body))
}

/// Said when a task is left open and no service runs to start it.
const NO_SERVICE: &str = "no service runs: nothing will start it until the service runs: `wg service start`";

pub fn recover(dir: &Path, filter: Option<String>, keep_agency: bool, apply: bool) -> Result<Output, CliError> {
    let only_task =
        wg_args::recover_filter_task(filter.as_deref()).map_err(|unknown| CliError::new(unknown.to_string()))?;
    let ports = Ports::for_command(dir, "recover")?;
    let plan = block_on(recover_op(ports.ctx(), only_task.as_deref(), keep_agency, apply))?;
    let verb = if apply { "re-opened" } else { "would re-open" };
    let mut human = format!("{verb}: {}\n", list_or_none(&plan.requeued));
    if !keep_agency {
        let verb = if apply { "abandoned" } else { "would abandon" };
        human.push_str(&format!("{verb} companions: {}\n", list_or_none(&plan.companions_abandoned)));
    }
    if !apply {
        human.push_str("dry run: nothing changed; add --yes to apply\n");
    }
    let body = json!({"ok": true, "applied": apply, "requeued": plan.requeued, "companions_abandoned": plan.companions_abandoned});
    Ok(Output::new(human, body))
}

fn list_or_none(ids: &[String]) -> String {
    if ids.is_empty() {
        "none".to_string()
    } else {
        ids.join(", ")
    }
}
