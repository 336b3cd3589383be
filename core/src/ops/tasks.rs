//! The plain task commands: add, done, fail, heartbeat, recover.

use super::{requeue, OpError};
use crate::model::{is_companion_id, Task, TaskStatus};
use crate::ports::{Clock, Ctx, Processes, State, Store};
use crate::time::format_rfc3339;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewTask {
    pub id: Option<String>,
    pub title: String,
    pub exec: Option<String>,
    pub after: Vec<String>,
    pub max_retries: Option<u32>,
    pub tags: Vec<String>,
}

/// Adds a task; its id is given or derived from the title. Returns the id.
pub async fn add_task<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    new: &NewTask,
) -> Result<String, OpError> {
    check_new_task(new)?;
    let now = format_rfc3339(ctx.clock.now_ms());
    ctx.store
        .transact(|state| {
            let id = match &new.id {
                Some(id) => id.clone(),
                None => free_id(state, &slug(&new.title)),
            };
            if let Some(missing) = new.after.iter().find(|dependency| state.graph.task(dependency).is_none()) {
                return Err(OpError::Refused(format!("--after {missing}: no such task (see `wg list`)")));
            }
            let mut task = Task::new(&id, &new.title);
            task.exec = new.exec.clone();
            task.after = new.after.clone();
            task.max_retries = new.max_retries;
            task.tags = new.tags.clone();
            task.created_at = Some(now.clone());
            state.graph.add_task(task).map_err(OpError::Refused)?;
            Ok(id)
        })
        .await?
}

/// A task needs a title, and an id others can name on a command line and in a path
/// (`.wg/agents/<agent>/` is per agent, but tools build paths from task ids too).
fn check_new_task(new: &NewTask) -> Result<(), OpError> {
    if new.title.trim().is_empty() {
        return Err(OpError::Refused("the title is empty: say in a few words what the task is".into()));
    }
    let Some(id) = &new.id else { return Ok(()) };
    let unfit = id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/');
    if unfit {
        return Err(OpError::Refused(format!(
            "--id {id:?}: an id is one word without spaces or '/' (e.g. nightly-checks)"
        )));
    }
    Ok(())
}

/// The id `wg add` makes from a title when no `--id` is given (before any suffix that keeps
/// it unique): "Nightly checks" -> "nightly-checks".
pub fn slug(title: &str) -> String {
    let words: Vec<String> = title
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .take(5)
        .map(str::to_ascii_lowercase)
        .collect();
    if words.is_empty() {
        "task".to_string()
    } else {
        words.join("-")
    }
}

fn free_id(state: &State, base: &str) -> String {
    (1..)
        .map(|n| if n == 1 { base.to_string() } else { format!("{base}-{n}") })
        .find(|id| state.graph.task(id).is_none())
        .expect("some suffix is free")
}

/// Checks that `agent_id`, when a command comes from an agent, still owns the task: an agent
/// that was stopped and replaced must not finish its successor's task.
fn check_owner(task: &Task, agent_id: Option<&str>) -> Result<(), OpError> {
    match agent_id {
        Some(agent_id) if task.assigned.as_deref() != Some(agent_id) || task.status != TaskStatus::InProgress => {
            Err(OpError::Refused(format!(
                "{agent_id} no longer owns {} (it is {}{}); the result was not recorded",
                task.id,
                task.status,
                task.assigned.as_deref().map(|owner| format!(", assigned to {owner}")).unwrap_or_default()
            )))
        }
        _ => Ok(()),
    }
}

/// `wg done`. `agent_id` is the caller's `WG_AGENT_ID`, when an agent calls.
pub async fn finish_task<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    task_id: &str,
    agent_id: Option<&str>,
) -> Result<bool, OpError> {
    let now_ms = ctx.clock.now_ms();
    let now = format_rfc3339(now_ms);
    ctx.store
        .transact(|state| {
            let task = state.graph.task(task_id).ok_or_else(|| OpError::UnknownTask(task_id.to_string()))?;
            if task.status == TaskStatus::Done {
                return Ok(false);
            }
            check_owner(task, agent_id)?;
            let task = state.graph.task_mut(task_id).expect("found above");
            task.status = TaskStatus::Done;
            task.completed_at = Some(now.clone());
            task.failure_reason = None;
            task.push_log(now_ms, ctx.actor, "Task marked as done".to_string());
            Ok(true)
        })
        .await?
}

/// `wg fail`.
pub async fn fail_task<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    task_id: &str,
    reason: &str,
    agent_id: Option<&str>,
) -> Result<(), OpError> {
    let now_ms = ctx.clock.now_ms();
    ctx.store
        .transact(|state| {
            let task = state.graph.task(task_id).ok_or_else(|| OpError::UnknownTask(task_id.to_string()))?;
            if task.status == TaskStatus::Done {
                return Err(OpError::Refused(format!("{task_id} is done; a done task cannot fail")));
            }
            check_owner(task, agent_id)?;
            let task = state.graph.task_mut(task_id).expect("found above");
            task.status = TaskStatus::Failed;
            task.failure_reason = Some(reason.to_string());
            task.push_log(now_ms, ctx.actor, format!("Task marked as failed: {reason}"));
            Ok(())
        })
        .await?
}

/// `wg heartbeat`: the agent says it is alive.
pub async fn heartbeat<C: Clock, P: Processes, S: Store>(ctx: Ctx<'_, C, P, S>, agent_id: &str) -> Result<(), OpError> {
    let now = format_rfc3339(ctx.clock.now_ms());
    ctx.store
        .transact(|state| {
            let agent = state.registry.agent(agent_id).ok_or_else(|| OpError::UnknownAgent(agent_id.to_string()))?;
            if !agent.status.is_running() {
                return Err(OpError::Refused(format!("{agent_id} is {}; a heartbeat cannot revive it", agent.status)));
            }
            state.registry.agent_mut(agent_id).expect("found above").last_heartbeat = Some(now.clone());
            Ok(())
        })
        .await?
}

/// What `wg recover` does (or would do, in a dry run).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoverPlan {
    /// Failed or abandoned tasks re-opened.
    pub requeued: Vec<String>,
    /// Companions abandoned because their task was re-opened (only without `keep_agency`).
    pub companions_abandoned: Vec<String>,
}

/// `wg recover`: re-open failed and abandoned tasks (optionally only `only_task`). Without
/// `keep_agency`, their open `.evaluate-*` / `.flip-*` companions are abandoned, as upstream
/// does; retry always keeps them. With `apply` false nothing is written.
pub async fn recover<C: Clock, P: Processes, S: Store>(
    ctx: Ctx<'_, C, P, S>,
    only_task: Option<&str>,
    keep_agency: bool,
    apply: bool,
) -> Result<RecoverPlan, OpError> {
    let now_ms = ctx.clock.now_ms();
    ctx.store
        .transact(|state| {
            if let Some(id) = only_task.filter(|id| state.graph.task(id).is_none()) {
                return Err(OpError::UnknownTask(id.to_string()));
            }
            let plan = plan_recovery(state, only_task, keep_agency);
            if apply {
                for id in &plan.requeued {
                    let task = state.graph.task_mut(id).expect("planned from the graph");
                    requeue(task, now_ms, ctx.actor, "Recovered by wg recover".to_string());
                    task.crash_loop = None;
                }
                for id in &plan.companions_abandoned {
                    let task = state.graph.task_mut(id).expect("planned from the graph");
                    task.status = TaskStatus::Abandoned;
                    task.push_log(now_ms, ctx.actor, "Abandoned by wg recover".to_string());
                }
            }
            Ok(plan)
        })
        .await?
}

fn plan_recovery(state: &State, only_task: Option<&str>, keep_agency: bool) -> RecoverPlan {
    let mut plan = RecoverPlan::default();
    for task in state.graph.tasks() {
        let selected = only_task.is_none_or(|id| id == task.id);
        let recoverable = matches!(task.status, TaskStatus::Failed | TaskStatus::Abandoned);
        if selected && recoverable && !task.is_companion() {
            plan.requeued.push(task.id.clone());
        }
    }
    if !keep_agency {
        for task in state.graph.tasks() {
            let belongs = plan.requeued.iter().any(|id| task.id.ends_with(&format!("-{id}")));
            let finished = matches!(task.status, TaskStatus::Done | TaskStatus::Abandoned);
            if is_companion_id(&task.id) && belongs && !finished {
                plan.companions_abandoned.push(task.id.clone());
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Graph;
    use crate::registry::Registry;

    fn state(graph: &str) -> State {
        State { graph: Graph::parse(graph.as_bytes()).unwrap(), registry: Registry::empty() }
    }

    #[test]
    fn a_task_added_without_an_id_is_named_after_the_first_words_of_its_title() {
        assert_eq!(slug("Nightly checks"), "nightly-checks");
        assert_eq!(slug("  Fix: the build (again) on ARM, today!"), "fix-the-build-again-on");
        assert_eq!(slug("¿?"), "task");
    }

    #[test]
    fn a_taken_id_gets_the_first_free_numbered_suffix() {
        let state = state(concat!(
            r#"{"kind":"task","id":"nightly-checks","status":"open"}"#,
            "\n",
            r#"{"kind":"task","id":"nightly-checks-2","status":"open"}"#
        ));
        assert_eq!(free_id(&state, "nightly-checks"), "nightly-checks-3");
        assert_eq!(free_id(&state, "weekly"), "weekly");
    }

    #[test]
    fn recover_reopens_failed_and_abandoned_tasks_and_abandons_their_open_companions_unless_kept() {
        let state = state(concat!(
            r#"{"kind":"task","id":"t1","status":"failed"}"#,
            "\n",
            r#"{"kind":"task","id":"t2","status":"abandoned"}"#,
            "\n",
            r#"{"kind":"task","id":"t3","status":"done"}"#,
            "\n",
            r#"{"kind":"task","id":".evaluate-t1","status":"open"}"#,
            "\n",
            r#"{"kind":"task","id":".flip-t1","status":"done"}"#,
            "\n",
            r#"{"kind":"task","id":".evaluate-t3","status":"open"}"#,
            "\n",
            r#"{"kind":"task","id":".flip-t2","status":"open"}"#
        ));
        let plan = plan_recovery(&state, None, false);
        assert_eq!(plan.requeued, ["t1", "t2"], "companions are never re-opened by recover");
        assert_eq!(plan.companions_abandoned, [".evaluate-t1", ".flip-t2"]);
        assert_eq!(plan_recovery(&state, None, true).companions_abandoned, Vec::<String>::new());
        let only_t2 = plan_recovery(&state, Some("t2"), false);
        assert_eq!(
            (only_t2.requeued, only_t2.companions_abandoned),
            (vec!["t2".to_string()], vec![".flip-t2".to_string()])
        );
    }

    #[test]
    fn add_names_the_task_it_added_and_refuses_a_dependency_that_does_not_exist() {
        use crate::ops::fake::Fake;
        let fake = Fake::new(
            state(r#"{"kind":"task","id":"nightly-checks","status":"done"}"#),
            0,
            crate::ports::Liveness::Alive,
        );
        let new =
            NewTask { title: "Nightly checks".into(), after: vec!["nightly-checks".into()], ..NewTask::default() };
        assert_eq!(crate::block_on(add_task(fake.ctx(), &new)), Ok("nightly-checks-2".to_string()));
        assert_eq!(fake.state.borrow().graph.task("nightly-checks-2").unwrap().after, ["nightly-checks"]);
        let orphan =
            NewTask { id: Some("t9".into()), title: "Orphan".into(), after: vec!["t0".into()], ..NewTask::default() };
        let refused = crate::block_on(add_task(fake.ctx(), &orphan));
        assert_eq!(refused, Err(OpError::Refused("--after t0: no such task (see `wg list`)".into())));
        assert!(fake.state.borrow().graph.task("t9").is_none());
    }

    #[test]
    fn add_refuses_a_blank_title_and_an_id_with_spaces_or_slashes_and_writes_nothing() {
        use crate::ops::fake::Fake;
        let fake = Fake::new(state(""), 0, crate::ports::Liveness::Alive);
        let titled = |id: Option<&str>, title: &str| NewTask {
            id: id.map(str::to_string),
            title: title.to_string(),
            ..NewTask::default()
        };
        for new in [titled(None, "  "), titled(Some("a b"), "A"), titled(Some("a/b"), "A"), titled(Some(""), "A")] {
            let refused = crate::block_on(add_task(fake.ctx(), &new));
            assert!(matches!(refused, Err(OpError::Refused(_))), "{new:?}: {refused:?}");
        }
        assert_eq!(fake.state.borrow().graph.tasks().count(), 0, "nothing was added");
        assert_eq!(crate::block_on(add_task(fake.ctx(), &titled(Some(".flip-a"), "A"))), Ok(".flip-a".into()));
    }
}
